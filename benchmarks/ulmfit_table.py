"""The shape of ULMFiT's Table 7 on SST-2 with the real all-MiniLM-L6-v2, and partial vs full seconds per epoch.

Rows: ``full``, ``full`` + discriminative lr (``lr_divisor`` 2.6), ``frozen`` (ULMFiT's "last": only the head
trains), ``gradual``, ``gradual`` + discriminative lr, ``gradual`` + slanted triangular lr, ``gradual`` + both,
``partial`` with the top 1 and top 2 layers, and ``partial`` (top 2) without its bottom cache. Every row trains on
the same seeded SST-2 rows (one extra row, ``full`` + discriminative lr at 4x the base rate, shows
how much of the discriminative rows' loss is the base rate: ULMFiT's 2.6 divides the bottom of a 6-layer
encoder's rate by 2.6^7 ~ 800), in fp32, and is scored once, at the end of training, on the validation rows (no
selection on them). ``gradual`` unfreezes one more layer group every ``total steps / (layers + 2)`` steps, so the
whole encoder unfreezes within the budget. Each seed's rows run in one process, one after another.

    python benchmarks/ulmfit_table.py --train-rows 4000 --epochs 3 --seeds 1,2,3        # the issue's budget
    python benchmarks/ulmfit_table.py --train-rows 1000 --epochs 2 --seeds 1 --threads 2  # what fits a busy 2-core CPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2"
MINILM_LAYERS = 6

ROWS = [  # (row, strategy section, train overrides)
    ("full", {"name": "full"}, {}),
    ("full + discr", {"name": "full", "lr_divisor": 2.6}, {}),
    ("full + discr, lr 2e-4", {"name": "full", "lr_divisor": 2.6}, {"lr": 2e-4}),  # the top layer at 4x full's rate
    ("frozen (last)", {"name": "frozen"}, {}),
    ("gradual", {"name": "gradual"}, {}),
    ("gradual + discr", {"name": "gradual", "lr_divisor": 2.6}, {}),
    ("gradual + stlr", {"name": "gradual"}, {"scheduler": "slanted_triangular"}),
    ("gradual + discr + stlr", {"name": "gradual", "lr_divisor": 2.6}, {"scheduler": "slanted_triangular"}),
    ("partial top 1", {"name": "partial", "train_top_layers": 1}, {}),
    ("partial top 2", {"name": "partial", "train_top_layers": 2}, {}),
    ("partial top 2 uncached", {"name": "partial", "train_top_layers": 2, "cache_bottom": False}, {}),
]


def _recipe(args, seed: int, strategy: dict, train: dict, out: Path) -> dict:
    steps = math.ceil(args.train_rows / args.batch_size) * args.epochs
    if strategy["name"] == "gradual":
        strategy = {**strategy, "unfreeze_unit": "steps", "unfreeze_every": max(1, steps // (MINILM_LAYERS + 2))}
    return {
        "model": {"name": "sentence-transformers/all-MiniLM-L6-v2", "max_length": 64},
        "task": {"type": "text-classification", "text": "sentence", "label": "label"},
        "data": {"files": {"train": str(DATA / "train.tsv"), "validation": str(DATA / "validation.tsv")},
                 "limit": {"train": args.train_rows, **({"validation": args.eval_rows} if args.eval_rows else {})}},
        "strategy": strategy,
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "seed": seed, "mixed_precision": "no",
                  "eval_every": 10**9, "metrics": ["accuracy"], **train}
        if strategy["name"] != "frozen" else
        {"batch_size": args.batch_size, "seed": seed, "mixed_precision": "no", "eval_every": 10**9, "metrics": ["accuracy"]},
        "output": {"dir": str(out), "save": "metrics", "overwrite": True},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--eval-rows", type=int, default=0, help="0: all 872 validation rows")
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--rows", default="", help="comma-separated row names to run, in this order (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ulmfit_table.json")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    import nlp_transfer

    by_name = {r[0]: r for r in ROWS}
    picked = [by_name[name] for name in args.rows.split(",")] if args.rows else ROWS
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("NLP_TRANSFER_CACHE", str(Path(tmp) / "cache"))  # cold caches: their build is timed
        for seed in [int(s) for s in args.seeds.split(",")]:
            for name, strategy, train in picked:
                started = time.perf_counter()
                out = nlp_transfer.train(_recipe(args, seed, strategy, train, Path(tmp) / "run"))
                wall = time.perf_counter() - started
                m = out.metrics
                row = {"row": name, "seed": seed, "accuracy": m["validation"]["accuracy"],
                       "train_seconds": m["train"]["seconds"], "epochs": m["train"]["epochs_completed"],
                       "wall_seconds": round(wall, 2), "trainable_percent": m["parameters"]["trainable_percent"]}
                results.append(row)
                print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": results}, indent=1))
    print(_table(results, args))


def _table(results: list[dict], args) -> str:
    lines = [f"SST-2, all-MiniLM-L6-v2, {args.train_rows} train rows, {args.epochs:g} epochs "
             f"(frozen: its default 20 epochs on cached features), seeds {args.seeds}, validation rows: "
             f"{args.eval_rows or 872}, fp32", "",
             "| row | accuracy (mean ± std) | train s per run | train s per epoch | wall s per run | trainable % |",
             "|---|---|---|---|---|---|"]
    for name, _, _ in ROWS:
        runs = [r for r in results if r["row"] == name]
        if not runs:
            continue
        acc = [r["accuracy"] for r in runs]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        mean = lambda key: statistics.mean(r[key] for r in runs)  # noqa: E731
        per_epoch = statistics.mean(r["train_seconds"] / max(1, r["epochs"]) for r in runs)
        lines.append(f"| {name} | {100 * statistics.mean(acc):.2f} ± {100 * std:.2f} | {mean('train_seconds'):.1f} | "
                     f"{per_epoch:.1f} | {mean('wall_seconds'):.1f} | {mean('trainable_percent'):.2f} |")
    full = [r["train_seconds"] / max(1, r["epochs"]) for r in results if r["row"] == "full"]
    for name in ("partial top 2", "partial top 2 uncached", "partial top 1"):
        part = [r["train_seconds"] / max(1, r["epochs"]) for r in results if r["row"] == name]
        if full and part:
            lines.append(f"\n{name}: {statistics.mean(full) / statistics.mean(part):.2f}x faster per epoch than full")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
