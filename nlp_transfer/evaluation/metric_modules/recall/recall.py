"""Recall for binary, multi-class and multi-label (indicator array) classification."""

import datasets
import evaluate
from sklearn.metrics import recall_score

_DESCRIPTION = "Recall: the fraction of positive references that are found, TP / (TP + FN)."
_CITATION = "Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, 2011."
_INPUTS = """
Args:
    predictions (list of int, or list of list of int for multi-label): predicted class ids or indicator rows.
    references (same shape as predictions): gold class ids or indicator rows.
    average (str): "binary" (default; scores pos_label only), "macro", "micro", "weighted" or "samples".
    pos_label (int): the positive class when average="binary". Defaults to 1.
    sample_weight (list of float, optional): per-example weights.
    zero_division (float): the value used where the score is undefined. Defaults to 0.0.
Returns:
    recall (float)
"""


class Recall(evaluate.Metric):
    """Recall, computed with scikit-learn."""

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
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.recall_score.html"],
        )

    def _compute(self, predictions, references, average="binary", pos_label=1, sample_weight=None, zero_division=0.0):
        score = recall_score(
            references,
            predictions,
            average=average,
            pos_label=pos_label,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
        return {"recall": float(score)}
