"""Files and Hub datasets: a recipe's splits, read with ``datasets`` (CoNLL by ``tokens.read_conll``), limited and checked."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, load_dataset
from pandas._libs.parsers import STR_NA_VALUES

from ..errors import DataError
from ..recipe.schema import IMAGEFOLDER, PATHS_RULE, UNLABELED_SPLIT, DataConfig
from .checks import CellColumns, check_cells, json_problem, undecodable
from .columns import column_values
from .images import load_image_folder
from .tokens import read_conll

logger = logging.getLogger(__name__)

WEIGHTS = "weights"  # train's per-row loss weights (data.weight_column), kept through tokenization
FILE_BUILDERS = {"csv": "csv", "tsv": "csv", "json": "json", "jsonl": "json", "parquet": "parquet"}
_READERS = {"conll": read_conll}  # formats datasets has no builder for


def load_splits(data: DataConfig, seed: int, cells: CellColumns | None = None) -> DatasetDict:
    """Raw train/validation(/test) splits (plus ``unlabeled`` when given), limited as the recipe asks.

    A Hub dataset without a validation split gets one carved from train
    (``data.validation_fraction``, seeded). With ``cells`` (what the task type decided: its input columns, label
    column or None, what an input cell holds), csv/tsv files keep their input cells' text as written (``NA`` and
    ``null`` are words there) and those cells are checked first (``checks.check_cells``: empty, null, NaN or
    mistyped cells are an error naming file, column and row).
    """
    files = {split: path for split, path in data.files.items() if split != UNLABELED_SPLIT}
    texts = cells.inputs if cells is not None else ()
    if files:
        splits = DatasetDict({split: read_split_file(split, path, data.format, data.tag_column, text_columns=texts)
                              for split, path in files.items()})
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
    if UNLABELED_SPLIT in data.files:
        splits[UNLABELED_SPLIT] = read_split_file(UNLABELED_SPLIT, data.files[UNLABELED_SPLIT], data.format, data.tag_column,
                                                  text_columns=texts)
    if cells is not None:  # before any shuffle, so that row numbers are the file's
        check_cells(splits, cells, data)
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


def read_split_file(split: str, path: str, fmt: str | None, tag_column: int = -1, key: str | None = None,
                    text_columns: list[str] | tuple[str, ...] = ()) -> Dataset:
    """One split's file, typed by ``datasets``; errors name ``key`` (default ``data.files.<split>``).

    In a csv/tsv file, ``text_columns`` are read as written: only an empty cell is missing there, a cell
    ``NA``, ``null`` or ``nan`` is that text (and ``5`` is the text "5"); other columns read pandas' missing-value
    spellings as missing. A header naming a column twice is an error.
    """
    key = key or f"data.files.{split}"
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{key}: file not found: '{file}'; {PATHS_RULE}")
    fmt = fmt or file.suffix.lstrip(".").lower()
    if fmt == "txt" and _looks_like_conll(file):
        logger.info("%s: '%s' read as CoNLL (a 'word ... tag' line per word, sentences apart; set data.format to read it otherwise)",
                    key, file)
        fmt = "conll"
    if fmt in _READERS:
        return _READERS[fmt](file, tag_column)
    if fmt not in FILE_BUILDERS:
        raise DataError(f"{key}: cannot tell the format of '{file}' (suffix {file.suffix!r}); "
                        f"use one of .{', .'.join([*FILE_BUILDERS, *_READERS])} or set data.format")
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {}
    if fmt in ("json", "jsonl") and (bad := undecodable(file) or json_problem(file)):
        raise DataError(f"{key}: cannot read '{file}' as {fmt}: {bad}")
    if fmt in ("csv", "tsv"):
        options.update(_text_cells_as_written(_csv_header(file, options, key), text_columns))
    try:
        return load_dataset(FILE_BUILDERS[fmt], data_files={split: str(file)}, split=split, **options)
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


def _csv_header(file: Path, options: dict, key: str) -> list[str]:
    """The column names on a csv/tsv file's header line (its first non-blank line), read as pandas reads them;
    a name given twice is an error (pandas would silently read the second as ``<name>.1``)."""
    with file.open(encoding="utf-8-sig", newline="") as f:
        lines = (line for line in f if line.strip())
        try:
            header = next(csv.reader(lines, delimiter=options.get("delimiter", ","),
                                     quoting=options.get("quoting", csv.QUOTE_MINIMAL)), [])
        except (csv.Error, UnicodeDecodeError):
            return []  # reading the file says more (the loader's error names the bad byte)
    seen = set()
    for name in header:
        if name in seen and name:
            raise DataError(f"{key}: the header of '{file}' names column {name!r} twice (header: {', '.join(header)}); only "
                            f"the first would be read as {name!r}. Rename or remove the other {name!r} column")
        seen.add(name)
    return [name or f"Unnamed: {i}" for i, name in enumerate(header)]


def _text_cells_as_written(header: list[str], text_columns) -> dict:
    """pandas options that read ``text_columns`` as written (only an empty cell is missing) and every other column
    of ``header`` with pandas' default missing-value spellings (``NA``, ``null``, ``nan``, ...)."""
    texts = [c for c in header if c in text_columns]
    if not texts:
        return {}
    # the other columns keep pandas' own missing-value spellings, so they read as before
    return {"keep_default_na": False, "converters": {c: str for c in texts},
            "na_values": {c: [""] if c in texts else sorted(STR_NA_VALUES) for c in header}}


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


