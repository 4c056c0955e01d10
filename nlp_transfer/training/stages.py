"""The staged pipeline behind ``nlp-transfer train`` and ``nlp-transfer evaluate``.

``train`` runs small public stages with plain arguments, each usable on its own:
``load_data`` -> ``build_run_model`` -> ``preprocess`` -> ``prepare`` -> ``fit`` (then, with ``adapt.self_training``,
``self_train``'s rounds of ``fit``) -> ``evaluate_run`` -> ``export_run``. The task type (``tasks/``) and the
strategy (``strategies/``) supply every decision that depends on them; nothing here names either.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed
from datasets import DatasetDict

from . import checkpoints as ckpt
from . import data as data_lib
from .cards import write_model_card
from .config import (TARGET_SPLIT, TARGET_VALIDATION_SPLIT, AdaptConfig, DataConfig, ModelConfig, MultiTaskRecipe, Recipe,
                     TaskConfig, TrainConfig)
from .errors import ExportError, ModelError, RecipeError
from .export import check_output_dir, find_run_file, partial_dir, publish, verify_reload, write_run_files
from .first_token import first_token_last_layer
from .hub import push_after_run, require_token
from .loop import LOG_FILE, LoopResult, evaluate_loader, predict_loader, run_loop
from .metrics import preload_metrics
from .model_files import default_pooling
from .models import build_task_model, load_model, model_pooling, resolve_model_path
from .precision import resolve_mixed_precision
from .preflight import check_max_length
from .recipe import load_any_recipe, load_recipe
from .runlock import RunLock
from .strategies import Strategy, build_strategy
from .tasks import TaskSpec
from .variants import selected_variant

logger = logging.getLogger(__name__)


@dataclass
class TrainOutput:
    """Where the model went and what it scored."""

    output_dir: Path
    metrics: dict


def train(recipe: Recipe | MultiTaskRecipe | str | Path | dict, overrides=None, *, resume: bool = False,
          overwrite: bool = False, single_task_baselines: bool = False) -> TrainOutput:
    """Train, evaluate and export the model a recipe describes.

    Args:
        recipe: A ``Recipe`` or ``MultiTaskRecipe``, a YAML path or a dict (with a ``tasks`` section: multi-task).
        overrides: Dotted ``key=value`` strings or a dict, applied before validation.
        resume: Continue from the latest checkpoint of an interrupted run.
        overwrite: Replace an existing, non-empty ``output.dir``.
        single_task_baselines: Multi-task recipes: then train each task alone with the same budget and add the
            per-task comparison to the output (``multitask/baselines.py``).

    Returns:
        The output folder and the metrics written to its ``metrics.json``.

    Raises:
        OutputDirError: ``output.dir`` is unusable or another run holds it (before any work).
        RecipeError: ``--resume`` with keys that change the training trajectory (before any work).

    A run that fails removes its work folder (``.<output>.partial``) unless it holds complete
    checkpoints; then only those are kept, for ``--resume``.
    """
    recipe = recipe if isinstance(recipe, (Recipe, MultiTaskRecipe)) else load_any_recipe(recipe, overrides)
    if single_task_baselines and not isinstance(recipe, MultiTaskRecipe):
        raise RecipeError([f"--single-task-baselines: {recipe.source} is a single-task recipe; the option compares a "
                           "multi-task recipe's tasks (a tasks section) with each trained alone"], recipe.source)
    out_dir = Path(recipe.output.dir).expanduser().resolve()
    lock = RunLock(out_dir) if _is_main_launch() else None
    if lock is not None:
        lock.acquire()  # before anything touches the output or its work folder
    try:
        out = _train_locked(recipe, out_dir, resume=resume, overwrite=overwrite)
    finally:
        if lock is not None:
            lock.release()
    if single_task_baselines:
        from .multitask.baselines import add_single_task_baselines

        add_single_task_baselines(recipe, out)
    return out


def _train_locked(recipe: Recipe | MultiTaskRecipe, out_dir: Path, *, resume: bool, overwrite: bool) -> TrainOutput:
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
        ckpt.check_resume(work, recipe.to_dict(), _launched_processes())
    run_info = ckpt.run_info(recipe.to_dict(), _launched_processes())
    try:
        if isinstance(recipe, MultiTaskRecipe):
            from .multitask.runner import run_multitask

            return run_multitask(recipe, out_dir, work, resume, run_info)
        return _run(recipe, out_dir, work, resume, run_info)
    except BaseException:
        if _is_main_launch():
            _clean_after_failure(work)
        raise


def _run(recipe: Recipe, out_dir: Path, work: Path, resume: bool, run_info: dict) -> TrainOutput:
    cfg = recipe.train
    precision = resolve_mixed_precision(cfg.mixed_precision)
    logger.info("Mixed precision: %s (train.mixed_precision=%s: %s)", precision.used, precision.requested, precision.reason)
    accelerator = start_run(cfg, work, resume, mixed_precision=precision.used, tracker_config=_flat(recipe.to_dict()),
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
        _LIVE_UNTIL_EXIT.extend([accelerator, *(r.model for r in results)])  # freeing DDP can deadlock: see finish_processes
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
    accelerator.print(f"Saved {out_dir}  validation: {_short(metrics['validation'])}" + _selection_note(metrics))
    accelerator.end_training()
    if recipe.output.push_to_hub is not None and accelerator.is_main_process:
        push_after_run(out_dir, recipe.output.push_to_hub)
    return TrainOutput(out_dir, metrics)


# ---------------------------------------------------------------------- stages
def start_run(cfg: TrainConfig, work: Path, resume: bool, *, mixed_precision: str = "no", tracker_config: dict | None = None,
              run_name: str = "run") -> Accelerator:
    """The run's Accelerator (``mixed_precision``: resolved, never ``auto``), its (emptied, unless resuming) work folder,
    the seed and the trackers."""
    accelerator = new_accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=cfg.grad_accum_steps,
                                  log_with=cfg.report_to or None, project_dir=str(work))
    if accelerator.is_main_process:
        if work.exists() and not resume:
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)
    if cfg.report_to:
        accelerator.init_trackers(run_name, config=tracker_config or {})
    return accelerator


def load_data(data: DataConfig, task: TaskConfig, seed: int, adapt: AdaptConfig | None = None) -> tuple[DatasetDict, TaskSpec]:
    """Raw splits with a numeric ``labels`` column, train cut to ``data.fraction``; and the task's label maps.

    ``data.weight_column`` becomes train's ``weights``; with ``adapt``, the target domain's text is the split
    ``target`` (its other columns, a label included, dropped unread; labels: the task's "no label" value), and
    ``adapt.target_validation``'s labelled target rows the split ``target_validation`` (none of them a test row).
    """
    splits = data_lib.load_splits(data, seed, task)
    splits, spec = data_lib.encode_labels(splits, task, data)
    if data.weight_column:
        splits["train"] = data_lib.weight_rows(splits["train"], data)
    if adapt is not None:
        splits[TARGET_SPLIT] = data_lib.load_target(adapt.target, task, seed, spec, splits["train"].features["labels"])
    if adapt is not None and adapt.target_validation is not None:
        label_feature = splits["train"].features["labels"]
        selection = data_lib.load_target_validation(adapt.target_validation, task, data, spec, label_feature)
        if "test" in splits:
            data_lib.check_no_test_overlap(selection, splits["test"], spec.kind.input_columns(task),
                                           data_lib.where(data, "test"))
        splits[TARGET_VALIDATION_SPLIT] = selection
    if data.fraction is not None and data.fraction < 1:
        full = len(splits["train"])
        splits["train"] = data_lib.sample_fraction(splits["train"], data.fraction, seed, spec.kind.stratify_by(splits["train"]))
        logger.info("data.fraction=%g: training on %d of %d rows", data.fraction, len(splits["train"]), full)
    return splits, spec


def build_run_model(model_cfg: ModelConfig, task: TaskSpec, strategy: Strategy):
    """The model the strategy trains and the processor (tokenizer or image processor) of ``model.name``.

    The strategy builds first (what it needs, such as distill's teacher, fails with its own key before
    ``model.name`` is resolved). ``model_cfg.pooling`` is set to what the built head reads.
    """
    def build():
        path = resolve_model_path(model_cfg.name, model_cfg.revision)
        pooling = model_cfg.pooling
        if pooling is None and task.kind.pools:
            pooling = strategy.options.pooling_default or default_pooling(path)
        return build_task_model(path, task, pooling=pooling, from_scratch=model_cfg.from_scratch,
                                trust_remote_code=model_cfg.trust_remote_code, name=model_cfg.name)

    model = strategy.build_model(build)
    if task.kind.pools:
        model_cfg.pooling = model_pooling(model)
    path = resolve_model_path(model_cfg.name, model_cfg.revision)
    return model, task.kind.load_processor(path, model_cfg.trust_remote_code)


def preprocess(recipe: Recipe, task: TaskSpec, processor, splits: DatasetDict, *, augment: bool = True,
               carry: tuple[str, ...] = ()):
    """What the model reads per split (token ids, or pixel values), and the task type's report (truncation).

    ``carry``: raw columns kept beside the model inputs (``Strategy.raw_columns``).
    """
    return task.kind.preprocess(splits, processor, recipe, augment=augment, carry=carry)


def prepare(strategy: Strategy, model, processor, inputs: DatasetDict, accelerator: Accelerator):
    """The strategy decides what trains and what a batch holds: ``(trained module, prepared splits, total parameters)``."""
    total_params = sum(p.numel() for p in model.parameters())  # counted before prepare adds adapters or head copies
    trained = strategy.prepare(model)
    prepared = strategy.prepare_data(model, processor, inputs, accelerator)
    return trained, prepared, total_params


def fit(trained, strategy: Strategy, prepared: DatasetDict, processor, cfg: TrainConfig, accelerator: Accelerator,
        task: TaskSpec, metric_names: list[str], work: Path, resume: bool = False, run_info: dict | None = None,
        tracker_step_offset: int = 0) -> LoopResult:
    """The one loop over the strategy's batches, evaluating on validation; the best weights restored. Where the
    strategy's loss reads only logits and the head only position 0, the last layer computes that position alone.

    With a ``target_validation`` split (``adapt.target_validation``) every evaluation also scores those labelled target
    rows (``target/<metric>``), and they pick the best model by ``train.best_metric`` (default: the first metric).
    """
    collator = strategy.collator(processor)
    batches = strategy.train_batches(prepared["train"], batch_size=cfg.batch_size, seed=cfg.seed,
                                     group_by_length=cfg.group_by_length, collator=collator)
    eval_batch_size = cfg.eval_batch_size or 2 * cfg.batch_size
    loader = data_lib.eval_loader(prepared["validation"], eval_batch_size, collator)
    evaluation = None
    if TARGET_VALIDATION_SPLIT in prepared:
        from .adapt.selection import target_validation_evaluation

        target = data_lib.eval_loader(prepared[TARGET_VALIDATION_SPLIT], eval_batch_size, collator)
        evaluation = target_validation_evaluation(loader, target, task, metric_names, cfg.best_metric)
        cfg = dataclasses.replace(cfg, best_metric=None)  # the loop picks on the evaluation's own target/<metric>
    with first_token_last_layer(trained, strategy.first_token_training) as first_token:
        result = run_loop(trained, strategy, batches, loader, cfg, accelerator, task=task, metric_names=metric_names,
                          work_dir=work, resume=resume, run_info=run_info, evaluation=evaluation,
                          tracker_step_offset=tracker_step_offset)
    return dataclasses.replace(result, first_token_last_layer=first_token)


def self_train(adapt: AdaptConfig, result: LoopResult, strategy: Strategy, prepared: DatasetDict, processor, cfg: TrainConfig,
               accelerator: Accelerator, task: TaskSpec, metric_names: list[str], work: Path, run_info: dict):
    """``adapt.self_training``'s rounds after the first training (``adapt/self_training.py``): each predicts the target
    rows, then runs the loop again on the same model with the pseudo-labelled rows and as many source rows. Each round
    works in its own folder under ``work``; its log lines join the run's log, marked with the round, and the trackers
    get its steps after those of the training before it."""
    from .adapt.self_training import run_rounds

    module = accelerator.unwrap_model(result.model, keep_fp32_wrapper=False)  # the same module trains every round
    collator = strategy.collator(processor)
    target_rows = accelerator.prepare(data_lib.eval_loader(prepared[TARGET_SPLIT], cfg.eval_batch_size or 2 * cfg.batch_size,
                                                           collator))

    def predict_target():
        with accelerator.autocast():  # in the run's precision, as its evaluations
            return predict_loader(module, strategy, target_rows, accelerator, task)[0]

    steps_before = result.state.global_step  # optimizer steps of the first training and the rounds so far

    def fit_round(train, number: int) -> LoopResult:
        nonlocal steps_before
        folder = work / f"self_training_round_{number}"
        if accelerator.is_main_process:
            folder.mkdir(exist_ok=True)
        accelerator.wait_for_everyone()
        splits = DatasetDict({**prepared, "train": train})
        unwrapped = accelerator.unwrap_model(module, keep_fp32_wrapper=False)  # the last prepare's autocast wrapper off
        out = fit(unwrapped, strategy, splits, processor, dataclasses.replace(cfg, seed=cfg.seed + number), accelerator, task,
                  metric_names, folder, False, run_info, tracker_step_offset=steps_before)
        steps_before += out.state.global_step
        if accelerator.is_main_process:
            with (work / LOG_FILE).open("a", encoding="utf-8") as log:
                for line in (folder / LOG_FILE).read_text(encoding="utf-8").splitlines():
                    log.write(json.dumps({"self_training_round": number, **json.loads(line)}) + "\n")
        return out

    return run_rounds(adapt.self_training, predict_target=predict_target, fit_round=fit_round,
                      source=prepared["train"], target=prepared[TARGET_SPLIT], seed=cfg.seed)


def evaluate_run(recipe: Recipe, task: TaskSpec, strategy: Strategy, model, trained, result: LoopResult,
                 prepared: DatasetDict, processor, accelerator: Accelerator, metric_names: list[str], total_params: int) -> dict:
    """metrics.json: scores per split, speed, parameter counts, the strategy's numbers, the ranks' weight checksums.

    ``model`` is the task model, ``trained`` what the loop trained (the strategy's wrapper), unwrapped.
    """
    cfg = recipe.train
    metrics = {
        "validation": result.best_metrics,
        "train": train_summary(result),
        "parameters": parameter_counts(trained, total_params),
        "data": {split: len(ds) for split, ds in prepared.items()},
        "strategy": recipe.strategy_name, "model": recipe.model.name,
        "num_processes": accelerator.num_processes,
        "rank_weight_checksums": _rank_checksums(model, accelerator),
    }
    if recipe.adapt is not None:  # the source validation scores, and which rows chose the model
        from .adapt.selection import model_selection

        metrics["validation"], metrics["model_selection"] = model_selection(
            recipe.adapt, recipe.data, result.best_metrics, cfg.best_metric or metric_names[0], metrics["data"])
    if "test" in prepared:
        collator = strategy.collator(processor)
        loader = accelerator.prepare(data_lib.eval_loader(prepared["test"], cfg.eval_batch_size or 2 * cfg.batch_size, collator))
        metrics["test"] = evaluate_loader(trained, strategy, loader, accelerator, task, metric_names)
    metrics.update(strategy.top_level_metrics())
    return metrics


def train_summary(*results: LoopResult) -> dict:
    """metrics.json's ``train``: time, throughput, steps, epochs, early stop and the best step of a finished loop
    (of several, e.g. self-training rounds: their time, samples and steps added up; the rest the last one's)."""
    state, result = results[-1].state, results[-1]
    seconds = sum(r.state.train_seconds for r in results)
    return {"seconds": round(seconds, 2),
            "samples_per_second": round(sum(r.state.samples_seen for r in results) / max(seconds, 1e-9), 2),
            "steps": sum(r.state.global_step for r in results), "epochs_completed": state.epoch,
            "stopped_early": result.stopped_early, "best_step": state.best_step,
            "first_token_last_layer": result.first_token_last_layer}


def parameter_counts(trained, total: int) -> dict:
    """metrics.json's ``parameters``: what ``trained`` trains (requires grad) against the task model's ``total``."""
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "trainable_percent": round(100 * trainable / total, 4)}


def export_run(recipe: Recipe, strategy: Strategy, model, trained, task: TaskSpec, processor, inputs: DatasetDict,
               prepared: DatasetDict, metrics: dict, metric_names: list[str], work: Path, out_dir: Path) -> None:
    """Stage the output folder (model, card and run files, or only the run files for ``output.save: metrics``),
    reload-check every saved model, then move it into place whole."""
    stage = work / "output"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    stage_output(recipe, strategy, model, trained, task, processor, inputs, prepared, metrics, metric_names, stage)
    shutil.copyfile(work / "train_log.jsonl", stage / "train_log.jsonl")
    publish(stage, out_dir)
    shutil.rmtree(work, ignore_errors=True)


def stage_output(recipe: Recipe, strategy: Strategy, model, trained, task: TaskSpec, processor, inputs: DatasetDict,
                 prepared: DatasetDict, metrics: dict, metric_names: list[str], stage: Path) -> None:
    """Write one task's output into the (empty) folder ``stage``: the model the strategy ships (reload-checked),
    ``recipe.yaml``, ``metrics.json`` and the card; only the run files for ``output.save: metrics``."""
    saves_model = recipe.output.save == "model"
    if saves_model:
        strategy.export(model, processor, stage)
    if extra := {**(strategy.export_metrics(stage) if saves_model else {}), **strategy.run_metrics(metrics, metric_names)}:
        metrics[strategy.name] = extra
    if saves_model:
        metrics["reload_check"] = verify_reload(stage, trained, strategy, processor, inputs["validation"], prepared["validation"])
    write_run_files(stage, recipe.to_dict(), metrics)
    if saves_model:
        write_model_card(stage, recipe, metrics, task)


def export_on_main(accelerator: Accelerator, export) -> None:
    """Run ``export()`` on the main process only; if it fails, every process raises (the others wait for it)."""
    failure = None
    if accelerator.is_main_process:
        try:
            export()
        except Exception as exc:  # the other processes wait for the export: tell them before raising
            failure = exc
    if _any_process(accelerator, failure is not None):
        if failure is not None:
            raise failure
        raise ExportError("the main process failed to export the output; its error says why")


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
        from .optimization import evaluate_variant

        return evaluate_variant(output_dir, split, variant)
    recipe = load_recipe(find_run_file(output_dir) or output_dir / "recipe.yaml")
    model = load_model(output_dir, recipe.model.trust_remote_code)
    task = TaskSpec(recipe.task.type, {int(i): n for i, n in model.config.id2label.items()}, recipe.task.threshold)
    processor = task.kind.load_processor(str(output_dir))
    splits = data_lib.load_splits(recipe.data, recipe.train.seed)
    if split not in splits:
        raise data_lib.DataError(f"--split: the recipe's data has no '{split}' split; it has: {', '.join(splits)}")
    encoded, _ = data_lib.encode_labels(DatasetDict({split: splits[split]}), recipe.task, recipe.data, names=task.label_names)
    inputs, _ = preprocess(recipe, task, processor, encoded, augment=False)
    accelerator = new_accelerator(mixed_precision=_run_precision(output_dir))
    strategy = Strategy(None, task)
    batch_size = recipe.train.eval_batch_size or 2 * recipe.train.batch_size
    loader = data_lib.eval_loader(inputs[split], batch_size, strategy.collator(processor))
    model, loader = accelerator.prepare(model, loader)
    return evaluate_loader(model, strategy, loader, accelerator, task, _metric_names(recipe, task))


def new_accelerator(**kwargs) -> Accelerator:
    """An Accelerator for this run's settings, on CPU processes (gloo) when there is no GPU.

    Accelerate keeps its settings in process-wide singletons; a second run in the same Python
    process (another recipe, another precision) starts from fresh settings. The process group
    itself (``PartialState``, set up under torchrun) is kept.
    """
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    if kwargs.get("mixed_precision") == "fp16" and not torch.cuda.is_available():
        logger.warning("train.mixed_precision=fp16 has no effect on CPU (autocast runs fp32); use bf16 for CPU mixed precision")
    return Accelerator(cpu=not torch.cuda.is_available(), **kwargs)


# ---------------------------------------------------------------------- helpers
def _task_recipes(recipe: Recipe | MultiTaskRecipe) -> list[Recipe]:
    """The single-task recipes a run trains: the recipe itself, or each task's of a multi-task recipe."""
    return [entry.recipe for entry in recipe.tasks] if isinstance(recipe, MultiTaskRecipe) else [recipe]


def _run_precision(output_dir: Path) -> str:
    """The precision the run evaluated in (metrics.json), so that ``evaluate`` reproduces its scores; ``no`` when unknown."""
    metrics_file = find_run_file(output_dir, "metrics.json")
    if metrics_file is None:
        return "no"
    used = json.loads(metrics_file.read_text(encoding="utf-8")).get("mixed_precision", {}).get("used", "no")
    return used if used in ("no", "bf16", "fp16") else "no"


def _is_main_launch() -> bool:
    """Whether this is the process that owns the output folder: the only one, or rank 0 of a launch."""
    return os.environ.get("RANK", "0") == "0"


def _any_process(accelerator: Accelerator, flag: bool) -> bool:
    """Whether ``flag`` is true on any process (a collective: every process must call it)."""
    if accelerator.num_processes == 1:
        return flag
    return accelerator.reduce(torch.tensor([float(flag)], device=accelerator.device), "sum").item() > 0


# Multi-process runs keep their Accelerator and DDP model here until the process ends (see ``finish_processes``).
_LIVE_UNTIL_EXIT: list = []


def finish_processes() -> None:
    """End a multi-process launch: every rank meets at a barrier, then the process exits at once (status 0).

    Freeing a DDP model can deadlock on CPU: the Reducer's last reference to its gloo process group
    is dropped with the GIL held, and the group's destructor joins a gloo thread that waits for the
    GIL. A rank then hangs forever after its work is done. So the run keeps those objects alive
    (``_LIVE_UNTIL_EXIT``) and the process ends here without the interpreter's teardown, after
    flushing its output. Does nothing in a single-process run. Call it last, after a successful run.
    """
    import sys

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _launched_processes() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


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


def _metric_names(recipe: Recipe, task: TaskSpec) -> list[str]:
    return recipe.train.metrics or list(task.kind.default_metrics)


def _rank_checksums(model, accelerator) -> list[float]:
    """One checksum of the weights per process; they must agree after a multi-process run."""
    local = torch.stack([p.detach().double().sum() + p.detach().double().abs().sum() for p in model.parameters()]).sum()
    return [round(v, 6) for v in accelerator.gather(local.reshape(1).to(accelerator.device)).tolist()]


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def _selection_note(metrics: dict) -> str:
    """For a run whose best model labelled target rows chose: which rows, and its score on them."""
    selection = metrics.get("model_selection") or {}
    if "scores" not in selection:
        return ""
    return (f"  (best model chosen on {selection['on']}, {selection['rows']} labelled target rows: "
            f"{_short(selection['scores'])})")


def _short(scores: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in scores.items())
