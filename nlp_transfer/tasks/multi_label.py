"""``multi-label-classification``: any number of classes per text (one sigmoid per class)."""

from __future__ import annotations

from .._lazy import lazy
from ..evaluation.metrics import CLASSIFICATION_METRICS, SINGLE_LABEL_ONLY, MetricError
from .spec import TaskSpec
from .text_classification import TextClassification

np = lazy("numpy")
torch = lazy("torch")
F = lazy("torch.nn.functional")


class MultiLabelClassification(TextClassification):
    """Several labels per row: a list cell, or a ``task.label_separator``-joined string (``a|b``).

    Predictions are the labels whose sigmoid reaches ``task.threshold``.
    """

    name = "multi-label-classification"
    display_name = "Multi-label Text Classification"
    problem_type = "multi_label_classification"
    default_metrics = ("f1_micro", "f1_macro", "accuracy")
    min_classes = 1
    empty_label_means_none = True

    def allowed_metrics(self) -> tuple[str, ...]:
        return tuple(n for n in CLASSIFICATION_METRICS if n not in SINGLE_LABEL_ONLY)

    def cell_labels(self, value, task) -> list:
        if isinstance(value, str):
            return [v.strip() for v in value.split(task.label_separator) if v.strip()]
        return list(value or [])

    def encode_cell(self, value, to_id, num_labels: int, task) -> list[float]:
        hot = [0.0] * num_labels
        for v in self.cell_labels(value, task):
            hot[to_id(v)] = 1.0
        return hot

    def unlabeled_value(self, spec: TaskSpec):
        return [float(super().unlabeled_value(spec))] * spec.num_labels

    def stratify_by(self, ds):
        return None

    def loss(self, logits, labels, spec):
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float())

    def row_losses(self, logits, labels, spec):
        """Each row's binary cross-entropy, averaged over its labels."""
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none").mean(-1)

    def row_sizes(self, labels, spec):
        return labels.new_ones(labels.shape[:1], dtype=torch.float32)  # every row holds num_labels terms of ``loss``

    def soft_loss(self, student, teacher, temperature: float):
        """T^2 * the Bernoulli KL per label between sigmoid(teacher/T) and sigmoid(student/T) (BCE with soft
        targets minus the targets' entropy, so it is 0 at a perfect match), averaged over rows and labels."""
        target = (teacher / temperature).sigmoid()
        kl = (F.binary_cross_entropy_with_logits(student / temperature, target, reduction="none")
              - F.binary_cross_entropy_with_logits(teacher / temperature, target, reduction="none"))
        return kl.mean() * temperature ** 2

    def predictions(self, logits, spec):
        return (1.0 / (1.0 + np.exp(-logits)) >= spec.threshold).astype(np.int64)

    def average(self, name: str, num_labels: int) -> str:
        return "micro"

    def metric_arrays(self, preds, refs, num_labels: int):
        if preds.ndim != 2:
            raise MetricError(f"task.type '{self.name}' expects 2-D predictions, got shape {preds.shape}; "
                              "post-process logits first (threshold the sigmoid)")
        if preds.shape[1] != num_labels:
            raise MetricError(f"multi-label predictions have {preds.shape[1]} columns but num_labels is {num_labels}")
        bad = np.setdiff1d(np.union1d(preds, refs), [0, 1])
        if bad.size:
            raise MetricError(f"predictions/references for task.type '{self.name}' contain {bad[:5].tolist()}; "
                              "allowed: 0 or 1 (indicator arrays)")
        return preds.astype(np.int64), refs.astype(np.int64)

    def describe(self, logits, spec) -> dict:
        probs = 1.0 / (1.0 + np.exp(-logits))
        return {"labels": [spec.id2label[i] for i, p in enumerate(probs) if p >= spec.threshold],
                "scores": {spec.id2label[i]: float(p) for i, p in enumerate(probs)}}

    def phrase(self, spec, recipe) -> str:
        pair = "sentence-pair " if len(recipe.task.text_columns) == 2 else ""
        return f"{pair}multi-label classification ({spec.num_labels} labels)"

    def pipeline_kwargs(self) -> str:
        return ", top_k=None"

    def decode_snippet(self, spec) -> str:
        return (f"print([[model.config.id2label[i] for i, p in enumerate(row) if p >= {spec.threshold}] "
                "for row in logits.sigmoid().tolist()])")
