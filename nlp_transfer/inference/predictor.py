"""Batched prediction from a saved output folder.

``Predictor`` loads a folder once and serves many calls; ``predict`` is the one-shot form.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm.auto import tqdm

from ..data.checks import check_inputs
from ..errors import ModelError
from ..outputs.export import find_run_file
from ..tasks import get_task_type
from ..tasks.spec import TaskSpec
from .variants import load_for_prediction


class Predictor:
    """A saved model folder, loaded once, that predicts labels for texts (or sentence pairs),
    tags entities (token classification) or classifies image files (image models).

    For text, each call tokenizes every input in one batched pass, runs the model over batches of
    similar length (so padding stays small) under ``torch.inference_mode``, and returns
    results in input order. What a result holds is the task type's (``TaskType.describe``).

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

        Raises:
            ModelError: The folder is not a model output.
        """
        self.output_dir = Path(output_dir)
        if not self.output_dir.is_dir():
            raise ModelError(f"'{self.output_dir}' is not a folder; give the output.dir of a finished training run")
        task_type, threshold, self.max_length = _task_settings(self.output_dir)
        self.kind = get_task_type(task_type)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # where the head reads only the first token, the last layer computes that position alone (first_token.py)
        self.model, self.variant = load_for_prediction(self.output_dir, variant, self.device, _torch_dtype(dtype))
        self.processor = self.kind.load_processor(str(self.output_dir))  # the tokenizer, or the image processor
        self.id2label = {int(i): name for i, name in self.model.config.id2label.items()}
        self.task = TaskSpec(task_type, self.id2label, threshold)
        self._serve = self.kind.predictor(self.model, self.processor)

    def __call__(self, texts: list[str] | list[tuple[str, str]], *, batch_size: int = 64,
                 progress: bool = False) -> list[dict]:
        """Predictions for ``texts`` (image paths for an image model).

        Args:
            texts: Texts, sentence pairs or image paths; none of them empty (training refuses empty text too).
            batch_size: Inputs per forward pass.
            progress: Show a bar of the rows done on standard error, when that is a terminal.

        Returns:
            One dict per input: ``{"label", "score"}`` (single-label), ``{"labels", "scores"}``
            (multi-label, labels above the recipe's threshold), ``{"score"}`` (regression) or
            ``{"entities"}`` (token classification: whole entities with type, score and character span).

        Raises:
            DataError: Empty, whitespace-only or missing (None, NaN) inputs, all listed by position; nothing is predicted.
        """
        check_inputs(texts)
        with progress_bar(len(texts), progress) as bar:
            if self._serve is not None:
                return self._serve(texts, batch_size, bar.update)
            return [self.kind.describe(row, self.task) for row in self._logits(texts, batch_size, bar.update)]

    def logits(self, texts: list[str] | list[tuple[str, str]], *, batch_size: int = 64,
               progress: bool = False) -> np.ndarray:
        """Raw head outputs, one row per input, in input order (``progress``, ``Raises``: as ``__call__``'s)."""
        check_inputs(texts)
        with progress_bar(len(texts), progress) as bar:
            return self._logits(texts, batch_size, bar.update)

    def _logits(self, texts: list, batch_size: int, done: Callable[[int], object]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.id2label)), dtype=np.float32)
        with torch.inference_mode():
            return self.kind.predict_logits(self.model, self.processor, list(texts), batch_size=batch_size,
                                            max_length=self.max_length, device=self.device, progress=done)


def predict(output_dir: str | Path, texts: list[str] | list[tuple[str, str]], *, batch_size: int = 64,
            device: str | None = None, dtype: str | None = None, variant: str = "auto", progress: bool = False) -> list[dict]:
    """Load ``output_dir`` and predict ``texts`` once; use ``Predictor`` to serve many calls.

    Raises:
        DataError: Empty or missing inputs (checked before the model is loaded), as ``Predictor.__call__``.
    """
    check_inputs(texts)
    return Predictor(output_dir, device=device, dtype=dtype, variant=variant)(texts, batch_size=batch_size,
                                                                             progress=progress)


def progress_bar(total: int, enabled: bool) -> tqdm:
    """A bar of ``total`` rows on standard error: only when ``enabled`` and standard error is a terminal (tqdm's
    ``disable=None``), so logs and pipes get no bar."""
    return tqdm(total=total, desc="predict", unit="rows", disable=None if enabled else True)


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
