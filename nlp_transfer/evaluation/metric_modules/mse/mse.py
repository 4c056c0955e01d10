"""Mean squared error for regression."""

import datasets
import evaluate
from sklearn.metrics import mean_squared_error

_DESCRIPTION = "Mean squared error: the average of (prediction - reference) ** 2. Lower is better."
_CITATION = "Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, 2011."
_INPUTS = """
Args:
    predictions (list of float): predicted values.
    references (list of float): gold values.
    sample_weight (list of float, optional): per-example weights.
    squared (bool): mean squared error (True, default) or its square root (False).
Returns:
    mse (float)
"""


class Mse(evaluate.Metric):
    """Mean squared error, computed with scikit-learn."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.mean_squared_error.html"],
        )

    def _compute(self, predictions, references, sample_weight=None, squared=True):
        mse = float(mean_squared_error(references, predictions, sample_weight=sample_weight))
        return {"mse": mse if squared else mse**0.5}
