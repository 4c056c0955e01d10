"""``tune``: validate the search, open (or rejoin) the study, run the workers, write the study folder, and optionally
train the best recipe like ``train``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import TrainingError
from ..training.session import TrainOutput
from ..training.single import train
from .base import BaseRecipe
from .report import BEST_RECIPE, write_report
from .space import read_search
from .study import JOURNAL_FILE, open_storage, open_study
from .worker import WorkerSpec, run_worker

logger = logging.getLogger(__name__)
STUDY_SUFFIX = "-tune"  # the study folder's default: beside the recipe's output.dir


@dataclass
class SearchResult:
    """Where the study's files are, its summary (``study.json``), and the retrained output (``retrain=True``)."""

    study_dir: Path
    summary: dict
    best_recipe: Path | None
    retrained: TrainOutput | None = None


def tune(recipe: str | Path | dict, overrides=None, *, trials: int | None = None, timeout: float | None = None,
         jobs: int = 1, storage: str | None = None, study: str | None = None, out: str | Path | None = None,
         retrain: bool = False, overwrite: bool = False) -> SearchResult:
    """Search the recipe's ``tune.space`` with Optuna: every trial a real run through the one loop (metrics only),
    pruned on its evaluations; the study kept in ``storage`` so that a rerun, or workers elsewhere, continue it.

    Args:
        recipe: A YAML path or a dict with a ``tune`` section (``search/space.py``).
        overrides: Dotted ``key=value`` strings or a dict for the recipe (``tune.n_trials=5`` too).
        trials, timeout: The study's total trials (whatever the number of workers) and this command's time budget in
            seconds (no new trial starts after it); they replace ``tune.n_trials`` / ``tune.timeout``.
        jobs: Worker processes on this machine, the cores split between them.
        storage: An RDB URL (``sqlite:///study.db``, ``postgresql://...``) or a journal file path; default: the
            journal file ``study.journal`` in the study folder.
        study: The study's name (default: the recipe file's name); workers join a study by storage and name.
        out: The study folder (default: the recipe's ``output.dir`` + ``-tune``).
        retrain: Train ``best.yaml`` after the search, into the recipe's ``output.dir``, exported like ``train``.
        overwrite: With ``retrain``: replace an existing output.

    Raises:
        RecipeError: The recipe, the search space or the storage is invalid (every problem, before any trial).
        TrainingError: No trial completed.
    """
    base = BaseRecipe.read(recipe, overrides)
    search_overrides = {"n_trials": trials, "timeout": timeout}
    settings = read_search(base, search_overrides)
    output_dir = Path(base.load().output.dir)
    study_dir = Path(out).expanduser().resolve() if out else output_dir.with_name(output_dir.name + STUDY_SUFFIX)
    name = study or (Path(base.source).stem if base.source != "<dict>" else "search")
    storage_obj = open_storage(storage, study_dir)
    optuna_study = open_study(name, storage_obj, settings)
    deadline = time.time() + settings.timeout if settings.timeout else None
    print(f"[tune] study '{name}' in {storage or study_dir / JOURNAL_FILE}: {settings.n_trials or 'unbounded'} trials"
          f"{f', {settings.timeout:g} s' if settings.timeout else ''}, {jobs} worker(s) here; folder {study_dir}", flush=True)
    if jobs <= 1:
        run_worker(base, settings, optuna_study, study_dir, deadline)
    else:
        spec = WorkerSpec(WorkerSpec.base_fields(base), search_overrides, storage, name, str(study_dir), deadline)
        _run_processes(spec, jobs, study_dir)
    summary = write_report(optuna_study, settings, base, study_dir, storage or str(study_dir / JOURNAL_FILE))
    best = study_dir / BEST_RECIPE if summary["best"] else None
    if best is None:
        raise TrainingError(f"no trial of the study '{name}' completed; their reasons are in {study_dir / 'report.md'} "
                            f"and {study_dir / 'trials.csv'}")
    print(f"[tune] best: trial {summary['best']['number']}, {settings.metric}={summary['best']['value']:.4f} "
          f"({', '.join(f'{k}={v}' for k, v in summary['best']['params'].items())}); recipe: {best}", flush=True)
    retrained = train(best, overwrite=overwrite) if retrain else None
    return SearchResult(study_dir, summary, best, retrained)


def _run_processes(spec: WorkerSpec, jobs: int, study_dir: Path) -> None:
    """``jobs`` worker processes, each with its share of the cores and OpenMP threads that sleep while they wait."""
    study_dir.mkdir(parents=True, exist_ok=True)
    spec_file = study_dir / "worker.json"
    spec_file.write_text(json.dumps(asdict(spec), indent=1), encoding="utf-8")
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE",
           "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, "-m", "nlp_transfer.search.worker", str(spec_file), "--threads", str(threads)]
    workers = [subprocess.Popen([*command, "--worker", str(i)], env=env) for i in range(jobs)]
    try:
        codes = [w.wait() for w in workers]
    except BaseException:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait()
        raise
    failed = [code for code in codes if code != 0]
    if failed:
        logger.warning("%d of %d workers exited with an error (codes %s); the study keeps what they finished",
                       len(failed), jobs, failed)
