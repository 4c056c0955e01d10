"""What every run needs around its stages: the run lock, the checks before any work, and the cleanup after a failure.

Single-task (``single.py``) and multi-task (``multitask/runner.py``) runs are peers: each passes its own stages
to ``guarded_run``. An interrupt (Ctrl-C; SIGTERM, which the CLI turns into one) is not a failure of the recipe: it
keeps the complete checkpoints as a failure does, says which, and stops with ``RunInterrupted``."""

from __future__ import annotations

import logging
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import RecipeError, RunInterrupted
from ..hub.push import require_token
from ..outputs.export import (
    check_output_dir,
    partial_dir,
)
from ..recipe.preflight import check_max_length
from ..recipe.schema import (
    MultiTaskRecipe,
    Recipe,
)
from ..tasks.metrics import preload_metrics
from . import checkpoints as ckpt
from .processes import is_main_launch, launched_processes
from .runlock import RunLock

logger = logging.getLogger(__name__)


@dataclass
class TrainOutput:
    """Where the model went and what it scored."""

    output_dir: Path
    metrics: dict


RunFunction = Callable[[Any, Path, Path, bool, dict], TrainOutput]
"""``run(recipe, out_dir, work, resume, run_info)``: a single-task or a multi-task run's stages."""


def guarded_run(recipe: Recipe | MultiTaskRecipe, run: RunFunction, *, resume: bool, overwrite: bool) -> TrainOutput:
    """Run ``run`` for ``recipe`` with everything every run needs around it: the run lock on ``output.dir`` (before
    anything touches it), the output-folder, token, metric, length and resume checks (before any work), and after a
    failure or an interrupt a work folder holding nothing but complete checkpoints.

    Raises:
        RunInterrupted: Ctrl-C or SIGTERM stopped the run (after the checks: saying which checkpoint it kept).
        OutputDirError: ``output.dir`` is unusable or another run holds it (before any work).
        RecipeError: ``--resume`` with keys that change the training trajectory (before any work).
    """
    out_dir = Path(recipe.output.dir).expanduser().resolve()
    lock = RunLock(out_dir) if is_main_launch() else None
    if lock is not None:
        lock.acquire()  # before anything touches the output or its work folder
    try:
        return _checked_run(recipe, run, out_dir, resume=resume, overwrite=overwrite)
    finally:
        if lock is not None:
            lock.release()


def _checked_run(recipe: Recipe | MultiTaskRecipe, run: RunFunction, out_dir: Path, *, resume: bool,
                 overwrite: bool) -> TrainOutput:
    check_output_dir(out_dir, overwrite or recipe.output.overwrite, resume)
    if recipe.output.push_to_hub is not None:
        require_token()  # fail before training, not after
    work = partial_dir(out_dir)
    for task_recipe in _task_recipes(recipe):
        preload_metrics(task_recipe.train.metrics or [], task_recipe.task.type)
        check_max_length(task_recipe)
    if resume and getattr(recipe, "adapt", None) is not None and recipe.adapt.self_training is not None:
        raise RecipeError(["--resume: not available with adapt.self_training (an interrupted self-training run starts "
                           "again from the beginning); run the recipe again without --resume"], recipe.source)
    if resume:
        ckpt.check_resume(work, recipe.to_dict(), launched_processes())
    run_info = ckpt.run_info(recipe.to_dict(), launched_processes())
    try:
        return run(recipe, out_dir, work, resume, run_info)
    except KeyboardInterrupt as interrupt:
        if not is_main_launch():
            raise
        raise _kept_after_interrupt(interrupt, work, out_dir) from None
    except BaseException:
        if is_main_launch():
            _clean_after_failure(work)
        raise


# ---------------------------------------------------------------------- helpers
def _task_recipes(recipe: Recipe | MultiTaskRecipe) -> list[Recipe]:
    """The single-task recipes a run trains: the recipe itself, or each task's of a multi-task recipe."""
    return [entry.recipe for entry in recipe.tasks] if isinstance(recipe, MultiTaskRecipe) else [recipe]


def _kept_after_interrupt(interrupt: KeyboardInterrupt, work: Path, out_dir: Path) -> RunInterrupted:
    """An interrupted run keeps its complete checkpoints and nothing else, as a failed one does, and says which."""
    kept = _keep_only_checkpoints(work)
    signal_number = getattr(interrupt, "signal_number", signal.SIGINT)  # a plain KeyboardInterrupt: Python's Ctrl-C
    newest = kept[-1] if kept else None
    return RunInterrupted(signal_number, out_dir, newest, ckpt.checkpoint_step(newest) if newest else None)


def _keep_only_checkpoints(work: Path) -> list[Path]:
    """Remove from the work folder everything but its complete checkpoints (the whole folder when there are none);
    return those, oldest first."""
    if not work.exists():
        return []
    kept = ckpt.complete_checkpoints(work)
    if not kept:
        shutil.rmtree(work, ignore_errors=True)
        return []
    for item in work.iterdir():
        if item.name != ckpt.CHECKPOINTS:
            shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
    for item in (work / ckpt.CHECKPOINTS).iterdir():
        # an interrupted checkpoint write (.step-N.incomplete), or an old one whose removal was interrupted
        if item.is_dir() and item not in kept:
            shutil.rmtree(item, ignore_errors=True)
    return kept


def _clean_after_failure(work: Path) -> None:
    """A failed run leaves nothing but complete checkpoints (for ``--resume``), and says so."""
    kept = _keep_only_checkpoints(work)
    if not kept:
        return
    logger.warning("The run failed; its checkpoints are kept in %s (newest: %s). Fix the cause and rerun the same "
                   "command with --resume to continue, or with --overwrite to start over", work / ckpt.CHECKPOINTS, kept[-1].name)
