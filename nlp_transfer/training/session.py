"""What every run needs around its stages: the run lock, the checks before any work, and the cleanup after a failure.

Single-task (``single.py``) and multi-task (``multitask/runner.py``) runs are peers: each passes its own stages
to ``guarded_run``."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import RecipeError
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
    failure a work folder holding nothing but complete checkpoints.

    Raises:
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
    except BaseException:
        if is_main_launch():
            _clean_after_failure(work)
        raise


# ---------------------------------------------------------------------- helpers
def _task_recipes(recipe: Recipe | MultiTaskRecipe) -> list[Recipe]:
    """The single-task recipes a run trains: the recipe itself, or each task's of a multi-task recipe."""
    return [entry.recipe for entry in recipe.tasks] if isinstance(recipe, MultiTaskRecipe) else [recipe]


def _clean_after_failure(work: Path) -> None:
    """A failed run leaves nothing but complete checkpoints (for ``--resume``), and says so."""
    if not work.exists():
        return
    kept = ckpt.complete_checkpoints(work)
    if not kept:
        shutil.rmtree(work, ignore_errors=True)
        return
    for item in work.iterdir():
        if item.name != ckpt.CHECKPOINTS:
            shutil.rmtree(item, ignore_errors=True) if item.is_dir() else item.unlink(missing_ok=True)
    for item in (work / ckpt.CHECKPOINTS).iterdir():
        if item.name.startswith("."):  # an interrupted checkpoint write
            shutil.rmtree(item, ignore_errors=True)
    logger.warning("The run failed; its checkpoints are kept in %s (newest: %s). Fix the cause and rerun the same "
                   "command with --resume to continue, or with --overwrite to start over", work / ckpt.CHECKPOINTS, kept[-1].name)
