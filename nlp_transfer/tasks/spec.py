"""``TaskSpec``, the head's contract, and the constants every layer shares. A leaf: it imports nothing.

The libraries below the task types (data, models, evaluation) read a ``TaskSpec`` they are given; they
never look a task type up by name. ``TaskSpec.kind`` is the registered type itself: the registry
(``tasks/__init__.py``) fills ``REGISTERED`` when the ``tasks`` package is imported, which Python does
before any of its modules, this one included, can be used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IGNORE_INDEX = -100  # label of positions without a target (token tasks: special tokens, later word pieces, padding)
WORD_IDS = "word_ids"  # a column ``tokenize_rows`` of word-level types adds: the word of each piece (not a model input)

REGISTERED: dict[str, Any] = {}
"""recipe ``task.type`` -> its ``TaskType`` object (filled by the registry, ``tasks/__init__.py``)."""


@dataclass
class TaskSpec:
    """The head's contract, derived from the recipe and the training data.

    Attributes:
        type: A recipe ``task.type`` (a key of ``tasks.TASK_TYPES``).
        id2label: Class names by id (one entry ``{0: "score"}`` for regression).
        threshold: Sigmoid threshold for multi-label predictions.
    """

    type: str
    id2label: dict[int, str] = field(default_factory=dict)
    threshold: float = 0.5

    @property
    def kind(self):
        """The registered task type (a ``tasks.base.TaskType``)."""
        try:
            return REGISTERED[self.type]
        except KeyError:
            raise KeyError(f"unknown task type {self.type!r}; registered task types: {', '.join(REGISTERED)}") from None

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
    def problem_type(self) -> str | None:
        return self.kind.problem_type

    def loss(self, logits, labels):
        return self.kind.loss(logits, labels, self)

    def weighted_loss(self, logits, labels, weights):
        return self.kind.weighted_loss(logits, labels, weights, self)

    def predictions(self, logits):
        return self.kind.predictions(logits, self)
