"""THE training loop. Every strategy trains here; no other file steps an optimizer.

Accelerate does devices, processes, mixed precision and gradient accumulation; the
strategy supplies the parameter groups, the batches, the loss and its schedules (``on_epoch``,
``on_step``, with a ``StepContext``); the task scores evaluations. The loop evaluates (every
epoch or every N steps), keeps the best model, stops early, checkpoints and resumes, and
stops on a non-finite loss. The optimizer holds every parameter that may ever train, and the
best weights and checkpoints hold all of them, so a schedule that unfreezes layers later
restores and resumes exactly.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from safetensors.torch import load_file
from tqdm.auto import tqdm

from ..errors import TrainingError
from ..evaluation.metrics import greater_is_better
from ..recipe.schema import TrainConfig
from ..strategies.base import StepContext
from ..tasks import concat_rows
from ..tasks.spec import IGNORE_INDEX, TaskSpec
from . import checkpoints as ckpt
from .checkpoints import BEST_WEIGHTS, LOG_FILE
from .heap import freed_memory_kept
from .hooks import stop_reason
from .schedules import build_scheduler

logger = logging.getLogger(__name__)


@dataclass
class LoopState:
    """Counters and history that a checkpoint must carry for an exact resume."""

    global_step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    samples_seen: int = 0
    train_seconds: float = 0.0
    best_score: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    history: list[dict] = field(default_factory=list)
    stopped_by: str | None = None  # why the loop stopped before its last step: "patience", or an observer's reason


@dataclass
class LoopResult:
    """What a finished loop reports."""

    model: torch.nn.Module
    state: LoopState
    best_metrics: dict[str, float]
    stopped_early: bool
    total_steps: int
    first_token_last_layer: bool = False  # whether the last layer computed position 0 alone (first_token.py)


class Evaluation:
    """What the loop scores the model on, and which score picks the best model by default.

    This one: the validation loader of one task, scored with its metrics (the first picks the best model).
    A multi-task run scores each task's own loader (``multitask.evaluation``).
    """

    def __init__(self, loader, task: TaskSpec, metric_names: list[str]):
        self.loader, self.task, self.metric_names = loader, task, metric_names
        self.default_metric = metric_names[0] if metric_names else "loss"

    def prepare(self, accelerator: Accelerator) -> None:
        self.loader = accelerator.prepare(self.loader)

    def __call__(self, model, strategy, accelerator: Accelerator) -> dict[str, float]:
        return evaluate_loader(model, strategy, self.loader, accelerator, self.task, self.metric_names)


@freed_memory_kept()  # a step's large buffers (the word-embedding gradient) reuse memory instead of faulting it in
def run_loop(model, strategy, train_loader, eval_loader, cfg: TrainConfig, accelerator: Accelerator, *,
             task: TaskSpec | None = None, metric_names: list[str] | None = None, work_dir: Path, resume: bool = False,
             run_info: dict | None = None, evaluation: Evaluation | None = None, tracker_step_offset: int = 0) -> LoopResult:
    """Train ``model`` with ``strategy.loss`` and return the best validation metrics.

    Args:
        model: The module the strategy prepared.
        strategy: Supplies ``param_groups``, ``loss``, ``logits``, ``on_epoch`` and ``on_step``.
        train_loader, eval_loader: Unprepared dataloaders; the train loader's batch
            sampler must have ``set_epoch``.
        cfg: The recipe's ``train`` section (strategy defaults filled in).
        accelerator: Built with the recipe's mixed precision and accumulation.
        task, metric_names: How to score ``eval_loader``'s evaluations.
        evaluation: Instead of ``eval_loader``, ``task`` and ``metric_names``: what to score (``Evaluation``).
        work_dir: Where checkpoints, the best weights and the JSONL log go.
        resume: Continue from the newest complete checkpoint in ``work_dir`` (see ``checkpoints.py``).
        run_info: What every checkpoint records about the run (the recipe...), for ``--resume`` to check.
        tracker_step_offset: Added to the step the trackers (tensorboard, wandb) get: a later loop of the same run
            (a self-training round) continues the curves instead of drawing over the first loop's steps.
    """
    sampler = train_loader.batch_sampler
    groups = strategy.param_groups(model, cfg.lr, cfg.head_lr, cfg.weight_decay)
    # fused AdamW: one kernel for all parameters; on CPU about 2-3x faster than the default per-tensor loop
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=True)
    may_train = [p for g in groups for p in g["params"]]
    if strategy.changes_trainable:
        _wrap_all_that_may_train(accelerator, may_train)
    evaluation = evaluation or Evaluation(eval_loader, task, metric_names or [])
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    evaluation.prepare(accelerator)
    updates_per_epoch = math.ceil(len(train_loader) / cfg.grad_accum_steps)
    total_steps = max(1, math.ceil(cfg.epochs * updates_per_epoch))
    scheduler = build_scheduler(optimizer, cfg, total_steps, strategy.lr_factors(groups, updates_per_epoch, total_steps))
    accelerator.register_for_checkpointing(scheduler)
    state = ckpt.load_checkpoint(accelerator, work_dir, LoopState) if resume else LoopState()
    if resume:  # after a non-finite loss the recipe may lower the learning rates
        ckpt.apply_learning_rates(optimizer, scheduler, [g["lr"] for g in groups])
    selector = _Selector(cfg, evaluation.default_metric, _names_of(accelerator.unwrap_model(model), may_train))
    log = _JsonlLog(work_dir / LOG_FILE, accelerator, tracker_step_offset)

    def evaluate():
        scores = evaluation(model, strategy, accelerator)
        return scores, strategy.evaluation_extras(accelerator.unwrap_model(model))

    context = lambda: StepContext(state.global_step, total_steps, state.epoch, updates_per_epoch)  # noqa: E731
    bar = tqdm(total=total_steps, initial=state.global_step, desc="train", disable=not accelerator.is_local_main_process)
    stopped_early = False
    while state.global_step < total_steps and not stopped_early:
        sampler.set_epoch(state.epoch)
        # accelerate's loader re-sets the sampler's epoch from its own pass counter on every pass; after a
        # resume that counter restarts at 0, so it must follow ours or later epochs replay epoch 0's order
        train_loader.set_epoch(state.epoch)
        strategy.on_epoch(accelerator.unwrap_model(model), context())
        model.train()
        batches = accelerator.skip_first_batches(train_loader, state.batches_in_epoch) if state.batches_in_epoch else train_loader
        started = time.perf_counter()
        for batch in batches:
            loss, extra = _train_step(model, strategy, batch, optimizer, scheduler, may_train, cfg, accelerator, state,
                                      work_dir, context())
            state.batches_in_epoch += 1
            state.samples_seen += batch_rows(batch) * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            state.global_step += 1
            strategy.on_step(accelerator.unwrap_model(model), context())
            bar.update(1)
            if state.global_step % cfg.log_every == 0:
                log.write({"step": state.global_step, "epoch": state.epoch + 1, "loss": accelerator.reduce(loss.detach(), "mean").item(),
                           "lr": scheduler.get_last_lr()[0], **extra})
            if cfg.eval_every and state.global_step % cfg.eval_every == 0:
                state.train_seconds += time.perf_counter() - started
                stopped_early = selector.update(state, *evaluate(), model, accelerator, work_dir, log)
                model.train()
                started = time.perf_counter()
            if cfg.checkpoint_every and state.global_step % cfg.checkpoint_every == 0:
                ckpt.save_checkpoint(accelerator, work_dir, state, run_info or {})
            if stopped_early or state.global_step >= total_steps:
                break
        state.train_seconds += time.perf_counter() - started
        if not cfg.eval_every and not stopped_early:
            stopped_early = selector.update(state, *evaluate(), model, accelerator, work_dir, log)
        state.epoch, state.batches_in_epoch = state.epoch + 1, 0
    if cfg.eval_every and (not state.history or state.history[-1]["step"] != state.global_step):
        selector.update(state, *evaluate(), model, accelerator, work_dir, log)
    bar.close()
    best = selector.restore_best(state, model, accelerator, work_dir)
    return LoopResult(model, state, best, stopped_early, total_steps)


def _wrap_all_that_may_train(accelerator: Accelerator, may_train: list) -> None:
    """Before a schedule's first freeze: DDP syncs only the parameters that require grad when it wraps the model,
    and a frozen group finds no gradient in some steps. ``on_epoch`` applies the schedule right after."""
    for param in may_train:
        param.requires_grad_(True)
    if accelerator.num_processes > 1 and accelerator.ddp_handler is None:
        from accelerate.utils import DistributedDataParallelKwargs

        accelerator.ddp_handler = DistributedDataParallelKwargs(find_unused_parameters=True)


def batch_rows(batch: dict) -> int:
    """How many examples a batch holds (its first tensor's first dimension)."""
    return next(len(v) for v in batch.values() if isinstance(v, torch.Tensor))


def _names_of(module, params: list) -> list[str]:
    ids = {id(p) for p in params}
    return [name for name, p in module.named_parameters() if id(p) in ids]


def _train_step(model, strategy, batch, optimizer, scheduler, trainable, cfg, accelerator, state, work_dir, ctx):
    """One micro-batch: forward, finite-loss guard, backward, and (when due) an optimizer step."""
    with accelerator.accumulate(model):
        # the run's precision for the whole loss, not only the prepared model's forward: a strategy that calls the
        # encoder's modules itself (adapt's features for the alignment term) trains in bf16 too
        with accelerator.autocast():
            loss, extra = strategy.loss(model, batch, ctx)
        # every process decides together: a rank that stopped alone would leave the others waiting in backward
        bad = torch.tensor(0.0 if torch.isfinite(loss.detach()).all() else 1.0, device=loss.device)
        if accelerator.reduce(bad, "sum").item() > 0:
            largest = max((p.detach().abs().max().item() for p in trainable if p.numel()), default=0.0)
            raise ckpt.diverged(accelerator, work_dir, state, loss.detach().float().mean().item(), largest, cfg)
        accelerator.backward(loss)
        if accelerator.sync_gradients and cfg.max_grad_norm:
            _clip_grad_norm(accelerator, trainable, cfg.max_grad_norm)
        optimizer.step()
        if accelerator.sync_gradients and not accelerator.optimizer_step_was_skipped:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return loss, extra


_PLAIN_GRADIENTS = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)


def _clip_grad_norm(accelerator: Accelerator, params: list, max_norm: float) -> None:
    """accelerate's ``clip_grad_norm_`` without its pass over every gradient when none needs clipping.

    torch scales the gradients by min(1, max_norm / norm) at every step, a multiply of every gradient by 1 in the
    usual step: 4-7 ms of a 210 ms MiniLM step on 2 CPU cores. The norm is the same foreach norm torch computes;
    sharded and compiled setups (FSDP, DeepSpeed, XLA) keep accelerate's own clipping.
    """
    if accelerator.distributed_type not in _PLAIN_GRADIENTS:
        accelerator.clip_grad_norm_(params, max_norm)
        return
    accelerator.unscale_gradients()
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads, foreach=True)
    if not total + 1e-6 <= max_norm:  # torch's factor, max_norm / (norm + 1e-6), is below 1 (a nan norm scales too)
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total, foreach=True)


def predict_loader(model, strategy, loader, accelerator, task: TaskSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of every row of a (prepared) dataloader, gathered across processes, in the loader's order."""
    model.eval()
    all_logits, all_labels = [], []
    with torch.inference_mode():
        for batch in loader:
            logits, labels = task.kind.gather(accelerator, strategy.logits(model, batch).float(), batch["labels"])
            all_logits.append(logits.cpu())
            all_labels.append(labels.cpu())
    return concat_rows(all_logits, 0.0), concat_rows(all_labels, IGNORE_INDEX)


def evaluate_loader(model, strategy, loader, accelerator, task: TaskSpec, metric_names: list[str]) -> dict[str, float]:
    """Loss and metrics over a whole (prepared) dataloader, gathered across processes."""
    logits, labels = predict_loader(model, strategy, loader, accelerator, task)
    scores = {"loss": task.loss(logits, labels).item()}
    scores.update(task.kind.compute_metrics(metric_names, task.predictions(logits.numpy()), labels.numpy(), task))
    return scores


class _Selector:
    """Best-model selection on one metric, and early stopping on patience."""

    def __init__(self, cfg: TrainConfig, default_metric: str, weight_names: list[str]):
        self.metric = cfg.best_metric or default_metric
        self.sign = 1.0 if greater_is_better(self.metric) else -1.0
        self.patience = cfg.patience
        self.weight_names = weight_names  # every parameter that may ever train

    def update(self, state: LoopState, scores: dict, extras: dict, model, accelerator, work_dir: Path, log) -> bool:
        """Record an evaluation (and the strategy's ``extras``, logged only); save weights when best; return True to stop
        early (patience ran out, or an observer of ``hooks.py`` asked to stop: ``state.stopped_by`` says which)."""
        record = {"step": state.global_step, "epoch": state.epoch + 1, "evaluation": len(state.history) + 1,
                  "validation": scores, **extras}
        state.history.append(record)
        log.write(record)
        score = scores[self.metric]
        if state.best_score is None or (np.isfinite(score) and self.sign * (score - state.best_score) > 0):
            state.best_score, state.best_step, state.evals_without_improvement = score, state.global_step, 0
            _save_best(model, accelerator, work_dir, self.weight_names)
        else:
            state.evals_without_improvement += 1
        if self.patience is not None and state.evals_without_improvement >= self.patience:
            state.stopped_by = "patience"
        else:
            state.stopped_by = _agreed(accelerator, stop_reason(record) if accelerator.is_main_process else None)
        return state.stopped_by is not None

    def restore_best(self, state: LoopState, model, accelerator, work_dir: Path) -> dict[str, float]:
        """Load the best weights back into ``model``; return that evaluation's scores."""
        accelerator.wait_for_everyone()
        path = work_dir / BEST_WEIGHTS
        if path.is_file():
            weights = load_file(str(path))
            missing, unexpected = accelerator.unwrap_model(model).load_state_dict(weights, strict=False)
            if unexpected or set(self.weight_names) - set(weights):
                raise TrainingError(f"the best weights in {path} do not match the model (unexpected: {unexpected[:5]}, "
                                    f"missing: {sorted(set(self.weight_names) - set(weights))[:5]})")
        for record in state.history:
            if record["step"] == state.best_step:
                return record["validation"]
        return {}


def _agreed(accelerator: Accelerator, value):
    """The main process's ``value`` on every process (an observer's decision to stop must be the same on every rank)."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


def _save_best(model, accelerator: Accelerator, work_dir: Path, names: list[str]) -> None:
    """Every parameter that may ever train (not only those training now: a schedule may have frozen some)."""
    if accelerator.is_main_process:
        keep = set(names)
        weights = {n: t.detach().cpu().contiguous() for n, t in accelerator.unwrap_model(model).state_dict().items() if n in keep}
        ckpt.save_best_weights(weights, work_dir)
    accelerator.wait_for_everyone()


class _JsonlLog:
    """One JSON object per line; trackers (tensorboard, wandb) get the same numbers."""

    def __init__(self, path: Path, accelerator: Accelerator, tracker_step_offset: int = 0):
        self.path, self.accelerator, self.tracker_step_offset = path, accelerator, tracker_step_offset

    def write(self, record: dict) -> None:
        if self.accelerator.is_main_process:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        values = {}
        for key, value in record.items():
            if isinstance(value, dict):  # validation scores, a strategy's evaluation extras
                values.update({f"{key}/{k}": v for k, v in value.items()})
            elif key != "step" and "validation" not in record:
                values[key] = value
        self.accelerator.log(values, step=self.tracker_step_offset + record["step"])
