"""``nlp-transfer predict OUTPUT_DIR [TEXT ...] [--file F]``: predict with a saved output folder, one JSON line per input."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..data.checks import check_inputs, json_problem
from ..errors import DataError, NlpTransferError
from ._common import VARIANT_HELP, VARIANTS


def add_parser(subparsers) -> None:
    """Add ``predict`` and its options."""
    predict = subparsers.add_parser("predict", help="predict with a saved output folder")
    predict.add_argument("output_dir")
    predict.add_argument("texts", nargs="*", help="texts to classify (image file paths, for image models)")
    predict.add_argument("--file", help=".txt (one text per line), .csv/.tsv (header row) or .jsonl")
    predict.add_argument("--column", action="append", help="text column(s) of --file; twice for sentence pairs")
    predict.add_argument("--out", help="write JSON lines here instead of standard output")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                         help="inference precision of the fp32 weights (default: as saved, float32)")
    predict.add_argument("--variant", default="auto", choices=VARIANTS, help=VARIANT_HELP)
    predict.set_defaults(run=run)


def run(args) -> int:
    """Predict the texts given as arguments and/or read from ``--file``; print or write JSON lines, then (unless
    ``--quiet``) a line on standard error with the rows, seconds and rows per second (a bar meanwhile, on a terminal)."""
    given = len(args.texts)
    file_texts, in_file = _read_texts(Path(args.file), args.column) if args.file else ([], None)
    texts = [*args.texts, *file_texts]
    if not texts:
        raise NlpTransferError("predict: give texts as arguments or --file with one text per row")
    # what training refuses, predict refuses too: every empty input listed, before the model is loaded
    check_inputs(texts, lambda i, text: f"text argument {i + 1}" if i < given else in_file(i - given, text))
    from ..api import Predictor

    predictor = Predictor(args.output_dir, dtype=args.dtype, variant=args.variant)
    started = time.perf_counter()
    results = predictor(texts, batch_size=args.batch_size, progress=not args.quiet)
    seconds = time.perf_counter() - started
    lines = [json.dumps({"text": t if isinstance(t, str) else list(t), **r}) for t, r in zip(texts, results)]
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {len(lines)} predictions to {args.out}")
    else:
        print("\n".join(lines))
    if not args.quiet:
        print(f"Predicted {len(texts):,} rows in {seconds:.1f} s ({len(texts) / max(seconds, 1e-9):,.0f} rows/s)",
              file=sys.stderr)
    return 0


def _read_texts(path: Path, columns: list[str] | None) -> tuple[list, Callable[[int, int | None], str]]:
    """Texts from .txt (one per line; blank lines at the end ignored), .csv/.tsv (header row) or .jsonl files, and
    ``where(row, text)``: the file, column, row (from 0) and line of a text, for the errors."""
    if not path.is_file():
        raise NlpTransferError(f"predict --file: file not found: '{path}'")
    if path.suffix == ".txt":
        lines = path.read_text(encoding="utf-8").splitlines()
        while lines and not lines[-1].strip():  # blank lines at the end are no texts; any other line is one
            lines.pop()
        return lines, lambda i, text: f"{path}, line {i + 1}"
    if path.suffix == ".jsonl":
        rows, line_numbers = _read_jsonl(path)
    elif path.suffix in (".csv", ".tsv"):
        rows, line_numbers = _read_csv(path)
    else:
        raise NlpTransferError(f"predict --file: unsupported file type {path.suffix!r}; use .txt, .csv, .tsv or .jsonl")
    columns = columns or [next(iter(rows[0]))] if rows else []
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise NlpTransferError(f"predict --file '{path}': missing column(s) {missing}; columns present: {list(rows[0])}. Use --column")
    texts = [row.get(columns[0]) if len(columns) == 1 else tuple(row.get(c) for c in columns) for row in rows]
    return texts, lambda i, text: f"{path}, column '{columns[text or 0]}', row {i + 1} (line {line_numbers[i]})"


def _read_jsonl(path: Path) -> tuple[list[dict], list[int]]:
    """The rows of a .jsonl file (blank lines skipped) and the line of each."""
    problem = json_problem(path)
    if problem:
        raise DataError(f"predict --file '{path}': {problem}")
    numbered = [(n, line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    return [json.loads(line) for _, line in numbered], [n for n, _ in numbered]


def _read_csv(path: Path) -> tuple[list[dict], list[int]]:
    """The rows of a .csv/.tsv file with a header row (tsv: no quoting) and the (last) line of each."""
    import csv

    tsv = path.suffix == ".tsv"
    rows, line_numbers = [], []
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t" if tsv else ",", quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
        for row in reader:
            rows.append(row)
            line_numbers.append(reader.line_num)
    return rows, line_numbers
