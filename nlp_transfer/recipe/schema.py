"""The recipe as typed dataclasses. A leaf: imports nothing heavy (no torch, transformers, datasets).

A YAML key, its field and its override path are the same string: ``train.lr`` in YAML is
``recipe.train.lr`` in Python and ``train.lr=3e-5`` on the command line. Loading, overrides and
validation are in ``recipe.py``; the ``strategy`` section's dataclass belongs to the strategy
(``strategies/``), and task-specific rules to the task type (``tasks/``).

Keys whose default depends on the strategy (``train.lr``, ``train.epochs``, ...) or on the model
folder (``model.pooling``) are ``None`` until ``recipe.py`` resolves them; a loaded recipe (and the
``recipe.yaml`` of every output) shows the resolved values.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

UNLABELED_SPLIT = "unlabeled"  # data.files.unlabeled: text only, for strategies that learn without labels
SPLITS = ("train", "validation", "test", UNLABELED_SPLIT)
IMAGEFOLDER = "imagefolder"  # data.source that reads data.dir/train/<class>/<image>
SEARCH_SECTION = "tune"  # what `nlp-transfer tune` searches (search/space.py); `train` reads the recipe without it
MULTITASK_SECTION = "tasks"  # a multi-task recipe's section of tasks, in place of task and data (see recipe/multitask.py)

# A path-valued key says so in its field's metadata (metadata={PATH_KIND: ...}); recipe/paths.py finds every such key and
# resolves it by the one rule (docs/recipes.md, "Paths"). PATH: a file or folder the run reads (a str, a list or a
# mapping of them); OUTPUT: a folder the run writes; MODEL: a local model folder or, when no such folder exists and
# the value is not written as a path, a Hub id.
PATH_KIND = "path_kind"
PATH, OUTPUT, MODEL = "path", "output", "model"
PATHS_RULE = ("paths written in a recipe resolve against the recipe's folder, paths given on the command line "
              "against the working directory")


def dataclass_of(hint):
    """The dataclass a (possibly optional) type hint names, or None."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    return next((a for a in args if dataclasses.is_dataclass(a)), None)


@dataclass
class ModelConfig:
    """``model``: which pretrained backbone to start from, and how its head reads it.

    ``from_scratch``: random weights in ``name``'s architecture (a config folder, or the baseline
    without transfer). ``pooling``: what a sequence-level head reads, ``cls`` (the model's native
    head) or ``mean`` (the mean of the token states); null follows the model folder (mean for
    sentence-transformers models trained with mean pooling, else cls).
    """

    name: str = field(default="", metadata={PATH_KIND: MODEL})
    revision: str | None = None
    trust_remote_code: bool = False
    max_length: int = 128
    from_scratch: bool = False
    pooling: Literal["cls", "mean"] | None = None


@dataclass
class TaskConfig:
    """``task``: what the head predicts and from which columns (``tasks/`` says which keys each type reads).

    Token classification reads ``tokens`` (a list of words per row) and ``tags`` (one tag per
    word); ``label_all_subtokens`` puts a word's tag on every word piece, not only the first.
    """

    type: str = "text-classification"  # a registered task type (tasks.TASK_TYPES)
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

    ``limit.<split>``: keep the first N rows after a seeded shuffle. ``fraction``: keep that share
    of train (after ``limit``), seeded and stratified by class where the task has classes; for one
    seed, a smaller fraction's rows are a subset of a larger one's.
    ``tag_column``: the column of a CoNLL file (``format: conll``) that holds the tag, 0-based
    (default -1: the last one; the word is always the first).
    """

    source: str | None = None
    config: str | None = None
    files: dict[str, str] = field(default_factory=dict, metadata={PATH_KIND: PATH})
    limit: dict[str, int] = field(default_factory=dict)
    fraction: float | None = None
    format: Literal["csv", "tsv", "json", "jsonl", "parquet", "conll"] | None = None
    validation_fraction: float = 0.1
    tag_column: int = -1
    # data.source=imagefolder: folder with train/ (validation/, test/) class subfolders
    dir: str | None = field(default=None, metadata={PATH_KIND: PATH})
    augment: AugmentConfig | None = None
    weight_column: str | None = None  # a train column of per-row weights (>= 0) that every training loss uses


ADAPT_METHODS = ("dann", "mmd", "coral", "mcc")
TARGET_SPLIT = "target"  # adapt.target: the target domain's rows, text only (a label column is dropped unread)
TARGET_VALIDATION_SPLIT = "target_validation"  # adapt.target_validation: labelled target rows that pick the best model


@dataclass
class TargetConfig:
    """``adapt.target``: the target domain's unlabelled data, local ``files`` or a Hub ``source`` and ``split``.

    Only the recipe's text column(s) are read; any other column (a label, too) is dropped unread.
    ``limit``: keep the first N rows after a seeded shuffle.
    """

    files: list[str] = field(default_factory=list, metadata={PATH_KIND: PATH})
    source: str | None = None
    config: str | None = None
    split: str = "train"
    limit: int | None = None


@dataclass
class SelfTrainingConfig:
    """``adapt.self_training``: after the recipe's training, ``rounds`` more trainings of the same model, each on
    the target rows the model is most sure of, labelled with its own predictions (pseudo-labels), and as many
    source rows.

    ``keep``: share of the target rows pseudo-labelled per round, the same number per predicted class (the most
    confident of each), so a round cannot drift toward one class. Single-label classification only. The target's own
    labels are never read; each round picks its best model on the same rows as the first (source validation unless
    ``adapt.target_validation``) and starts from the last round's.
    """

    rounds: int = 1
    keep: float = 0.5


@dataclass
class TargetValidationConfig:
    """``adapt.target_validation``: a small labelled set of the target domain that picks the best model.

    ``files``: local files with the recipe's text column(s) and its label column (``task.label``); labels are mapped
    with the label maps of the source train split. Without this section the source validation split picks the model.
    """

    files: list[str] = field(default_factory=list, metadata={PATH_KIND: PATH})


@dataclass
class AdaptConfig:
    """``adapt``: domain adaptation from the labelled (source) data to an unlabelled target domain.

    ``method``: ``dann`` (a domain classifier on the pooled features behind a gradient-reversal layer whose
    weight warms up as 2/(1+exp(-``grl_gamma`` * progress)) - 1), ``mmd`` (multi-kernel maximum mean
    discrepancy), ``coral`` (covariance alignment), ``mcc`` (minimum class confusion on the target rows' class
    probabilities, softened by ``mcc_temperature``; single-label classification), or null (no adaptation term:
    instance weighting alone).
    ``weight``: scale of the alignment term (null: the method's default, see ``adapt.DEFAULT_WEIGHTS``).
    ``target_ratio``: share of target rows in every training batch (with a ``method``; instance weighting alone
    trains on batches of source rows). ``instance_weights: domain_classifier``:
    weight each source row by (p_target(x) / p_source(x)) ** ``weight_exponent`` from a cross-fitted classifier
    on frozen-encoder features, clipped to [1 / ``weight_clip``, ``weight_clip``] with mean 1 (``weight_exponent``
    null: the largest exponent in (0, 1] that keeps an effective sample size of half the source rows).
    ``domain_hidden``: width of dann's domain classifier. ``eval_rows``: source-validation and target rows scored
    per evaluation for the logged domain numbers (alignment loss, domain-classifier accuracy, proxy A-distance).
    ``target_validation``: labelled target rows that pick the best model instead of the source validation split.
    ``self_training``: further training rounds on pseudo-labelled target rows (``SelfTrainingConfig``); with or
    without a ``method``.
    """

    target: TargetConfig = field(default_factory=TargetConfig)
    method: Literal["dann", "mmd", "coral", "mcc"] | None = None
    weight: float | None = None
    target_ratio: float = 0.5
    grl_gamma: float = 10.0
    domain_hidden: int = 256
    mcc_temperature: float = 2.5
    instance_weights: Literal["domain_classifier"] | None = None
    weight_clip: float = 10.0
    weight_exponent: float | None = None
    eval_rows: int = 256
    target_validation: TargetValidationConfig | None = None
    self_training: SelfTrainingConfig | None = None


@dataclass
class TrainConfig:
    """``train``: the loop's knobs.

    ``lr``, ``head_lr``, ``epochs``, ``weight_decay`` and ``warmup_ratio`` left unset take the
    strategy's defaults (``head_lr``: the learning rate of the new task head; it has the most to learn).
    ``task_sampling`` and ``task_temperature`` apply to multi-task recipes only (see ``multitask/``).
    ``scheduler: slanted_triangular`` is ULMFiT's: a rise over the first ``cut_frac`` of the steps from
    ``lr / ratio`` to ``lr``, then a linear decay back to ``lr / ratio`` (it replaces ``warmup_ratio``).
    """

    epochs: float | None = None
    batch_size: int = 32
    eval_batch_size: int | None = None
    lr: float | None = None
    head_lr: float | None = None
    weight_decay: float | None = None
    warmup_ratio: float | None = None
    scheduler: Literal["linear", "cosine", "constant", "slanted_triangular"] = "linear"
    cut_frac: float = 0.1  # slanted_triangular: share of the steps spent rising (the paper's 0.1)
    ratio: float = 32.0  # slanted_triangular: peak lr / lowest lr (the paper's 32)
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
    # multi-task recipes (a ``tasks`` section): which task each batch comes from. proportional: p_k ~ n_k
    # (task k's training batches); temperature: p_k ~ n_k ** (1 / task_temperature); round_robin: in turn
    task_sampling: Literal["proportional", "temperature", "round_robin"] = "temperature"
    task_temperature: float = 2.0


# What an unset strategy-dependent train key falls back to when the strategy has no default for it.
TRAIN_DEFAULTS: dict[str, Any] = {"epochs": 3.0, "lr": 5e-5, "weight_decay": 0.01, "warmup_ratio": 0.06}


@dataclass
class PushConfig:
    """``output.push_to_hub``: push the finished output folder to this Hub repo (see ``hub.push_to_hub``)."""

    repo_id: str = ""
    private: bool = False
    revision: str | None = None
    what: Literal["both", "adapter", "merged"] = "both"


@dataclass
class OutputConfig:
    """``output``: where the Hub-ready folder goes (and, optionally, which Hub repo it is pushed to).

    ``save``: ``model`` (the full output) or ``metrics`` (metrics.json, the log and the recipe, no
    weights: for grids of runs).
    """

    dir: str = field(default="", metadata={PATH_KIND: OUTPUT})
    overwrite: bool = False
    save: Literal["model", "metrics"] = "model"
    push_to_hub: PushConfig | None = None


@dataclass
class CardConfig:
    """``card``: what the model card says beyond the numbers (all optional).

    ``model_id``: the Hub id the card's usage code names (default: ``output.push_to_hub.repo_id``,
    else the output folder's name); ``language``: ISO 639 code(s) of the training text.
    ``settings_origin``: how the recipe's settings were chosen, one sentence (``nlp-transfer tune`` writes it into
    ``best.yaml``: the search, its trials and its objective).
    """

    model_id: str | None = None
    language: Union[str, list[str], None] = None
    license: str | None = None
    intended_uses: str | None = None
    limitations: str | None = None
    settings_origin: str | None = None


@dataclass
class Recipe:
    """A complete, validated recipe. ``strategy`` holds the chosen strategy's options dataclass."""

    model: ModelConfig
    task: TaskConfig
    data: DataConfig
    strategy: Any
    train: TrainConfig
    output: OutputConfig
    card: CardConfig = field(default_factory=CardConfig)
    adapt: AdaptConfig | None = None
    source: str = "<dict>"
    # keys the recipe left unset and that got a strategy's or the model folder's default, for the log
    defaults_used: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def strategy_name(self) -> str:
        return self.strategy.name

    def to_dict(self) -> dict:
        """Plain nested dict in YAML key order (what ``recipe.yaml`` in an output holds)."""
        return {section: dataclasses.asdict(getattr(self, section)) for section in ALL_SECTIONS
                if getattr(self, section) is not None}  # no adapt section: none written


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "task": TaskConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "output": OutputConfig,
    "card": CardConfig,
}
ALL_SECTIONS = ("model", "task", "data", "strategy", "train", "output", "card", "adapt")


@dataclass
class TaskEntry:
    """One task of a multi-task recipe: its name (a folder under ``output.dir``), its loss weight, and the
    single-task recipe it would train with alone (the shared ``model``, ``strategy`` and ``train`` sections,
    its own ``task`` keys, ``data`` and ``metrics``, ``output.dir``/<name>)."""

    name: str
    weight: float
    recipe: Recipe


@dataclass
class MultiTaskRecipe:
    """A validated multi-task recipe: one shared encoder, one head per task (see ``multitask/``).

    ``model``, ``strategy`` and ``train`` are shared (``train.metrics`` is per task: each task's ``metrics``);
    ``output.dir`` holds one plain model folder per task. ``train.best_metric``: ``mean`` (default: the mean of
    each task's first metric) or ``<task>/<metric>``.
    """

    tasks: list[TaskEntry]
    output: OutputConfig
    best_metric: str = "mean"
    source: str = "<dict>"
    defaults_used: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def first(self) -> Recipe:
        return self.tasks[0].recipe

    @property
    def model(self) -> ModelConfig:
        return self.first.model

    @property
    def strategy(self):
        return self.first.strategy

    @property
    def strategy_name(self) -> str:
        return self.first.strategy.name

    @property
    def train(self) -> TrainConfig:
        return self.first.train

    @property
    def card(self) -> CardConfig:
        return self.first.card

    def to_dict(self) -> dict:
        """The resolved multi-task recipe as YAML would hold it (what the output's top-level ``recipe.yaml`` holds)."""
        model = dataclasses.asdict(self.model)
        model["pooling"] = next((e.recipe.model.pooling for e in self.tasks if e.recipe.model.pooling), None)
        train = {k: v for k, v in dataclasses.asdict(self.train).items() if k != "metrics"}
        train["best_metric"] = self.best_metric
        tasks = {}
        for entry in self.tasks:
            tasks[entry.name] = {**dataclasses.asdict(entry.recipe.task), "data": dataclasses.asdict(entry.recipe.data),
                                 "metrics": entry.recipe.train.metrics, "weight": entry.weight}
        return {"model": model, "strategy": dataclasses.asdict(self.strategy), "train": train,
                "output": dataclasses.asdict(self.output), "card": dataclasses.asdict(self.card), "tasks": tasks}
