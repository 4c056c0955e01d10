"""The study on Optuna's own storages, samplers and pruners, and which of its trials count toward ``n_trials``.

Storage: a journal file in the study folder by default (a study survives a kill, and ``tune`` run again continues it);
``--storage`` takes an RDB URL (``sqlite:///study.db`` for one machine, ``postgresql://...`` / ``mysql://...`` for
several) or a journal file path (``*.journal`` / ``*.log``, also on a shared file system). Workers on any number of
machines join one study through it; Optuna numbers the trials in the order they were asked for, so the rule "a trial
runs only when fewer than ``n_trials`` counted trials come before it" splits the trials between workers with none run
twice and no lock of our own.
"""

from __future__ import annotations

import os
import random
import socket
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from ..errors import RecipeError
from .space import SearchSettings, grid_space

JOURNAL_FILE = "study.journal"
# user attributes this package sets on trials
WORKER = "worker"  # "host:pid" of the process that ran it
REASON = "reason"  # why a trial failed or was pruned, in words
INTERRUPTED = "interrupted"  # the process running it died or was stopped: it does not count, a later trial replaces it
SURPLUS = "surplus"  # asked for after the study had its n_trials (a race between workers): never run, never counted
_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL)


def open_storage(url: str | None, study_dir: Path):
    """Optuna's storage for ``url`` (None: the journal file in ``study_dir``).

    Raises:
        RecipeError: The storage cannot be opened (what, the URL, the fix).
    """
    try:
        if url is None or not _is_url(url):
            path = Path(url).expanduser() if url else study_dir / JOURNAL_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        return _rdb_storage(url)
    except Exception as error:  # noqa: BLE001 - SQLAlchemy, driver and file errors all mean the same here
        raise RecipeError([(f"--storage: cannot open {url or study_dir / JOURNAL_FILE!r}: {type(error).__name__}: "
                           f"{str(error).splitlines()[0] if str(error) else ''}; give an RDB URL such as "
                           "sqlite:///study.db or postgresql://user@host/db (its driver installed), or the path of a "
                           "journal file in a writable folder")], "<command line>") from None


def _rdb_storage(url: str, attempts: int = 5) -> RDBStorage:
    """Heartbeats let a worker on another machine find a trial whose worker died (``fail_stale_trials``). Workers
    started together race to create the schema: a few tries, a moment apart."""
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, heartbeat_interval=60, grace_period=180)
        except Exception:  # noqa: BLE001 - "table already exists", "database is locked": another worker at work
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def _is_url(value: str) -> bool:
    return "://" in value


def open_study(name: str, storage, settings: SearchSettings, worker: int = 0) -> optuna.Study:
    """Create the study, or load it when it exists (another worker, an earlier run): its direction must match.

    The sampler is seeded with ``settings.seed`` for the first worker of a new study, so that a one-worker search is
    reproducible; any other worker (``worker`` > 0, or a study that already has trials: a rerun, another machine)
    draws its own seed, or every worker would propose the same values.
    """
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial's reason is in its progress line and report
    try:
        earlier = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # no such study yet
        earlier = []
    fresh = worker == 0 and not earlier
    seed = settings.seed if fresh else random.SystemRandom().randrange(2**31)
    study = optuna.create_study(study_name=name, storage=storage, direction=settings.direction, load_if_exists=True,
                                sampler=build_sampler(settings, seed), pruner=build_pruner(settings))
    if study.direction.name.lower() != settings.direction:
        raise RecipeError([(f"tune.direction: the study '{name}' in this storage was created to {study.direction.name.lower()}"
                           f" and this search would {settings.direction}; use another --study name or the same direction")],
                          "<command line>")
    return study


def build_sampler(settings: SearchSettings, seed: int) -> optuna.samplers.BaseSampler:
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if settings.sampler == "grid":
        return optuna.samplers.GridSampler(grid_space(settings), seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def build_pruner(settings: SearchSettings) -> optuna.pruners.BasePruner:
    """The budget is the evaluation count (epochs, when the loop evaluates once per epoch)."""
    options = settings.pruner_options
    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=options["startup_trials"],
                                           n_warmup_steps=options["warmup_evaluations"])
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=options["min_evaluations"],
                                              reduction_factor=options["reduction_factor"])
    if settings.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=options["min_evaluations"],
                                                      reduction_factor=options["reduction_factor"])
    return optuna.pruners.NopPruner()


def counts(trial: FrozenTrial) -> bool:
    """Whether a trial counts toward ``n_trials``: run or running, and not interrupted nor surplus."""
    return trial.state in _COUNTED and not trial.user_attrs.get(INTERRUPTED) and not trial.user_attrs.get(SURPLUS)


def counted_trials(study: optuna.Study, before: int | None = None, waiting: bool = True) -> int:
    """Counted trials (numbered below ``before``); ``waiting=False`` leaves out the queued ones (``enqueue_trial``),
    which a worker still has to run."""
    trials = study.get_trials(deepcopy=False)
    return sum(1 for t in trials if counts(t) and (before is None or t.number < before)
               and (waiting or t.state != TrialState.WAITING))


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def mark_interrupted(study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a process of this machine that no longer runs (killed, or the machine restarted):
    marked failed and interrupted, so they stop counting. Returns their numbers."""
    host = socket.gethostname()
    marked = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = str(trial.user_attrs.get(WORKER, "")).rpartition(":")
        if worker_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        study._storage.set_trial_user_attr(trial._trial_id, REASON, f"interrupted: its worker ({host}:{pid}) stopped")
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # another worker marked it first
            continue
        marked.append(trial.number)
    return marked


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
