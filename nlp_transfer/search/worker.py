"""A search worker: trials one after another on the shared study until it has its ``n_trials`` or the time is up.

``tune --jobs N`` starts N of them as processes (``python -m nlp_transfer.search.worker SPEC``), each with its share
of the cores and passive OpenMP waiting (spinning threads of one worker slow the others down on a shared CPU);
``tune`` on another machine against the same storage is one more worker.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState
from transformers.utils import logging as transformers_logging

from .base import BaseRecipe
from .space import SearchSettings, read_search
from .study import (
    REASON,
    SURPLUS,
    counted_trials,
    mark_interrupted,
    open_storage,
    open_study,
)
from .trial import SECONDS, TRIALS_DIR, Objective

logger = logging.getLogger(__name__)


@dataclass
class WorkerSpec:
    """What a worker process needs to join the search (written as JSON by ``tune --jobs``)."""

    base: dict  # BaseRecipe's fields
    search_overrides: dict
    storage: str | None
    study: str
    study_dir: str
    deadline: float | None  # time.time() after which no new trial starts

    def base_recipe(self) -> BaseRecipe:
        fields = dict(self.base)
        return BaseRecipe(fields["raw"], fields["search"], fields["source"], Path(fields["base_dir"]))

    @staticmethod
    def base_fields(base: BaseRecipe) -> dict:
        return {**asdict(base), "base_dir": str(base.base_dir)}


def run_worker(base: BaseRecipe, settings: SearchSettings, study: optuna.Study, study_dir: Path,
               deadline: float | None) -> None:
    """Run trials until the study has ``n_trials`` counted trials or ``deadline`` passes."""
    for number in mark_interrupted(study):
        print(f"[tune] trial {number} was interrupted (its worker stopped); it does not count and another takes its place",
              flush=True)
    objective = Objective(base, settings, study_dir)
    while not objective.full:
        if deadline is not None and time.time() >= deadline:
            break
        if settings.n_trials is not None and counted_trials(study, waiting=False) >= settings.n_trials:
            break
        with _trial_output(study_dir / TRIALS_DIR / "logs"):
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[_progress(settings)])


@contextlib.contextmanager
def _trial_output(folder: Path):
    """The trials' log lines, prints and progress bars go to the worker's file (``trials/logs/worker-<pid>.log``);
    warnings still reach the console."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"worker-{os.getpid()}.log"
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    levels = [(h, h.level) for h in root.handlers]
    for console, _ in levels:
        console.setLevel(max(console.level, logging.WARNING))
    root.addHandler(handler)
    library_verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # its load reports: one per trial, the same each time
    try:
        with path.open("a", encoding="utf-8") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield  # the loop's progress bar writes to stderr: into the file too
    finally:
        transformers_logging.set_verbosity(library_verbosity)
        root.removeHandler(handler)
        handler.close()
        for console, level in levels:
            console.setLevel(level)


def _progress(settings: SearchSettings):
    """A line per finished trial: its state, value or reason, time, values, and the best so far."""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.user_attrs.get(SURPLUS):
            return
        seconds = trial.user_attrs.get(SECONDS, 0.0)
        if trial.state == TrialState.COMPLETE:
            outcome = f"{settings.metric}={trial.value:.4f}"
        else:
            outcome = f"{trial.state.name.lower()}: {trial.user_attrs.get(REASON, '')}"
        values = ", ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        done = counted_trials(study) if settings.n_trials is not None else None
        line = f"[tune] trial {trial.number} {outcome} in {seconds:.1f} s ({values})"
        best = best_trial(study)
        if best is not None:
            line += f"; best: trial {best.number}, {settings.metric}={best.value:.4f}"
        if done is not None:
            line += f"  [{done}/{settings.n_trials}]"
        print(line, file=sys.__stdout__, flush=True)

    return callback


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, or None before the first."""
    try:
        return study.best_trial
    except ValueError:
        return None


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one worker of `nlp-transfer tune --jobs N`")
    parser.add_argument("spec", help="the worker's JSON spec, written by tune")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--worker", type=int, default=1, help="this worker's number among tune --jobs' workers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    spec = WorkerSpec(**json.loads(Path(args.spec).read_text(encoding="utf-8")))
    base = spec.base_recipe()
    settings = read_search(base, spec.search_overrides)
    study = open_study(spec.study, open_storage(spec.storage, Path(spec.study_dir)), settings, worker=args.worker)
    run_worker(base, settings, study, Path(spec.study_dir), spec.deadline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
