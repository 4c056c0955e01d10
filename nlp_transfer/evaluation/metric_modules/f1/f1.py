"""F1 score for binary, multi-class and multi-label (indicator array) classification."""

import datasets
import evaluate
from sklearn.metrics import f1_score

_DESCRIPTION = "F1: the harmonic mean of precision and recall, 2 * P * R / (P + R)."
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
    f1 (float)
"""


class F1(evaluate.Metric):
    """F1 score, computed with scikit-learn."""

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
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
        )

    def _compute(self, predictions, references, average="binary", pos_label=1, sample_weight=None, zero_division=0.0):
        score = f1_score(
            references,
            predictions,
            average=average,
            pos_label=pos_label,
            sample_weight=sample_weight,
            zero_division=zero_division,
        )
        return {"f1": float(score)}
