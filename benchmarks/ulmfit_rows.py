"""The rows of ULMFiT's Table 7 (scaled down) and its markdown table, shared by the SST-2 and the digits benchmarks.

A row is a name, a ``strategy`` section and ``train`` overrides. ``lr_scale`` in the overrides means "this
many times the benchmark's base rate" (``row_train`` turns it into ``train.lr``), so one row list serves
benchmarks whose base rates differ (SST-2's MiniLM at 5e-5, the digits ViT at 5e-4).
"""

from __future__ import annotations

import statistics

ROWS = [  # (row, strategy section, train overrides)
    ("full", {"name": "full"}, {}),
    ("full + discr", {"name": "full", "lr_divisor": 2.6}, {}),
    ("full + discr, 4x lr", {"name": "full", "lr_divisor": 2.6}, {"lr_scale": 4}),  # the top layer at 4x full's rate
    ("frozen (last)", {"name": "frozen"}, {}),
    ("gradual", {"name": "gradual"}, {}),
    ("gradual + discr", {"name": "gradual", "lr_divisor": 2.6}, {}),
    ("gradual + stlr", {"name": "gradual"}, {"scheduler": "slanted_triangular"}),
    ("gradual + discr + stlr", {"name": "gradual", "lr_divisor": 2.6}, {"scheduler": "slanted_triangular"}),
    ("partial top 1", {"name": "partial", "train_top_layers": 1}, {}),
    ("partial top 2", {"name": "partial", "train_top_layers": 2}, {}),
    ("partial top 2 uncached", {"name": "partial", "train_top_layers": 2, "cache_bottom": False}, {}),
]


def add_run_arguments(parser, *, seeds: str, threads: int, threads_help: str, out) -> None:
    """The arguments both benchmarks take: seeds, torch threads, which rows, where the JSON goes."""
    parser.add_argument("--seeds", default=seeds)
    parser.add_argument("--threads", type=int, default=threads, help=threads_help)
    parser.add_argument("--rows", default="", help="comma-separated row names to run, in this order (default: all)")
    parser.add_argument("--out", type=type(out), default=out)


def parse_run_arguments(parser):
    """Parse, and set torch's thread count when ``--threads`` asks for one (before the package is imported)."""
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return args


def pick_rows(names: str) -> list[tuple]:
    """The rows named in a comma-separated list, in that order (all of them for an empty string)."""
    by_name = {r[0]: r for r in ROWS}
    return [by_name[name] for name in names.split(",")] if names else ROWS


def row_train(train: dict, base_lr: float) -> dict:
    """A row's ``train`` overrides with ``lr_scale`` turned into ``lr = lr_scale * base_lr``."""
    train = dict(train)
    if "lr_scale" in train:
        train["lr"] = train.pop("lr_scale") * base_lr
    return train


def gradual_steps(strategy: dict, steps: int, layers: int) -> dict:
    """``gradual`` unfreezing one more layer group every ``steps / (layers + 2)`` steps: the head with the backbone's
    top, each of ``layers`` encoder layers and the embeddings all unfreeze within ``steps``; other rows unchanged."""
    if strategy["name"] != "gradual":
        return strategy
    return {**strategy, "unfreeze_unit": "steps", "unfreeze_every": max(1, int(steps // (layers + 2)))}


def table(results: list[dict], title: str) -> str:
    """Markdown: one line per row (accuracy mean ± std over seeds, seconds, trainable %), then partial's speed-ups."""
    lines = [title, "",
             "| row | accuracy (mean ± std) | train s per run | train s per epoch | wall s per run | trainable % |",
             "|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["row"] for r in results):  # the order they ran in
        runs = [r for r in results if r["row"] == name]
        acc = [r["accuracy"] for r in runs]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        mean = lambda key: statistics.mean(r[key] for r in runs)  # noqa: E731
        lines.append(f"| {name} | {100 * statistics.mean(acc):.2f} ± {100 * std:.2f} | {mean('train_seconds'):.1f} | "
                     f"{_per_epoch(runs):.2f} | {mean('wall_seconds'):.1f} | {mean('trainable_percent'):.2f} |")
    full = [r for r in results if r["row"] == "full"]
    for name in ("partial top 2", "partial top 2 uncached", "partial top 1"):
        part = [r for r in results if r["row"] == name]
        if full and part:
            lines.append(f"\n{name}: {_per_epoch(full) / _per_epoch(part):.2f}x faster per epoch than full")
    return "\n".join(lines)


def _per_epoch(runs: list[dict]) -> float:
    return statistics.mean(r["train_seconds"] / max(1, r["epochs"]) for r in runs)
