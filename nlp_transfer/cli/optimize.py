"""``nlp-transfer optimize OUTPUT_DIR``: time and score inference variants, keep the fastest within tolerance."""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(subparsers) -> None:
    """Add ``optimize`` and its options."""
    optimize = subparsers.add_parser(
        "optimize", help="measure inference variants (fp32, bf16, int8, ONNX) and keep the fastest within tolerance",
        description="Time and score each inference variant this machine runs on the output's validation rows; write "
                    "the fastest whose metric stays within --tolerance points of fp32 into OUTPUT/optimized/.")
    optimize.add_argument("output_dir")
    optimize.add_argument("--rows", type=int, default=1000, help="first N validation rows (0 = all; default 1000)")
    optimize.add_argument("--file", help="score on this data file (the recipe's input and label columns) instead")
    optimize.add_argument("--tolerance", type=float, default=0.5,
                          help="largest metric loss vs fp32 in points (100 x the metric; default 0.5)")
    optimize.add_argument("--batch-size", type=int, default=64)
    optimize.add_argument("--repeats", type=int, default=3, help="timed passes after a warm-up (median)")
    optimize.add_argument("--variants", help="comma-separated subset of fp32,bf16,int8-dynamic,onnx-fp32,onnx-int8")
    optimize.set_defaults(run=run)


def run(args) -> int:
    """Print the selected variant, its metric and each variant's measurements as JSON."""
    from ..api import optimize

    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    report = optimize(args.output_dir, rows=args.rows, file=args.file, tolerance=args.tolerance,
                      batch_size=args.batch_size, repeats=args.repeats, variants=variants)
    selected = report["selected"]
    rows = {name: {k: r[k] for k in ("status", "rows_per_second", "label_agreement", "metric_delta_points", "reason")
                   if k in r} for name, r in report["variants"].items()}
    print(json.dumps({"selected": selected["variant"], "metric": selected["metric"], "variants": rows,
                      "written": str(Path(args.output_dir) / "optimized")}, indent=2))
    return 0
