"""``regression``: one number per text or sentence pair (e.g. STS-B similarity)."""

from __future__ import annotations

import math

from .._lazy import lazy
from ..data.columns import column_values
from ..errors import DataError
from ..evaluation.metrics import REGRESSION_METRICS, MetricError
from .spec import TaskSpec
from .text_classification import TextClassification

np = lazy("numpy")
torch = lazy("torch")
F = lazy("torch.nn.functional")


class Regression(TextClassification):
    """A single score per row, trained with MSE; labels must be finite numbers."""

    name = "regression"
    display_name = "Text Regression"
    problem_type = "regression"
    default_metrics = ("pearson", "spearman", "mse")
    named_outputs = False

    def allowed_metrics(self) -> tuple[str, ...]:
        return REGRESSION_METRICS

    def encode_labels(self, splits, task, data, names=None):
        from datasets import DatasetDict

        from ..data.files import check_columns
        from .labels import drop_hidden_label_splits

        check_columns(splits, [*self.input_columns(task), task.label], data)
        splits = drop_hidden_label_splits(splits, task.label)
        spec = TaskSpec(self.name, {0: task.label})
        return DatasetDict({s: _encode_scores(ds, s, task.label, data) for s, ds in splits.items()}), spec

    def unlabeled_value(self, spec):
        return float(super().unlabeled_value(spec))

    def stratify_by(self, ds):
        return None

    def loss(self, logits, labels, spec):
        return F.mse_loss(logits.float().squeeze(-1), labels.float())

    def row_losses(self, logits, labels, spec):
        """The squared error of each row's score."""
        return F.mse_loss(logits.float().reshape(labels.shape), labels.float(), reduction="none")

    def row_sizes(self, labels, spec):
        return labels.new_ones(labels.shape, dtype=torch.float32)  # ``loss`` averages over every row

    def soft_loss(self, student, teacher, temperature: float):
        """MSE between student and teacher scores (no temperature)."""
        return F.mse_loss(student.squeeze(-1), teacher.squeeze(-1))

    def predictions(self, logits, spec):
        return logits.reshape(-1)

    def metric_arrays(self, preds, refs, num_labels: int):
        if preds.ndim == 2 and preds.shape[1] == 1:  # (n, 1) head output
            preds, refs = preds[:, 0], refs[:, 0]
        if preds.ndim != 1:
            raise MetricError(f"task.type '{self.name}' expects 1-D predictions, got shape {preds.shape}")
        return preds.astype(np.float64), refs.astype(np.float64)

    def describe(self, logits, spec) -> dict:
        return {"score": float(logits[0])}

    def phrase(self, spec, recipe) -> str:
        pair = "sentence-pair " if len(recipe.task.text_columns) == 2 else ""
        return f"{pair}regression (one score per input)"

    def intended_use(self, spec) -> str:
        return "scoring text on the scale of its training labels"

    def card_labels(self, spec) -> list[str]:
        return []

    def decode_snippet(self, spec) -> str:
        return "print(logits.squeeze(-1).tolist())"


def _encode_scores(ds, split: str, column: str, data):
    from ..data.files import where

    for row, value in enumerate(column_values(ds, column)):
        try:
            if value is None or isinstance(value, bool) or not math.isfinite(float(value)):
                raise ValueError
        except (TypeError, ValueError):
            raise DataError(f"data split '{split}' ({where(data, split)}), column '{column}', row {row}: "
                            f"regression labels must be numbers; got {value!r}") from None
    return ds.map(lambda b: {"labels": [float(v) for v in b[column]]}, batched=True, desc=f"labels {split}")
