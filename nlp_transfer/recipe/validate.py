"""Cross-field rules of a single-task recipe that types alone cannot express (the task type, the strategy and
``adapt`` add theirs)."""

from __future__ import annotations

import importlib.util
import re

from ..adapt.checks import adapt_problems
from ..strategies.registry import STRATEGIES
from ..tasks import TASK_TYPES
from ..tasks.metrics import check_metric_names
from .schema import SPLITS, UNLABELED_SPLIT, Recipe, TrainConfig

_NAME = r"[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?"


_REPO_ID = re.compile(rf"^{_NAME}/{_NAME}$", re.ASCII)


def check_semantics(recipe: Recipe, problems: list[str]) -> None:
    """Cross-field rules that types alone cannot express; the task type and the strategy add theirs."""
    model, task, train = recipe.model, recipe.task, recipe.train
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
    problems.extend(adapt_problems(recipe, kind))


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
