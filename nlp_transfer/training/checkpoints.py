"""Checkpoints of the training loop: written whole or not at all, resumed exactly, checked against the recipe.

A checkpoint is ``<work>/checkpoints/step-NNNNNNNN/``: accelerate's state (model, optimizer,
scheduler, every rank's RNG), the loop counters, the log and the best weights so far, the run's
recipe (``run.json``), and, written last, ``checkpoint.json`` listing every file and its size.
Everything is written into a hidden ``.step-N.incomplete`` sibling first and renamed at the end,
so a kill at any moment leaves either the whole checkpoint or none; ``--resume`` takes the newest
complete one and says which.

A resumed run must follow the trajectory the checkpoint started: the recipe keys that decide it
(``TRAJECTORY_FREE_KEYS`` lists the ones that do not) must be the same, or resume stops with every
difference listed. After a non-finite loss, the learning-rate keys may change too
(``AFTER_DIVERGENCE_KEYS``): that is what "lower train.lr and resume" needs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from ..errors import NothingToResumeError, RecipeError, TrainingError

logger = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
STATE_FILE = "loop_state.json"
BEST_WEIGHTS = "best_weights.safetensors"
LOG_FILE = "train_log.jsonl"
RUN_FILE = "run.json"  # the recipe (as loaded, before the model is built) and the process count
COMPLETE_FILE = "checkpoint.json"  # written last: without it (or with other file sizes) a checkpoint is incomplete
DIVERGED_FILE = "diverged.json"  # in checkpoints/: a non-finite loss stopped the run after the newest checkpoint

# Keys that never change what is trained: logging, patience, evaluation batch size, where the output goes.
TRAJECTORY_FREE_KEYS = ("train.log_every", "train.report_to", "train.patience", "train.checkpoint_every",
                        "train.eval_batch_size", "output.", "card.")
# Keys a resume may change after a non-finite loss stopped the run (the fix the error suggests).
AFTER_DIVERGENCE_KEYS = ("train.lr", "train.head_lr", "train.warmup_ratio", "train.scheduler", "train.max_grad_norm")


# ---------------------------------------------------------------------- writing
def save_checkpoint(accelerator, work_dir: Path, state, run_info: dict, keep: int = 2) -> None:
    """Write ``checkpoints/step-N`` whole or not at all, then keep only the newest ``keep`` complete ones."""
    root = Path(work_dir) / CHECKPOINTS
    name = f"step-{state.global_step:08d}"
    tmp = root / f".{name}.incomplete"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=1))
        (tmp / RUN_FILE).write_text(json.dumps(run_info, indent=1, default=str))
        if (work_dir / LOG_FILE).is_file():
            shutil.copyfile(work_dir / LOG_FILE, tmp / LOG_FILE)
        if (work_dir / BEST_WEIGHTS).is_file():
            _link_or_copy(work_dir / BEST_WEIGHTS, tmp / BEST_WEIGHTS)
        files = {f.relative_to(tmp).as_posix(): f.stat().st_size for f in sorted(tmp.rglob("*")) if f.is_file()}
        _write_synced(tmp / COMPLETE_FILE, json.dumps({"step": state.global_step, "files": files}, indent=1))
        shutil.rmtree(root / name, ignore_errors=True)
        tmp.rename(root / name)
        (root / DIVERGED_FILE).unlink(missing_ok=True)  # a newer good state supersedes an earlier divergence
        for old in complete_checkpoints(work_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def save_best_weights(weights: dict, work_dir: Path) -> None:
    """``best_weights.safetensors`` via a temporary sibling and a rename: a kill mid-write keeps the previous best whole."""
    from safetensors.torch import save_file

    tmp = Path(work_dir) / f".{BEST_WEIGHTS}.tmp"
    save_file(weights, str(tmp))
    os.replace(tmp, Path(work_dir) / BEST_WEIGHTS)


# ---------------------------------------------------------------------- reading
def complete_checkpoints(work_dir: Path) -> list[Path]:
    """The complete checkpoints of a work folder, oldest first."""
    return [c for c in sorted((Path(work_dir) / CHECKPOINTS).glob("step-*")) if incomplete_reason(c) is None]


def latest_checkpoint(work_dir: Path, checkpoint_every: int = 0) -> Path:
    """The newest complete checkpoint of a work folder.

    Args:
        checkpoint_every: The recipe's ``train.checkpoint_every`` (0: unset), for the advice when there is none.

    Raises:
        NothingToResumeError: There is none.
    """
    checkpoints = complete_checkpoints(work_dir)
    if not checkpoints:
        raise NothingToResumeError(_nothing_to_resume(Path(work_dir) / CHECKPOINTS, checkpoint_every))
    return checkpoints[-1]


def _nothing_to_resume(root: Path, checkpoint_every: int) -> str:
    if not checkpoint_every:
        return (f"--resume: no checkpoint in {root}; set train.checkpoint_every to save checkpoints, or run without "
                "--resume to start over")
    return (f"--resume: no checkpoint in {root}: no checkpoint was reached yet. With train.checkpoint_every="
            f"{checkpoint_every} the first one is written after step {checkpoint_every}, and the earlier run stopped "
            "before it, so there is nothing to resume. Run the same command again without --resume: the run starts "
            "again from the beginning")


def checkpoint_step(folder: Path) -> int:
    """The training step a checkpoint folder (``step-NNNNNNNN``) was taken at."""
    return int(Path(folder).name.removeprefix("step-"))


def incomplete_reason(folder: Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when it is complete."""
    marker = folder / COMPLETE_FILE
    if not marker.is_file():
        return f"no {COMPLETE_FILE} (its write was interrupted)"
    try:
        files = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError, TypeError):
        return f"{COMPLETE_FILE} is unreadable"
    for name, size in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return f"{name} is missing or has another size than when it was written"
    return None


def read_run_info(checkpoint: Path) -> dict:
    """What a checkpoint recorded about its run; empty for checkpoints written before ``run.json`` existed."""
    path = checkpoint / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def read_divergence(work_dir: Path) -> dict | None:
    """What ``diverged.json`` says, when a non-finite loss stopped the run after its newest checkpoint."""
    path = Path(work_dir) / CHECKPOINTS / DIVERGED_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def run_info(recipe_dict: dict, num_processes: int) -> dict:
    """What every checkpoint records about its run, for ``check_resume`` to compare."""
    return {"recipe": recipe_dict, "num_processes": num_processes}


def check_resume(work_dir: Path, recipe_dict: dict, num_processes: int | None = None) -> Path:
    """Before any work: the checkpoint ``--resume`` will use, after checking the recipe still matches it.

    Args:
        work_dir: The run's work folder (``.<output>.partial``).
        recipe_dict: The recipe as loaded (``Recipe.to_dict()`` before the model is built).
        num_processes: This run's process count; None skips that check.

    Raises:
        NothingToResumeError: No complete checkpoint (the message says why: none due yet, or none asked for).
        RecipeError: Keys that decide the training trajectory differ from the checkpoint's recipe (all listed).
    """
    checkpoint = latest_checkpoint(work_dir, (recipe_dict.get("train") or {}).get("checkpoint_every") or 0)
    info = read_run_info(checkpoint)
    if not info:
        return checkpoint
    free = TRAJECTORY_FREE_KEYS + (AFTER_DIVERGENCE_KEYS if read_divergence(work_dir) else ())
    changed = [f"{key}: the checkpoint was trained with {old!r}; now {new!r}"
               for key, old, new in recipe_differences(info.get("recipe", {}), recipe_dict)
               if not key.startswith(free)]
    if num_processes is not None and info.get("num_processes", num_processes) != num_processes:
        changed.append(f"number of processes: the checkpoint was trained on {info['num_processes']}; now {num_processes} "
                       "(the batch order and the steps per epoch depend on it)")
    if changed:
        raise RecipeError(changed, f"--resume from {checkpoint}", hint=(
            "A resumed run must train exactly as the interrupted one: put these keys back as they were (they are in "
            f"{checkpoint / RUN_FILE}), or start over with --overwrite. Keys that may change on resume: "
            f"{', '.join(k.rstrip('.') + ('.*' if k.endswith('.') else '') for k in TRAJECTORY_FREE_KEYS)}"
            + ("" if read_divergence(work_dir) else f"; after a non-finite loss also {', '.join(AFTER_DIVERGENCE_KEYS)}")))
    return checkpoint


def recipe_differences(old: dict, new: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """``(dotted key, old value, new value)`` for every leaf that differs between two recipe dicts."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(recipe_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append((f"{prefix}{key}", a, b))
    return out


# ---------------------------------------------------------------------- resuming
def load_checkpoint(accelerator, work_dir: Path, state_cls):
    """Load the newest complete checkpoint (incomplete ones are skipped, said and removed); restore the log and
    best weights it holds into the work folder. Returns the loop state (``state_cls``) it recorded."""
    root = Path(work_dir) / CHECKPOINTS
    if accelerator.is_main_process:
        for folder in sorted(root.glob("*step-*"), reverse=True):
            reason = incomplete_reason(folder) if not folder.name.startswith(".") else "an interrupted write"
            if reason is not None:
                logger.warning("Skipping checkpoint %s: %s; removing it", folder, reason)
                shutil.rmtree(folder, ignore_errors=True)
    accelerator.wait_for_everyone()
    checkpoint = latest_checkpoint(work_dir)
    accelerator.load_state(str(checkpoint))
    state = state_cls(**json.loads((checkpoint / STATE_FILE).read_text()))
    if accelerator.is_main_process:
        for name in (LOG_FILE, BEST_WEIGHTS):
            (work_dir / name).unlink(missing_ok=True)
            if (checkpoint / name).is_file():
                shutil.copyfile(checkpoint / name, work_dir / name)
    accelerator.wait_for_everyone()
    logger.info("Resuming from checkpoint %s (step %d, epoch %d, batch %d of that epoch)", checkpoint, state.global_step,
                state.epoch + 1, state.batches_in_epoch)
    return state


def apply_learning_rates(optimizer, scheduler, rates: list[float]) -> None:
    """Give a resumed schedule the recipe's learning rates (they may differ only after a non-finite loss).

    A checkpoint restores the scheduler's base rates as they were; where the recipe now asks for
    others, each group continues from the new base at the same step.
    """
    old = list(scheduler.base_lrs)
    if old == rates:
        return
    scheduler.base_lrs = list(rates)
    for group, base, factor in zip(optimizer.param_groups, rates, scheduler.lr_lambdas):
        group["initial_lr"] = base
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
    logger.warning("Resuming with other learning rates than the checkpoint's: %s -> %s (per parameter group)", old, rates)


# ---------------------------------------------------------------------- divergence
def diverged(accelerator, work_dir: Path, state, loss: float, largest_weight: float, cfg) -> TrainingError:
    """The error for a non-finite loss, after keeping only the checkpoints from before the divergence.

    The weights that gave the non-finite loss came out of the last optimizer step, so a checkpoint
    taken at that step is no good state and is removed; an older one was followed by a finite loss.
    """
    root = Path(work_dir) / CHECKPOINTS
    if accelerator.is_main_process:
        for folder in complete_checkpoints(work_dir):
            if checkpoint_step(folder) >= state.global_step:
                shutil.rmtree(folder, ignore_errors=True)
    accelerator.wait_for_everyone()
    good = complete_checkpoints(work_dir)
    what = (f"non-finite training loss ({loss}) at step {state.global_step + 1}, epoch {state.epoch + 1}. The weights it "
            f"was computed with are already diverged (largest magnitude {largest_weight:.3g}), so they are not kept")
    advice = f"Lower train.lr (now {cfg.lr:g}, e.g. train.lr={cfg.lr / 10:g})"
    if not good:
        return TrainingError(f"{what}, and no checkpoint was saved before the divergence (train.checkpoint_every="
                             f"{cfg.checkpoint_every}): the run must restart. {advice} or set train.max_grad_norm=1.0, "
                             "and rerun without --resume")
    if accelerator.is_main_process:
        (root / DIVERGED_FILE).write_text(json.dumps({"step": state.global_step + 1, "loss": str(loss),
                                                      "checkpoint": good[-1].name}))
    return TrainingError(f"{what}. The last good state is checkpoint {good[-1].name} in {root} (saved before the "
                         f"divergence). {advice} and rerun with --resume: after a non-finite loss, --resume accepts new "
                         f"{', '.join(AFTER_DIVERGENCE_KEYS)}")


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link (free; the source is only ever replaced by rename, never rewritten in place), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
