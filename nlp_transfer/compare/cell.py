"""One cell of ``nlp-transfer compare``, in its own process: ``python -m nlp_transfer.compare.cell CELL_DIR``.

Trains the cell's ``recipe.yaml``, then measures what the report compares beside the scores:
train time (the loop plus the strategy's one-off data preparation, such as frozen's feature pass, on a
cold cache of the cell's own: a cell never reuses another's features), this process's peak resident
memory, parameters, the model's size on disk and the predict latency per row (the saved folder through
``Predictor``). Writes ``result.json`` last, whole, so a cell without it is unfinished and reruns.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import shutil
import sys
import time
from pathlib import Path

from ..data.columns import column_values
from ..recipe.load import load_recipe
from ..tasks import get_task_type

LATENCY_ROWS = 64


def run_cell(folder: Path, threads: int | None = None) -> dict:
    """Train the cell in ``folder`` and write its ``result.json``; returns it."""
    import torch

    from ..training.single import train

    if threads:
        torch.set_num_threads(threads)
    spec = json.loads((folder / "cell.json").read_text())
    load_start = os.getloadavg()[0]
    recipe = load_recipe(folder / "recipe.yaml")
    with _private_cache(folder / "cache"):  # cold: no cell reuses another's feature pass, so each pays its own
        out = train(recipe, overwrite=True)
    metrics = out.metrics
    prepare_seconds = metrics["train"].get("prepare_seconds", 0.0)
    result = {
        **spec["cell"],
        "validation": metrics["validation"],
        "test": metrics.get("test"),
        # what training costs: the loop plus the strategy's one-off data preparation (frozen's feature pass, ...)
        "train_seconds": round(metrics["train"]["seconds"] + prepare_seconds, 2),
        "loop_seconds": metrics["train"]["seconds"],
        "prepare_seconds": prepare_seconds,
        "steps": metrics["train"]["steps"],
        "parameters": metrics["parameters"],
        "model_mb": round(_weights_bytes(out.output_dir) / 2**20, 2),
        "latency_ms_per_row": _latency(out.output_dir, recipe),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # Linux: KiB
        "threads": torch.get_num_threads(),
        "cpu_seconds": round(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]), 1),  # user + system, the whole cell
        "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],  # 1-minute, at start and end: contention
    }
    if not spec.get("keep_model"):
        shutil.rmtree(out.output_dir, ignore_errors=True)
    tmp = folder / "result.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(folder / "result.json")
    return result


@contextlib.contextmanager
def _private_cache(folder: Path):
    """``NLP_TRANSFER_CACHE`` set to an empty ``folder`` for the block; the folder removed and the setting restored after."""
    before = os.environ.get("NLP_TRANSFER_CACHE")
    shutil.rmtree(folder, ignore_errors=True)
    os.environ["NLP_TRANSFER_CACHE"] = str(folder)
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if before is None:
            os.environ.pop("NLP_TRANSFER_CACHE", None)
        else:
            os.environ["NLP_TRANSFER_CACHE"] = before


def _weights_bytes(folder: Path) -> int:
    """Bytes of the weight files a user would download (an adapter folder counts its adapter, not the merged copy)."""
    files = [p for p in folder.glob("*.safetensors")] or [p for p in folder.rglob("*.safetensors")]
    return sum(p.stat().st_size for p in files)


def _latency(folder: Path, recipe) -> float | None:
    """Milliseconds per row to predict the first rows of validation (batch 32, after one warm-up call)."""
    from datasets import Dataset

    from ..inference.predictor import Predictor

    columns = get_task_type(recipe.task.type).input_columns(recipe.task)
    ds = Dataset.from_parquet(recipe.data.files["validation"])
    ds = ds.select(range(min(LATENCY_ROWS, len(ds))))
    if len(columns) == 1:
        inputs = column_values(ds, columns[0])
    else:
        inputs = list(zip(*(column_values(ds, c) for c in columns)))
    try:
        predictor = Predictor(folder, device="cpu")
        predictor(inputs[:4], batch_size=32)
        start = time.perf_counter()
        predictor(inputs, batch_size=32)
        return round(1000 * (time.perf_counter() - start) / len(inputs), 3)
    except Exception as exc:  # noqa: BLE001  the scores stand without it; the report shows the gap
        logging.getLogger(__name__).warning("latency not measured: %s", exc)
        return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("cell_dir", type=Path)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    run_cell(args.cell_dir, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
