"""Which rows pick the best model of a domain-adapted run: the source validation split, or ``adapt.target_validation``.

By default the best model is chosen on the source validation split; target labels choose nothing. A recipe may give
a small labelled target set (``adapt.target_validation``); then every evaluation scores both (the source scores as
always, the target ones as ``target/<metric>``) and the best model is the one with the best ``target/<metric>``,
where the metric is ``train.best_metric`` or else the run's first metric. That use of target labels is logged as a
warning and recorded in metrics.json (``model_selection``) and the model card.
"""

from __future__ import annotations

import logging

from ..recipe.schema import TARGET_VALIDATION_SPLIT

logger = logging.getLogger(__name__)

TARGET_PREFIX = "target/"  # the target rows' scores in an evaluation record (train_log.jsonl)
SOURCE_VALIDATION = "source validation"
ON_TARGET = "adapt.target_validation"


class TargetValidationEvaluation:
    """Scores the source validation rows and the labelled target rows (the loop's ``Evaluation`` protocol).

    Args:
        source, target: ``loop.Evaluation`` objects of the two loaders (same task and metrics).
        metric: The metric that picks the best model on the target rows (``default_metric`` is ``target/<metric>``).
    """

    def __init__(self, source, target, metric: str):
        self.source, self.target = source, target
        self.default_metric = TARGET_PREFIX + metric

    def prepare(self, accelerator) -> None:
        self.source.prepare(accelerator)
        self.target.prepare(accelerator)

    def __call__(self, model, strategy, accelerator) -> dict[str, float]:
        scores = dict(self.source(model, strategy, accelerator))
        scores.update({TARGET_PREFIX + k: v for k, v in self.target(model, strategy, accelerator).items()})
        return scores


def target_validation_evaluation(source_loader, target_loader, task, metric_names: list[str],
                                 best_metric: str | None) -> TargetValidationEvaluation:
    """The evaluation of a run with ``adapt.target_validation``; says (WARNING) that target labels pick the model."""
    from ..training.loop import Evaluation

    metric = best_metric or (metric_names[0] if metric_names else "loss")
    logger.warning("Model selection uses labelled target data: the best model is the one with the best %s on the %d rows "
                   "of adapt.target_validation, not on the source validation split (still scored and logged). Scores on "
                   "those target rows are therefore optimistic; report a separate target test set",
                   TARGET_PREFIX + metric, len(target_loader.dataset))
    return TargetValidationEvaluation(Evaluation(source_loader, task, metric_names),
                                      Evaluation(target_loader, task, metric_names), metric)


def split_scores(scores: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    """An evaluation record's scores as (source validation, target validation) scores."""
    source = {k: v for k, v in scores.items() if not k.startswith(TARGET_PREFIX)}
    target = {k[len(TARGET_PREFIX):]: v for k, v in scores.items() if k.startswith(TARGET_PREFIX)}
    return source, target


def model_selection(adapt, data, best_scores: dict[str, float], metric: str, rows: dict[str, int]) -> tuple[dict, dict]:
    """metrics.json's source ``validation`` scores and its ``model_selection`` record (which rows chose the model).

    Args:
        adapt, data: The recipe's ``adapt`` and ``data`` sections.
        best_scores: The chosen evaluation's scores (with ``target/`` ones when ``adapt.target_validation`` is set).
        metric: The selection metric (``train.best_metric`` or the first metric), without prefix.
        rows: Rows per prepared split.
    """
    source, target = split_scores(best_scores)
    if adapt.target_validation is not None:
        return source, {"on": ON_TARGET, "metric": TARGET_PREFIX + metric, "rows": rows.get(TARGET_VALIDATION_SPLIT, 0),
                        "files": list(adapt.target_validation.files), "scores": target}
    files = [data.files["validation"]] if "validation" in data.files else []
    return source, {"on": SOURCE_VALIDATION, "metric": metric, "rows": rows.get("validation", 0), "files": files}
