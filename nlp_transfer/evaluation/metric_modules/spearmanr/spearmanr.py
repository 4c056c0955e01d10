"""Spearman rank correlation coefficient for regression."""

import datasets
import evaluate
from scipy.stats import spearmanr

_DESCRIPTION = "Spearman rank correlation coefficient: the Pearson correlation of the ranks, so any monotone relation scores 1 (or -1)."
_CITATION = "Virtanen et al., SciPy 1.0: Fundamental Algorithms for Scientific Computing in Python, Nature Methods 17, 2020."
_INPUTS = """
Args:
    predictions (list of float): predicted values.
    references (list of float): gold values.
    return_pvalue (bool): also return the two-sided p-value. Defaults to False.
Returns:
    spearmanr (float), and p-value (float) when return_pvalue is True.
"""


class Spearmanr(evaluate.Metric):
    """Spearman rank correlation, computed with SciPy."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
            reference_urls=["https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.spearmanr.html"],
        )

    def _compute(self, predictions, references, return_pvalue=False):
        result = spearmanr(references, predictions)
        if return_pvalue:
            return {"spearmanr": float(result[0]), "p-value": float(result[1])}
        return {"spearmanr": float(result[0])}
