"""The control for a multi-task table: each named task of a multi-task recipe trained alone with N x its epochs.

``--single-task-baselines`` gives each task alone the same epochs over its own data; in the multi-task run the
shared encoder then takes (number of tasks) x the optimizer steps. Training a task alone with that many more
epochs gives its encoder the same number of steps, so the two controls together separate "the other tasks
helped" from "the encoder trained longer".

    python benchmarks/multitask_control.py recipes/multitask/glue_ner.yaml --tasks paraphrase,entities --factor 4
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", help="a multi-task recipe")
    parser.add_argument("overrides", nargs="*", help="dotted overrides of the multi-task recipe, e.g. train.seed=2")
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    parser.add_argument("--factor", type=float, default=0, help="epochs multiplier (default: the number of tasks)")
    parser.add_argument("--out", default="runs/multitask_control", help="one metrics-only output per task inside")
    args = parser.parse_args()
    import nlp_transfer
    from nlp_transfer.recipe.load import load_any_recipe

    recipe = load_any_recipe(args.recipe, args.overrides)
    names = [n for n in args.tasks.split(",") if n] or [e.name for e in recipe.tasks]
    factor = args.factor or len(recipe.tasks)
    for entry in recipe.tasks:
        if entry.name not in names:
            continue
        alone = copy.deepcopy(entry.recipe)
        alone.train.epochs = factor * alone.train.epochs
        alone.output.dir, alone.output.save, alone.output.overwrite = str(Path(args.out) / entry.name), "metrics", True
        metrics = nlp_transfer.train(alone).metrics
        print(json.dumps({"task": entry.name, "epochs": alone.train.epochs, "steps": metrics["train"]["steps"],
                          "best_step": metrics["train"]["best_step"], "seconds": metrics["train"]["seconds"],
                          "validation": metrics["validation"]}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
