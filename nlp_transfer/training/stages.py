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
import shutil
from pathlib import Path

from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import DatasetDict

from ..adapt.data import check_no_test_overlap, load_target, load_target_validation
from ..adapt.selection import model_selection, target_validation_evaluation
from ..adapt.self_training import run_rounds
from ..data.files import weight_rows, where
from ..data.loaders import eval_loader
from ..data.sampling import sample_fraction
from ..errors import ExportError
from ..models.build import build_task_model, model_pooling
from ..models.files import default_pooling, resolve_model_path
from ..models.first_token import first_token_last_layer
from ..outputs.cards import write_model_card
from ..outputs.export import (
    publish,
    verify_reload,
    write_run_files,
)
from ..recipe.schema import (
    TARGET_SPLIT,
    TARGET_VALIDATION_SPLIT,
    AdaptConfig,
    DataConfig,
    ModelConfig,
    Recipe,
    TaskConfig,
    TrainConfig,
)
from ..strategies.base import Strategy
from ..tasks.spec import TaskSpec
from ..tasks.splits import encode_labels, load_task_splits
from .checkpoints import LOG_FILE
from .loop import LoopResult, evaluate_loader, predict_loader, run_loop
from .processes import any_process, new_accelerator, rank_checksums

logger = logging.getLogger(__name__)


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
    splits = load_task_splits(data, seed, task)
    splits, spec = encode_labels(splits, task, data)
    if data.weight_column:
        splits["train"] = weight_rows(splits["train"], data)
    if adapt is not None:
        splits[TARGET_SPLIT] = load_target(adapt.target, task, seed, spec, splits["train"].features["labels"])
    if adapt is not None and adapt.target_validation is not None:
        label_feature = splits["train"].features["labels"]
        selection = load_target_validation(adapt.target_validation, task, data, spec, label_feature)
        if "test" in splits:
            check_no_test_overlap(selection, splits["test"], spec.kind.input_columns(task),
                                           where(data, "test"))
        splits[TARGET_VALIDATION_SPLIT] = selection
    if data.fraction is not None and data.fraction < 1:
        full = len(splits["train"])
        splits["train"] = sample_fraction(splits["train"], data.fraction, seed, spec.kind.stratify_by(splits["train"]))
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
    loader = eval_loader(prepared["validation"], eval_batch_size, collator)
    evaluation = None
    if TARGET_VALIDATION_SPLIT in prepared:

        target = eval_loader(prepared[TARGET_VALIDATION_SPLIT], eval_batch_size, collator)
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
    module = accelerator.unwrap_model(result.model, keep_fp32_wrapper=False)  # the same module trains every round
    collator = strategy.collator(processor)
    target_rows = accelerator.prepare(eval_loader(prepared[TARGET_SPLIT], cfg.eval_batch_size or 2 * cfg.batch_size,
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
        "rank_weight_checksums": rank_checksums(model, accelerator),
    }
    if recipe.adapt is not None:  # the source validation scores, and which rows chose the model

        metrics["validation"], metrics["model_selection"] = model_selection(
            recipe.adapt, recipe.data, result.best_metrics, cfg.best_metric or metric_names[0], metrics["data"])
    if "test" in prepared:
        collator = strategy.collator(processor)
        loader = accelerator.prepare(eval_loader(prepared["test"], cfg.eval_batch_size or 2 * cfg.batch_size, collator))
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
            "steps": sum(r.state.global_step for r in results), "planned_steps": sum(r.total_steps for r in results),
            "epochs_completed": state.epoch,
            "stopped_early": result.stopped_early, "stopped_by": state.stopped_by, "best_step": state.best_step,
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
    if any_process(accelerator, failure is not None):
        if failure is not None:
            raise failure
        raise ExportError("the main process failed to export the output; its error says why")


def flat_config(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def short_scores(scores: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in scores.items())
