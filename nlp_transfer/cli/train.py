"""``nlp-transfer train RECIPE [KEY=VALUE ...]``: train, evaluate and export the model a recipe describes."""

from __future__ import annotations

import json

from ._interrupts import signals_stop_the_run


def add_parser(subparsers) -> None:
    """Add ``train`` and its options."""
    train = subparsers.add_parser("train", help="train, evaluate and export the model a recipe describes")
    train.add_argument("recipe", help="path of a YAML recipe, e.g. recipes/quickstart.yaml")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.epochs=2")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    train.add_argument("--overwrite", action="store_true", help="replace an existing output.dir")
    train.add_argument("--single-task-baselines", action="store_true",
                       help="multi-task recipes: also train each task alone (same budget) and report the per-task difference")
    train.set_defaults(run=run)


def run(args) -> int:
    """Train, print the output folder, validation metrics and training time as JSON."""
    from ..training.processes import finish_processes, is_main_launch

    # SIGTERM stops the run as Ctrl-C does: its checkpoints kept, its lock released (the other ranks of a launch
    # keep the default: their launcher stops them, and rank 0 alone owns the output)
    with signals_stop_the_run(enabled=is_main_launch()):
        from ..api import train

        out = train(args.recipe, args.overrides, resume=args.resume, overwrite=args.overwrite,
                    single_task_baselines=args.single_task_baselines)
    summary = {"output_dir": str(out.output_dir), "validation": out.metrics["validation"],
               "train_seconds": out.metrics["train"]["seconds"]}
    if "single_task_baselines" in out.metrics:
        summary["single_task_baselines"] = out.metrics["single_task_baselines"]
    print(json.dumps(summary, indent=2))
    # multi-process: every rank exits here together. Only after success: a failed rank exits at once with its
    # error (no barrier its peers might never reach), and torchrun stops the others
    finish_processes()
    return 0
