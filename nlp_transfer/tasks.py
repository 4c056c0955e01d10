"""What a task head predicts: label maps, the loss, and logits -> predictions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

PROBLEM_TYPES = {
    "text-classification": "single_label_classification",
    "multi-label-classification": "multi_label_classification",
    "regression": "regression",
    "token-classification": None,  # transformers' token heads have one loss; the config keeps no problem type
    "image-classification": "single_label_classification",
}
IGNORE_INDEX = -100  # label of positions without a target (token tasks: special tokens, later word pieces, padding)


@dataclass
class TaskSpec:
    """The head's contract, derived from the recipe and the training data.

    Attributes:
        type: A recipe ``task.type``.
        id2label: Class names by id (one entry ``{0: "score"}`` for regression).
        threshold: Sigmoid threshold for multi-label predictions.
    """

    type: str
    id2label: dict[int, str] = field(default_factory=dict)
    threshold: float = 0.5

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in self.id2label.items()}

    @property
    def label_names(self) -> list[str]:
        """Class names in id order."""
        return [self.id2label[i] for i in sorted(self.id2label)]

    @property
    def problem_type(self) -> str:
        return PROBLEM_TYPES[self.type]


def compute_loss(logits: torch.Tensor, labels: torch.Tensor, task: TaskSpec) -> torch.Tensor:
    """The task loss, the same one transformers' heads use for ``problem_type``."""
    logits = logits.float()
    if task.type == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.float())
    if task.type == "multi-label-classification":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    if task.type == "token-classification":  # (batch, positions, classes); IGNORE_INDEX positions do not count
        return F.cross_entropy(logits.flatten(0, 1), labels.long().flatten(), ignore_index=IGNORE_INDEX)
    return F.cross_entropy(logits, labels.long())


def concat_rows(parts: list[torch.Tensor], pad_value: float) -> torch.Tensor:
    """Concatenate batches along rows; per-token batches of different lengths are padded first."""
    longest = max(p.shape[1] for p in parts) if parts[0].ndim >= 2 else 0
    if all(p.ndim < 2 or p.shape[1] == longest for p in parts):
        return torch.cat(parts)
    return torch.cat([F.pad(p, (0, 0) * (p.ndim - 2) + (0, longest - p.shape[1]), value=pad_value) for p in parts])


def logits_to_predictions(logits: np.ndarray, task: TaskSpec) -> np.ndarray:
    """Class ids (per row, or per position for token tasks), 0/1 indicator rows (multi-label) or scores (regression)."""
    if task.type == "regression":
        return logits.reshape(-1)
    if task.type == "multi-label-classification":
        return (1.0 / (1.0 + np.exp(-logits)) >= task.threshold).astype(np.int64)
    return logits.argmax(-1)
