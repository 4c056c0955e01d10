"""Evaluation metrics that work offline.

The metrics recipes ask for most often ship with the package as ``evaluate`` scripts
under ``nlp_transfer/metric_modules/<module>/<module>.py`` and load from that local path,
so evaluation never needs the Hub. Any other name goes to ``evaluate.load(name)``, which
needs network access.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import evaluate
import huggingface_hub.constants
import numpy as np

from nlp_transfer.errors import NlpTransferError

logger = logging.getLogger(__name__)

_MODULES_DIR = Path(__file__).resolve().parent / "metric_modules"
_AVERAGES = ("macro", "micro", "weighted")
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}

# The metrics reported when a recipe names none, per task type; the first is the headline metric.
_DEFAULT_METRICS: dict[str, list[str]] = {
    "text-classification": ["accuracy", "f1"],
    "multi-label-classification": ["f1_micro", "f1_macro", "accuracy"],
    "regression": ["pearson", "spearman", "mse"],
    "token-classification": ["f1", "precision", "recall", "accuracy"],
    "image-classification": ["accuracy", "f1"],
}
TASK_TYPES = tuple(_DEFAULT_METRICS)

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

_REGRESSION_METRICS = ("pearson", "spearman", "mse")
_CLASSIFICATION_METRICS = tuple(name for name in SHIPPED_METRICS if name not in _REGRESSION_METRICS)
_SINGLE_LABEL_ONLY = ("matthews_correlation",)
# token-classification: entity-level micro scores as CoNLL computes them, and token accuracy (all from seqeval)
_TOKEN_METRICS = {"f1": "overall_f1", "precision": "overall_precision", "recall": "overall_recall",
                  "accuracy": "overall_accuracy"}
_PER_TYPE = ("precision", "recall", "f1")


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


def default_metrics(task_type: str) -> list[str]:
    """The metrics reported when a recipe names none.

    Args:
        task_type: One of ``TASK_TYPES``.

    Returns:
        Recipe metric names; the first is the headline metric.

    Raises:
        MetricError: ``task_type`` is unknown.
    """
    if task_type not in _DEFAULT_METRICS:
        raise MetricError(_task_type_problem(task_type))
    return list(_DEFAULT_METRICS[task_type])


def greater_is_better(metric_name: str) -> bool:
    """Whether a larger value of the metric is better (used to pick the best checkpoint).

    Args:
        metric_name: A metric name, optionally prefixed with ``eval_``.

    Returns:
        False for errors and losses (``mse``, ``rmse``, ``mae``, anything containing ``loss``), else True.
    """
    name = metric_name.lower().removeprefix("eval_")
    return not ("loss" in name or name in {"mse", "rmse", "mae"})


def check_metric_names(names: Iterable[str], task_type: str) -> list[str]:
    """Find metric names that cannot work for a task type.

    Names that are not shipped are not problems: they are loaded with ``evaluate.load``
    (online) when computed.

    Args:
        names: Recipe metric names.
        task_type: One of ``TASK_TYPES``.

    Returns:
        One human-readable line per problem; empty when all names are fine.
    """
    if task_type not in TASK_TYPES:
        return [_task_type_problem(task_type)]
    allowed = _allowed_metrics(task_type)
    if task_type == "token-classification":  # scored by seqeval alone: other names have no meaning here
        return [f"metric '{name}' does not apply to task.type '{task_type}'; use one of: {', '.join(allowed)} "
                "(entity-level micro scores, token accuracy; per entity type added automatically)"
                for name in names if name not in allowed]
    return [
        f"metric '{name}' does not apply to task.type '{task_type}'; use one of: {', '.join(allowed)}"
        for name in names
        if name in SHIPPED_METRICS and name not in allowed
    ]


def compute_metrics(
    names: list[str], task_type: str, predictions, references, num_labels: int, *, label_names: list[str] | None = None
) -> dict[str, float]:
    """Compute metrics on post-processed predictions.

    Args:
        names: Recipe metric names (see ``SHIPPED_METRICS``; other names load from the Hub).
        task_type: One of ``TASK_TYPES``.
        predictions: Class ids (text-classification), a 0/1 indicator array of shape
            ``(n, num_labels)`` (multi-label-classification) or floats (regression).
        references: Gold values, same shape as ``predictions``.
        num_labels: Number of labels of the task (1 for regression).
        label_names: Class names in id order; token-classification needs them (tags such as
            ``B-PER``), the other task types ignore them.

    Returns:
        ``{name: value}`` with plain Python floats, in the order of ``names``. A correlation
        of constant inputs is ``nan``.

    Raises:
        MetricError: A name does not apply to the task, the inputs are malformed, or a
            non-shipped metric cannot be loaded or returns no single number.
    """
    problems = check_metric_names(names, task_type)
    if problems:
        raise MetricError("cannot compute metrics:\n" + "\n".join(f"  - {p}" for p in problems))
    if task_type == "token-classification":
        return _token_metrics(names, predictions, references, label_names)
    predictions, references = _validated_arrays(task_type, predictions, references, num_labels)
    results = {}
    for name in names:
        kwargs = {"average": _average_for(name, task_type, num_labels)} if _takes_average(name) else {}
        module = load_metric_module(SHIPPED_METRICS.get(name, name))
        output = module.compute(predictions=predictions, references=references, **kwargs)
        results[name] = _single_float(name, output)
    return results


def _token_metrics(names: list[str], predictions, references, label_names: list[str] | None) -> dict[str, float]:
    """seqeval on tag sequences: positions whose reference is -100 (later word pieces, special tokens, padding) drop out.

    Returns the asked micro scores, then ``<metric>_<TYPE>`` for every entity type (e.g. ``f1_PER``).
    """
    if not label_names:
        raise MetricError("token-classification metrics need the tag names (label_names), e.g. ['O', 'B-PER', 'I-PER']")
    preds, refs = np.asarray(predictions), np.asarray(references)
    if preds.shape != refs.shape or preds.ndim != 2:
        raise MetricError(f"token-classification expects (sentences, positions) arrays of tag ids; got predictions "
                          f"{preds.shape} and references {refs.shape}")
    keep = refs != -100
    if not keep.any():
        raise MetricError("cannot compute metrics on zero tagged words; check that the evaluation split is not empty")
    tag_lists = [([label_names[i] for i in p[k]], [label_names[i] for i in r[k]]) for p, r, k in zip(preds, refs, keep)]
    tag_lists = [pair for pair in tag_lists if pair[1]]
    output = load_metric_module("seqeval").compute(predictions=[p for p, _ in tag_lists], references=[r for _, r in tag_lists])
    results = {name: float(output[_TOKEN_METRICS[name]]) for name in names}
    for kind in sorted(k for k, v in output.items() if isinstance(v, dict)):
        results.update({f"{m}_{kind}": float(output[kind][m]) for m in _PER_TYPE if m in names})
    return results


def _hub_offline() -> bool:
    # The constants are read once at import; the env var is read now so a later change counts.
    env = os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE_VALUES
    return env or bool(huggingface_hub.constants.HF_HUB_OFFLINE) or bool(evaluate.config.HF_EVALUATE_OFFLINE)


def _not_shipped_message(name: str, reason: str) -> str:
    return (
        f"metric '{name}' is not shipped with nlp_transfer and could not be loaded: {reason}. "
        f"Shipped metrics (work offline): {', '.join(SHIPPED_METRICS)}. "
        "Use one of those, or unset HF_HUB_OFFLINE and make sure the network is reachable: "
        "non-shipped metrics need network access to download from the Hugging Face Hub."
    )


def _task_type_problem(task_type: str) -> str:
    return f"task.type '{task_type}' is not supported by the metrics; use one of: {', '.join(TASK_TYPES)}"


def _allowed_metrics(task_type: str) -> tuple[str, ...]:
    if task_type == "token-classification":
        return tuple(_TOKEN_METRICS)
    if task_type == "regression":
        return _REGRESSION_METRICS
    if task_type == "multi-label-classification":
        return tuple(n for n in _CLASSIFICATION_METRICS if n not in _SINGLE_LABEL_ONLY)
    return _CLASSIFICATION_METRICS


def _takes_average(name: str) -> bool:
    return SHIPPED_METRICS.get(name) in ("f1", "precision", "recall")


def _average_for(name: str, task_type: str, num_labels: int) -> str:
    suffix = name.rsplit("_", 1)[-1]
    if suffix in _AVERAGES:
        return suffix
    if task_type == "multi-label-classification":
        return "micro"
    return "binary" if num_labels == 2 else "macro"


def _validated_arrays(task_type: str, predictions, references, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    preds, refs = np.asarray(predictions), np.asarray(references)
    if preds.shape != refs.shape:
        raise MetricError(
            f"predictions have shape {preds.shape} but references have shape {refs.shape}; they must match"
        )
    if preds.size == 0:
        raise MetricError("cannot compute metrics on zero examples; check that the evaluation split is not empty")
    if preds.dtype.kind not in "biuf" or refs.dtype.kind not in "biuf":
        raise MetricError(
            f"predictions ({preds.dtype}) and references ({refs.dtype}) must be numbers; "
            "map string labels to class ids before computing metrics"
        )
    if task_type == "regression":
        if preds.ndim == 2 and preds.shape[1] == 1:  # (n, 1) regression head output
            preds, refs = preds[:, 0], refs[:, 0]
        expected_ndim, kind = 1, np.float64
    elif task_type == "multi-label-classification":
        expected_ndim, kind = 2, np.int64
    else:
        expected_ndim, kind = 1, np.int64
    if preds.ndim != expected_ndim:
        raise MetricError(
            f"task.type '{task_type}' expects {expected_ndim}-D predictions, got shape {preds.shape}; "
            "post-process logits first (argmax for classes, threshold for multi-label)"
        )
    if task_type != "regression":
        _check_label_values(task_type, preds, refs, num_labels)
    return preds.astype(kind), refs.astype(kind)


def _check_label_values(task_type: str, preds: np.ndarray, refs: np.ndarray, num_labels: int) -> None:
    if task_type == "multi-label-classification":
        if preds.shape[1] != num_labels:
            raise MetricError(f"multi-label predictions have {preds.shape[1]} columns but num_labels is {num_labels}")
        bad = np.setdiff1d(np.union1d(preds, refs), [0, 1])
        allowed = "0 or 1 (indicator arrays)"
    else:
        values = np.union1d(preds, refs)
        bad = values[(values < 0) | (values >= num_labels) | (values != np.round(values))]
        allowed = f"class ids 0..{num_labels - 1}"
    if bad.size:
        raise MetricError(
            f"predictions/references for task.type '{task_type}' contain {bad[:5].tolist()}; allowed: {allowed}"
        )


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
