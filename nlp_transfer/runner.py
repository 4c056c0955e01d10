"""The Python API behind ``nlp-transfer train`` and ``nlp-transfer evaluate``."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed
from datasets import DatasetDict

from . import data as data_lib
from .cards import write_model_card
from .export import check_output_dir, find_run_file, partial_dir, publish, verify_reload, write_run_files
from .hub import push_after_run, require_token
from .loop import evaluate_loader, run_loop
from .metrics import default_metrics
from .models import build_model, load_model, load_tokenizer, resolve_model_path, write_modeling_file
from .recipe import Recipe, load_recipe
from .strategies import Strategy, build_strategy
from .tasks import TaskSpec
from .vision import IMAGE_TASKS, build_image_model, decode_image_columns, load_image_processor, preprocess_images

logger = logging.getLogger(__name__)


@dataclass
class TrainOutput:
    """Where the model went and what it scored."""

    output_dir: Path
    metrics: dict


def train(recipe: Recipe | str | Path | dict, overrides=None, *, resume: bool = False, overwrite: bool = False) -> TrainOutput:
    """Train, evaluate and export the model a recipe describes.

    Args:
        recipe: A ``Recipe``, a YAML path or a dict.
        overrides: Dotted ``key=value`` strings or a dict, applied before validation.
        resume: Continue from the latest checkpoint of an interrupted run.
        overwrite: Replace an existing, non-empty ``output.dir``.

    Returns:
        The output folder and the metrics written to its ``metrics.json``.
    """
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe, overrides)
    out_dir = Path(recipe.output.dir).expanduser().resolve()
    check_output_dir(out_dir, overwrite or recipe.output.overwrite, resume)
    if recipe.output.push_to_hub is not None:
        require_token()  # fail before training, not after
    work = partial_dir(out_dir)
    cfg = recipe.train
    accelerator = new_accelerator(mixed_precision=cfg.mixed_precision, gradient_accumulation_steps=cfg.grad_accum_steps,
                                  log_with=cfg.report_to or None, project_dir=str(work))
    if accelerator.is_main_process:
        if work.exists() and not resume:
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    set_seed(cfg.seed)
    if cfg.report_to:
        accelerator.init_trackers(out_dir.name, config=_flat(recipe.to_dict()))

    splits = data_lib.load_splits(recipe.data, cfg.seed)
    splits, spec = data_lib.encode_labels(splits, recipe.task, recipe.data)
    strategy = build_strategy(recipe.strategy, spec)
    # the strategy builds the model first: what it needs (distill's teacher) fails with its own key before model.name is resolved
    model = strategy.build_model(lambda: _build_task_model(recipe, spec, strategy))
    model_path = resolve_model_path(recipe.model.name, recipe.model.revision)
    tokenizer = _load_processor(model_path, recipe)  # an image processor for image tasks
    carry = tuple(strategy.raw_columns(recipe.task, tokenizer))  # raw text beside the token ids (cross-tokenizer distill)
    tokenized, truncation = _model_inputs(recipe, tokenizer, splits, augment=True, carry=carry)
    total_params = sum(p.numel() for p in model.parameters())  # counted before prepare adds adapters or head copies
    trained = strategy.prepare(model)
    prepared = strategy.prepare_data(model, tokenizer, tokenized, accelerator)
    tokenized = tokenized.remove_columns(list(carry)) if carry else tokenized
    collator = strategy.collator(tokenizer)
    metric_names = cfg.metrics or default_metrics(spec.type)
    eval_batch = cfg.eval_batch_size or 2 * cfg.batch_size
    result = run_loop(
        trained, strategy,
        data_lib.train_loader(prepared["train"], cfg.batch_size, cfg.seed, cfg.group_by_length, collator),
        data_lib.eval_loader(prepared["validation"], eval_batch, collator),
        cfg, accelerator, task=spec, metric_names=metric_names, work_dir=work, resume=resume,
    )
    trained = accelerator.unwrap_model(result.model, keep_fp32_wrapper=False)
    metrics = _run_metrics(recipe, spec, strategy, trained, model, result, prepared, accelerator, metric_names, eval_batch, collator,
                           total=total_params)
    if truncation:
        metrics["truncation"] = truncation
    if accelerator.is_main_process:
        stage = work / "output"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir()
        strategy.export(model, tokenizer, stage)
        if extra := {**strategy.export_metrics(stage), **strategy.run_metrics(metrics, metric_names)}:
            metrics[strategy.name] = extra
        write_modeling_file(model, stage)
        metrics["reload_check"] = verify_reload(stage, trained, strategy, tokenizer, tokenized["validation"], prepared["validation"])
        write_run_files(stage, recipe.to_dict(), metrics)
        write_model_card(stage, recipe, metrics, spec)
        shutil.copyfile(work / "train_log.jsonl", stage / "train_log.jsonl")
        publish(stage, out_dir)
        shutil.rmtree(work, ignore_errors=True)
        accelerator.print(f"Saved {out_dir}  validation: {_short(metrics['validation'])}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if recipe.output.push_to_hub is not None and accelerator.is_main_process:
        push_after_run(out_dir, recipe.output.push_to_hub)
    return TrainOutput(out_dir, metrics)


def _build_task_model(recipe: Recipe, spec: TaskSpec, strategy):
    """``model.name`` with the task's head (text or image)."""
    m = recipe.model
    path = resolve_model_path(m.name, m.revision)
    if spec.type in IMAGE_TASKS:
        return build_image_model(path, spec, from_scratch=m.from_scratch, trust_remote_code=m.trust_remote_code, name=m.name)
    return build_model(path, spec, trust_remote_code=m.trust_remote_code, name=m.name, **strategy.model_kwargs())


def _load_processor(path: str, recipe: Recipe):
    """The tokenizer (text) or image processor (images) saved next to the model."""
    if recipe.task.type in IMAGE_TASKS:
        return load_image_processor(path)
    return load_tokenizer(path, recipe.model.trust_remote_code)


def _model_inputs(recipe: Recipe, processor, splits: DatasetDict, augment: bool,
                  carry: tuple[str, ...] = ()) -> tuple[DatasetDict, dict]:
    """What the model reads per split: token ids (tags aligned to word pieces for token tasks), or
    ``pixel_values`` (training augmented as the recipe asks); plus the token tasks' truncation report.
    ``carry``: raw text columns kept beside the token ids."""
    if recipe.task.type in IMAGE_TASKS:
        splits = decode_image_columns(splits, recipe.task.image, recipe.data.files)
        return preprocess_images(splits, processor, recipe.task.image, recipe.data.augment if augment else None,
                                 recipe.train.seed), {}
    return data_lib.tokenize_for_task(splits, processor, recipe.task, recipe.model.max_length, carry)


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


def _run_metrics(recipe, spec, strategy, trained, model, result, prepared, accelerator, metric_names, eval_batch, collator, *,
                 total: int) -> dict:
    """metrics.json: scores per split, speed, parameter counts, and the ranks' weight checksums."""
    state = result.state
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    metrics = {
        "validation": result.best_metrics,
        "train": {"seconds": round(state.train_seconds, 2), "samples_per_second": round(state.samples_seen / max(state.train_seconds, 1e-9), 2),
                  "steps": state.global_step, "epochs_completed": state.epoch, "stopped_early": result.stopped_early,
                  "best_step": state.best_step},
        "parameters": {"trainable": trainable, "total": total, "trainable_percent": round(100 * trainable / total, 4)},
        "data": {split: len(ds) for split, ds in prepared.items()},
        "strategy": recipe.strategy_name, "model": recipe.model.name,
        "num_processes": accelerator.num_processes,
        "rank_weight_checksums": _rank_checksums(model, accelerator),
    }
    if "test" in prepared:
        loader = accelerator.prepare(data_lib.eval_loader(prepared["test"], eval_batch, collator))
        metrics["test"] = evaluate_loader(trained, strategy, loader, accelerator, spec, metric_names)
    if getattr(strategy, "cache_hits", None):
        metrics["feature_cache_hits"] = strategy.cache_hits
    return metrics


def _rank_checksums(model, accelerator) -> list[float]:
    """One checksum of the weights per process; they must agree after a multi-process run."""
    local = torch.stack([p.detach().double().sum() + p.detach().double().abs().sum() for p in model.parameters()]).sum()
    return [round(v, 6) for v in accelerator.gather(local.reshape(1).to(accelerator.device)).tolist()]


def evaluate(output_dir: str | Path, split: str = "validation") -> dict[str, float]:
    """Score a saved output folder on a split of the data its recipe names.

    Labels are mapped with the saved model's own ``label2id``, so the scores are those of
    the folder as published.
    """
    output_dir = Path(output_dir)
    recipe = load_recipe(find_run_file(output_dir) or output_dir / "recipe.yaml")
    model = load_model(output_dir, recipe.model.trust_remote_code)
    tokenizer = _load_processor(str(output_dir), recipe)
    spec = TaskSpec(recipe.task.type, {int(i): n for i, n in model.config.id2label.items()}, recipe.task.threshold)
    splits = data_lib.load_splits(recipe.data, recipe.train.seed)
    if split not in splits:
        raise data_lib.DataError(f"--split: the recipe's data has no '{split}' split; it has: {', '.join(splits)}")
    encoded, _ = data_lib.encode_labels(DatasetDict({split: splits[split]}), recipe.task, recipe.data, names=list(spec.id2label.values()))
    tokenized, _ = _model_inputs(recipe, tokenizer, encoded, augment=False)
    accelerator = new_accelerator()
    strategy = Strategy(None, spec)
    loader = data_lib.eval_loader(tokenized[split], 2 * recipe.train.batch_size, strategy.collator(tokenizer))
    model, loader = accelerator.prepare(model, loader)
    return evaluate_loader(model, strategy, loader, accelerator, spec, recipe.train.metrics or default_metrics(spec.type))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def _short(scores: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in scores.items())
