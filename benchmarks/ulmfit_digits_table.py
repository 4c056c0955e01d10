"""The shape of ULMFiT's Table 7 on the digits vision transfer demo: source digits 0-4, target digits 5-9.

The same rows as the SST-2 table (``benchmarks/ulmfit_table.py``; both read ``benchmarks/ulmfit_rows.py``). Per
seed: scikit-learn's digits are written as image folders (``nlp_transfer.data.digits``, split by that seed: ``--shots``
training images per target class), the tiny ViT of ``recipes/digits/source.yaml`` learns digits 0-4 from scratch
(that recipe as it is, with the seed; ``--source-config`` names another architecture folder, such as a ResNet's),
and then every row transfers that source model's output folder to digits 5-9. The target rows take
``recipes/digits/full.yaml``'s training settings (batch 10, warmup 0.1, fp32) with one base rate, ``--lr``
(``partial`` too, instead of its own default), ``--epochs`` each; ``frozen`` (ULMFiT's "last") takes
``recipes/digits/frozen.yaml``'s (100 epochs on cached features, lr 1e-2). Each row is scored once, at the end of
training, on every target validation image (no selection on them). ``gradual`` unfreezes one more layer group every
``total steps / (layers + 2)`` steps, so the whole backbone unfreezes within the budget.

    python benchmarks/ulmfit_digits_table.py --seeds 1,2,3 --threads 1
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

import yaml
# benchmarks/ is on sys.path when run as a script
from ulmfit_rows import add_run_arguments, gradual_steps, parse_run_arguments, pick_rows, row_train, table

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes" / "digits"


def _bundled(name: str) -> dict:
    return yaml.safe_load((RECIPES / name).read_text())


def _source_recipe(args, seed: int, data: Path, out: Path) -> dict:
    recipe = _bundled("source.yaml")
    recipe["model"]["name"] = str(args.source_config)
    recipe["data"]["dir"] = str(data / "source")
    recipe["train"].update(seed=seed, **({"epochs": args.source_epochs} if args.source_epochs else {}))
    recipe["output"] = {"dir": str(out), "overwrite": True}
    return recipe


def _target_recipe(args, seed: int, strategy: dict, train: dict, data: Path, source: Path, out: Path) -> dict:
    frozen = strategy["name"] == "frozen"
    recipe = _bundled("frozen.yaml" if frozen else "full.yaml")
    steps = math.ceil(5 * args.shots / recipe["train"]["batch_size"]) * args.epochs
    recipe["model"]["name"] = str(source)
    recipe["data"]["dir"] = str(data / "target")
    recipe["strategy"] = gradual_steps(strategy, steps, _layers(source))
    recipe["train"].update(seed=seed, eval_every=10**9)
    if not frozen:
        recipe["train"].update({"epochs": args.epochs, "lr": args.lr, **row_train(train, args.lr)})
    recipe["output"] = {"dir": str(out), "save": "metrics", "overwrite": True}
    return recipe


def _source_record(seed: int, source) -> dict:
    m = source.metrics
    return {"seed": seed, "accuracy": m["validation"]["accuracy"], "train_seconds": m["train"]["seconds"],
            "epochs": m["train"]["epochs_completed"], "layers": _layers(source.output_dir),
            "parameters": m["parameters"]["total"]}


def _row_record(name: str, seed: int, out, wall: float) -> dict:
    m = out.metrics
    return {"row": name, "seed": seed, "accuracy": m["validation"]["accuracy"],
            "train_seconds": m["train"]["seconds"], "epochs": m["train"]["epochs_completed"],
            "wall_seconds": round(wall, 2), "trainable_percent": m["parameters"]["trainable_percent"],
            "train_images": m["data"]["train"], "validation_images": m["data"]["validation"],
            **_unfrozen(out.output_dir)}


def _unfrozen(run_dir: Path) -> dict:
    """``gradual``'s stages training at the last logged step (the whole backbone: the layers + 2), else nothing."""
    steps = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    depth = [s["unfrozen_groups"] for s in steps if "unfrozen_groups" in s]
    return {"unfrozen_groups": depth[-1]} if depth else {}


def _layers(model_dir: Path) -> int:
    """Encoder layers (ViT) or stages (ResNet, ConvNeXt) of the model in ``model_dir``."""
    config = json.loads((model_dir / "config.json").read_text())
    return config.get("num_hidden_layers") or len(config["depths"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=20, help="training images per target class")
    parser.add_argument("--epochs", type=float, default=30, help="epochs of every target row but frozen")
    parser.add_argument("--lr", type=float, default=5e-4,
                        help="the target rows' base rate (recipes/digits/full.yaml's)")
    parser.add_argument("--source-config", type=Path, default=RECIPES / "tiny-vit",
                        help="the source model's architecture (a folder with config.json and preprocessor_config.json)")
    parser.add_argument("--source-epochs", type=float, default=0, help="0: recipes/digits/source.yaml's")
    add_run_arguments(parser, seeds="1,2,3", threads=1,
                      threads_help="torch threads (0: torch's default); one suits this tiny model best: on the shared "
                                   "2-core CPU, 2 threads made a run ~8x slower",
                      out=ROOT / "benchmarks" / "results" / "ulmfit_digits_table.json")
    args = parse_run_arguments(parser)
    import nlp_transfer
    from nlp_transfer.data.digits import write_digits

    picked = pick_rows(args.rows)
    results, sources = [], []
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("NLP_TRANSFER_CACHE", str(tmp / "cache"))  # cold caches: their build is timed
        for seed in [int(s) for s in args.seeds.split(",")]:
            data = write_digits(tmp / f"digits-{seed}", shots=args.shots, seed=seed)
            source = nlp_transfer.train(_source_recipe(args, seed, data, tmp / f"source-{seed}"))
            sources.append(_source_record(seed, source))
            print(json.dumps({"source": sources[-1]}), flush=True)
            for name, strategy, train in picked:
                started = time.perf_counter()
                recipe = _target_recipe(args, seed, strategy, train, data, source.output_dir, tmp / "run")
                out = nlp_transfer.train(recipe)
                results.append(_row_record(name, seed, out, time.perf_counter() - started))
                print(json.dumps(results[-1]), flush=True)
    total = round(time.perf_counter() - started_all, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    arguments = {k: str(v) for k, v in vars(args).items()}
    args.out.write_text(json.dumps({"args": arguments, "total_seconds": total, "sources": sources, "runs": results},
                                   indent=1))
    print(_table(results, sources, args))
    print(f"\ntotal wall time: {total:.0f} s")


def _table(results: list[dict], sources: list[dict], args) -> str:
    model = json.loads((args.source_config / "config.json").read_text())["model_type"]
    size = f"{sources[0]['layers']} layers, {sources[0]['parameters']} parameters" if sources else "not trained"
    source_acc = ", ".join(f"{100 * s['accuracy']:.1f}" for s in sources)
    validation = "/".join(map(str, sorted({r["validation_images"] for r in results})))
    return table(results, f"Digits 5-9 from a {model} trained from scratch on digits 0-4 ({args.source_config.name}: "
                          f"{size}; source validation accuracy per seed: {source_acc} %), {args.shots} train images "
                          f"per class, {args.epochs:g} epochs at base lr {args.lr:g} (frozen: "
                          f"recipes/digits/frozen.yaml's 100 epochs on cached features), seeds {args.seeds}, "
                          f"validation images: {validation}, fp32")

if __name__ == "__main__":
    sys.exit(main())
