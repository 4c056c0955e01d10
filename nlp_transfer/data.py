"""Data: load splits (Hub or local files), encode labels, tokenize, batch.

Everything goes through ``datasets`` so tokenization is cached by fingerprint; padding
is dynamic (per batch) and training batches group similar lengths to waste little
compute on padding.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Sequence, load_dataset
from torch.utils.data import DataLoader
from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding
from transformers.trainer_pt_utils import get_length_grouped_indices

from .errors import DataError
from .recipe import DataConfig, TaskConfig
from .tasks import TaskSpec
from .token_data import IGNORE_INDEX, encode_tags, read_conll, tokenize_and_align
from .vision import IMAGEFOLDER, collate_images, is_image_processor, load_image_folder

logger = logging.getLogger(__name__)

_BUILDERS = {"csv": "csv", "tsv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet"}
_READERS = {"conll": read_conll}  # formats datasets has no builder for
UNLABELED = -1
UNLABELED_SPLIT = "unlabeled"  # data.files.unlabeled: text only, for strategies that learn without labels
IGNORE_LABEL = -100  # the ``labels`` value of every row of the unlabeled split


def load_splits(data: DataConfig, seed: int) -> DatasetDict:
    """Raw train/validation(/test) splits (plus ``unlabeled`` when given), limited as the recipe asks.

    A Hub dataset without a validation split gets one carved from train
    (``data.validation_fraction``, seeded).
    """
    files = {split: path for split, path in data.files.items() if split != UNLABELED_SPLIT}
    if files:
        splits = DatasetDict({split: _load_file(split, path, data.format, data.tag_column) for split, path in files.items()})
    elif data.source == IMAGEFOLDER:
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
    if "validation" not in splits:
        held_out = splits["train"].train_test_split(test_size=data.validation_fraction, seed=seed)
        splits["train"], splits["validation"] = held_out["train"], held_out["test"]
        logger.info("No validation split given: holding out %.0f%% of train (%d rows)",
                    100 * data.validation_fraction, len(splits["validation"]))
    if UNLABELED_SPLIT in data.files:
        splits[UNLABELED_SPLIT] = _load_file(UNLABELED_SPLIT, data.files[UNLABELED_SPLIT], data.format, data.tag_column)
    for split, n in data.limit.items():
        if split in splits and n < len(splits[split]):
            splits[split] = splits[split].shuffle(seed=seed).select(range(n)).flatten_indices()
    for split, ds in splits.items():
        if len(ds) == 0:
            raise DataError(f"data split '{split}' ({_where(data, split)}) is empty; give a file with at least one row")
    return splits


def _load_file(split: str, path: str, fmt: str | None, tag_column: int = -1) -> Dataset:
    file = Path(path)
    if not file.is_file():
        raise DataError(f"data.files.{split}: file not found: '{file}'. Relative paths resolve against the recipe's folder")
    fmt = fmt or file.suffix.lstrip(".").lower()
    if fmt in _READERS:
        return _READERS[fmt](file, tag_column)
    if fmt not in _BUILDERS:
        raise DataError(f"data.files.{split}: cannot tell the format of '{file}' (suffix {file.suffix!r}); "
                        f"use one of .{', .'.join([*_BUILDERS, *_READERS])} or set data.format")
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    try:
        return load_dataset(_BUILDERS[fmt], data_files={split: str(file)}, split=split, **options)
    except Exception as exc:
        if _has_no_rows(file, fmt):  # datasets fails on empty files with cryptic messages (or none)
            raise DataError(f"data split '{split}' ({file}) is empty; give a file with at least one row") from None
        raise DataError(f"data.files.{split}: cannot read '{file}' as {fmt}: {exc}") from None


def _has_no_rows(file: Path, fmt: str) -> bool:
    if fmt == "parquet":
        return False
    lines = [line for line in file.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return len(lines) <= (1 if fmt in ("csv", "tsv") else 0)  # csv/tsv: a header alone holds no rows


def _where(data: DataConfig, split: str) -> str:
    return data.files.get(split) or f"{data.source} [{split}]"


def check_columns(splits: DatasetDict, columns: list[str], data: DataConfig) -> None:
    """Fail with the existing column names if a recipe column is missing from a split."""
    for split, ds in splits.items():
        missing = [c for c in columns if c not in ds.column_names]
        if missing:
            raise DataError(f"data split '{split}' ({_where(data, split)}): missing column(s) {missing}; "
                            f"columns present: {ds.column_names}. Set task.text / task.label to existing columns")


def encode_labels(splits: DatasetDict, task: TaskConfig, data: DataConfig,
                  names: list[str] | None = None) -> tuple[DatasetDict, TaskSpec]:
    """Add a numeric ``labels`` column to every split and derive the label maps from train.

    The ``unlabeled`` split needs only the text column(s); its ``labels`` are ``IGNORE_LABEL``
    (every entry, for multi-label rows), shaped like train's so the splits can be concatenated.

    Args:
        names: Class names to map labels with (a saved model's); default: from train.

    Raises:
        DataError: Unknown labels in validation/test, non-numeric regression labels, ...
    """
    if task.type == "token-classification":  # one tag per word: see token_data
        return encode_tags(splits, task, data, names)
    if UNLABELED_SPLIT in splits:
        labeled = DatasetDict({s: ds for s, ds in splits.items() if s != UNLABELED_SPLIT})
        encoded, spec = encode_labels(labeled, task, data, names)
        unlabeled = DatasetDict({UNLABELED_SPLIT: splits[UNLABELED_SPLIT]})
        check_columns(unlabeled, task.text_columns, data)
        ignore = [float(IGNORE_LABEL)] * spec.num_labels if task.type == "multi-label-classification" else (
            float(IGNORE_LABEL) if task.type == "regression" else IGNORE_LABEL)
        encoded[UNLABELED_SPLIT] = unlabeled[UNLABELED_SPLIT].map(
            lambda b: {"labels": [ignore] * len(b[task.text_columns[0]])}, batched=True, desc="labels unlabeled",
            remove_columns=[c for c in (task.label,) if c in unlabeled[UNLABELED_SPLIT].column_names],
        ).cast_column("labels", encoded["train"].features["labels"])
        return encoded, spec
    check_columns(splits, [*task.input_columns, task.label], data)
    splits = _drop_unlabeled(splits, task, data)
    if task.type == "regression":
        spec = TaskSpec(task.type, {0: task.label})
        return DatasetDict({s: _encode_regression(ds, s, task.label, data) for s, ds in splits.items()}), spec
    names = names or _label_names(splits["train"], task, data)
    spec = TaskSpec(task.type, dict(enumerate(names)), threshold=task.threshold)
    encoded = {}
    for split, ds in splits.items():
        to_id = _label_mapper(ds, names, task)
        values = ds[task.label]
        unknown = sorted({str(v) for value in values for v in _as_list(value, task) if to_id(v) is None})
        if unknown:
            raise DataError(f"data split '{split}' ({_where(data, split)}), column '{task.label}': labels {unknown[:10]} "
                            f"never occur in train; train labels: {names}. Fix the data or list every label in task.labels")
        encoded[split] = ds.map(lambda b: {"labels": [_encode_one(v, to_id, len(names), task) for v in b[task.label]]},
                                batched=True, desc=f"labels {split}")
    return DatasetDict(encoded), spec


def _drop_unlabeled(splits: DatasetDict, task: TaskConfig, data: DataConfig) -> DatasetDict:
    """Hub test splits often hide labels as -1: such a split is kept out of evaluation."""
    kept = DatasetDict()
    for split, ds in splits.items():
        values = ds[task.label]
        if split != "train" and values and all(v == UNLABELED or v is None for v in values):
            logger.info("Split '%s' has no labels (all %r); it is not evaluated", split, values[0])
            continue
        kept[split] = ds
    return kept


def _as_list(value, task: TaskConfig) -> list:
    if task.type != "multi-label-classification":
        return [value]
    if isinstance(value, str):
        return [v.strip() for v in value.split(task.label_separator) if v.strip()]
    return list(value or [])


def _label_names(train: Dataset, task: TaskConfig, data: DataConfig) -> list[str]:
    feature = train.features[task.label]
    inner = feature.feature if isinstance(feature, Sequence) else feature
    if isinstance(inner, ClassLabel):
        return list(inner.names)
    if task.labels:
        return list(task.labels)
    values = {v for value in train[task.label] for v in _as_list(value, task)}
    if task.type == "text-classification" and len(values) < 2:
        raise DataError(f"data split 'train' ({_where(data, 'train')}), column '{task.label}': found {len(values)} "
                        f"distinct label(s) {sorted(map(str, values))}; classification needs at least 2")
    return [str(v) for v in sorted(values, key=lambda v: (isinstance(v, str), v))]


def _label_mapper(ds: Dataset, names: list[str], task: TaskConfig):
    """A function raw label value -> class id (None when unknown)."""
    feature = ds.features[task.label]
    inner = feature.feature if isinstance(feature, Sequence) else feature
    index = {name: i for i, name in enumerate(names)}
    if isinstance(inner, ClassLabel) or (task.labels and not isinstance(ds[0][task.label], str)):
        # ints that already are class ids (ClassLabel, or ints named by task.labels)
        return lambda v: v if isinstance(v, int) and 0 <= v < len(names) else index.get(str(v))
    return lambda v: index.get(str(v))


def _encode_one(value, to_id, num_labels: int, task: TaskConfig):
    if task.type != "multi-label-classification":
        return to_id(value)
    hot = [0.0] * num_labels
    for v in _as_list(value, task):
        hot[to_id(v)] = 1.0
    return hot


def _encode_regression(ds: Dataset, split: str, column: str, data: DataConfig) -> Dataset:
    for row, value in enumerate(ds[column]):
        try:
            if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
                raise ValueError
        except (TypeError, ValueError):
            raise DataError(f"data split '{split}' ({_where(data, split)}), column '{column}', row {row}: "
                            f"regression labels must be numbers; got {value!r}") from None
    return ds.map(lambda b: {"labels": [float(v) for v in b[column]]}, batched=True, desc=f"labels {split}")


def tokenize_splits(splits: DatasetDict, tokenizer, text_columns: list[str], max_length: int,
                    carry: tuple[str, ...] = ()) -> DatasetDict:
    """Token ids per split (no padding), plus ``length``; evaluation splits sorted long to short.

    Sorting evaluation rows by length makes padded batches tight; metrics do not depend on order.
    ``carry``: raw columns kept beside the token ids (a strategy reads them, e.g. a teacher with another tokenizer).
    """
    def tokenize(batch):
        texts = [batch[c] for c in text_columns]
        encoded = tokenizer(*[[str(t) for t in col] for col in texts], truncation=True, max_length=max_length)
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    tokenized = DatasetDict()
    for split, ds in splits.items():
        drop = [c for c in ds.column_names if c != "labels" and c not in carry]
        out = ds.map(tokenize, batched=True, remove_columns=drop, desc=f"tokenize {split}")
        tokenized[split] = out if split == "train" else out.sort("length", reverse=True).flatten_indices()
    return tokenized


def tokenize_for_task(splits: DatasetDict, tokenizer, task: TaskConfig, max_length: int,
                      carry: tuple[str, ...] = ()) -> tuple[DatasetDict, dict]:
    """``tokenize_splits`` for the task's columns; token tasks also align tags to word pieces.

    Returns:
        The tokenized splits and, for token classification, the truncation report per split
        (``token_data.tokenize_and_align``); an empty dict otherwise.
    """
    if task.type == "token-classification":
        return tokenize_and_align(splits, tokenizer, task, max_length, carry)
    return tokenize_splits(splits, tokenizer, task.text_columns, max_length, carry), {}


class LengthGroupedBatchSampler:
    """Seeded, reproducible batches of similar length (or plain shuffled batches).

    Each epoch reshuffles with ``seed + epoch``, so a resumed run sees the same batches
    as an uninterrupted one.
    """

    def __init__(self, lengths: list[int] | None, num_rows: int, batch_size: int, seed: int):
        self.lengths, self.num_rows, self.batch_size, self.seed = lengths, num_rows, batch_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.lengths is not None:
            order = get_length_grouped_indices(self.lengths, self.batch_size, generator=generator)
        else:
            order = torch.randperm(self.num_rows, generator=generator).tolist()
        for start in range(0, self.num_rows, self.batch_size):
            yield order[start:start + self.batch_size]

    def __len__(self) -> int:
        return math.ceil(self.num_rows / self.batch_size)


def train_loader(ds: Dataset, batch_size: int, seed: int, group_by_length: bool, collator) -> DataLoader:
    """Training batches; groups by token length when the rows have one."""
    lengths = ds["length"] if (group_by_length and "length" in ds.column_names) else None
    sampler = LengthGroupedBatchSampler(lengths, len(ds), batch_size, seed)
    # Its own generator: starting a pass must not draw from the global RNG, or a resumed run (RNG restored
    # from the checkpoint, then a new pass started) would see different dropout masks than an uninterrupted one.
    return DataLoader(_model_columns(ds), batch_sampler=sampler, collate_fn=collator, generator=torch.Generator())


def eval_loader(ds: Dataset, batch_size: int, collator) -> DataLoader:
    """Evaluation batches in the split's order (already sorted by length)."""
    return DataLoader(_model_columns(ds), batch_size=batch_size, shuffle=False, collate_fn=collator)


def _model_columns(ds: Dataset) -> Dataset:
    return ds.remove_columns([c for c in ("length",) if c in ds.column_names])


def batch_collator(processor, task_type: str = "text-classification"):
    """How rows become a batch: stacking for an image processor, dynamic padding for a tokenizer
    (per-token labels of token tasks are padded with ``IGNORE_INDEX`` too)."""
    if is_image_processor(processor):
        return collate_images
    if task_type == "token-classification":
        return DataCollatorForTokenClassification(processor, label_pad_token_id=IGNORE_INDEX)
    return DataCollatorWithPadding(processor)


def row_lengths(ds: Dataset) -> np.ndarray:
    """Token counts per row (all 0 for rows without a ``length``, such as images)."""
    return np.asarray(ds["length"]) if "length" in ds.column_names else np.zeros(len(ds), dtype=np.int64)
