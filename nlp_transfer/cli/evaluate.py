"""``nlp-transfer evaluate OUTPUT_DIR``: score a saved output folder on a split of its recipe's data."""

from __future__ import annotations

import json

from ._common import VARIANT_HELP, VARIANTS


def add_parser(subparsers) -> None:
    """Add ``evaluate`` and its options."""
    evaluate = subparsers.add_parser("evaluate", help="score a saved output folder on a split of its recipe's data")
    evaluate.add_argument("output_dir")
    evaluate.add_argument("--split", default="validation", choices=["train", "validation", "test"])
    evaluate.add_argument("--variant", default="auto", choices=VARIANTS, help=VARIANT_HELP)
    evaluate.set_defaults(run=run)


def run(args) -> int:
    """Print ``{split: metrics}`` as JSON."""
    from ..api import evaluate

    print(json.dumps({args.split: evaluate(args.output_dir, args.split, variant=args.variant)}, indent=2))
    return 0
