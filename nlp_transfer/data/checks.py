"""Checks of the data cells before any work: nothing empty, missing, mistyped or undecodable is silently trained on.

Every problem is reported at once, each with the file, the column, the row and the value found.
Rows are counted from 1 as data rows; for csv/tsv files the file line is given too (the header is line 1).
"""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path
from typing import NamedTuple

from ..errors import DataError
from ..recipe.schema import UNLABELED_SPLIT, DataConfig
from .columns import column_values

MAX_LISTED = 20  # problems listed one by one; the rest are counted
TEXT, WORDS, IMAGE = "text", "words", "image"  # what one input cell holds (``CellColumns.input_cell``)


class CellColumns(NamedTuple):
    """The columns a task type reads, as the cell checks need them (the task type decides; see its ``cell_columns``).

    Attributes:
        inputs: The columns the model reads.
        label: The label (or tag) column, or None where an empty label is a valid "no label" (multi-label).
        input_cell: What one input cell holds: ``text`` (a string), ``words`` (a list of strings, one per word:
            token classification) or ``image`` (an image or its path; checked where images are decoded).
    """

    inputs: list[str]
    label: str | None
    input_cell: str = TEXT


def check_cells(splits, cells: CellColumns, data: DataConfig) -> None:
    """Raise one ``DataError`` listing every empty, missing (null), NaN or mistyped cell of the columns a task reads,
    and every label column that spells its labels with two JSON types (``0`` and ``"negative"``).

    Only columns that exist are checked (a missing column has its own error). A label column that is
    hidden in a whole evaluation split (Hub test splits: all -1 or null) is left to the label encoding,
    which drops that split from evaluation.
    """
    empty: list[str] = []
    mistyped: list[str] = []
    mixed: list[str] = []
    for split, ds in splits.items():
        source = data.files.get(split) or f"{data.source} [{split}]"
        label = None if split == UNLABELED_SPLIT else cells.label
        for column in [*cells.inputs, *([label] if label is not None else [])]:
            if column not in ds.column_names or type(ds.features[column]).__name__ == "Image":  # images: decoding all is work
                continue
            values = column_values(ds, column)
            if column == label and split != "train" and all(v is None or v == -1 for v in values):
                continue
            place = _Place(source, column)
            mistype = _why_not_label if column == label else _why_not_input
            for i, value in enumerate(values):
                if why := _why_empty(value):
                    empty.append(place.row(i, why))
                elif why := mistype(value, cells.input_cell):
                    mistyped.append(place.row(i, why))
            if column == label:
                mixed.extend(_mixed_types(values, place, cells.input_cell == WORDS))
    sections = []
    if empty:
        sections.append(_listing(f"{_count(empty, 'empty or missing cell')} in the data; nothing was trained. "
                                 "Fill or remove these rows:", empty))
    if mistyped:
        fix = (_WORDS_FIX if cells.input_cell == WORDS else _TEXT_FIX)
        sections.append(_listing(f"{_count(mistyped, 'cell')} of the wrong type in the data; nothing was trained. {fix}:",
                                 mistyped))
    sections.extend(mixed)
    if sections:
        raise DataError("\n".join(sections))


_TEXT_FIX = ("A text cell holds one string: write a number as a string (\"5\"), join a list into one text; "
             "a label holds one string or number")
_WORDS_FIX = "A tokens (or tags) cell holds a list of strings, one per word, e.g. [\"EU\", \"rejects\", \"German\"]"


class _Place:
    """Where a cell is: the file (or Hub dataset and split), the column and, per cell, the row (and file line)."""

    def __init__(self, source: str, column: str):
        self.source, self.column = source, column
        self.line_offset = 1 if Path(str(source)).suffix.lower() in (".csv", ".tsv") else None

    def __str__(self) -> str:
        return f"{self.source}, column '{self.column}'"

    def row(self, i: int, what: str) -> str:
        line = f" (line {i + 1 + self.line_offset})" if self.line_offset is not None else ""
        return f"{self}, row {i + 1}{line}: {what}"


def _count(items: list, noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


def _listing(header: str, problems: list[str]) -> str:
    listed = problems[:MAX_LISTED] + ([f"... and {len(problems) - MAX_LISTED} more"] if len(problems) > MAX_LISTED else [])
    return header + "\n" + "\n".join(f"  - {p}" for p in listed)


def _why_empty(value) -> str | None:
    if value is None:
        return "empty (no value)"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, str) and not value.strip():
        return f"empty text ({value!r})"
    if isinstance(value, str) and _invisible(value):
        return f"empty text ({value!r}: only invisible characters)"
    if isinstance(value, list) and not value:
        return "an empty list"
    return None


def _invisible(text: str) -> bool:
    """Whether ``text`` shows nothing: whitespace and format characters only (zero-width space and joiners,
    word joiner, byte-order mark: Unicode category Cf)."""
    return all(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in text)


def _why_not_input(value, input_cell: str) -> str | None:
    if input_cell == IMAGE:  # an image or its path: checked where images are decoded
        return None
    if input_cell == TEXT:
        return None if isinstance(value, str) else f"{_a(value)}, not text"
    if not isinstance(value, list):
        return f"{_a(value)}, not a list of words"
    bad = next((k for k, word in enumerate(value) if not isinstance(word, str)), None)
    return None if bad is None else f"word {bad + 1} is {_a(value[bad])}, not a string"


def _why_not_label(value, input_cell: str) -> str | None:
    if input_cell == WORDS:  # one tag per word
        return None if isinstance(value, list) else f"{_a(value)}, not a list of tags"
    return f"{_a(value)}, not one label" if isinstance(value, (list, dict)) else None


def _a(value) -> str:
    """What a cell holds, as a message says it: ``a list (['a', 'list'])``, ``a number (5)``."""
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    kind = _kind(value)
    return f"{_ARTICLE.get(kind, f'a {kind}')} ({shown})"


def _kind(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


_ARTICLE = {"boolean": "a boolean", "integer": "a number", "number": "a number", "string": "text", "list": "a list",
            "object": "an object"}
_PLURAL = {"boolean": "booleans (true/false)", "integer": "integers", "number": "numbers", "string": "strings"}


def _mixed_types(values: list, place: _Place, per_word: bool) -> list[str]:
    """One problem line when a label column spells labels with two or more JSON types (``0`` and ``"negative"``:
    read as they are, they would train as different classes), naming a few rows and values of each."""
    rows: dict[str, list[int]] = {}
    examples: dict[str, list] = {}
    for i, value in enumerate(values):
        for label in (value if per_word and isinstance(value, list) else [value]):
            if label is None or isinstance(label, (list, dict)) or (isinstance(label, float) and math.isnan(label)):
                continue  # reported as empty or mistyped cells
            kind = _kind(label)
            if not rows.setdefault(kind, []) or rows[kind][-1] != i:
                rows[kind].append(i)
            if label not in examples.setdefault(kind, []) and len(examples[kind]) < 3:
                examples[kind].append(label)
    if "integer" in rows and "number" in rows:  # 1 and 1.5: one type, numbers
        rows["number"] = sorted({*rows.pop("integer"), *rows["number"]})
        examples["number"] = [*examples.pop("integer"), *examples["number"]][:3]
    if len(rows) < 2:
        return []
    kinds = sorted(rows, key=lambda k: rows[k][0])
    spelled = " and ".join(f"{_PLURAL.get(k, k)} ({_rows(rows[k])}; e.g. {', '.join(map(repr, examples[k]))})"
                           for k in kinds)
    first, second = (examples[k][0] for k in kinds[:2])
    what, fix = ("tags", _TAGS_FIX) if per_word else ("labels", _LABELS_FIX)
    return [(f"{place} mixes {what} of {len(kinds)} types: {spelled}; nothing was trained. Read as they are, {first!r} "
             f"and {second!r} would be separate classes, never the same one. {fix}")]


_LABELS_FIX = ("Write every label one way: all as names (strings), or all as integer class ids (0, 1, ...) that "
               "task.labels names in order")
_TAGS_FIX = "Write every tag as its name (a string, e.g. \"B-PER\")"


def _rows(rows: list[int], shown: int = 5) -> str:
    listed = ", ".join(str(i + 1) for i in rows[:shown])
    more = f" and {len(rows) - shown} more" if len(rows) > shown else ""
    return f"row{'s' if len(rows) != 1 else ''} {listed}{more}"


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
            why = _why_empty(member)
            if why:
                problems.append(f"{where(position, text)}: {why}")
    if problems:
        raise DataError(_listing(f"{len(problems)} empty or missing input{'s' if len(problems) != 1 else ''}; nothing was "
                                 "predicted (training refuses such rows too). Give each a text or remove it:", problems))


def _input_position(position: int, text: int | None) -> str:
    return f"input {position + 1}" + (f", text {text + 1}" if text is not None else "")
