"""Write the Hub-ready output folder: whole or not at all, and checked by reloading it."""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import torch
import yaml

from ..errors import ExportError, OutputDirError
from ..models.build import load_model

logger = logging.getLogger(__name__)

RELOAD_ROWS = 32


def partial_dir(out_dir: Path) -> Path:
    """The temporary sibling a run works in before its output appears whole."""
    return out_dir.parent / f".{out_dir.name}.partial"


def check_output_dir(out_dir: Path, overwrite: bool, resume: bool) -> None:
    """Refuse to clobber a finished output or silently discard a resumable run.

    Raises:
        OutputDirError: ``output.dir`` is a file, or not empty (without ``overwrite``), or an earlier run left
            checkpoints there (without ``resume`` or ``overwrite``).
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputDirError(f"output.dir: '{out_dir}' exists and is a file; choose a folder path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        if resume:
            raise OutputDirError(f"output.dir: '{out_dir}' already holds a finished output, so there is nothing to resume; "
                                 "pass --overwrite (without --resume) to train it again, or choose another output.dir")
        raise OutputDirError(f"output.dir: '{out_dir}' already exists and is not empty; pass --overwrite "
                          "(or output.overwrite=true) to replace it, or choose another output.dir")
    work = partial_dir(out_dir)
    if work.is_dir() and not resume and not overwrite and any((work / "checkpoints").glob("step-*")):
        raise OutputDirError(f"an earlier run of this output left checkpoints in '{work}'; pass --resume to continue it, "
                          "or --overwrite to discard them and start over")


def publish(stage: Path, out_dir: Path) -> None:
    """Move a complete staged folder into place, replacing an old output only at the end."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    trash = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
    if out_dir.exists():
        out_dir.rename(trash)
    stage.rename(out_dir)
    shutil.rmtree(trash, ignore_errors=True)


def write_run_files(stage: Path, recipe_dict: dict, metrics: dict) -> None:
    """The resolved recipe and the metrics, next to the weights.

    The local ``recipe.yaml`` keeps this machine's paths, so the output reruns and ``evaluate`` /
    ``optimize`` find its data wherever the folder is moved; ``publishable_recipe`` is what a push uploads.
    """
    (stage / "recipe.yaml").write_text(yaml.safe_dump(recipe_dict, sort_keys=False), encoding="utf-8")
    (stage / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")


def publishable_recipe(recipe_text: str) -> str:
    """A ``recipe.yaml`` safe to publish: every absolute local path (data files and folders, a local model or
    teacher folder, ``output.dir``) reduced to its file or folder name; Hub ids and other values unchanged."""
    return yaml.safe_dump(_local_paths_to_names(yaml.safe_load(recipe_text)), sort_keys=False)


def _local_paths_to_names(value):
    if isinstance(value, dict):
        return {k: _local_paths_to_names(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_local_paths_to_names(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return Path(value).name
    return value


def verify_reload(stage: Path, trained, strategy, tokenizer, raw_rows, prepared_rows, atol: float = 1e-4) -> dict:
    """Reload each saved model folder through the normal load path and compare its predictions.

    ``prepared_rows`` are what the trained model was evaluated on (cached features for
    ``frozen``), ``raw_rows`` the same examples as token ids. Every folder in
    ``strategy.model_folders(stage)`` (e.g. lora's adapter and its merged model) must give
    the same logits on the raw rows as the trained model on the prepared ones.

    Raises:
        ExportError: The logits differ beyond ``atol`` or a predicted class changes.
    """
    n = min(RELOAD_ROWS, len(raw_rows))
    device = next(trained.parameters()).device
    trained.eval()
    raw = strategy.task.kind.collator(tokenizer)([_inputs(raw_rows[i]) for i in range(n)])
    prepared = strategy.collator(tokenizer)([prepared_rows[i] for i in range(n)])
    with torch.inference_mode():
        expected = strategy.logits(trained, _to(prepared, device)).float()
    if expected.ndim == 3:  # per-token logits: only real tokens count (padding differs between batch layouts)
        real = raw["attention_mask"].bool().to(device)
        expected = expected[real]
    diffs = {}
    for folder in strategy.model_folders(stage):
        reloaded = load_model(folder).to(device).eval()
        with torch.inference_mode():
            got = reloaded(**_to(raw, device)).logits.float()
        if got.ndim == 3:
            got = got[raw["attention_mask"].bool().to(device)]
        diff = diffs[folder.relative_to(stage).as_posix()] = (expected - got).abs().max().item()
        same_class = expected.shape[-1] == 1 or bool((expected.argmax(-1) == got.argmax(-1)).all())
        if diff > atol or not same_class:
            raise ExportError(f"reload check failed for '{folder}': the saved model's logits differ from the trained model's "
                              f"by up to {diff:.3g} on {n} validation rows (allowed {atol}); nothing was published")
    return {"rows": n, "max_abs_logit_diff": max(diffs.values()), "passed": True, "folders": diffs}


def find_run_file(folder: str | Path, name: str = "recipe.yaml") -> Path | None:
    """A run file of an output folder, or of the output it sits in (lora's ``merged/``)."""
    folder = Path(folder)
    for candidate in (folder / name, folder.parent / name):
        if candidate.is_file():
            return candidate
    return None


def _inputs(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("labels", "length")}


def _to(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items() if k not in ("labels", "length")} | (
        {"labels": batch["labels"].to(device)} if "labels" in batch else {})
