"""``nlp-transfer compare RECIPE --out DIR``: strategies x data fractions x seeds plus a baseline, and the report."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    """Add ``compare`` and its options."""
    compare = subparsers.add_parser(
        "compare", help="strategies x data fractions x seeds plus a from-scratch baseline: the transfer report",
        description="Run every strategy on the same seeded, stratified, nested fractions of the recipe's training data "
                    "(each cell its own process, resumable), then write report.md, report.json and learning curves to --out.")
    compare.add_argument("recipe", help="the base recipe (backbone, task, data, training budget)")
    compare.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the base recipe, e.g. data.limit.train=8000")
    compare.add_argument("--out", required=True, help="report folder (cells, data, report.md, report.json, PNGs)")
    compare.add_argument("--strategies", default="frozen,full,lora", help="comma-separated registered strategies")
    compare.add_argument("--fractions", default="0.1,1", help="comma-separated shares of the training pool, each in (0, 1]")
    compare.add_argument("--seeds", type=int, default=1, help="how many seeds (train.seed, train.seed+1, ...)")
    compare.add_argument("--baseline", default="scratch", help="scratch (random weights, same architecture) or none")
    compare.add_argument("--backbones", help="comma-separated extra model names to rank by LogME and fine-tune")
    compare.add_argument("--jobs", type=int, default=1, help="cells side by side (CPU threads split between them)")
    compare.add_argument("--keep-models", action="store_true", help="keep each cell's model folder (default: metrics only)")
    compare.add_argument("--set", dest="cell_overrides", action="append", default=[], metavar="[STRATEGY:]KEY=VALUE",
                         help="override for every cell, or one strategy's (lora:train.lr=5e-4); repeatable")
    compare.add_argument("--min-steps", type=int, default=0, metavar="N",
                         help="a cell with fewer optimizer steps than N trains more whole epochs, up to N or more "
                              "(small fractions learn instead of measuring a few steps); default 0: the recipe's epochs")
    compare.add_argument("--no-figures", action="store_true", help="skip the PNGs (no matplotlib needed)")
    compare.add_argument("--card", metavar="OUTPUT_DIR", help="add a 'How this compares' section to that model's card")
    compare.set_defaults(run=run)


def run(args) -> int:
    """Run the grid; print the report's judgment sentences and where report.md is."""
    from ..api import compare

    report = compare(args.recipe, args.overrides, out=args.out, strategies=args.strategies, fractions=args.fractions,
                     seeds=args.seeds, baseline=args.baseline, jobs=args.jobs, keep_models=args.keep_models,
                     backbones=[b for b in (args.backbones or "").split(",") if b], cell_overrides=args.cell_overrides,
                     figures=not args.no_figures, card=args.card, min_steps=args.min_steps)
    print("\n".join(report["judgments"].get("sentences", [])))
    print(f"Report: {Path(args.out) / 'report.md'}")
    return 0
