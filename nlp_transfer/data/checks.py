"""Checks of the data cells before any work: nothing empty, missing or undecodable is silently trained on.

Every problem is reported at once, each with the file, the column, the row and the value found.
Rows are counted from 1 as data rows; for csv/tsv files the file line is given too (the header is line 1).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import DataError
from ..recipe.schema import UNLABELED_SPLIT, DataConfig
from .columns import column_values

MAX_LISTED = 20  # problems listed one by one; the rest are counted


def check_cells(splits, inputs: list[str], label: str | None, data: DataConfig) -> None:
    """Raise one ``DataError`` listing every empty, missing (null) or NaN cell of the columns a task reads.

    Only columns that exist are checked (a missing column has its own error). A label column that is
    hidden in a whole evaluation split (Hub test splits: all -1 or null) is left to the label encoding,
    which drops that split from evaluation.

    Args:
        inputs: The columns the model reads (the task type's ``input_columns``).
        label: The label (or tag) column, or None where an empty label is a valid "no label" (multi-label).
    """
    problems: list[str] = []
    for split, ds in splits.items():
        columns = [*inputs, *([] if split == UNLABELED_SPLIT or label is None else [label])]
        for column in columns:
            if column not in ds.column_names or type(ds.features[column]).__name__ == "Image":  # images: decoding all is work
                continue
            values = column_values(ds, column)
            if column == label and split != "train" and all(v is None or v == -1 for v in values):
                continue
            problems.extend(_bad_cells(values, split, column, data))
    if problems:
        listed = problems[:MAX_LISTED] + ([f"... and {len(problems) - MAX_LISTED} more"] if len(problems) > MAX_LISTED else [])
        raise DataError(f"{len(problems)} empty or missing cell{'s' if len(problems) != 1 else ''} in the data; "
                        "nothing was trained. Fill or remove these rows:\n" + "\n".join(f"  - {p}" for p in listed))


def _bad_cells(values: list, split: str, column: str, data: DataConfig) -> list[str]:
    source = data.files.get(split) or f"{data.source} [{split}]"
    line_offset = 1 if Path(str(source)).suffix.lower() in (".csv", ".tsv") else None
    out = []
    for i, value in enumerate(values):
        why = _why_bad(value)
        if why:
            line = f" (line {i + 1 + line_offset})" if line_offset is not None else ""
            out.append(f"{source}, column '{column}', row {i + 1}{line}: {why}")
    return out


def _why_bad(value) -> str | None:
    if value is None:
        return "empty (no value)"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, str) and not value.strip():
        return f"empty text ({value!r})"
    if isinstance(value, list) and not value:
        return "an empty list"
    return None


def undecodable(file: Path) -> str | None:
    """Where a text file stops being UTF-8 (line, byte offset and the byte), or None when it all decodes."""
    raw = Path(file).read_bytes()
    try:
        raw.decode("utf-8")
        return None
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return (f"byte 0x{raw[exc.start]:02x} at offset {exc.start} (line {line}) is not UTF-8; save the file as UTF-8 "
                "(e.g. `iconv -f latin1 -t utf-8 in.csv > out.csv`)")


def json_problem(file: Path) -> str | None:
    """Why a .json/.jsonl file is not rows of JSON objects (line and reason), or None.

    Checked with Python's parser before ``datasets`` reads the file: its Arrow JSON reader reports
    malformed input poorly, and on some inputs crashes the process.
    """
    text = Path(file).read_bytes().decode("utf-8", errors="replace")
    import json

    try:  # one JSON document: a list of objects, or an object of columns
        document = json.loads(text)
        if isinstance(document, (list, dict)) and (not isinstance(document, list) or all(isinstance(r, dict) for r in document)):
            return None
    except ValueError:
        pass
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            return f"line {number} is not valid JSON ({exc.msg} at column {exc.colno}): {line[:80]!r}"
        if not isinstance(row, dict):
            return f"line {number} is not a JSON object with one key per column: {line[:80]!r}"
    return None


def check_inputs(inputs: list, where=None) -> None:
    """Raise one ``DataError`` listing every empty, missing (null) or NaN input to a trained model, each judged as
    ``check_cells`` judges a training cell: what training refuses, prediction refuses too.

    Args:
        inputs: Texts, sentence pairs (each text is checked) or image paths.
        where: A function ``where(position, text) -> str``: where input ``position`` (from 0) came from, ``text``
            being which text of a pair (from 0; None for a single text). Default: ``input N`` (from 1), ``input N,
            text M`` for pairs.
    """
    where = where or _input_position
    problems = []
    for position, value in enumerate(inputs):
        texts = list(enumerate(value)) if isinstance(value, (tuple, list)) and value else [(None, value)]
        for text, member in texts:
            why = _why_bad(member)
            if why:
                problems.append(f"{where(position, text)}: {why}")
    if problems:
        listed = problems[:MAX_LISTED] + ([f"... and {len(problems) - MAX_LISTED} more"] if len(problems) > MAX_LISTED else [])
        raise DataError(f"{len(problems)} empty or missing input{'s' if len(problems) != 1 else ''}; nothing was predicted "
                        "(training refuses such rows too). Give each a text or remove it:\n"
                        + "\n".join(f"  - {p}" for p in listed))


def _input_position(position: int, text: int | None) -> str:
    return f"input {position + 1}" + (f", text {text + 1}" if text is not None else "")
