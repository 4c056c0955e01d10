"""Batched prediction from a saved output folder.

``Predictor`` loads a folder once and serves many calls; ``predict`` is the one-shot form.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml
from transformers import pipeline

from .export import find_run_file
from .models import load_tokenizer
from .variants import load_for_prediction
from .vision import IMAGE_TASKS, image_logits, load_image_processor


class Predictor:
    """A saved model folder, loaded once, that predicts labels for texts (or sentence pairs),
    tags entities (token classification) or classifies image files (image models).

    For text, each call tokenizes every input in one batched pass, runs the model over batches of
    similar length (so padding stays small) under ``torch.inference_mode``, and returns
    results in input order.

    Example:
        >>> classify = Predictor("outputs/quickstart")
        >>> classify(["Great service, would come back."])
        [{'label': 'positive', 'score': 0.97}]
    """

    def __init__(self, output_dir: str | Path, *, device: str | None = None, dtype: str | None = None,
                 variant: str = "auto"):
        """Load the folder's model (adapter or plain) and tokenizer (or image processor).

        Args:
            output_dir: An output folder (or its ``merged/``).
            device: ``cuda``/``cpu``/...; default: the GPU when there is one.
            dtype: ``float32`` (default, as saved), ``bfloat16`` or ``float16`` weights for inference.
            variant: ``auto`` (the variant ``nlp-transfer optimize`` selected, when there is one; else
                ``fp32``), ``fp32`` (the saved weights) or ``optimized``. ``self.variant`` says which runs.
        """
        self.output_dir = Path(output_dir)
        self.task_type, self.threshold, self.max_length = _task_settings(self.output_dir)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # where the head reads only the first token, the last layer computes that position alone (first_token.py)
        self.model, self.variant = load_for_prediction(self.output_dir, variant, self.device, _torch_dtype(dtype))
        self.images = self.task_type in IMAGE_TASKS
        # the tokenizer, or the image processor of an image model
        self.processor = (load_image_processor if self.images else load_tokenizer)(str(self.output_dir))
        self.id2label = {int(i): name for i, name in self.model.config.id2label.items()}
        self._tagger = self._entity_pipeline() if self.task_type == "token-classification" else None

    def __call__(self, texts: list[str] | list[tuple[str, str]], *, batch_size: int = 64) -> list[dict]:
        """Predictions for ``texts`` (image paths for an image model).

        Returns:
            One dict per input: ``{"label", "score"}`` (single-label), ``{"labels", "scores"}``
            (multi-label, labels above the recipe's threshold), ``{"score"}`` (regression) or
            ``{"entities"}`` (token classification: whole entities with type, score and character span).
        """
        if self._tagger is not None:
            found = self._tagger([str(t) for t in texts], batch_size=batch_size) if texts else []
            return [{"entities": [{**e, "score": float(e["score"])} for e in entities]} for entities in found]
        logits = self.logits(texts, batch_size=batch_size)
        return [_describe(row, self.task_type, self.threshold, self.id2label) for row in logits]

    @torch.inference_mode()
    def logits(self, texts: list[str] | list[tuple[str, str]], *, batch_size: int = 64) -> np.ndarray:
        """Raw head outputs, one row per input, in input order."""
        if not texts:
            return np.zeros((0, len(self.id2label)), dtype=np.float32)
        if self.images:
            return image_logits(self.model, self.processor, list(texts), batch_size=batch_size)
        pairs = isinstance(texts[0], (tuple, list))
        columns = [[str(t) for t in col] for col in zip(*texts)] if pairs else [[str(t) for t in texts]]
        encoded = self.processor(*columns, truncation=True, max_length=self.max_length)
        order = np.argsort([-len(ids) for ids in encoded["input_ids"]], kind="stable")
        out = np.zeros((len(texts), len(self.id2label)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            features = [{key: encoded[key][i] for key in encoded} for i in rows]
            batch = self.processor.pad(features, return_tensors="pt")
            batch = {key: value.to(self.device, non_blocking=True) for key, value in batch.items()}
            out[rows] = self.model(**batch).logits.float().cpu().numpy()
        return out

    def _entity_pipeline(self):
        """transformers' token-classification pipeline, word pieces grouped into whole entities."""
        if hasattr(self.model, "merge_and_unload"):  # a peft adapter: the pipeline wants a plain transformers model
            self.model = self.model.merge_and_unload()
        return pipeline("token-classification", model=self.model, tokenizer=self.processor,
                        aggregation_strategy="simple", device=self.model.device)


def predict(output_dir: str | Path, texts: list[str] | list[tuple[str, str]], *, batch_size: int = 64,
            device: str | None = None, dtype: str | None = None, variant: str = "auto") -> list[dict]:
    """Load ``output_dir`` and predict ``texts`` once; use ``Predictor`` to serve many calls."""
    return Predictor(output_dir, device=device, dtype=dtype, variant=variant)(texts, batch_size=batch_size)


def _torch_dtype(name: str | None) -> torch.dtype | None:
    allowed = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name is None:
        return None
    if name not in allowed:
        raise ValueError(f"Predictor dtype: got {name!r}; expected one of {', '.join(allowed)}")
    return allowed[name]


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
