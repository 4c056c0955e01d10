"""The multi-task run: the single-task stages per task, one shared encoder, one loop, one folder per task.

Per task: ``load_data``, ``build_run_model`` (its own head), ``preprocess``, its own strategy instance. Then
the task models are tied at the encoder (``model.tie_encoders``), ``MultiTaskStrategy`` merges the hooks, the
one loop trains on single-task batches drawn by ``train.task_sampling`` and picks the best model on the mean
of each task's first metric, and every task is exported with ``stage_output`` (the single-task export: plain
folder, reload check, card) under ``output.dir/<task>/``; the top level holds the multi-task recipe, metrics,
log and a README that indexes the tasks.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..data.loaders import eval_loader
from ..outputs.export import publish, write_run_files
from ..recipe.schema import MultiTaskRecipe, Recipe
from ..strategies.base import Strategy
from ..strategies.registry import build_strategy
from ..tasks.spec import TaskSpec
from ..training.loop import evaluate_loader, run_loop
from ..training.precision import resolve_mixed_precision
from ..training.processes import LIVE_UNTIL_EXIT, rank_checksums
from ..training.session import TrainOutput, guarded_run
from ..training.stages import (
    build_run_model,
    export_on_main,
    flat_config,
    load_data,
    parameter_counts,
    prepare,
    preprocess,
    short_scores,
    stage_output,
    start_run,
    train_summary,
)
from .baselines import add_single_task_baselines
from .evaluation import MultiTaskEvaluation, TaskEvaluation, task_scores
from .model import MultiTaskModule, tie_encoders
from .readme import write_multitask_readme
from .sampling import epochs_of_data, expected_batches
from .strategy import MultiTaskStrategy

logger = logging.getLogger(__name__)


@dataclass
class _Task:
    name: str
    weight: float
    recipe: Recipe
    spec: TaskSpec
    strategy: Strategy
    model: object
    splits: object
    metric_names: list[str]


def train_multitask(recipe: MultiTaskRecipe, *, resume: bool = False, overwrite: bool = False,
                    single_task_baselines: bool = False) -> TrainOutput:
    """Train a multi-task recipe (``run_multitask`` inside ``guarded_run``); with ``single_task_baselines``, then each
    task alone with the same budget, and the per-task comparison added to the output (``baselines.py``)."""
    out = guarded_run(recipe, run_multitask, resume=resume, overwrite=overwrite)
    if single_task_baselines:
        add_single_task_baselines(recipe, out)
    return out


def run_multitask(recipe: MultiTaskRecipe, out_dir: Path, work: Path, resume: bool, run_info: dict):
    """Train every task of ``recipe`` on one encoder and export one folder per task (see the module docstring)."""
    cfg = recipe.train
    precision = resolve_mixed_precision(cfg.mixed_precision)
    logger.info("Mixed precision: %s (train.mixed_precision=%s: %s)", precision.used, precision.requested, precision.reason)
    accelerator = start_run(cfg, work, resume, mixed_precision=precision.used, tracker_config=flat_config(recipe.to_dict()),
                            run_name=out_dir.name)
    tasks, processor = [], None
    for entry in recipe.tasks:
        splits, spec = load_data(entry.recipe.data, entry.recipe.task, cfg.seed)
        strategy = build_strategy(entry.recipe.strategy, spec)
        model, processor = build_run_model(entry.recipe.model, spec, strategy)
        names = entry.recipe.train.metrics or list(spec.kind.default_metrics)
        tasks.append(_Task(entry.name, entry.weight, entry.recipe, spec, strategy, model, splits, names))
    tied = tie_encoders({t.name: t.model for t in tasks})
    logger.info("Multi-task: %d tasks (%s) share the encoder's %s", len(tasks), ", ".join(t.name for t in tasks), ", ".join(tied))
    inputs, reports = {}, {}
    for task in tasks:
        inputs[task.name], reports[task.name] = preprocess(task.recipe, task.spec, processor, task.splits)
    strategy = MultiTaskStrategy([t.strategy for t in tasks], [t.name for t in tasks], [t.weight for t in tasks],
                                 (cfg.task_sampling, cfg.task_temperature))
    module = MultiTaskModule({t.name: t.model for t in tasks})
    trained, prepared, total_params = prepare(strategy, module, processor, inputs, accelerator)
    collator = strategy.collator(processor)
    batches = strategy.train_batches({t.name: prepared[t.name]["train"] for t in tasks}, batch_size=cfg.batch_size,
                                     seed=cfg.seed, group_by_length=cfg.group_by_length, collator=collator)
    eval_size = cfg.eval_batch_size or 2 * cfg.batch_size
    evaluation = MultiTaskEvaluation([
        TaskEvaluation(t.name, k, t.strategy, t.spec, eval_loader(prepared[t.name]["validation"], eval_size, sub),
                       t.metric_names, t.weight) for k, (t, sub) in enumerate(zip(tasks, collator.collators))],
        recipe.best_metric)
    _log_sampling(strategy)
    result = run_loop(trained, strategy, batches, None, cfg, accelerator, work_dir=work, resume=resume, run_info=run_info,
                      evaluation=evaluation)
    if accelerator.num_processes > 1:
        LIVE_UNTIL_EXIT.extend([accelerator, result.model])
    trained = accelerator.unwrap_model(result.model, keep_fp32_wrapper=False)
    shared = _shared_metrics(recipe, strategy, result, trained, total_params, accelerator, precision)
    shared["rank_weight_checksums"] = rank_checksums(trained, accelerator)
    per_task = {t.name: _task_metrics(t, k, recipe, strategy, result, trained, prepared[t.name], processor, accelerator,
                                      shared, reports[t.name]) for k, t in enumerate(tasks)}
    metrics = {**shared, "tasks": per_task}
    export_on_main(accelerator, lambda: _export(recipe, tasks, trained, processor, inputs, prepared, per_task, metrics,
                                                work, out_dir))
    accelerator.print(f"Saved {out_dir}  validation: {short_scores(metrics['validation'])}")
    accelerator.end_training()
    return TrainOutput(out_dir, metrics)


def _log_sampling(strategy: MultiTaskStrategy) -> None:
    scheme, temperature = strategy.sampling
    expected = expected_batches(strategy.batches_per_task, scheme, temperature)
    passes = epochs_of_data(strategy.batches_per_task, scheme, temperature)
    logger.info("Task sampling %s%s: per epoch, %s", scheme, f" (T={temperature:g})" if scheme == "temperature" else "",
                "; ".join(f"{n}: {e:g} batches of {b} ({p:g} passes over its data)"
                          for n, e, b, p in zip(strategy.names, expected, strategy.batches_per_task, passes)))


def _shared_metrics(recipe, strategy, result, trained, total_params, accelerator, precision) -> dict:
    scheme, temperature = strategy.sampling
    return {
        "validation": result.best_metrics,
        "train": train_summary(result),
        "parameters": parameter_counts(trained, total_params),
        "multitask": {"tasks": strategy.names, "weights": dict(zip(strategy.names, strategy.weights)),
                      "sampling": scheme, "temperature": temperature if scheme == "temperature" else None,
                      "batches_per_epoch": dict(zip(strategy.names, strategy.batches_per_task)),
                      "expected_batches_per_epoch": dict(zip(strategy.names, expected_batches(
                          strategy.batches_per_task, scheme, temperature))),
                      "selected_on": recipe.best_metric},
        "strategy": recipe.strategy_name, "model": recipe.model.name,
        "num_processes": accelerator.num_processes, "mixed_precision": precision.as_dict(),
    }


def _task_metrics(task: _Task, index: int, recipe, strategy, result, trained, prepared, processor, accelerator, shared,
                  report) -> dict:
    """What a single-task run's metrics.json holds, for one task of the multi-task run (plus a ``multitask`` note)."""
    own = trained.task(index)
    metrics = {
        "validation": task_scores(result.best_metrics, task.name),
        "train": shared["train"],
        "parameters": parameter_counts(own, sum(p.numel() for p in task.model.parameters())),
        "data": {split: len(ds) for split, ds in prepared.items()},
        "strategy": recipe.strategy_name, "model": recipe.model.name, "num_processes": accelerator.num_processes,
        "mixed_precision": shared["mixed_precision"],
        "multitask": {**shared["multitask"], "task": task.name, "weight": task.weight,
                      "best_score": result.best_metrics.get(recipe.best_metric)},
        **task.strategy.top_level_metrics(),
    }
    if "test" in prepared:
        loader = accelerator.prepare(eval_loader(prepared["test"], task.recipe.train.eval_batch_size
                                                          or 2 * task.recipe.train.batch_size, task.strategy.collator(processor)))
        metrics["test"] = evaluate_loader(own, task.strategy, loader, accelerator, task.spec, task.metric_names)
    if report:
        metrics["truncation"] = report
    return metrics


def _export(recipe: MultiTaskRecipe, tasks: list[_Task], trained, processor, inputs, prepared, per_task: dict,
            metrics: dict, work: Path, out_dir: Path) -> None:
    """Every task's folder (the single-task export, reload-checked), the top-level files, then the whole output at once."""
    stage = work / "output"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    for k, task in enumerate(tasks):
        folder = stage / task.name
        folder.mkdir()
        stage_output(task.recipe, task.strategy, task.model, trained.task(k), task.spec, processor, inputs[task.name],
                     prepared[task.name], per_task[task.name], task.metric_names, folder)
    write_run_files(stage, recipe.to_dict(), metrics)
    write_multitask_readme(stage, recipe, metrics)
    shutil.copyfile(work / "train_log.jsonl", stage / "train_log.jsonl")
    publish(stage, out_dir)
    shutil.rmtree(work, ignore_errors=True)
