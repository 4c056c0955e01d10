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
    "image-classification": "single_label_classification",
}


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
    def problem_type(self) -> str:
        return PROBLEM_TYPES[self.type]


def compute_loss(logits: torch.Tensor, labels: torch.Tensor, task: TaskSpec) -> torch.Tensor:
    """The task loss, the same one transformers' heads use for ``problem_type``."""
    logits = logits.float()
    if task.type == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.float())
    if task.type == "multi-label-classification":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return F.cross_entropy(logits, labels.long())


def logits_to_predictions(logits: np.ndarray, task: TaskSpec) -> np.ndarray:
    """Class ids, 0/1 indicator rows (multi-label) or scores (regression)."""
    if task.type == "regression":
        return logits.reshape(-1)
    if task.type == "multi-label-classification":
        return (1.0 / (1.0 + np.exp(-logits)) >= task.threshold).astype(np.int64)
    return logits.argmax(-1)
