"""One trial: the recipe with the trial's values, trained through the same stages as ``train`` (metrics only), its
evaluations reported to the pruner, which may stop the loop (``training/hooks.py``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import optuna

from ..errors import NlpTransferError, RecipeError
from ..training.hooks import observe_evaluations
from ..training.single import train
from .base import BaseRecipe
from .space import SearchSettings, sample
from .study import INTERRUPTED, REASON, SURPLUS, WORKER, counted_trials, this_worker

logger = logging.getLogger(__name__)
TRIALS_DIR = "trials"
SECONDS = "seconds"


class StudyFull(Exception):
    """This trial was asked for after the study had its ``n_trials`` (another worker took the last one)."""


class Objective:
    """Optuna's objective: a trial's value is the run's validation ``settings.metric`` of the selected model."""

    def __init__(self, base: BaseRecipe, settings: SearchSettings, study_dir: Path):
        self.base, self.settings, self.study_dir = base, settings, study_dir
        self.base_strategy = base.load().strategy_name
        self.full = False

    def __call__(self, trial: optuna.Trial) -> float:
        if self.settings.n_trials is not None and counted_trials(trial.study, before=trial.number) >= self.settings.n_trials:
            trial.set_user_attr(SURPLUS, True)
            self.full = True
            raise StudyFull(f"the study has its {self.settings.n_trials} trials")
        trial.set_user_attr(WORKER, this_worker())
        started = time.perf_counter()
        try:
            return self._run(trial)
        except KeyboardInterrupt:
            trial.set_user_attr(INTERRUPTED, True)
            trial.set_user_attr(REASON, "interrupted (Ctrl-C or a signal)")
            raise
        except optuna.TrialPruned:
            raise
        except Exception as error:  # a failed trial is recorded with its reason and the study goes on
            trial.set_user_attr(REASON, failure_reason(error))
            raise
        finally:
            trial.set_user_attr(SECONDS, round(time.perf_counter() - started, 2))

    def _run(self, trial: optuna.Trial) -> float:
        values = sample(trial, self.settings, self.base_strategy)
        out_dir = self.study_dir / TRIALS_DIR / f"{trial.number:04d}"
        recipe = self.base.load({**values, "output.dir": str(out_dir), "output.save": "metrics",
                                 "output.overwrite": True, "output.push_to_hub": None})
        metric, pruned_at = self.settings.metric, []

        def report(record: dict) -> str | None:
            value = record["validation"].get(metric)
            if value is None:
                return None
            trial.report(float(value), step=record["evaluation"])
            if trial.should_prune():
                pruned_at.append(record["evaluation"])
                return f"pruned by the {self.settings.pruner} pruner at evaluation {record['evaluation']}"
            return None

        with observe_evaluations(report):
            metrics = train(recipe, overwrite=True).metrics
        scores = metrics["validation"]
        if metric not in scores:
            raise NlpTransferError(f"tune.metric: '{metric}' is not among the run's validation scores "
                                   f"({', '.join(scores)}); set tune.metric to one of them")
        run = metrics["train"]
        if pruned_at and run["steps"] < run["planned_steps"]:
            trial.set_user_attr(REASON, run["stopped_by"])
            raise optuna.TrialPruned(run["stopped_by"])
        return float(scores[metric])


def failure_reason(error: BaseException) -> str:
    """A failed trial's reason, one line: an invalid trial recipe's problems, or the error's first line."""
    if isinstance(error, RecipeError):
        return ("invalid recipe: " + "; ".join(error.problems))[:500]
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"[:500]
