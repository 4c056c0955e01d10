"""Evaluation metrics that work offline.

The metrics recipes ask for most often ship with the package as ``evaluate`` scripts
under ``nlp_transfer/metric_modules/<module>/<module>.py`` and load from that local path,
so evaluation never needs the Hub. Any other name goes to ``evaluate.load(name)``, which
needs network access.
"""

from __future__ import annotations

import difflib
import functools
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Callable

from .._lazy import lazy
from ..errors import NlpTransferError

evaluate = lazy("evaluate")
np = lazy("numpy")
hub_constants = lazy("huggingface_hub.constants")

logger = logging.getLogger(__name__)

_MODULES_DIR = Path(__file__).resolve().parent / "metric_modules"
_AVERAGES = ("macro", "micro", "weighted")
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}

SHIPPED_METRICS: dict[str, str] = {
    "accuracy": "accuracy",
    **{f"{base}{suffix}": base for base in ("f1", "precision", "recall") for suffix in ("", "_macro", "_micro", "_weighted")},
    "matthews_correlation": "matthews_correlation",
    "pearson": "pearsonr",
    "spearman": "spearmanr",
    "mse": "mse",
}
"""Recipe metric name -> shipped module name (``metric_modules/<module>/<module>.py``)."""
_SHIPPED_MODULES = {*SHIPPED_METRICS.values(), "seqeval"}  # seqeval scores token-classification's f1/precision/recall/accuracy

REGRESSION_METRICS = ("pearson", "spearman", "mse")
CLASSIFICATION_METRICS = tuple(name for name in SHIPPED_METRICS if name not in REGRESSION_METRICS)
SINGLE_LABEL_ONLY = ("matthews_correlation",)


class MetricError(NlpTransferError, ValueError):
    """A metric name is unknown or unusable, or its inputs are malformed."""


@functools.lru_cache(maxsize=None)
def load_metric_module(module_name: str) -> evaluate.EvaluationModule:
    """Load an evaluate module, from the package when shipped, else from the Hub.

    The loaded module is cached per process.

    Args:
        module_name: A shipped module name (``"f1"``, ``"pearsonr"``...), a recipe metric
            name from ``SHIPPED_METRICS`` (``"f1_macro"`` loads ``"f1"``), or any name
            ``evaluate.load`` accepts.

    Returns:
        The loaded ``evaluate.EvaluationModule``.

    Raises:
        MetricError: The name is not shipped and cannot be loaded, e.g. because the Hub is offline.
    """
    module_name = SHIPPED_METRICS.get(module_name, module_name)
    if module_name in _SHIPPED_MODULES:
        script = _MODULES_DIR / module_name / f"{module_name}.py"
        # keep_in_memory: no arrow cache files or lock files on disk for a local computation.
        return evaluate.load(str(script), keep_in_memory=True)
    if _hub_offline():
        # evaluate.load would try (and retry) the Hub before failing; fail fast instead.
        raise MetricError(_not_shipped_message(module_name, "the Hugging Face Hub is offline (HF_HUB_OFFLINE is set)"))
    try:
        return evaluate.load(module_name)
    except Exception as exc:  # evaluate raises many kinds (OSError, ConnectionError, FileNotFoundError...)
        raise MetricError(_not_shipped_message(module_name, f"evaluate.load failed: {exc}")) from exc


def greater_is_better(metric_name: str) -> bool:
    """Whether a larger value of the metric is better (used to pick the best checkpoint).

    Args:
        metric_name: A metric name, optionally prefixed with ``eval_``.

    Returns:
        False for errors and losses (``mse``, ``rmse``, ``mae``, anything containing ``loss``), else True.
    """
    name = metric_name.lower().removeprefix("eval_")
    return not ("loss" in name or name in {"mse", "rmse", "mae"})


def compute_shipped(names: list[str], predictions, references, num_labels: int, *,
                    average: Callable[[str, int], str]) -> dict[str, float]:
    """Metrics of sequence-level predictions, one ``evaluate`` module each (``average``: f1/precision/recall's default).

    ``predictions`` and ``references`` are the arrays the task type checked (``TaskType.metric_arrays``).
    """
    results = {}
    for name in names:
        if SHIPPED_METRICS.get(name) in ("f1", "precision", "recall"):
            suffix = name.rsplit("_", 1)[-1]
            kwargs = {"average": suffix if suffix in _AVERAGES else average(name, num_labels)}
        else:
            kwargs = {}
        output = load_metric_module(SHIPPED_METRICS.get(name, name)).compute(predictions=predictions, references=references,
                                                                             **kwargs)
        results[name] = _single_float(name, output)
    return results


def unavailable_metrics(names: Iterable[str], allowed: tuple[str, ...], applies_to: str) -> list[str]:
    """One line per name neither shipped nor ``allowed`` that looks like a typo of an allowed one, or that cannot load
    because the Hub is offline (``applies_to``: what the allowed names are for, in the message)."""
    problems = []
    for name in names:
        if name in SHIPPED_METRICS or name in allowed:
            continue
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.75)
        if close:  # a typo of a shipped name: evaluate.load would fail only after a whole epoch
            problems.append(f"metric '{name}' is unknown; did you mean '{close[0]}'? Shipped for {applies_to}: "
                            f"{', '.join(allowed)}")
        elif os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE_VALUES:  # the env var only: validation imports no evaluate
            problems.append(_not_shipped_message(name, "the Hugging Face Hub is offline (HF_HUB_OFFLINE is set)"))
    return problems


def _hub_offline() -> bool:
    # The constants are read once at import; the env var is read now so a later change counts.
    env = os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE_VALUES
    return env or bool(hub_constants.HF_HUB_OFFLINE) or bool(evaluate.config.HF_EVALUATE_OFFLINE)


def _not_shipped_message(name: str, reason: str) -> str:
    return (
        f"metric '{name}' is not shipped with nlp_transfer and could not be loaded: {reason}. "
        f"Shipped metrics (work offline): {', '.join(SHIPPED_METRICS)}. "
        "Use one of those, or unset HF_HUB_OFFLINE and make sure the network is reachable: "
        "non-shipped metrics need network access to download from the Hugging Face Hub."
    )


def numeric_arrays(predictions, references):
    """Predictions and references as numpy arrays of one shape, not empty, of numbers.

    Raises:
        MetricError: Shapes differ, no rows, or values that are not numbers.
    """
    preds, refs = np.asarray(predictions), np.asarray(references)
    if preds.shape != refs.shape:
        raise MetricError(f"predictions have shape {preds.shape} but references have shape {refs.shape}; they must match")
    if preds.size == 0:
        raise MetricError("cannot compute metrics on zero examples; check that the evaluation split is not empty")
    if preds.dtype.kind not in "biuf" or refs.dtype.kind not in "biuf":
        raise MetricError(f"predictions ({preds.dtype}) and references ({refs.dtype}) must be numbers; "
                          "map string labels to class ids before computing metrics")
    return preds, refs


def _single_float(name: str, output) -> float:
    if not isinstance(output, dict) or not output:
        raise MetricError(f"metric '{name}' returned {output!r}; expected a dict with one number")
    key = SHIPPED_METRICS.get(name, name)
    if key in output:
        value = output[key]
    elif len(output) == 1:
        value = next(iter(output.values()))
    else:
        raise MetricError(
            f"metric '{name}' returned several values {sorted(output)}; none is named '{name}'. "
            "Use a metric that returns a single number"
        )
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MetricError(f"metric '{name}' returned {value!r}, which is not a single number") from None
