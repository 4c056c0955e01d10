"""The task type decides, the data library loads: a run's splits with their cells checked and labels encoded."""

from __future__ import annotations

from datasets import DatasetDict

from ..data.files import check_columns, load_splits
from ..recipe.schema import UNLABELED_SPLIT, DataConfig, TaskConfig
from . import get_task_type
from .spec import TaskSpec


def load_task_splits(data: DataConfig, seed: int, task: TaskConfig) -> DatasetDict:
    """``data.files.load_splits`` with the cells ``task`` reads checked first (empty, null or NaN cells are an
    error naming file, column and row)."""
    return load_splits(data, seed, cells=get_task_type(task.type).cell_columns(task))


def encode_labels(splits: DatasetDict, task: TaskConfig, data: DataConfig,
                  names: list[str] | None = None) -> tuple[DatasetDict, TaskSpec]:
    """Add a numeric ``labels`` column to every split and derive the label maps from train (the task type's way).

    The ``unlabeled`` split needs only the input column(s); its ``labels`` are the task type's
    "no label" value, shaped like train's so the splits can be concatenated.

    Args:
        names: Class names to map labels with (a saved model's); default: from train.

    Raises:
        DataError: Unknown labels in validation/test, non-numeric regression labels, ...
    """
    kind = get_task_type(task.type)
    labeled = DatasetDict({s: ds for s, ds in splits.items() if s != UNLABELED_SPLIT})
    encoded, spec = kind.encode_labels(labeled, task, data, names)
    if UNLABELED_SPLIT in splits:
        unlabeled = splits[UNLABELED_SPLIT]
        columns = kind.input_columns(task)
        check_columns(DatasetDict({UNLABELED_SPLIT: unlabeled}), columns, data)
        value = kind.unlabeled_value(spec)
        encoded[UNLABELED_SPLIT] = unlabeled.map(
            lambda b: {"labels": [value] * len(b[columns[0]])}, batched=True, desc="labels unlabeled",
            remove_columns=[c for c in (task.label,) if c in unlabeled.column_names],
        ).cast_column("labels", encoded["train"].features["labels"])
    return encoded, spec
