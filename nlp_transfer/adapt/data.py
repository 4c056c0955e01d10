"""The target domain's data: its unlabelled rows (``adapt.target``), the labelled rows that may pick the best model
(``adapt.target_validation``), and the check that those are not test rows."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset

from ..data.checks import check_cells
from ..data.columns import column_values
from ..data.files import FILE_BUILDERS, read_split_file
from ..errors import DataError
from ..recipe.schema import (
    TARGET_VALIDATION_SPLIT,
    DataConfig,
    TargetConfig,
    TargetValidationConfig,
    TaskConfig,
)
from ..tasks import get_task_type
from ..tasks.spec import TaskSpec


def load_target(target: TargetConfig, task: TaskConfig, seed: int, spec: TaskSpec, label_feature) -> Dataset:
    """The target domain's rows (``adapt.target``): its text column(s) only, labels set to the task's "no label".

    Any other column, a label included, is dropped before anything reads it.

    Raises:
        DataError: A file missing, unreadable, without the text column(s), or no rows at all.
    """
    columns = get_task_type(task.type).input_columns(task)
    parts = []
    sources = ([(f"adapt.target.files[{i}]", path) for i, path in enumerate(target.files)]
               or [("adapt.target.source", None)])
    for key, path in sources:
        parts.append(_load_target_part(key, path, target, columns))
    from datasets import concatenate_datasets

    rows = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if len(rows) == 0:
        raise DataError(f"adapt.target: the target data ({', '.join(target.files) or target.source}) has no rows; "
                        "give the target domain's text, at least a few hundred rows")
    if target.limit is not None and target.limit < len(rows):
        rows = rows.shuffle(seed=seed).select(range(target.limit)).flatten_indices()
    value = get_task_type(task.type).unlabeled_value(spec)
    return rows.map(lambda b: {"labels": [value] * len(b[columns[0]])}, batched=True,
                    desc="labels target").cast_column("labels", label_feature)


def load_target_validation(config: TargetValidationConfig, task: TaskConfig, data: DataConfig, spec: TaskSpec,
                           label_feature) -> Dataset:
    """The labelled target rows that pick the best model (``adapt.target_validation``): the text column(s) and
    ``labels``, mapped with ``spec``'s label maps (those of the source train split).

    Raises:
        DataError: Naming ``adapt.target_validation.files[i]``: a file missing or unreadable, a text or label column
            missing, an empty cell, a label the source train split never had, or no labels at all.
    """
    kind = get_task_type(task.type)
    columns = kind.input_columns(task)
    parts = []
    for i, path in enumerate(config.files):
        key = f"adapt.target_validation.files[{i}]"
        rows = read_split_file(TARGET_VALIDATION_SPLIT, path, data.format, data.tag_column, key=key, text_columns=columns)
        if len(rows) == 0:
            raise DataError(f"{key} ({path}) is empty; give labelled target rows, or remove adapt.target_validation")
        stand_in = dataclasses.replace(data, files={TARGET_VALIDATION_SPLIT: path})  # errors name this file
        split = DatasetDict({TARGET_VALIDATION_SPLIT: rows})
        try:
            check_cells(split, kind.cell_columns(task), stand_in)
            encoded, _ = kind.encode_labels(split, task, stand_in, names=spec.label_names)
        except DataError as exc:
            raise DataError(f"{key}: {exc}") from None
        if TARGET_VALIDATION_SPLIT not in encoded:  # every label hidden (-1 or null)
            raise DataError(f"{key} ('{path}'): column '{task.label}' holds no labels (all -1 or null); the rows that pick "
                            "the best model need their labels. Give labelled target rows, or remove adapt.target_validation")
        labelled = encoded[TARGET_VALIDATION_SPLIT].select_columns([*columns, "labels"])
        parts.append(labelled.cast_column("labels", label_feature))
    from datasets import concatenate_datasets

    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def check_no_test_overlap(selection: Dataset, test: Dataset, columns: list[str], test_source: str) -> None:
    """Fail when rows that pick the best model (``adapt.target_validation``) are also test rows: the test score would
    then be of rows that chose the model. Rows are compared by their text column(s)."""
    test_rows = set(zip(*(column_values(test, c) for c in columns)))
    shared = sum(row in test_rows for row in zip(*(column_values(selection, c) for c in columns)))
    if shared:
        raise DataError(f"adapt.target_validation: {shared} of its {len(selection)} rows have the same text as rows of the "
                        f"test split ({test_source}), so the test score would come from rows that chose the model. Remove "
                        "those rows from adapt.target_validation.files (or from the test file)")


def _load_target_part(key: str, path: str | None, target: TargetConfig, columns: list[str]) -> Dataset:
    """One target file (or the Hub split), only ``columns`` kept: text files are parsed here, so that other
    columns (a label, however malformed) are never typed, cast or read."""
    if path is None:
        try:
            ds = load_dataset(target.source, target.config, split=target.split)
        except Exception as exc:  # datasets raises many types; all mean "cannot load"
            raise DataError(f"adapt.target.source: cannot load {target.source!r} split {target.split!r}: {exc}. "
                            "Offline, give local files in adapt.target.files") from None
        _check_target_columns(key, target.source, ds.column_names, columns)
        return ds.select_columns(columns)
    file = Path(path)
    fmt = file.suffix.lstrip(".").lower()
    if fmt not in FILE_BUILDERS:
        raise DataError(f"{key}: cannot tell the format of '{file}' (suffix {file.suffix!r}); use one of "
                        f".{', .'.join(FILE_BUILDERS)}")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        present = pq.read_schema(file).names
        _check_target_columns(key, file, present, columns)
        return Dataset(pq.read_table(file, columns=columns))
    rows = _text_rows(key, file, fmt)
    present = list(rows[0]) if rows else []
    if rows:
        _check_target_columns(key, file, present, columns)
    return Dataset.from_dict({c: [str(r.get(c, "")) for r in rows] for c in columns})


def _text_rows(key: str, file: Path, fmt: str) -> list[dict]:
    import json

    text = file.read_text(encoding="utf-8")
    try:
        if fmt in ("csv", "tsv"):
            return list(csv.DictReader(text.splitlines(), delimiter="\t" if fmt == "tsv" else ","))
        if fmt == "json" and text.lstrip().startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (ValueError, csv.Error) as exc:
        raise DataError(f"{key}: cannot read '{file}' as {fmt}: {exc}") from None


def _check_target_columns(key: str, where_from, present: list[str], columns: list[str]) -> None:
    missing = [c for c in columns if c not in present]
    if missing:
        raise DataError(f"{key} ({where_from}): missing text column(s) {missing}; columns present: {present}. "
                        "The target needs the same text column(s) as the source (task.text)")
