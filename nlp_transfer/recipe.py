"""Recipes: YAML -> dict -> dotted overrides -> typed, fully validated dataclasses.

A YAML key, its dataclass field and its override path are the same string
(``train.lr`` in YAML is ``recipe.train.lr`` in Python and ``train.lr=3e-5`` on the
command line). Validation collects *every* problem before raising one ``RecipeError``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import RecipeError

IMAGE_TASKS = ("image-classification",)
SPLITS = ("train", "validation", "test", "unlabeled")  # unlabeled: text only, for strategies with uses_unlabeled
FILE_FORMATS = ("csv", "tsv", "json", "jsonl", "parquet", "conll")


@dataclass
class ModelConfig:
    """``model``: which pretrained backbone to start from."""

    name: str = ""
    revision: str | None = None
    trust_remote_code: bool = False
    max_length: int = 128
    # image models: random weights in model.name's architecture (a config folder, or a from-scratch baseline)
    from_scratch: bool = False


@dataclass
class TaskConfig:
    """``task``: what the head predicts and from which columns.

    Token classification reads ``tokens`` (a list of words per row) and ``tags`` (one tag per
    word); ``label_all_subtokens`` puts a word's tag on every word piece, not only the first.
    """

    type: Literal["text-classification", "multi-label-classification", "regression", "token-classification",
                  "image-classification"] = "text-classification"
    text: Union[str, list[str]] = "text"
    label: str = "label"
    image: str = "image"
    labels: list[str] | None = None
    threshold: float = 0.5
    label_separator: str = "|"
    tokens: str = "tokens"
    tags: str = "tags"
    label_all_subtokens: bool = False

    @property
    def text_columns(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else list(self.text)

    @property
    def input_columns(self) -> list[str]:
        """The columns the model reads: the image column (image tasks), the word lists (token tasks) or the text column(s)."""
        if self.type == "token-classification":
            return [self.tokens]
        return [self.image] if self.type in IMAGE_TASKS else self.text_columns


@dataclass
class AugmentConfig:
    """``data.augment``: light training-only augmentation for images (evaluation never augments).

    ``random_resized_crop``: smallest crop area as a fraction of the image (e.g. 0.8), null: off;
    ``horizontal_flip``: mirror half of the images.
    """

    random_resized_crop: float | None = None
    horizontal_flip: bool = False


@dataclass
class DataConfig:
    """``data``: a Hub dataset (``source``/``config``) or local ``files`` per split.

    ``tag_column``: the column of a CoNLL file (``format: conll``) that holds the tag, 0-based
    (default -1: the last one; the word is always the first).
    """

    source: str | None = None
    config: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    limit: dict[str, int] = field(default_factory=dict)
    format: Literal["csv", "tsv", "json", "jsonl", "parquet", "conll"] | None = None
    validation_fraction: float = 0.1
    tag_column: int = -1
    dir: str | None = None  # data.source=imagefolder: folder with train/ (validation/, test/) class subfolders
    augment: AugmentConfig | None = None


@dataclass
class TrainConfig:
    """``train``: the loop's knobs."""

    epochs: float = 3.0
    batch_size: int = 32
    eval_batch_size: int | None = None
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    grad_accum_steps: int = 1
    max_grad_norm: float | None = 1.0
    seed: int = 42
    # auto: bf16 where the hardware has native bf16 (GPU or CPU), fp32 elsewhere (see precision.py)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = "auto"
    metrics: list[str] | None = None
    best_metric: str | None = None
    eval_every: int = 0
    patience: int | None = None
    checkpoint_every: int = 0
    log_every: int = 10
    report_to: list[str] = field(default_factory=list)
    group_by_length: bool = True


@dataclass
class PushConfig:
    """``output.push_to_hub``: push the finished output folder to this Hub repo (see ``hub.push_to_hub``)."""

    repo_id: str = ""
    private: bool = False
    revision: str | None = None
    what: Literal["both", "adapter", "merged"] = "both"


@dataclass
class OutputConfig:
    """``output``: where the Hub-ready folder goes (and, optionally, which Hub repo it is pushed to)."""

    dir: str = ""
    overwrite: bool = False
    push_to_hub: PushConfig | None = None


@dataclass
class CardConfig:
    """``card``: what the model card says beyond the numbers (all optional).

    ``model_id``: the Hub id the card's usage code names (default: ``output.push_to_hub.repo_id``,
    else the output folder's name); ``language``: ISO 639 code(s) of the training text.
    """

    model_id: str | None = None
    language: Union[str, list[str], None] = None
    license: str | None = None
    intended_uses: str | None = None
    limitations: str | None = None


@dataclass
class Recipe:
    """A complete, validated recipe. ``strategy`` holds the chosen strategy's options."""

    model: ModelConfig
    task: TaskConfig
    data: DataConfig
    strategy: Any
    train: TrainConfig
    output: OutputConfig
    card: CardConfig = field(default_factory=CardConfig)
    source: str = "<dict>"

    @property
    def strategy_name(self) -> str:
        return self.strategy.name

    def to_dict(self) -> dict:
        """Plain nested dict in YAML key order (what ``recipe.yaml`` in an output holds)."""
        out = {}
        for section in _ALL_SECTIONS:
            out[section] = dataclasses.asdict(getattr(self, section))
        return out


_SECTIONS = {
    "model": ModelConfig,
    "task": TaskConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "output": OutputConfig,
    "card": CardConfig,
}
_ALL_SECTIONS = ("model", "task", "data", "strategy", "train", "output", "card")


def load_recipe(
    recipe: str | Path | dict,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Recipe:
    """Load, override and validate a recipe.

    Args:
        recipe: Path to a YAML file, or an already-parsed dict.
        overrides: Dotted ``key=value`` strings (values parsed as YAML) or a
            ``{"train.lr": 3e-5}`` dict, applied before validation.

    Returns:
        The validated ``Recipe``; relative ``data.files`` are resolved against the
        recipe file's folder.

    Raises:
        RecipeError: Listing every problem, each with its key path and value.
    """
    if isinstance(recipe, dict):
        raw, source, base_dir = _deep_copy(recipe), "<dict>", Path.cwd()
    else:
        path = Path(recipe)
        if not path.is_file():
            raise RecipeError([f"recipe file not found: '{path}'; pass the path of a YAML recipe such as recipes/quickstart.yaml"], str(path))
        source, base_dir = str(path), path.resolve().parent
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise RecipeError([f"not valid YAML: {exc}"], source) from None
    if not isinstance(raw, dict):
        raise RecipeError([f"the top level must be a mapping of sections {list(_ALL_SECTIONS)}; got {type(raw).__name__}"], source)
    problems: list[str] = []
    overridden = _apply_overrides(raw, overrides, problems)
    recipe_obj = _build_recipe(raw, problems, source)
    _resolve_paths(recipe_obj, base_dir, overridden)
    for split, file in recipe_obj.data.files.items():
        if not Path(file).is_file():
            problems.append(f"data.files.{split}: file not found: '{file}'; paths in a recipe resolve against its folder, "
                            "paths given on the command line against the working directory")
    if problems:
        raise RecipeError(problems, source)
    return recipe_obj


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["train.lr=3e-5", "task.text=[a, b]"]`` into ``{"train.lr": 3e-05, ...}``."""
    parsed, problems = {}, []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or " " in key.strip():
            problems.append(f"override '{item}': expected key=value with a dotted key, e.g. train.lr=3e-5")
            continue
        try:
            parsed[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed[key.strip()] = value
    if problems:
        raise RecipeError(problems, "<command line>")
    return parsed


def _apply_overrides(raw: dict, overrides, problems: list[str]) -> set[str]:
    """Set each dotted key in ``raw``; return the keys that were set."""
    if not overrides:
        return set()
    pairs = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides)
    for dotted, value in pairs.items():
        node = raw
        keys = dotted.split(".")
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                problems.append(f"override '{dotted}': '{'.'.join(keys[:depth + 1])}' is a value, not a section")
                break
            node = child
        else:
            node[keys[-1]] = value
    return set(pairs)


def _build_recipe(raw: dict, problems: list[str], source: str) -> Recipe:
    for key in raw:
        if key not in _ALL_SECTIONS:
            problems.append(f"{key}: unknown section; valid sections: {', '.join(_ALL_SECTIONS)}")
    sections = {}
    for name, cls in _SECTIONS.items():
        sections[name] = _build_dataclass(cls, _section(raw, name, problems), name, problems)
    sections["strategy"] = _build_strategy(_section(raw, "strategy", problems), problems)
    recipe = Recipe(**sections, source=source)
    if hasattr(recipe.strategy, "complete"):
        recipe.strategy.complete(recipe)
    _check_semantics(recipe, problems)
    return recipe


def _section(raw: dict, name: str, problems: list[str]) -> dict:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        problems.append(f"{name}: must be a mapping of keys; got {value!r}")
        return {}
    return value


def _build_strategy(raw: dict, problems: list[str]):
    from .strategies import STRATEGIES  # the registry imports torch; keep recipe import light

    name = raw.get("name", "full")
    if name not in STRATEGIES:
        problems.append(f"strategy.name: unknown strategy {name!r}; registered strategies: {', '.join(sorted(STRATEGIES))}")
        return STRATEGIES["full"].Options()
    options_cls = STRATEGIES[name].Options
    return _build_dataclass(options_cls, {**raw, "name": name}, "strategy", problems)


def _build_dataclass(cls, raw: dict, path: str, problems: list[str]):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            problems.append(f"{path}.{key}: unknown key; valid keys for '{path}': {', '.join(fields)}")
            continue
        section = _dataclass_of(hints[key])
        if section is not None and isinstance(value, dict):  # a nested section, e.g. output.push_to_hub
            kwargs[key] = _build_dataclass(section, value, f"{path}.{key}", problems)
            continue
        ok, converted = _check_type(value, hints[key])
        if not ok:
            problems.append(f"{path}.{key}: got {value!r}; expected {_describe(hints[key])}")
            continue
        kwargs[key] = converted
    return cls(**kwargs)


def _dataclass_of(hint):
    """The dataclass a (possibly optional) type hint names, or None."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    return next((a for a in args if dataclasses.is_dataclass(a)), None)


def _check_type(value, hint) -> tuple[bool, Any]:
    """Check ``value`` against a type hint; return (ok, value converted to the hint)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        for arg in args:
            ok, converted = _check_type(value, arg)
            if ok:
                return True, converted
        return False, value
    if hint is type(None):
        return value is None, value
    if origin is Literal:
        return value in args, value
    if origin is list:
        if not isinstance(value, list):
            return False, value
        checked = [_check_type(v, args[0]) for v in value]
        return all(ok for ok, _ in checked), [v for _, v in checked]
    if origin is dict:
        if not isinstance(value, dict):
            return False, value
        checked = {k: _check_type(v, args[1]) for k, v in value.items()}
        ok = all(isinstance(k, args[0]) for k in value) and all(c[0] for c in checked.values())
        return ok, {k: c[1] for k, c in checked.items()}
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-5 (no dot) as a string
            try:
                return True, float(value)
            except ValueError:
                return False, value
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, hint), value


def _describe(hint) -> str:
    """Say in words what a type hint allows, for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of: " + ", ".join(map(str, args))
    if origin is list:
        return f"a list of {_describe(args[0])}s"
    if origin is dict:
        return f"a mapping of {_describe(args[0])} keys to {_describe(args[1])}s"
    if dataclasses.is_dataclass(hint):
        return "a mapping with keys " + ", ".join(f.name for f in dataclasses.fields(hint))
    names = {type(None): "null", bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _check_semantics(recipe: Recipe, problems: list[str]) -> None:
    """Cross-field rules that types alone cannot express."""
    from .metrics import check_metric_names

    model, task, data, train = recipe.model, recipe.task, recipe.data, recipe.train
    if task.type in IMAGE_TASKS:
        from .vision import image_recipe_problems

        problems.extend(image_recipe_problems(recipe))
    else:
        for key, used in (("model.from_scratch", model.from_scratch), ("data.dir", data.dir), ("data.augment", data.augment)):
            if used:
                problems.append(f"{key}: only image tasks (task.type {', '.join(IMAGE_TASKS)}) use it; got task.type "
                                f"{task.type!r}. Remove {key}")
    if not model.name:
        problems.append("model.name: missing; give a Hub id (e.g. sentence-transformers/all-MiniLM-L6-v2) or a local model folder")
    if model.max_length < 8:
        problems.append(f"model.max_length: got {model.max_length}; expected an integer >= 8")
    problems.extend(_token_task_problems(recipe))
    if not 1 <= len(task.text_columns) <= 2:
        problems.append(f"task.text: got {task.text!r}; expected one column name, or a list of two for sentence pairs")
    if not data.source and "train" not in data.files:
        problems.append("data: no data given; set data.source (a Hub dataset id) or data.files.train (a local file)")
    for split in data.files:
        if split not in SPLITS:
            problems.append(f"data.files.{split}: unknown split; valid splits: {', '.join(SPLITS)}")
    if "unlabeled" in data.files and not getattr(recipe.strategy, "uses_unlabeled", False):
        from .strategies import STRATEGIES

        users = [n for n, cls in STRATEGIES.items() if getattr(cls.Options, "uses_unlabeled", False)]
        problems.append(f"data.files.unlabeled: strategy {recipe.strategy_name!r} does not train on unlabelled text; "
                        f"remove data.files.unlabeled or use a strategy that does ({', '.join(users) or 'none registered'})")
    for split, n in data.limit.items():
        if split not in SPLITS:
            problems.append(f"data.limit.{split}: unknown split; valid splits: {', '.join(SPLITS)}")
        elif n < 1:
            problems.append(f"data.limit.{split}: got {n}; expected a positive number of rows")
    if not 0 < data.validation_fraction < 1:
        problems.append(f"data.validation_fraction: got {data.validation_fraction}; expected a number between 0 and 1")
    for key in ("epochs", "lr", "batch_size", "grad_accum_steps", "log_every"):
        if getattr(train, key) <= 0:
            problems.append(f"train.{key}: got {getattr(train, key)}; expected a positive number")
    if not 0 <= train.warmup_ratio < 1:
        problems.append(f"train.warmup_ratio: got {train.warmup_ratio}; expected a fraction in [0, 1)")
    if train.patience is not None and train.patience < 1:
        problems.append(f"train.patience: got {train.patience}; expected a positive number of evaluations, or null to disable")
    for name in train.report_to:
        if name not in ("tensorboard", "wandb"):
            problems.append(f"train.report_to: got {name!r}; expected a list of: tensorboard, wandb")
        elif importlib.util.find_spec(name) is None:
            problems.append(f"train.report_to: {name} is not installed; `pip install {name}`, or remove it from train.report_to")
    metrics = train.metrics or []
    for problem in check_metric_names(metrics, task.type):
        problems.append(f"train.metrics: {problem}")
    if train.best_metric and metrics and train.best_metric not in [*metrics, "loss"]:
        problems.append(f"train.best_metric: got {train.best_metric!r}; expected one of train.metrics ({', '.join(metrics)}) or loss")
    if not recipe.output.dir:
        problems.append("output.dir: missing; give the folder the trained model is written to, e.g. output.dir=runs/my-model")
    if recipe.output.push_to_hub is not None:
        problems.extend(_push_problems(recipe))
    if hasattr(recipe.strategy, "validate"):
        problems.extend(recipe.strategy.validate(recipe))


def _token_task_problems(recipe: Recipe) -> list[str]:
    """Keys that only make sense with (or without) token classification."""
    task, data, problems = recipe.task, recipe.data, []
    token_task = task.type == "token-classification"
    if data.format == "conll" and not token_task:
        problems.append(f"data.format: 'conll' files hold tagged words, for task.type token-classification; got task.type "
                        f"{task.type!r}. Set task.type=token-classification or give csv/tsv/json(l)/parquet files")
    if data.tag_column == 0:
        problems.append("data.tag_column: got 0, which is the word column; give the tag's column, e.g. -1 (the last) or 3")
    if token_task and "unlabeled" in data.files:
        problems.append("data.files.unlabeled: token classification trains on tagged words only; remove data.files.unlabeled")
    if task.label_all_subtokens and not token_task:
        problems.append(f"task.label_all_subtokens: applies to task.type token-classification only; got task.type {task.type!r}")
    return problems


def _push_problems(recipe: Recipe) -> list[str]:
    from .hub import repo_id_problem

    push, problems = recipe.output.push_to_hub, []
    if problem := repo_id_problem(push.repo_id):
        problems.append(f"output.push_to_hub.repo_id: {problem}")
    if push.what != "both" and recipe.strategy_name != "lora":
        problems.append(f"output.push_to_hub.what: got {push.what!r}, but only the lora strategy writes an adapter and a "
                        f"merged model; use 'both' (the whole folder) with strategy {recipe.strategy_name!r}")
    return problems


def _resolve_paths(recipe: Recipe, base_dir: Path, overridden: set[str]) -> None:
    """Recipe paths are relative to the recipe's folder; command-line ones to the working directory."""
    files = recipe.data.files
    for split, file in files.items():
        path = Path(file).expanduser()
        base = Path.cwd() if f"data.files.{split}" in overridden else base_dir
        files[split] = str(path if path.is_absolute() else (base / path).resolve())
    if recipe.data.dir:
        path = Path(recipe.data.dir).expanduser()
        base = Path.cwd() if "data.dir" in overridden else base_dir
        recipe.data.dir = str(path if path.is_absolute() else (base / path).resolve())


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
