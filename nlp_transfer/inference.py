"""Batched prediction from a saved output folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml
from transformers import DataCollatorWithPadding

from .export import find_run_file
from .models import load_model, load_tokenizer
from .vision import IMAGE_TASKS, predict_image_logits


def predict(output_dir: str | Path, texts: list[str] | list[tuple[str, str]], *, batch_size: int = 64,
            device: str | None = None) -> list[dict]:
    """Predict labels for texts (or sentence pairs), or image files (image models), with a saved model folder.

    Rows are batched in length order so padding stays small, then returned in input order.

    Returns:
        One dict per input: ``{"label", "score"}`` (single-label), ``{"labels", "scores"}``
        (multi-label, labels above the recipe's threshold) or ``{"score"}`` (regression).
    """
    output_dir = Path(output_dir)
    task_type, threshold, max_length = _task_settings(output_dir)
    if task_type in IMAGE_TASKS:  # ``texts`` are image paths
        logits, id2label = predict_image_logits(output_dir, [str(t) for t in texts], batch_size=batch_size, device=device)
        return [_describe(row, task_type, threshold, id2label) for row in logits]
    model = load_model(output_dir).eval()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    tokenizer = load_tokenizer(str(output_dir))
    columns = list(zip(*texts)) if texts and isinstance(texts[0], (tuple, list)) else [list(texts)]
    encoded = tokenizer(*[[str(t) for t in col] for col in columns], truncation=True, max_length=max_length)
    rows = [{k: encoded[k][i] for k in encoded} for i in range(len(texts))]
    order = np.argsort([-len(r["input_ids"]) for r in rows], kind="stable")
    pad = DataCollatorWithPadding(tokenizer)
    logits = [None] * len(rows)
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            idx = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in pad([rows[i] for i in idx]).items()}
            for i, row in zip(idx, model(**batch).logits.float().cpu().numpy()):
                logits[i] = row
    id2label = {int(i): name for i, name in model.config.id2label.items()}
    return [_describe(row, task_type, threshold, id2label) for row in logits]


def _task_settings(output_dir: Path) -> tuple[str, float, int]:
    recipe_file = find_run_file(output_dir)
    if recipe_file is None:
        return "text-classification", 0.5, 512
    recipe = yaml.safe_load(recipe_file.read_text())
    return recipe["task"]["type"], recipe["task"].get("threshold", 0.5), recipe["model"].get("max_length", 512)


def _describe(logits: np.ndarray, task_type: str, threshold: float, id2label: dict[int, str]) -> dict:
    if task_type == "regression":
        return {"score": float(logits[0])}
    if task_type == "multi-label-classification":
        probs = 1.0 / (1.0 + np.exp(-logits))
        return {"labels": [id2label[i] for i, p in enumerate(probs) if p >= threshold],
                "scores": {id2label[i]: float(p) for i, p in enumerate(probs)}}
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    best = int(probs.argmax())
    return {"label": id2label[best], "score": float(probs[best])}
