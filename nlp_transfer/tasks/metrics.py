"""Metrics by task type: which names a recipe may ask for, the defaults, and computing them for a task."""

from __future__ import annotations

from collections.abc import Iterable

from ..evaluation.metrics import (
    SHIPPED_METRICS,
    MetricError,
    load_metric_module,
    unavailable_metrics,
)
from . import TASK_TYPES
from .spec import TaskSpec


def preload_metrics(names: Iterable[str], task_type: str) -> None:
    """Load every non-shipped metric a recipe names, so that one that cannot load fails before training.

    Raises:
        MetricError: A name cannot be loaded (offline, unknown on the Hub).
    """
    allowed = _task_type(task_type).allowed_metrics()
    for name in names:
        if name not in SHIPPED_METRICS and name not in allowed:
            load_metric_module(name)


def default_metrics(task_type: str) -> list[str]:
    """The metrics reported when a recipe names none (the first is the headline metric).

    Raises:
        MetricError: ``task_type`` is unknown.
    """
    return list(_task_type(task_type).default_metrics)


def check_metric_names(names: Iterable[str], task_type: str) -> list[str]:
    """One human-readable line per metric name that cannot work for a task type (empty: all fine).

    A name that is not shipped is a problem when it looks like a typo of a shipped one, or when the Hub is
    offline; otherwise it is loaded with ``evaluate.load`` (online) before training starts.
    """
    if task_type not in TASK_TYPES:
        return [_task_type_problem(task_type)]
    names = list(names)
    problems = TASK_TYPES[task_type].metric_problems(names)
    allowed = TASK_TYPES[task_type].allowed_metrics()
    unchecked = [n for n in names if not any(f"'{n}'" in p for p in problems)]
    return problems + unavailable_metrics(unchecked, allowed, f"task.type '{task_type}'")


def compute_metrics(
    names: list[str], task_type: str, predictions, references, num_labels: int, *, label_names: list[str] | None = None
) -> dict[str, float]:
    """Compute metrics on post-processed predictions.

    Args:
        names: Recipe metric names (see ``SHIPPED_METRICS``; other names load from the Hub).
        task_type: A registered task type.
        predictions: Class ids (text-classification), a 0/1 indicator array of shape
            ``(n, num_labels)`` (multi-label-classification), floats (regression), or per-position
            tag ids (token-classification).
        references: Gold values, same shape as ``predictions``.
        num_labels: Number of labels of the task (1 for regression).
        label_names: Class names in id order; token-classification needs them (tags such as ``B-PER``).

    Returns:
        ``{name: value}`` with plain Python floats. A correlation of constant inputs is ``nan``.

    Raises:
        MetricError: A name does not apply to the task, the inputs are malformed, or a
            non-shipped metric cannot be loaded or returns no single number.
    """
    problems = check_metric_names(names, task_type)
    if problems:
        raise MetricError("cannot compute metrics:\n" + "\n".join(f"  - {p}" for p in problems))
    id2label = dict(enumerate(label_names)) if label_names else {i: str(i) for i in range(num_labels)}
    return _task_type(task_type).compute_metrics(names, predictions, references, TaskSpec(task_type, id2label))


def _task_type(task_type: str):
    if task_type not in TASK_TYPES:
        raise MetricError(_task_type_problem(task_type))
    return TASK_TYPES[task_type]


def _task_type_problem(task_type: str) -> str:
    return f"task.type '{task_type}' is not supported by the metrics; use one of: {', '.join(TASK_TYPES)}"
