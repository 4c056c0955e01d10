"""Data: load splits (Hub or local files), labels and samples of train, tokenize, batch.

Everything goes through ``datasets`` so tokenization is cached by fingerprint; padding
is dynamic (per batch) and training batches group similar lengths to waste little
compute on padding.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict, load_dataset
from torch.utils.data import DataLoader

from .columns import column_values
from .config import (IMAGEFOLDER, TARGET_VALIDATION_SPLIT, UNLABELED_SPLIT, DataConfig, TargetConfig, TargetValidationConfig,
                     TaskConfig)
from .data_checks import check_cells, json_problem, undecodable
from .errors import DataError
from .tasks import TaskSpec, get_task_type
from .token_data import read_conll

logger = logging.getLogger(__name__)

WEIGHTS = "weights"  # train's per-row loss weights (data.weight_column), kept through tokenization
_BUILDERS = {"csv": "csv", "tsv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet"}
_READERS = {"conll": read_conll}  # formats datasets has no builder for


def load_splits(data: DataConfig, seed: int, task: TaskConfig | None = None) -> DatasetDict:
    """Raw train/validation(/test) splits (plus ``unlabeled`` when given), limited as the recipe asks.

    A Hub dataset without a validation split gets one carved from train
    (``data.validation_fraction``, seeded). With ``task``, the cells it reads are checked first
    (``data_checks.check_cells``: empty, null or NaN cells are an error naming file, column and row).
    """
    files = {split: path for split, path in data.files.items() if split != UNLABELED_SPLIT}
    if files:
        splits = DatasetDict({split: _load_file(split, path, data.format, data.tag_column) for split, path in files.items()})
    elif data.source == IMAGEFOLDER:
        from .vision import load_image_folder

        splits = load_image_folder(data.dir)
        if "train" not in splits:
            raise DataError(f"data.dir: '{data.dir}' has no train/ folder; it has: {', '.join(splits)}")
    else:
        try:
            loaded = load_dataset(data.source, data.config)
        except Exception as exc:  # datasets raises many types; all mean "cannot load"
            raise DataError(f"data.source: cannot load Hub dataset {data.source!r} (config {data.config!r}): {exc}. "
                            "Offline, point data.files.train/validation at local files instead") from None
        splits = DatasetDict({s: loaded[s] for s in ("train", "validation", "test") if s in loaded})
        if "train" not in splits:
            raise DataError(f"data.source: {data.source!r} has no 'train' split; it has: {', '.join(loaded)}")
    if UNLABELED_SPLIT in data.files:
        splits[UNLABELED_SPLIT] = _load_file(UNLABELED_SPLIT, data.files[UNLABELED_SPLIT], data.format, data.tag_column)
    if task is not None:  # before any shuffle, so that row numbers are the file's
        check_cells(splits, task, data)
    if "validation" not in splits:
        rows = len(splits["train"])
        if math.floor((1 - data.validation_fraction) * rows) < 1:  # as datasets' train_test_split counts
            raise DataError(f"data split 'train' ({where(data, 'train')}) has {rows} row{'s' if rows != 1 else ''}: too few "
                            f"to hold out data.validation_fraction={data.validation_fraction:g} of them for validation; "
                            "give data.files.validation, or more training rows")
        held_out = splits["train"].train_test_split(test_size=data.validation_fraction, seed=seed)
        splits["train"], splits["validation"] = held_out["train"], held_out["test"]
        logger.info("No validation split given: holding out %.0f%% of train (%d rows)",
                    100 * data.validation_fraction, len(splits["validation"]))
    for split, n in data.limit.items():
        if split in splits and n < len(splits[split]):
            splits[split] = splits[split].shuffle(seed=seed).select(range(n)).flatten_indices()
    for split, ds in splits.items():
        if len(ds) == 0:
            raise DataError(f"data split '{split}' ({where(data, split)}) is empty; give a file with at least one row")
    return splits


def _load_file(split: str, path: str, fmt: str | None, tag_column: int = -1, key: str | None = None) -> Dataset:
    """One split's file, typed by ``datasets``; errors name ``key`` (default ``data.files.<split>``)."""
    key = key or f"data.files.{split}"
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{key}: file not found: '{file}'. Relative paths resolve against the recipe's folder")
    fmt = fmt or file.suffix.lstrip(".").lower()
    if fmt == "txt" and _looks_like_conll(file):
        logger.info("%s: '%s' read as CoNLL (a 'word ... tag' line per word, sentences apart; set data.format to read it otherwise)",
                    key, file)
        fmt = "conll"
    if fmt in _READERS:
        return _READERS[fmt](file, tag_column)
    if fmt not in _BUILDERS:
        raise DataError(f"{key}: cannot tell the format of '{file}' (suffix {file.suffix!r}); "
                        f"use one of .{', .'.join([*_BUILDERS, *_READERS])} or set data.format")
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    if fmt in ("json", "jsonl") and (bad := undecodable(file) or json_problem(file)):
        raise DataError(f"{key}: cannot read '{file}' as {fmt}: {bad}")
    try:
        return load_dataset(_BUILDERS[fmt], data_files={split: str(file)}, split=split, **options)
    except Exception as exc:
        if fmt != "parquet" and (bad := undecodable(file)):
            raise DataError(f"{key}: cannot read '{file}': {bad}") from None
        if _has_no_rows(file, fmt):  # datasets fails on empty files with cryptic messages (or none)
            what = f"data split '{split}'" if key == f"data.files.{split}" else key
            raise DataError(f"{what} ({file}) is empty; give a file with at least one row") from None
        raise DataError(f"{key}: cannot read '{file}' as {fmt}: {exc}") from None


def _looks_like_conll(file: Path, lines: int = 50) -> bool:
    """Whether a .txt file reads as CoNLL: it opens with ``-DOCSTART-``, or its first lines are whitespace-separated
    columns (a word and at least a tag) with a blank line between sentences."""
    with file.open(encoding="utf-8", errors="replace") as f:
        head = [line.rstrip("\n") for _, line in zip(range(lines), f)]
    filled = [line for line in head if line.strip()]
    if filled and filled[0].startswith("-DOCSTART-"):
        return True
    return bool(filled) and len(filled) < len(head) and all(len(line.split()) >= 2 for line in filled)


def _has_no_rows(file: Path, fmt: str) -> bool:
    if fmt == "parquet":
        return False
    lines = [line for line in file.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return len(lines) <= (1 if fmt in ("csv", "tsv") else 0)  # csv/tsv: a header alone holds no rows


def where(data: DataConfig, split: str) -> str:
    """The file (or Hub dataset and split) a split came from, for error messages."""
    return data.files.get(split) or f"{data.source} [{split}]"


def check_columns(splits: DatasetDict, columns: list[str], data: DataConfig) -> None:
    """Fail with the existing column names if a recipe column is missing from a split."""
    for split, ds in splits.items():
        missing = [c for c in columns if c not in ds.column_names]
        if missing:
            raise DataError(f"data split '{split}' ({where(data, split)}): missing column(s) {missing}; "
                            f"columns present: {ds.column_names}. Set task.text / task.label to existing columns")


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


def weight_rows(train: Dataset, data: DataConfig) -> Dataset:
    """Train with ``data.weight_column`` as a float ``weights`` column (checked: present, finite, >= 0, not all 0)."""
    column = data.weight_column
    if column not in train.column_names:
        raise DataError(f"data.weight_column: column {column!r} not in the train split ({where(data, 'train')}); "
                        f"columns present: {train.column_names}")
    try:
        values = np.asarray(column_values(train, column), dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"data.weight_column: column {column!r} of the train split holds non-numbers "
                        f"(first rows: {train[column][:3]!r}); expected one weight >= 0 per row") from None
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any() or not values.any():
        what = f"row {int(np.argmax(bad))} holds {float(values[np.argmax(bad)])!r}" if bad.any() else "every weight is 0"
        raise DataError(f"data.weight_column: column {column!r}: {what}; expected finite weights >= 0, not all 0")
    out = train.remove_columns([column]) if column != WEIGHTS else train.remove_columns([WEIGHTS])
    return out.add_column(WEIGHTS, values.astype(np.float32).tolist())


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
        rows = _load_file(TARGET_VALIDATION_SPLIT, path, data.format, data.tag_column, key=key)
        if len(rows) == 0:
            raise DataError(f"{key} ({path}) is empty; give labelled target rows, or remove adapt.target_validation")
        stand_in = dataclasses.replace(data, files={TARGET_VALIDATION_SPLIT: path})  # errors name this file
        split = DatasetDict({TARGET_VALIDATION_SPLIT: rows})
        try:
            check_cells(split, task, stand_in)
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
    if fmt not in _BUILDERS:
        raise DataError(f"{key}: cannot tell the format of '{file}' (suffix {file.suffix!r}); use one of "
                        f".{', .'.join(_BUILDERS)}")
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


def sample_fraction(ds: Dataset, fraction: float, seed: int, strata: list | None = None) -> Dataset:
    """A seeded share of ``ds``: per stratum (class) when ``strata`` gives one key per row, at least one row each.

    Rows keep their order. For one seed, a smaller fraction's rows are a subset of a larger one's:
    each stratum is permuted once, and a fraction takes the start of that permutation.
    """
    if fraction >= 1:
        return ds
    return ds.select(fraction_indices(len(ds), fraction, seed, strata)).flatten_indices()


def fraction_indices(n_rows: int, fraction: float, seed: int, strata: list | None = None) -> list[int]:
    """The sorted row indices ``sample_fraction`` keeps (all rows for a fraction of 1 or more)."""
    if fraction >= 1:
        return list(range(n_rows))
    rng = np.random.default_rng(seed)
    keys = strata if strata is not None else [0] * n_rows
    groups: dict = {}
    for row, key in enumerate(keys):
        groups.setdefault(key, []).append(row)
    keep: list[int] = []
    for key in sorted(groups, key=str):
        rows = np.asarray(groups[key])[rng.permutation(len(groups[key]))]
        keep.extend(rows[:max(1, math.ceil(fraction * len(rows)))].tolist())
    return sorted(keep)


def tokenize_splits(splits: DatasetDict, tokenizer, text_columns: list[str], max_length: int,
                    carry: tuple[str, ...] = ()) -> DatasetDict:
    """Token ids per split (no padding), plus ``length``; evaluation splits sorted long to short.

    Sorting evaluation rows by length makes padded batches tight; metrics do not depend on order.
    ``carry``: raw columns kept beside the token ids (a strategy reads them, e.g. a teacher with another tokenizer).
    """
    tokenized = DatasetDict()
    for split, ds in splits.items():
        drop = [c for c in ds.column_names if c not in ("labels", WEIGHTS) and c not in carry]
        out = ds.map(lambda batch: tokenize_texts(tokenizer, batch, text_columns, max_length), batched=True,
                     remove_columns=drop, desc=f"tokenize {split}")
        tokenized[split] = out if split == "train" else longest_first(out)
    return tokenized


def longest_first(ds: Dataset) -> Dataset:
    """The rows by ``length``, longest first, ties in their order (``Dataset.sort`` does the same through a pyarrow
    option that warns of its deprecation in every run)."""
    return ds.select(longest_first_order(ds)).flatten_indices()


def tokenize_texts(tokenizer, batch: dict, text_columns: list[str], max_length: int):
    """Token ids of a batch of rows (one text column, or two for sentence pairs), truncated, plus ``length``."""
    encoded = tokenizer(*[[str(t) for t in batch[c]] for c in text_columns], truncation=True, max_length=max_length)
    encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
    return encoded


SORTED_TOGETHER = 50  # batches whose rows are sorted by length together (transformers' own cap on its mega-batches)


class LengthGroupedBatchSampler:
    """Seeded, reproducible batches of similar length (or plain shuffled batches).

    Grouped: the epoch's shuffled rows are cut into groups of ``SORTED_TOGETHER`` batches, each group is sorted
    by length (ties keep the shuffled order) and cut into batches, and the batches are then shuffled, the one
    holding the longest row first (a batch that does not fit in memory fails at the first step). Shuffling the
    batches keeps an epoch from running short to long within each group, and large groups keep the padding small
    (SST-2 rows at batch 32: 7 % padded tokens, against 18 % with ``get_length_grouped_indices``' default of
    groups of n / (4 x batch) rows).

    Each epoch reshuffles with ``seed + epoch``, so a resumed run sees the same batches
    as an uninterrupted one.
    """

    def __init__(self, lengths: list[int] | None, num_rows: int, batch_size: int, seed: int):
        # a plain list: a datasets Column answers each index through Arrow, 10x slower to sort an epoch by
        self.lengths = None if lengths is None else list(lengths)
        self.num_rows, self.batch_size, self.seed = num_rows, batch_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.num_rows, generator=generator).tolist()
        if self.lengths is None:
            yield from _cut(order, self.batch_size)
            return
        group_rows = SORTED_TOGETHER * self.batch_size
        batches = [batch for group in _cut(order, group_rows)
                   for batch in _cut(sorted(group, key=self.lengths.__getitem__), self.batch_size)]
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        longest = max(range(len(batches)), key=lambda b: self.lengths[batches[b][-1]])  # each batch ascends
        batches.insert(0, batches.pop(longest))
        yield from batches

    def __len__(self) -> int:
        return math.ceil(self.num_rows / self.batch_size)


def _cut(rows: list[int], size: int) -> list[list[int]]:
    return [rows[start:start + size] for start in range(0, len(rows), size)]


def train_loader(ds: Dataset, batch_size: int, seed: int, group_by_length: bool, collator) -> DataLoader:
    """Training batches; groups by token length when the rows have one."""
    lengths = column_values(ds, "length") if (group_by_length and "length" in ds.column_names) else None
    sampler = LengthGroupedBatchSampler(lengths, len(ds), batch_size, seed)
    # Its own generator: starting a pass must not draw from the global RNG, or a resumed run (RNG restored
    # from the checkpoint, then a new pass started) would see different dropout masks than an uninterrupted one.
    return DataLoader(_model_columns(ds), batch_sampler=sampler, collate_fn=collator, generator=torch.Generator())


def eval_loader(ds: Dataset, batch_size: int, collator) -> DataLoader:
    """Evaluation batches in the split's order (already sorted by length)."""
    return DataLoader(_model_columns(ds), batch_size=batch_size, shuffle=False, collate_fn=collator)


def _model_columns(ds: Dataset) -> Dataset:
    return ds.remove_columns([c for c in ("length",) if c in ds.column_names])


def row_lengths(ds: Dataset) -> np.ndarray:
    """Token counts per row (all 0 for rows without a ``length``, such as images)."""
    return np.asarray(column_values(ds, "length")) if "length" in ds.column_names else np.zeros(len(ds), dtype=np.int64)


def longest_first_order(ds: Dataset) -> np.ndarray:
    """Row indices by token count, longest first, ties in their order: tight padded batches for a pass over ``ds``."""
    return np.argsort(-row_lengths(ds), kind="stable")
