"""Accuracy; on multi-label indicator arrays it is subset (exact-match) accuracy."""

import datasets
import evaluate
from sklearn.metrics import accuracy_score

_DESCRIPTION = "Accuracy: the fraction of predictions equal to their reference. On multi-label 0/1 indicator rows a prediction counts only when every label matches (subset accuracy)."
_CITATION = "Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, 2011."
_INPUTS = """
Args:
    predictions (list of int, or list of list of int for multi-label): predicted class ids or indicator rows.
    references (same shape as predictions): gold class ids or indicator rows.
    normalize (bool): return the fraction (True, default) or the count of correct predictions.
    sample_weight (list of float, optional): per-example weights.
Returns:
    accuracy (float)
"""


class Accuracy(evaluate.Metric):
    """Single-label or subset accuracy, computed with scikit-learn."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            # Tried in order: class ids first, then multi-label indicator rows.
            features=[
                datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("int32")),
                        "references": datasets.Sequence(datasets.Value("int32")),
                    }
                ),
            ],
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"],
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        score = accuracy_score(references, predictions, normalize=normalize, sample_weight=sample_weight)
        return {"accuracy": float(score)}
