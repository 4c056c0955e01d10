"""Class labels of sequence-level tasks: names from the data, raw values -> ids, unknown labels as errors.

The task type says how one cell holds its labels (``cell_labels``: one value, or several for
multi-label rows) and how they become the ``labels`` column (``encode_cell``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable

from datasets import ClassLabel, DatasetDict, Sequence

from ..data.columns import column_values
from ..data.files import check_columns, where
from ..errors import DataError
from .spec import TaskSpec

logger = logging.getLogger(__name__)

HIDDEN_LABEL = -1  # how Hub test splits hide their labels
_SHOWN = 10  # labels named one by one in a message


def encode_class_labels(splits: DatasetDict, task, data, names: list[str] | None, kind) -> tuple[DatasetDict, TaskSpec]:
    """A numeric ``labels`` column in every split; class names from ``names``, the data's ``ClassLabel``,
    ``task.labels`` or the sorted values seen in train.

    Raises:
        DataError: A missing column, fewer classes than the type needs, or a label train never had.
    """
    check_columns(splits, [*kind.input_columns(task), task.label], data)
    splits = drop_hidden_label_splits(splits, task.label)
    named_by_recipe = names is None and bool(task.labels) and not _is_class_label(splits["train"].features[task.label])
    names = names or _label_names(splits["train"], task, data, kind)
    spec = TaskSpec(kind.name, dict(enumerate(names)), threshold=task.threshold)
    encoded = {}
    for split, ds in splits.items():
        to_id = _label_mapper(ds, names, task)
        held = Counter(v if isinstance(v, Hashable) else str(v)
                       for value in column_values(ds, task.label) for v in kind.cell_labels(value, task))
        unknown = [v for v in held if to_id(v) is None]
        place = f"data split '{split}' ({where(data, split)}), column '{task.label}'"
        if unknown and named_by_recipe:
            raise DataError(_not_the_recipe_labels(place, held, unknown, names))
        if unknown:
            raise DataError(f"{place}: labels {sorted({str(v) for v in unknown})[:_SHOWN]} never occur in train; train "
                            f"labels: {names}. Fix the data or list every label in task.labels")
        encoded[split] = ds.map(lambda b: {"labels": [kind.encode_cell(v, to_id, len(names), task) for v in b[task.label]]},
                                batched=True, desc=f"labels {split}")
    return DatasetDict(encoded), spec


def drop_hidden_label_splits(splits: DatasetDict, column: str) -> DatasetDict:
    """Hub test splits often hide labels as -1: such a split is kept out of evaluation."""
    kept = DatasetDict()
    for split, ds in splits.items():
        values = column_values(ds, column)
        if split != "train" and values and all(v == HIDDEN_LABEL or v is None for v in values):
            logger.info("Split '%s' has no labels (all %r); it is not evaluated", split, values[0])
            continue
        kept[split] = ds
    return kept


def _not_the_recipe_labels(place: str, held: Counter, unknown: list, names: list[str]) -> str:
    """The error for data whose labels are not those ``task.labels`` names: what the data holds (with counts), what
    the recipe names, and the two ways to agree."""
    shown = sorted(held, key=lambda v: (-held[v], str(v)))
    holds = ", ".join(f"{v!r} ({held[v]} row{'s' if held[v] != 1 else ''})" for v in shown[:_SHOWN])
    holds += f" and {len(held) - _SHOWN} more" if len(held) > _SHOWN else ""
    missing = ", ".join(map(repr, sorted(unknown, key=str)[:_SHOWN])) + (" ..." if len(unknown) > _SHOWN else "")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in held):  # integer labels are class ids
        ids = f" (ids 0 to {max(held)}: {max(held) + 1} names)" if min(held) >= 0 else ""
        these = f"label {missing} is not a class id" if len(unknown) == 1 else f"labels {missing} are not class ids"
        return (f"{place}: {these} of task.labels {names}: integer labels are ids 0 to "
                f"{len(names) - 1}, one per name in task.labels, in order. The data holds {holds}. Give task.labels "
                f"one name per class id{ids}, or fix those rows")
    data_labels = sorted({str(v) for v in held})
    suggestion = f" (task.labels=[{','.join(data_labels)}])" if len(data_labels) <= _SHOWN else ""
    return (f"{place}: the data's labels are not the ones task.labels names. The data holds {holds}; task.labels names "
            f"{names} and not {missing}. Rename those labels in the data to task.labels' names, or set task.labels "
            f"to the data's labels{suggestion}")


def _is_class_label(feature) -> bool:
    return isinstance(feature.feature if isinstance(feature, Sequence) else feature, ClassLabel)


def _label_names(train, task, data, kind) -> list[str]:
    feature = train.features[task.label]
    inner = feature.feature if isinstance(feature, Sequence) else feature
    if isinstance(inner, ClassLabel):
        return list(inner.names)
    if task.labels:
        return list(task.labels)
    values = {v for value in column_values(train, task.label) for v in kind.cell_labels(value, task)}
    if len(values) < kind.min_classes:
        raise DataError(f"data split 'train' ({where(data, 'train')}), column '{task.label}': found {len(values)} "
                        f"distinct label(s) {sorted(map(str, values))}; classification needs at least {kind.min_classes}")
    return [str(v) for v in sorted(values, key=lambda v: (isinstance(v, str), v))]


def _label_mapper(ds, names: list[str], task):
    """A function raw label value -> class id (None when unknown)."""
    feature = ds.features[task.label]
    inner = feature.feature if isinstance(feature, Sequence) else feature
    index = {name: i for i, name in enumerate(names)}
    if isinstance(inner, ClassLabel) or (task.labels and not isinstance(ds[0][task.label], str)):
        # ints that already are class ids (ClassLabel, or ints named by task.labels)
        return lambda v: v if isinstance(v, int) and 0 <= v < len(names) else index.get(str(v))
    return lambda v: index.get(str(v))
