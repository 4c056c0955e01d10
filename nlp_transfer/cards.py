"""Model cards rendered offline from the real run's metrics with huggingface_hub."""

from __future__ import annotations

import dataclasses
import platform
from importlib import resources
from pathlib import Path

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

_PIPELINE_TAGS = {"text-classification": "text-classification", "multi-label-classification": "text-classification",
                  "regression": "text-classification"}


def write_model_card(folder: Path, recipe, metrics: dict, task) -> ModelCard:
    """Render ``README.md`` for an output folder; no network access is made."""
    dataset = recipe.data.source or "local files"
    eval_results = [
        EvalResult(task_type=_PIPELINE_TAGS[task.type], dataset_type=dataset, dataset_name=dataset, dataset_split=split,
                   metric_type=name, metric_value=value)
        for split in ("validation", "test") for name, value in metrics.get(split, {}).items() if name != "loss"
    ]
    card_data = ModelCardData(
        library_name="transformers", base_model=recipe.model.name, pipeline_tag=_PIPELINE_TAGS[task.type],
        tags=["nlp-transfer", recipe.strategy_name], datasets=[recipe.data.source] if recipe.data.source else None,
        eval_results=eval_results or None, model_name=Path(recipe.output.dir).name,
    )
    options = {k: v for k, v in dataclasses.asdict(recipe.strategy).items() if k != "name"}
    pooling = options.get("pooling", "cls")
    template = resources.files("nlp_transfer.model_cards") / "classifier.md"
    card = ModelCard.from_template(
        card_data, template_path=str(template), model_id=Path(recipe.output.dir).name, task_type=task.type,
        base_model=recipe.model.name, strategy=recipe.strategy_name, strategy_options=options or "",
        results={s: metrics[s] for s in ("validation", "test") if s in metrics},
        metric_names=[n for n in metrics["validation"] if n != "loss"] + ["loss"],
        train=recipe.train, data_sizes=metrics["data"], parameters=metrics["parameters"],
        train_seconds=metrics["train"]["seconds"], samples_per_second=metrics["train"]["samples_per_second"],
        hardware=torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()})",
        pooling=pooling, pipeline_extra=", trust_remote_code=True" if pooling == "mean" else "",
        example_text="This was a pleasant surprise.",
    )
    card.save(folder / "README.md")
    return card
