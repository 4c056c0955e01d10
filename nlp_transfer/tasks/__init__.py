"""The registry of task types. A new task kind is one module here plus one entry below.

``TASK_TYPES`` maps a recipe's ``task.type`` to its ``TaskType`` object, which owns everything
that depends on what the head predicts (see ``base.py``). A type decides, then calls the libraries below it
(data, models, evaluation) with plain arguments (``splits.py``: a run's splits; ``metrics.py``: metrics by type).
Importing any module of this package runs this registry first, which fills ``spec.REGISTERED``; so this module and
the types import only light modules at their top (validating a recipe reads them).
"""

from __future__ import annotations

from .base import TaskType, concat_rows
from .image_classification import ImageClassification
from .multi_label import MultiLabelClassification
from .regression import Regression
from .spec import IGNORE_INDEX, REGISTERED, WORD_IDS, TaskSpec
from .text_classification import TextClassification
from .token_classification import TokenClassification

TASK_TYPES: dict[str, TaskType] = {kind.name: kind for kind in (
    TextClassification(), MultiLabelClassification(), Regression(), TokenClassification(), ImageClassification())}
REGISTERED.update(TASK_TYPES)  # what ``TaskSpec.kind`` reads


def get_task_type(name: str) -> TaskType:
    """The registered task type called ``name``.

    Raises:
        KeyError: With the registered names.
    """
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise KeyError(f"unknown task type {name!r}; registered task types: {', '.join(TASK_TYPES)}") from None


def compute_loss(logits, labels, task: TaskSpec):
    """The task loss, the same one transformers' heads use for the task's problem type."""
    return task.kind.loss(logits, labels, task)


def logits_to_predictions(logits, task: TaskSpec):
    """Class ids (per row, or per position for token tasks), 0/1 indicator rows (multi-label) or scores (regression)."""
    return task.kind.predictions(logits, task)


__all__ = ["IGNORE_INDEX", "TASK_TYPES", "WORD_IDS", "TaskSpec", "TaskType", "compute_loss", "concat_rows", "get_task_type",
           "logits_to_predictions"]
