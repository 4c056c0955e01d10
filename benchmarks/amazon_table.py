"""Domain adaptation on the four Amazon review domains: source-only vs dann, mmd, coral, mcc, instance weighting and
self-training, and source-only trained twice as long (the others' compute).

Every run starts from one of the bundled recipes ``recipes/amazon/books_to_kitchen/<method>.yaml`` with the source
and target domains swapped in: labelled ``<source>/train.jsonl``, the source ``dev.jsonl`` for model selection,
the target ``train.jsonl`` as unlabelled text (labels dropped unread), and the target's 2,000 labelled reviews
(``<target>/test.jsonl``) scored once after training. Target labels never choose anything. Note: the domains'
train and dev reviews are among their 2,000 test reviews, so the target text the adapt methods see overlaps the
reviews they are scored on (without labels): the usual transductive protocol on this data.

    python benchmarks/amazon_table.py        # 12 pairs x 8 methods x 3 seeds: every source row for 1 epoch at 64 tokens,
                                             # bf16 autocast where the CPU has it (about 4.5 h on 2 cores as two
                                             # one-thread processes, below)
    python benchmarks/amazon_table.py --seeds 2 --threads 1 --out benchmarks/results/amazon_table_seed2.json &
                                             # one seed per process, one thread each, to share 2 cores
    python benchmarks/amazon_table.py --merge benchmarks/results/amazon_table*.json   # the table of every run found
    python benchmarks/amazon_table.py --pairs books:kitchen --seeds 1 --train-rows 500 --target-rows 500 --test-rows 500 \\
        --epochs 1 --max-length 64 --adapt-eval-rows 128 --threads 2 --methods source_only,dann,coral,mmd,weighted
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "amazon_domains"
RECIPES = ROOT / "recipes" / "amazon" / "books_to_kitchen"
DOMAINS = ("books", "dvd", "electronics", "kitchen")
METHODS = ("source_only", "dann", "mmd", "coral", "mcc", "weighted", "self_training", "source_only_2x")
# source_only_2x: the source_only recipe trained twice as long (2 x --epochs), the compute of a self_training run (its
# first training, then one round on as many rows) and of the alignment methods (their batches add as many target rows)
LONGER = {"source_only_2x": ("source_only", 2)}


def _recipe(method: str, source: str, target: str, seed: int, args, out: Path) -> dict:
    name, epochs_factor = LONGER.get(method, (method, 1))
    recipe = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    recipe["data"]["files"] = {"train": str(DATA / source / "train.jsonl"), "validation": str(DATA / source / "dev.jsonl"),
                               "test": str(DATA / target / "test.jsonl")}
    limits = {"train": args.train_rows, "test": args.test_rows}
    recipe["data"]["limit"] = {split: n for split, n in limits.items() if n}
    recipe["model"]["max_length"] = args.max_length
    recipe["train"].update({"seed": seed, "epochs": args.epochs * epochs_factor})
    if args.mixed_precision:
        recipe["train"]["mixed_precision"] = args.mixed_precision
    if "adapt" in recipe:
        recipe["adapt"]["target"] = {"files": [str(DATA / target / "train.jsonl")],
                                     **({"limit": args.target_rows} if args.target_rows else {})}
        recipe["adapt"]["eval_rows"] = args.adapt_eval_rows
    recipe["output"] = {"dir": str(out), "save": "model" if args.target_dev else "metrics", "overwrite": True}
    return recipe


def _target_dev_accuracy(out: Path, target: str) -> float:
    """Accuracy of the saved model (fp32 ``Predictor``) on the target's 300 ``dev.jsonl`` reviews: none of them is among
    the target ``train.jsonl`` rows a run adapts on, so this score is inductive (the 2,000 test reviews include them)."""
    from nlp_transfer.inference.predictor import Predictor

    rows = [json.loads(line) for line in (DATA / target / "dev.jsonl").read_text().splitlines()]
    predictor = Predictor(out, variant="fp32")
    predicted = predictor.logits([r["text"] for r in rows]).argmax(-1)
    label2id = {name: i for i, name in predictor.id2label.items()}
    return sum(int(p) == label2id[str(r["label"])] for p, r in zip(predicted, rows)) / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default="all", help="source:target,... (default: all 12)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--train-rows", type=int, default=0, help="source rows (0: all 1,700)")
    parser.add_argument("--target-rows", type=int, default=0, help="unlabelled target rows (0: all 1,700)")
    parser.add_argument("--test-rows", type=int, default=0, help="target test reviews scored, a seeded sample (0: all 2,000)")
    parser.add_argument("--adapt-eval-rows", type=int, default=256, help="adapt.eval_rows: rows per domain for the logged domain numbers")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--mixed-precision", choices=("auto", "no", "bf16"), default="auto",
                        help="train.mixed_precision for every run (the bundled recipes pin fp32)")
    parser.add_argument("--target-dev", action="store_true",
                        help="also score each run's model on the target's dev.jsonl (300 reviews no run adapts on): target_dev_accuracy")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "amazon_table.json"))
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="print the table of these results files and run nothing")
    args = parser.parse_args()
    pairs = ([(s, t) for s, t in itertools.permutations(DOMAINS, 2)] if args.pairs == "all"
             else [tuple(p.split(":")) for p in args.pairs.split(",")])
    methods, seeds = args.methods.split(","), [int(s) for s in args.seeds.split(",")]
    if args.merge:
        merged = {}
        for file in args.merge:
            merged.update(json.loads(Path(file).read_text()))
        print(table(merged, pairs, methods), diagnostics(merged, methods), sep="\n\n")
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from nlp_transfer.api import train

    if args.threads:
        torch.set_num_threads(args.threads)
    out_file = Path(args.out)
    results = json.loads(out_file.read_text()) if out_file.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed, (source, target), method in itertools.product(seeds, pairs, methods):  # a seed's table first
            key = f"{source}->{target}|{method}|{seed}"
            if key in results:  # resumable: a finished run is kept
                continue
            started = time.perf_counter()
            metrics = train(_recipe(method, source, target, seed, args, Path(tmp) / key.replace("|", "_"))).metrics
            results[key] = {"target_accuracy": metrics["test"]["accuracy"], "source_dev_accuracy": metrics["validation"]["accuracy"],
                            "seconds": round(time.perf_counter() - started, 1), "adapt": metrics.get("adapt", {}),
                            "budget": {k: getattr(args, k) for k in ("train_rows", "target_rows", "test_rows", "epochs", "max_length")},
                            "mixed_precision": metrics["mixed_precision"]["used"]}
            if args.target_dev:
                results[key]["target_dev_accuracy"] = _target_dev_accuracy(Path(tmp) / key.replace("|", "_"), target)
            if "self_training" in metrics:  # each round's pseudo-label counts and confidences
                results[key]["self_training"] = [{k: r[k] for k in ("per_class", "mean_confidence", "lowest_confidence")}
                                                 for r in metrics["self_training"]["rounds"]]
            print(f"{key}: target acc {results[key]['target_accuracy']:.4f} (source dev {results[key]['source_dev_accuracy']:.4f}, "
                  f"{results[key]['seconds']:.0f} s)", flush=True)
            out_file.parent.mkdir(parents=True, exist_ok=True)
            out_file.write_text(json.dumps(results, indent=1))
    print(table(results, pairs, methods), diagnostics(results, methods), sep="\n\n")


def table(results: dict, pairs, methods) -> str:
    """Markdown: one row per pair, mean +- std of the target accuracy (%) per method over its seeds, then the
    averages over the pairs every method has run on, and each method's difference from source-only there."""
    lines = ["| pair | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    means: dict[tuple, float] = {}
    for source, target in pairs:
        cells = []
        for method in methods:
            values = [100 * r["target_accuracy"] for k, r in results.items() if k.startswith(f"{source}->{target}|{method}|")]
            if not values:
                cells.append("-")
                continue
            means[source, target, method] = statistics.mean(values)
            spread = f" +- {statistics.stdev(values):.1f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.1f}{spread} (n={len(values)})")
        lines.append(f"| {source} -> {target} | " + " | ".join(cells) + " |")
    complete = [pair for pair in pairs if all((*pair, m) in means for m in methods)]
    if complete:
        average = {m: statistics.mean(means[(*pair, m)] for pair in complete) for m in methods}
        lines.append(f"| average ({len(complete)} pairs) | " + " | ".join(f"{average[m]:.1f}" for m in methods) + " |")
        for baseline in ("source_only", "source_only_2x"):
            if baseline in methods:
                lines.append(f"| vs {baseline.replace('_', '-')} | " + " | ".join(f"{average[m] - average[baseline]:+.2f}"
                                                                               for m in methods) + " |")
    return "\n".join(lines)


def _mean(values, fmt: str) -> str:
    values = [v for v in values if v is not None]
    return format(statistics.mean(values), fmt) if values else "-"


def diagnostics(results: dict, methods) -> str:
    """Markdown: per method, means over every finished run of what the run logged besides the target score:
    source dev accuracy, the target dev accuracy (``--target-dev`` runs), the last evaluation's proxy A-distance and
    linear domain accuracy (held-out source-dev and target features), the importance weights' effective sample share,
    and the run's seconds."""
    lines = ["| method | runs | source dev acc | target dev acc | proxy A-distance | linear domain acc | effective sample | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for method in methods:
        runs = [r for k, r in results.items() if k.split("|")[1] == method]
        if not runs:
            continue
        last = [r["adapt"].get("last_evaluation", {}) for r in runs]
        weights = [r["adapt"].get("importance_weights", {}).get("effective_sample_share") for r in runs]
        target_dev = [100 * r["target_dev_accuracy"] if "target_dev_accuracy" in r else None for r in runs]
        lines.append(f"| {method} | {len(runs)} | {_mean([100 * r['source_dev_accuracy'] for r in runs], '.1f')} | "
                     f"{_mean(target_dev, '.1f')} | "
                     f"{_mean([e.get('proxy_a_distance') for e in last], '.2f')} | "
                     f"{_mean([e.get('linear_domain_accuracy') for e in last], '.3f')} | {_mean(weights, '.0%')} | "
                     f"{_mean([r['seconds'] for r in runs], '.0f')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
