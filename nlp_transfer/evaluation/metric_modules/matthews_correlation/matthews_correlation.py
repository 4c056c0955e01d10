"""Matthews correlation coefficient for binary and multi-class classification."""

import datasets
import evaluate
from sklearn.metrics import matthews_corrcoef

_DESCRIPTION = "Matthews correlation coefficient: a correlation between predicted and gold classes in [-1, 1]; 0 is chance level. Robust to class imbalance."
_CITATION = "Matthews, B. W., Comparison of the predicted and observed secondary structure of T4 phage lysozyme, BBA 405(2), 1975."
_INPUTS = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): gold class ids.
    sample_weight (list of float, optional): per-example weights.
Returns:
    matthews_correlation (float)
"""


class MatthewsCorrelation(evaluate.Metric):
    """Matthews correlation coefficient, computed with scikit-learn."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.matthews_corrcoef.html"],
        )

    def _compute(self, predictions, references, sample_weight=None):
        return {"matthews_correlation": float(matthews_corrcoef(references, predictions, sample_weight=sample_weight))}
