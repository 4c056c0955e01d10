"""The shape of ULMFiT's Table 7 on SST-2 with the real all-MiniLM-L6-v2, and partial vs full seconds per epoch.

Rows: ``full``, ``full`` + discriminative lr (``lr_divisor`` 2.6), ``frozen`` (ULMFiT's "last": only the head
trains), ``gradual``, ``gradual`` + discriminative lr, ``gradual`` + slanted triangular lr, ``gradual`` + both,
``partial`` with the top 1 and top 2 layers, and ``partial`` (top 2) without its bottom cache. Every row trains on
the same seeded SST-2 rows (one extra row, ``full`` + discriminative lr at 4x the base rate (2e-4), shows
how much of the discriminative rows' loss is the base rate: ULMFiT's 2.6 divides the bottom of a 6-layer
encoder's rate by 2.6^7 ~ 800), in fp32, and is scored once, at the end of training, on the validation rows (no
selection on them). ``gradual`` unfreezes one more layer group every ``total steps / (layers + 2)`` steps, so the
whole encoder unfreezes within the budget. Each seed's rows run in one process, one after another. The rows and the
table are shared with the digits counterpart, ``benchmarks/ulmfit_digits_table.py`` (``benchmarks/ulmfit_rows.py``).

    python benchmarks/ulmfit_table.py --train-rows 4000 --epochs 3 --seeds 1,2,3        # the issue's budget
    python benchmarks/ulmfit_table.py --train-rows 1000 --epochs 2 --seeds 1 --threads 2  # what fits a busy 2-core CPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/ is on sys.path when run as a script
from ulmfit_rows import add_run_arguments, gradual_steps, parse_run_arguments, pick_rows, row_train, table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2"
MINILM_LAYERS = 6

BASE_LR = 5e-5  # full's and gradual's default train.lr: what a row's lr_scale multiplies


def _recipe(args, seed: int, strategy: dict, train: dict, out: Path) -> dict:
    steps = math.ceil(args.train_rows / args.batch_size) * args.epochs
    strategy = gradual_steps(strategy, steps, MINILM_LAYERS)
    return {
        "model": {"name": "sentence-transformers/all-MiniLM-L6-v2", "max_length": 64},
        "task": {"type": "text-classification", "text": "sentence", "label": "label"},
        "data": {"files": {"train": str(DATA / "train.tsv"), "validation": str(DATA / "validation.tsv")},
                 "limit": {"train": args.train_rows, **({"validation": args.eval_rows} if args.eval_rows else {})}},
        "strategy": strategy,
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "seed": seed, "mixed_precision": "no",
                  "eval_every": 10**9, "metrics": ["accuracy"], **row_train(train, BASE_LR)}
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
    add_run_arguments(parser, seeds="1", threads=0, threads_help="torch threads (0: torch's default)",
                      out=ROOT / "benchmarks" / "results" / "ulmfit_table.json")
    args = parse_run_arguments(parser)
    import nlp_transfer

    picked = pick_rows(args.rows)
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
    return table(results, f"SST-2, all-MiniLM-L6-v2, {args.train_rows} train rows, {args.epochs:g} epochs "
                          f"(frozen: its default 20 epochs on cached features), seeds {args.seeds}, validation rows: "
                          f"{args.eval_rows or 872}, fp32")


if __name__ == "__main__":
    sys.exit(main())
