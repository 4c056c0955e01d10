"""Recipes: YAML -> dict -> dotted overrides -> typed, fully validated dataclasses (``config.py``).

A YAML key, its dataclass field and its override path are the same string
(``train.lr`` in YAML is ``recipe.train.lr`` in Python and ``train.lr=3e-5`` on the
command line). Validation collects *every* problem before raising one ``RecipeError``;
the task type (``tasks/``) and the strategy (``strategies/``) add their own rules.
Loading a recipe imports no torch: ``nlp-transfer validate`` answers in about a second.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

# the dataclasses are re-exported: code written against ``nlp_transfer.recipe.TrainConfig`` keeps working
from .config import (ADAPT_METHODS, ALL_SECTIONS, SECTIONS, SPLITS, TRAIN_DEFAULTS, UNLABELED_SPLIT,  # noqa: F401
                     AdaptConfig, AugmentConfig, CardConfig, TargetConfig,
                     DataConfig, ModelConfig, OutputConfig, PushConfig, Recipe, TaskConfig, TrainConfig)
from .errors import RecipeError
from .metrics import check_metric_names
from .strategies import DEFAULT_STRATEGY, STRATEGIES, StrategyOptions
from .tasks import TASK_TYPES

logger = logging.getLogger(__name__)

_NAME = r"[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"^{_NAME}/{_NAME}$", re.ASCII)


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
    raw, source, base_dir = read_recipe(recipe)
    problems: list[str] = []
    overridden = _apply_overrides(raw, overrides, problems)
    return recipe_from_raw(raw, source, base_dir, overridden, problems)


def load_any_recipe(recipe: str | Path | dict, overrides: list[str] | dict[str, Any] | None = None):
    """A single-task ``Recipe``, or a ``MultiTaskRecipe`` when the recipe has a ``tasks`` section (see ``multitask/``)."""
    from .multitask.recipe import MULTITASK_SECTION, multitask_from_raw

    raw, source, base_dir = read_recipe(recipe)
    problems: list[str] = []
    overridden = _apply_overrides(raw, overrides, problems)
    if MULTITASK_SECTION in raw:
        return multitask_from_raw(raw, source, base_dir, overridden, problems)
    return recipe_from_raw(raw, source, base_dir, overridden, problems)


def read_recipe(recipe: str | Path | dict) -> tuple[dict, str, Path]:
    """The raw mapping of a recipe (a copy, for a dict), where it came from, and the folder its paths resolve against.

    Raises:
        RecipeError: No such file, not YAML, a key given twice in one mapping, or not a mapping at the top.
    """
    if isinstance(recipe, dict):
        raw, source, base_dir = _deep_copy(recipe), "<dict>", Path.cwd()
    else:
        path = Path(recipe)
        if not path.is_file():
            raise RecipeError([f"recipe file not found: '{path}'; pass the path of a YAML recipe such as recipes/quickstart.yaml"], str(path))
        source, base_dir = str(path), path.resolve().parent
        try:
            raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
        except yaml.YAMLError as exc:
            raise RecipeError([f"not valid YAML: {exc}"], source) from None
    if not isinstance(raw, dict):
        raise RecipeError([f"the top level must be a mapping of sections {list(ALL_SECTIONS)}; got {type(raw).__name__}"], source)
    return raw, source, base_dir


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys in a mapping without a word; a recipe must not lose one that way."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"key {key!r} appears twice (first on line {seen[key] + 1}, again on line {key_node.start_mark.line + 1}); "
                    "each key may appear once in a mapping: rename or remove one (two tasks need two names)", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def recipe_from_raw(raw: dict, source: str, base_dir: Path, overridden: set[str] = frozenset(),
                    problems: list[str] | None = None) -> Recipe:
    """Validate a raw single-task recipe (overrides already applied); ``problems`` found so far are reported with the rest.

    Raises:
        RecipeError: Listing every problem, each with its key path and value.
    """
    problems = list(problems or [])
    recipe_obj = _build_recipe(raw, problems, source)
    _resolve_paths(recipe_obj, base_dir, overridden)
    for split, file in recipe_obj.data.files.items():
        if not Path(file).is_file():
            problems.append(f"data.files.{split}: file not found: '{file}'; paths in a recipe resolve against its folder, "
                            "paths given on the command line against the working directory")
    for key, file in _adapt_files(recipe_obj):
        if not Path(file).is_file():
            problems.append(f"{key}: file not found: '{file}'; paths in a recipe resolve against its folder, "
                            "paths given on the command line against the working directory")
        elif key.startswith("adapt.target_validation") and file == recipe_obj.data.files.get("test"):
            problems.append(f"{key}: '{file}' is also data.files.test; the rows that choose the model must not be the rows "
                            "that test it. Give a separate labelled target file")
    if problems:
        raise RecipeError(problems, source)
    resolve_model_defaults(recipe_obj)
    return recipe_obj


def _adapt_files(recipe: Recipe) -> list[tuple[str, str]]:
    """(key, path) of every file the adapt section names."""
    adapt = recipe.adapt
    if adapt is None:
        return []
    selection = adapt.target_validation.files if adapt.target_validation is not None else []
    return ([(f"adapt.target.files[{i}]", f) for i, f in enumerate(adapt.target.files)]
            + [(f"adapt.target_validation.files[{i}]", f) for i, f in enumerate(selection)])


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
        if key == "tasks":
            problems.append("tasks: a multi-task recipe, which `nlp-transfer train` and `validate` (nlp_transfer.train, "
                            "load_any_recipe) read; this one takes a single-task recipe (task and data sections)")
        elif key not in ALL_SECTIONS:
            problems.append(f"{key}: unknown section; valid sections: {', '.join(ALL_SECTIONS)} (or tasks, for several tasks)")
    sections = {}
    for name, cls in SECTIONS.items():
        sections[name] = _build_dataclass(cls, _section(raw, name, problems), name, problems)
    sections["strategy"] = _build_strategy(_section(raw, "strategy", problems), problems)
    adapt = _section(raw, "adapt", problems)
    sections["adapt"] = _build_dataclass(AdaptConfig, adapt, "adapt", problems) if adapt else None
    recipe = Recipe(**sections, source=source)
    recipe.strategy.complete(recipe)
    recipe.defaults_used = _fill_train_defaults(recipe)
    if not recipe.output.dir and source != "<dict>":  # a recipe file's runs go to runs/<its name> unless it says
        recipe.output.dir = recipe.defaults_used["output.dir"] = f"runs/{Path(source).stem}"
    _check_semantics(recipe, problems)
    return recipe


def _fill_train_defaults(recipe: Recipe) -> dict[str, Any]:
    """Unset ``train`` keys take the strategy's default, else the general one; return what was filled."""
    train, strategy, filled = recipe.train, recipe.strategy, {}
    for key, general in TRAIN_DEFAULTS.items():
        if getattr(train, key) is None:
            setattr(train, key, strategy.train_defaults.get(key, general))
            filled[f"train.{key}"] = getattr(train, key)
    if train.head_lr is None and isinstance(train.lr, (int, float)):
        filled["train.head_lr"] = train.head_lr = train.lr * strategy.head_lr_factor
    return filled


def _section(raw: dict, name: str, problems: list[str]) -> dict:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        problems.append(f"{name}: must be a mapping of keys; got {value!r}")
        return {}
    return value


def _build_strategy(raw: dict, problems: list[str]):
    name = raw.get("name", DEFAULT_STRATEGY)
    if name is None:  # strategy.name=null: not set
        name = DEFAULT_STRATEGY
    if not isinstance(name, str) or name not in STRATEGIES:
        problems.append(f"strategy.name: unknown strategy {name!r}; registered strategies: {', '.join(sorted(STRATEGIES))}")
        return StrategyOptions()
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
        if value is None and not _allows_none(hints[key]):
            continue  # key=null (or key= on the command line) means "not set": the default applies
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{path}.{key}: got {value}; expected a finite number")
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


def _allows_none(hint) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint)


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
        if isinstance(value, bool):  # YAML 1.1 reads a bare no/off as false and yes/on as true
            value = next((word for word in (("no", "off", "false") if not value else ("yes", "on", "true"))
                          if word in args), value)
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
                number = float(value)
            except ValueError:
                return False, value
            return math.isfinite(number), number
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
    """Cross-field rules that types alone cannot express; the task type and the strategy add theirs."""
    model, task, data, train = recipe.model, recipe.task, recipe.data, recipe.train
    kind = TASK_TYPES.get(task.type)
    if kind is None:
        problems.append(f"task.type: got {task.type!r}; expected one of: {', '.join(TASK_TYPES)}")
    if not model.name:
        problems.append("model.name: missing; give a Hub id (e.g. sentence-transformers/all-MiniLM-L6-v2) or a local model folder")
    if model.max_length < 8:
        problems.append(f"model.max_length: got {model.max_length}; expected an integer >= 8")
    if kind is not None:
        problems.extend(kind.validate(recipe))
        if model.pooling is not None and not kind.pools:
            problems.append(f"model.pooling: got {model.pooling!r}, but a {task.type} head reads "
                            f"{'every token' if kind.per_token else 'its backbone'}'s own features (nothing is pooled); "
                            "remove model.pooling")
    problems.extend(_data_problems(recipe, kind))
    problems.extend(_train_problems(train, task.type))
    if not recipe.output.dir:
        problems.append("output.dir: missing; give the folder the trained model is written to, e.g. "
                        "{'output': {'dir': 'runs/my-model'}} (a recipe file defaults to runs/<its name>)")
    if recipe.output.push_to_hub is not None:
        problems.extend(_push_problems(recipe))
    problems.extend(recipe.strategy.validate(recipe))
    problems.extend(_adapt_problems(recipe, kind))


def _adapt_problems(recipe: Recipe, kind) -> list[str]:
    """``adapt`` and ``data.weight_column``: what can be adapted, and with which settings."""
    adapt, problems = recipe.adapt, []
    weight_column = recipe.data.weight_column
    if weight_column is not None and not weight_column:
        problems.append("data.weight_column: got an empty name; give the train column of per-row weights, or remove the key")
    elif weight_column and not recipe.strategy.adaptable:
        users = [n for n, cls in STRATEGIES.items() if cls.Options.adaptable]
        problems.append(f"data.weight_column: strategy {recipe.strategy_name!r} has its own loss or cached inputs, which "
                        f"per-row weights do not reach; use one of {', '.join(users)}, or remove data.weight_column")
    if adapt is None:
        return problems
    if not recipe.strategy.adaptable:
        users = [n for n, cls in STRATEGIES.items() if cls.Options.adaptable]
        problems.append(f"adapt: strategy {recipe.strategy_name!r} cannot be adapted (it does not train the encoder's features "
                        f"in the loop); use one that does ({', '.join(users)}), or remove the adapt section")
    if kind is not None and (not kind.pools or kind.per_token):
        problems.append(f"adapt: task.type {kind.name} has no pooled sequence features to align; domain adaptation "
                        "needs a sequence-level text task (e.g. text-classification)")
    elif kind is not None and adapt.method == "mcc" and kind.problem_type != "single_label_classification":
        problems.append(f"adapt.method: mcc reads the class probabilities of the target rows, and task.type {kind.name} "
                        "has none (softmax over classes); use dann, mmd or coral, which align the features")
    if adapt.mcc_temperature <= 0:
        problems.append(f"adapt.mcc_temperature: got {adapt.mcc_temperature}; expected a positive number (2.5 in the "
                        "MCC paper)")
    target = adapt.target
    if not target.files and not target.source:
        problems.append("adapt.target: no target data; give adapt.target.files (a list of local files of the target "
                        "domain's text) or adapt.target.source (a Hub dataset id) with adapt.target.split")
    if target.files and target.source:
        problems.append("adapt.target: give adapt.target.files or adapt.target.source, not both")
    if target.limit is not None and target.limit < 1:
        problems.append(f"adapt.target.limit: got {target.limit}; expected a positive number of rows")
    if adapt.method is None and adapt.instance_weights is None and adapt.self_training is None:
        problems.append(f"adapt.method: missing; choose one of {', '.join(ADAPT_METHODS)}, or set "
                        "adapt.instance_weights: domain_classifier (instance weighting alone) or adapt.self_training: {} "
                        "(pseudo-labelled target rows alone)")
    problems.extend(_self_training_problems(adapt.self_training, kind))
    if adapt.weight is not None and adapt.weight < 0:
        problems.append(f"adapt.weight: got {adapt.weight}; expected a number >= 0 (the alignment term's scale)")
    if not 0 < adapt.target_ratio < 1:
        problems.append(f"adapt.target_ratio: got {adapt.target_ratio}; expected the share of target rows in a batch, "
                        "in (0, 1), e.g. 0.5")
    elif adapt.method is not None and min(round(recipe.train.batch_size * adapt.target_ratio),
                                          round(recipe.train.batch_size * (1 - adapt.target_ratio))) < 1:
        problems.append(f"adapt.target_ratio: {adapt.target_ratio} of train.batch_size {recipe.train.batch_size} leaves a "
                        "batch without source or without target rows; raise train.batch_size or move the ratio toward 0.5")
    if adapt.weight_clip < 1:
        problems.append(f"adapt.weight_clip: got {adapt.weight_clip}; expected a number >= 1 (weights are clipped to "
                        "[1/clip, clip])")
    for key in ("domain_hidden", "eval_rows"):
        if getattr(adapt, key) < 1:
            problems.append(f"adapt.{key}: got {getattr(adapt, key)}; expected a positive integer")
    if adapt.grl_gamma <= 0:
        problems.append(f"adapt.grl_gamma: got {adapt.grl_gamma}; expected a positive number (10 in the DANN paper)")
    if adapt.weight_exponent is not None and not 0 < adapt.weight_exponent <= 1:
        problems.append(f"adapt.weight_exponent: got {adapt.weight_exponent}; expected a number in (0, 1] (1: the exact "
                        "density ratio), or null to choose it from the effective sample size")
    elif adapt.weight_exponent is not None and adapt.instance_weights is None:
        problems.append("adapt.weight_exponent: set, but adapt.instance_weights is null, so there are no importance weights "
                        "to flatten; set adapt.instance_weights: domain_classifier, or remove adapt.weight_exponent")
    if adapt.target_validation is not None and not adapt.target_validation.files:
        problems.append("adapt.target_validation.files: no files; give local files of labelled target rows (the task.text "
                        "and task.label columns), or remove adapt.target_validation to choose the model on source validation")
    return problems


def _self_training_problems(self_training, kind) -> list[str]:
    if self_training is None:
        return []
    problems = []
    if kind is not None and kind.problem_type != "single_label_classification":
        problems.append(f"adapt.self_training: pseudo-labels are the predicted class of a target row, and task.type "
                        f"{kind.name} predicts no single class; remove adapt.self_training (or use a single-label "
                        "text-classification task)")
    if self_training.rounds < 1:
        problems.append(f"adapt.self_training.rounds: got {self_training.rounds}; expected a positive integer (training "
                        "rounds on pseudo-labelled target rows after the first training, e.g. 1)")
    if not 0 < self_training.keep <= 1:
        problems.append(f"adapt.self_training.keep: got {self_training.keep}; expected the share of target rows "
                        "pseudo-labelled per round, in (0, 1], e.g. 0.5")
    return problems


def _data_problems(recipe: Recipe, kind) -> list[str]:
    data, strategy, problems = recipe.data, recipe.strategy, []
    if not data.source and "train" not in data.files:
        problems.append("data: no data given; set data.source (a Hub dataset id) or data.files.train (a local file)")
    for split in data.files:
        if split not in SPLITS:
            problems.append(f"data.files.{split}: unknown split; valid splits: {', '.join(SPLITS)}")
    if UNLABELED_SPLIT in data.files:
        if kind is not None and not kind.takes_unlabeled:
            problems.append(f"data.files.unlabeled: task.type {kind.name} trains on labelled rows only; remove data.files.unlabeled")
        elif not strategy.uses_unlabeled:
            users = [n for n, cls in STRATEGIES.items() if cls.Options.uses_unlabeled]
            problems.append(f"data.files.unlabeled: strategy {recipe.strategy_name!r} does not train on unlabelled text; "
                            f"remove data.files.unlabeled or use a strategy that does ({', '.join(users) or 'none registered'})")
    for split, n in data.limit.items():
        if split not in SPLITS:
            problems.append(f"data.limit.{split}: unknown split; valid splits: {', '.join(SPLITS)}")
        elif n < 1:
            problems.append(f"data.limit.{split}: got {n}; expected a positive number of rows")
    if data.fraction is not None and not 0 < data.fraction <= 1:
        problems.append(f"data.fraction: got {data.fraction}; expected the share of train to keep, in (0, 1], e.g. 0.1")
    if not 0 < data.validation_fraction < 1:
        problems.append(f"data.validation_fraction: got {data.validation_fraction}; expected a number between 0 and 1")
    if data.augment is not None and strategy.fixed_inputs:
        problems.append(f"data.augment: strategy {recipe.strategy_name} computes each training input's features once and "
                        "reuses them every epoch, so augmentation cannot apply; remove data.augment or use a strategy "
                        "that runs the backbone every step (e.g. full or lora)")
    return problems


def _train_problems(train: TrainConfig, task_type: str) -> list[str]:
    problems = []
    for key in ("epochs", "lr", "head_lr", "batch_size", "grad_accum_steps", "log_every"):
        value = getattr(train, key)
        if isinstance(value, (int, float)) and value <= 0:
            problems.append(f"train.{key}: got {value}; expected a positive number")
    if isinstance(train.warmup_ratio, (int, float)) and not 0 <= train.warmup_ratio < 1:
        problems.append(f"train.warmup_ratio: got {train.warmup_ratio}; expected a fraction in [0, 1)")
    if train.task_temperature <= 0:
        problems.append(f"train.task_temperature: got {train.task_temperature}; expected a positive number (1: proportional "
                        "to each task's batches, larger: closer to uniform), e.g. 2")
    if not 0 < train.cut_frac < 1:
        problems.append(f"train.cut_frac: got {train.cut_frac}; expected the share of steps the slanted triangular "
                        "schedule spends rising, in (0, 1), e.g. 0.1")
    if train.ratio < 1:
        problems.append(f"train.ratio: got {train.ratio}; expected how many times the peak lr exceeds the lowest, "
                        "a number >= 1, e.g. 32")
    if isinstance(train.weight_decay, (int, float)) and train.weight_decay < 0:
        problems.append(f"train.weight_decay: got {train.weight_decay}; expected a number >= 0")
    if train.patience is not None and train.patience < 1:
        problems.append(f"train.patience: got {train.patience}; expected a positive number of evaluations, or null to disable")
    for name in train.report_to:
        if name not in ("tensorboard", "wandb"):
            problems.append(f"train.report_to: got {name!r}; expected a list of: tensorboard, wandb")
        elif importlib.util.find_spec(name) is None:
            problems.append(f"train.report_to: {name} is not installed; `pip install {name}`, or remove it from train.report_to")
    metrics = train.metrics or []
    for problem in check_metric_names(metrics, task_type):
        problems.append(f"train.metrics: {problem}")
    if train.best_metric and metrics and train.best_metric not in [*metrics, "loss"]:
        problems.append(f"train.best_metric: got {train.best_metric!r}; expected one of train.metrics ({', '.join(metrics)}) or loss")
    return problems


def repo_id_problem(repo_id) -> str | None:
    """Why ``repo_id`` is not a valid Hub model repo id (``namespace/name``), or None. Checked locally."""
    example = "e.g. my-user/sst2-minilm"
    if not repo_id:
        return f"missing; give the Hub repo as namespace/name, {example}"
    if (not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or "--" in repo_id or ".." in repo_id
            or repo_id.endswith(".git")):
        return (f"got {repo_id!r}; expected namespace/name (your user or organization, '/', the repo name), each of "
                f"letters, digits, '-', '_' and '.', at most 96 characters, no '--' or '..', not ending in .git; {example}")
    return None


def _push_problems(recipe: Recipe) -> list[str]:
    push, problems = recipe.output.push_to_hub, []
    if problem := repo_id_problem(push.repo_id):
        problems.append(f"output.push_to_hub.repo_id: {problem}")
    choices = recipe.strategy.push_choices
    if push.what not in choices:
        writers = [n for n, cls in STRATEGIES.items() if push.what in cls.Options.push_choices]
        problems.append(f"output.push_to_hub.what: got {push.what!r}, but strategy {recipe.strategy_name!r} writes one "
                        f"model; use {' or '.join(map(repr, choices))} (the whole folder), or a strategy that writes an "
                        f"adapter and a merged model ({', '.join(writers)})")
    return problems


def resolve_model_defaults(recipe: Recipe, model_path: str | None = None) -> dict[str, Any]:
    """Fill the keys whose default follows the strategy or the model folder (``model.pooling``); return what was filled.

    Args:
        model_path: The resolved ``model.name``; default: look for it on this machine (never downloads).
            Nothing is filled when the model is not found.
    """
    from .model_files import default_pooling, local_model_path

    kind = TASK_TYPES[recipe.task.type]
    if recipe.model.pooling is not None or not kind.pools:
        return {}
    pooling = recipe.strategy.pooling_default
    if pooling is None:
        path = model_path or local_model_path(recipe.model.name, recipe.model.revision)
        if path is None:
            return {}
        pooling = default_pooling(path)
    recipe.model.pooling = recipe.defaults_used["model.pooling"] = pooling
    return {"model.pooling": pooling}


def _resolve_paths(recipe: Recipe, base_dir: Path, overridden: set[str]) -> None:
    """Recipe paths are relative to the recipe's folder; command-line ones to the working directory."""

    def resolve(path: str, key: str) -> str:
        path = Path(path).expanduser()
        return str(path if path.is_absolute() else ((Path.cwd() if key in overridden else base_dir) / path).resolve())

    files = recipe.data.files
    for split, file in files.items():
        files[split] = resolve(file, f"data.files.{split}")
    if recipe.adapt is not None:
        recipe.adapt.target.files = [resolve(f, "adapt.target.files") for f in recipe.adapt.target.files]
    if recipe.adapt is not None and recipe.adapt.target_validation is not None:
        recipe.adapt.target_validation.files = [resolve(f, "adapt.target_validation.files")
                                                for f in recipe.adapt.target_validation.files]
    if recipe.data.dir:
        recipe.data.dir = resolve(recipe.data.dir, "data.dir")


def _deep_copy(value):
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
