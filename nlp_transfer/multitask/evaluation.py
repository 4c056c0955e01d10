"""Scoring a multi-task model: each task on its own validation rows, with its own metrics and labels.

Scores are flat, ``<task>/<metric>``, plus ``mean``: the mean of each task's first metric. Those are all
higher-is-better numbers on a 0-1 scale (accuracy, F1, Pearson or Spearman correlation; a recipe whose first
metric is a loss or an error is refused), so one task's scale cannot swamp another's; ``loss`` is the
weighted sum of the task losses, as trained.
"""

from __future__ import annotations

from dataclasses import dataclass

from accelerate import Accelerator

from ..recipe.multitask import MEAN
from ..training.loop import evaluate_loader


@dataclass
class TaskEvaluation:
    """One task's part of an evaluation."""

    name: str
    index: int
    strategy: object  # the task's own strategy instance
    spec: object  # its TaskSpec
    loader: object
    metric_names: list[str]
    weight: float = 1.0


class MultiTaskEvaluation:
    """Scores every task (``Evaluation``'s protocol); ``default_metric`` is ``train.best_metric`` (``mean`` by default)."""

    def __init__(self, tasks: list[TaskEvaluation], best_metric: str = MEAN):
        self.tasks, self.default_metric = tasks, best_metric

    def prepare(self, accelerator: Accelerator) -> None:
        for task in self.tasks:
            task.loader = accelerator.prepare(task.loader)

    def __call__(self, model, strategy, accelerator: Accelerator) -> dict[str, float]:
        module = accelerator.unwrap_model(model)  # evaluation needs no gradient sync: each task's model directly
        scores, primaries, loss = {}, [], 0.0
        for task in self.tasks:
            got = evaluate_loader(module.task(task.index), task.strategy, task.loader, accelerator, task.spec,
                                  task.metric_names)
            scores.update({f"{task.name}/{k}": v for k, v in got.items()})
            primaries.append(got[task.metric_names[0]])
            loss += task.weight * got["loss"]
        scores[MEAN] = sum(primaries) / len(primaries)
        scores["loss"] = loss
        return scores


def task_scores(scores: dict[str, float], name: str) -> dict[str, float]:
    """One task's scores out of a flat multi-task record."""
    prefix = f"{name}/"
    return {k[len(prefix):]: v for k, v in scores.items() if k.startswith(prefix)}
