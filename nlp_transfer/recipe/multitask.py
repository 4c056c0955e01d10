"""Multi-task recipes: a ``tasks`` section instead of ``task`` and ``data``. Imports no torch.

    tasks:
      sentiment: {type: text-classification, text: sentence, label: label, data: {files: {...}}, metrics: [accuracy]}
      similarity: {type: regression, text: [sentence1, sentence2], label: label, data: {...}, weight: 0.5}

Each task keeps every key of a single-task recipe's ``task`` section, plus ``data``, ``metrics`` (that task's
``train.metrics``) and ``weight`` (its loss weight, default 1). ``model``, ``strategy``, ``train`` and ``output``
are shared. Every task is validated as the single-task recipe it would be alone (so every rule of the task
types and strategies applies), with problems reported under ``tasks.<name>``; then the rules that span tasks.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from ..errors import RecipeError
from ..evaluation.metrics import greater_is_better
from ..strategies.registry import STRATEGIES
from ..tasks import TASK_TYPES
from .build import recipe_from_raw
from .paths import default_output_dir
from .schema import (
    MULTITASK_SECTION,
    MultiTaskRecipe,
    OutputConfig,
    TaskConfig,
    TaskEntry,
)

SHARED_SECTIONS = ("model", "strategy", "train", "output", "card")
TASK_KEYS = tuple(f.name for f in dataclasses.fields(TaskConfig))
ENTRY_KEYS = (*TASK_KEYS, "data", "metrics", "weight")
BASELINES_DIR = "single_task"  # where --single-task-baselines writes; no task may take this name
MEAN = "mean"
_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def multitask_from_raw(raw: dict, source: str, problems: list[str] | None = None) -> MultiTaskRecipe:
    """Validate a raw multi-task recipe (overrides applied, paths resolved by ``paths.resolve_recipe_paths``).

    Raises:
        RecipeError: Every problem, each with its key path (``tasks.<name>.<key>`` for a task's own keys).
    """
    problems = list(problems or [])
    for key in raw:
        if key not in (*SHARED_SECTIONS, MULTITASK_SECTION):
            where = "each task under tasks.<name>" if key in ("task", "data") else None
            problems.append(f"{key}: not a section of a multi-task recipe; " + (
                f"a multi-task recipe gives {key} keys to {where}" if where else
                f"valid sections: {', '.join((*SHARED_SECTIONS, MULTITASK_SECTION))}"))
    tasks = raw.get(MULTITASK_SECTION)
    if not isinstance(tasks, dict) or len(tasks) < 2:
        raise RecipeError([*problems, f"tasks: got {tasks!r}; expected a mapping of at least two task names to their task "
                           "keys, data, metrics and weight (for one task, use task and data sections)"], source)
    output = dict(raw.get("output") or {})
    top_dir = output.get("dir") or (default_output_dir(source) if source != "<dict>" else "")
    if not top_dir:
        problems.append("output.dir: missing; give the folder the task models are written to (one folder per task inside)")
    if output.get("push_to_hub"):
        problems.append("output.push_to_hub: a multi-task output holds one model per task; push each task's folder with "
                        "`nlp-transfer push OUTPUT_DIR/<task> --repo-id ...`, and remove output.push_to_hub")
    best_metric = (raw.get("train") or {}).get("best_metric") or MEAN
    entries, seen_problems = [], set(problems)
    for name, entry in tasks.items():
        sub, entry_problems = _task_recipe_raw(raw, str(name), entry, top_dir)
        weight = entry.get("weight", 1.0) if isinstance(entry, dict) else 1.0
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight <= 0:
            entry_problems.append(f"tasks.{name}.weight: got {weight!r}; expected a positive number (the task's loss weight)")
        try:
            recipe = recipe_from_raw(sub, source)
        except RecipeError as exc:
            entry_problems.extend(_task_problem(p, str(name)) for p in exc.problems)
            recipe = None
        for problem in entry_problems:  # shared sections' problems come once, not once per task
            if problem not in seen_problems:
                seen_problems.add(problem)
                problems.append(problem)
        if recipe is not None:
            entries.append(TaskEntry(str(name), float(weight), recipe))
    if len(entries) == len(tasks):
        problems.extend(_cross_task_problems(entries, best_metric))
    if problems:
        raise RecipeError(problems, source)
    out = OutputConfig(**{**output, "dir": top_dir, "push_to_hub": None})
    defaults = {k: v for e in entries for k, v in e.recipe.defaults_used.items() if k != "output.dir"}
    return MultiTaskRecipe(entries, out, best_metric, source, defaults)


def _task_recipe_raw(raw: dict, name: str, entry, top_dir: str) -> tuple[dict, list[str]]:
    """The single-task recipe one task would be alone, and problems with its entry's own keys."""
    problems = []
    if not _TASK_NAME.match(name) or name == BASELINES_DIR:
        problems.append(f"tasks.{name}: not a usable task name; a task's name is its output folder: letters, digits, "
                        f"'_', '-' and '.', starting with a letter or digit, at most 64 characters, not {BASELINES_DIR!r}")
    if not isinstance(entry, dict):
        return {}, [*problems, f"tasks.{name}: got {entry!r}; expected a mapping of task keys (type, text, label...), "
                               "data, metrics and weight"]
    for key in entry:
        if key not in ENTRY_KEYS:
            problems.append(f"tasks.{name}.{key}: unknown key; valid keys for a task: {', '.join(ENTRY_KEYS)}")
    train = dict(raw.get("train") or {})
    train.pop("best_metric", None)  # chosen across tasks (train.best_metric: mean or <task>/<metric>)
    if train.get("metrics") is not None:
        problems.append("train.metrics: a multi-task recipe names metrics per task; move them to tasks.<name>.metrics")
    train["metrics"] = entry.get("metrics")
    output = {k: v for k, v in (raw.get("output") or {}).items() if k != "push_to_hub"}
    output["dir"] = str(Path(top_dir) / name) if top_dir else ""
    sub = {section: raw[section] for section in ("model", "strategy", "card") if section in raw}
    sub.update(train=train, output=output, task={k: v for k, v in entry.items() if k in TASK_KEYS},
               data=entry.get("data") or {})
    return sub, problems


def _task_problem(problem: str, name: str) -> str:
    """A problem of a task's own recipe, under the key path the multi-task recipe has."""
    for old, new in (("task.", f"tasks.{name}."), ("data.", f"tasks.{name}.data."), ("data:", f"tasks.{name}.data:"),
                     ("train.metrics:", f"tasks.{name}.metrics:")):
        if problem.startswith(old):
            return new + problem[len(old):]
    return problem


def _cross_task_problems(entries: list[TaskEntry], best_metric: str) -> list[str]:

    problems = []
    strategy = entries[0].recipe.strategy
    if not strategy.multi_task:
        users = [n for n, cls in STRATEGIES.items() if cls.Options.multi_task]
        problems.append(f"strategy.name: strategy {strategy.name!r} does not train several tasks on one encoder; use one of "
                        f"{', '.join(users)}")
    kinds = {e.name: TASK_TYPES[e.recipe.task.type] for e in entries}
    first = entries[0]
    for entry in entries[1:]:
        if kinds[entry.name].modality != kinds[first.name].modality:
            problems.append(f"tasks.{entry.name}.type: {entry.recipe.task.type} reads {kinds[entry.name].modality}, but "
                            f"tasks.{first.name} ({first.recipe.task.type}) reads {kinds[first.name].modality}: the shared "
                            "encoder reads one kind of input and one tokenization; train these tasks in separate recipes")
    for entry in entries:
        if entry.recipe.adapt is not None or entry.recipe.data.weight_column:
            problems.append(f"tasks.{entry.name}.data.weight_column: per-row weights are not supported in a multi-task "
                            "run; remove it (each task's weight scales its whole loss)")
    primaries = {}
    for entry in entries:
        names = entry.recipe.train.metrics or list(kinds[entry.name].default_metrics)
        primaries[entry.name] = names[0]
        if best_metric == MEAN and not greater_is_better(names[0]):
            problems.append(f"tasks.{entry.name}.metrics: its first metric, {names[0]!r}, picks the best model through the "
                            "mean of every task's first metric, and must be one where higher is better (accuracy, f1, "
                            "pearson, ...); put such a metric first")
    allowed = [MEAN] + [f"{e.name}/{m}" for e in entries
                        for m in [*(e.recipe.train.metrics or kinds[e.name].default_metrics), "loss"]]
    if best_metric not in allowed:
        problems.append(f"train.best_metric: got {best_metric!r}; expected {MEAN} (the mean of each task's first metric) "
                        f"or <task>/<metric>, one of: {', '.join(allowed[1:])}")
    return problems


def primary_metrics(recipe: MultiTaskRecipe) -> dict[str, str]:
    """Each task's first metric (its own, or its task type's default): what ``mean`` averages."""
    return {e.name: (e.recipe.train.metrics or list(TASK_TYPES[e.recipe.task.type].default_metrics))[0]
            for e in recipe.tasks}
