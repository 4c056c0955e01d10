"""A single-task run: ``train`` runs the stages of ``stages.py`` in order; ``evaluate`` scores a saved output."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from datasets import DatasetDict

from ..data.loaders import eval_loader
from ..errors import DataError, ModelError
from ..hub.push import push_after_run
from ..inference.optimize import evaluate_variant
from ..inference.variants import selected_variant
from ..models.build import (
    load_model,
)
from ..outputs.export import (
    find_run_file,
)
from ..recipe.load import load_recipe
from ..recipe.schema import (
    Recipe,
)
from ..strategies.base import Strategy
from ..strategies.registry import build_strategy
from ..tasks.spec import TaskSpec
from ..tasks.splits import encode_labels, load_task_splits
from .loop import evaluate_loader
from .precision import resolve_mixed_precision
from .processes import LIVE_UNTIL_EXIT, new_accelerator
from .session import TrainOutput, guarded_run
from .stages import (
    build_run_model,
    evaluate_run,
    export_on_main,
    export_run,
    fit,
    flat_config,
    load_data,
    prepare,
    preprocess,
    self_train,
    short_scores,
    start_run,
    train_summary,
)

logger = logging.getLogger(__name__)


def train(recipe: Recipe | str | Path | dict, overrides=None, *, resume: bool = False,
          overwrite: bool = False) -> TrainOutput:
    """Train, evaluate and export the model a single-task recipe describes (``api.train`` takes multi-task ones too).

    Args:
        recipe: A ``Recipe``, a YAML path or a dict.
        overrides: Dotted ``key=value`` strings or a dict, applied before validation.
        resume: Continue from the latest checkpoint of an interrupted run.
        overwrite: Replace an existing, non-empty ``output.dir``.

    Returns and raises as ``api.train`` does (``session.guarded_run``: the checks before any work, the cleanup).
    """
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, overrides)
    return guarded_run(recipe, run_single, resume=resume, overwrite=overwrite)


def run_single(recipe: Recipe, out_dir: Path, work: Path, resume: bool, run_info: dict) -> TrainOutput:
    """A single-task run's stages, from loading the data to the exported output (see ``stages.py``)."""
    cfg = recipe.train
    precision = resolve_mixed_precision(cfg.mixed_precision)
    logger.info("Mixed precision: %s (train.mixed_precision=%s: %s)", precision.used, precision.requested, precision.reason)
    accelerator = start_run(cfg, work, resume, mixed_precision=precision.used, tracker_config=flat_config(recipe.to_dict()),
                            run_name=out_dir.name)
    splits, task = load_data(recipe.data, recipe.task, cfg.seed, recipe.adapt)
    strategy = build_strategy(recipe.strategy, task, recipe.adapt, recipe.data.weight_column)
    pooling_unset = recipe.model.pooling is None
    model, processor = build_run_model(recipe.model, task, strategy)
    if pooling_unset and recipe.model.pooling is not None:
        recipe.defaults_used["model.pooling"] = recipe.model.pooling
    if recipe.defaults_used:
        logger.info("Unset keys resolved (also in recipe.yaml): %s",
                    ", ".join(f"{key}={value}" for key, value in recipe.defaults_used.items()))
    carry = tuple(strategy.raw_columns(recipe.task, processor))  # raw inputs the strategy reads (a teacher's own tokenizer)
    inputs, report = preprocess(recipe, task, processor, splits, carry=carry)
    prepare_started = time.perf_counter()
    trained, prepared, total_params = prepare(strategy, model, processor, inputs, accelerator)
    prepare_seconds = time.perf_counter() - prepare_started
    inputs = inputs.remove_columns(list(carry)) if carry else inputs
    metric_names = cfg.metrics or list(task.kind.default_metrics)
    results = [fit(trained, strategy, prepared, processor, cfg, accelerator, task, metric_names, work, resume, run_info)]
    rounds = None  # adapt.self_training: the rounds' summaries
    if recipe.adapt is not None and recipe.adapt.self_training is not None:
        round_results, rounds = self_train(recipe.adapt, results[0], strategy, prepared, processor, cfg, accelerator, task,
                                           metric_names, work, run_info)
        results += round_results
    result = results[-1]
    if accelerator.num_processes > 1:
        LIVE_UNTIL_EXIT.extend([accelerator, *(r.model for r in results)])  # freeing DDP can deadlock: see finish_processes
    trained = accelerator.unwrap_model(result.model, keep_fp32_wrapper=False)
    metrics = evaluate_run(recipe, task, strategy, model, trained, result, prepared, processor, accelerator, metric_names,
                           total_params)
    if rounds is not None:
        metrics["train"] = train_summary(*results)
        metrics["self_training"] = {"keep": recipe.adapt.self_training.keep, "first_training": results[0].best_metrics,
                                    "rounds": rounds}
    # the strategy's one-off data preparation (frozen's feature pass, partial's bottom cache): part of what training costs
    metrics["train"]["prepare_seconds"] = round(prepare_seconds, 2)
    metrics["mixed_precision"] = precision.as_dict()
    if report:
        metrics["truncation"] = report
    export_on_main(accelerator, lambda: export_run(recipe, strategy, model, trained, task, processor, inputs, prepared,
                                                   metrics, metric_names, work, out_dir))
    accelerator.print(f"Saved {out_dir}  validation: {short_scores(metrics['validation'])}" + _selection_note(metrics))
    accelerator.end_training()
    if recipe.output.push_to_hub is not None and accelerator.is_main_process:
        push_after_run(out_dir, recipe.output.push_to_hub)
    return TrainOutput(out_dir, metrics)


# ---------------------------------------------------------------------- evaluate
def evaluate(output_dir: str | Path, split: str = "validation", variant: str = "auto") -> dict[str, float]:
    """Score a saved output folder on a split of the data its recipe names.

    Labels are mapped with the saved model's own ``label2id``, so the scores are those of
    the folder as published, computed in the precision the run evaluated in (its ``metrics.json``:
    bf16 autocast for a ``train.mixed_precision: auto`` run on bf16 hardware) and at its evaluation
    batch size, so they reproduce the run's own. ``variant``: as ``Predictor``'s (``auto`` scores the
    optimized variant when ``nlp-transfer optimize`` wrote one).
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir() or find_run_file(output_dir) is None:
        raise ModelError(f"'{output_dir}' is not an output folder of `nlp-transfer train` (" + (
            "no recipe.yaml in it" if output_dir.is_dir() else "no such folder") + "); give the output.dir of a finished run")
    if variant == "optimized" or (variant == "auto" and selected_variant(output_dir) is not None):

        return evaluate_variant(output_dir, split, variant)
    recipe = load_recipe(find_run_file(output_dir) or output_dir / "recipe.yaml")
    model = load_model(output_dir, recipe.model.trust_remote_code)
    task = TaskSpec(recipe.task.type, {int(i): n for i, n in model.config.id2label.items()}, recipe.task.threshold)
    processor = task.kind.load_processor(str(output_dir))
    splits = load_task_splits(recipe.data, recipe.train.seed, recipe.task)
    if split not in splits:
        raise DataError(f"--split: the recipe's data has no '{split}' split; it has: {', '.join(splits)}")
    encoded, _ = encode_labels(DatasetDict({split: splits[split]}), recipe.task, recipe.data, names=task.label_names)
    inputs, _ = preprocess(recipe, task, processor, encoded, augment=False)
    accelerator = new_accelerator(mixed_precision=_run_precision(output_dir))
    strategy = Strategy(None, task)
    batch_size = recipe.train.eval_batch_size or 2 * recipe.train.batch_size
    loader = eval_loader(inputs[split], batch_size, strategy.collator(processor))
    model, loader = accelerator.prepare(model, loader)
    return evaluate_loader(model, strategy, loader, accelerator, task, _metric_names(recipe, task))


def _run_precision(output_dir: Path) -> str:
    """The precision the run evaluated in (metrics.json), so that ``evaluate`` reproduces its scores; ``no`` when unknown."""
    metrics_file = find_run_file(output_dir, "metrics.json")
    if metrics_file is None:
        return "no"
    used = json.loads(metrics_file.read_text(encoding="utf-8")).get("mixed_precision", {}).get("used", "no")
    return used if used in ("no", "bf16", "fp16") else "no"


def _metric_names(recipe: Recipe, task: TaskSpec) -> list[str]:
    return recipe.train.metrics or list(task.kind.default_metrics)


def _selection_note(metrics: dict) -> str:
    """For a run whose best model labelled target rows chose: which rows, and its score on them."""
    selection = metrics.get("model_selection") or {}
    if "scores" not in selection:
        return ""
    return (f"  (best model chosen on {selection['on']}, {selection['rows']} labelled target rows: "
            f"{short_scores(selection['scores'])})")
