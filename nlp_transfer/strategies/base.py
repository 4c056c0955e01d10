"""The Strategy protocol: the seam between "what trains" and the one shared loop.

A strategy decides what trains (``prepare``), what a batch holds (``prepare_data``,
``collator``), what the loss is (``loss``) and what gets saved (``export``). The loop
never knows which strategy runs; strategies never step an optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from ..data import batch_collator
from ..tasks import TaskSpec, compute_loss


@dataclass
class StrategyOptions:
    """``strategy`` section of a recipe; each strategy subclasses it with its own keys."""

    name: str = "full"
    # True for strategies that train on ``data.files.unlabeled`` (text without labels)
    uses_unlabeled: ClassVar[bool] = False

    def complete(self, recipe) -> None:
        """Fill keys of other sections that this strategy decides (runs before validation)."""

    def validate(self, recipe) -> list[str]:
        """Cross-section problems for this strategy (empty list if none)."""
        return []


class Strategy:
    """Base class with the behaviour of plain fine-tuning; subclasses override pieces."""

    name: ClassVar[str]
    Options: ClassVar[type[StrategyOptions]] = StrategyOptions

    def __init__(self, options: StrategyOptions, task: TaskSpec):
        self.options = options
        self.task = task

    def model_kwargs(self) -> dict[str, Any]:
        """Extra arguments for ``build_model`` (e.g. the pooling a head reads)."""
        return {}

    def build_model(self, build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
        """The model this strategy trains and exports; ``build()`` makes the recipe's ``model.name`` task model."""
        return build()

    def raw_columns(self, task, processor) -> list[str]:
        """Raw data columns (``task``: the recipe's task section) to keep beside the token ids for
        ``prepare_data``, which must drop them from what it returns; none by default."""
        return []

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Decide what trains; return the model the loop should train."""
        return model

    def prepare_data(self, model, tokenizer, splits: dict, accelerator) -> dict:
        """Turn tokenized splits into what a batch holds (identity by default)."""
        return splits

    def collator(self, tokenizer):
        """How examples become a batch; dynamic padding by default, per-token labels padded too
        (``tokenizer``: an image processor for images)."""
        return batch_collator(tokenizer, self.task.type)

    def param_groups(self, model: torch.nn.Module, weight_decay: float) -> list[dict]:
        """Optimizer groups of the trainable parameters; biases and norms get no decay."""
        decay, no_decay = [], []
        for param in model.parameters():
            if param.requires_grad:
                (decay if param.ndim >= 2 else no_decay).append(param)
        return [g for g in ({"params": decay, "weight_decay": weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}) if g["params"]]

    def logits(self, model: torch.nn.Module, batch: dict) -> torch.Tensor:
        """Head outputs for a batch (used for the loss and for evaluation)."""
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "length")}
        return model(**inputs).logits

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """The training loss for a batch and numbers to log beside it."""
        loss = compute_loss(self.logits(model, batch), batch["labels"], self.task)
        return loss, {}

    def export(self, model: torch.nn.Module, tokenizer, out_dir: Path) -> None:
        """Write what this strategy ships into ``out_dir`` (a plain transformers folder)."""
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)

    def model_folders(self, out_dir: Path) -> list[Path]:
        """Every loadable model folder ``export`` wrote; each gets the reload check."""
        return [out_dir]

    def export_metrics(self, out_dir: Path) -> dict:
        """Strategy-specific numbers about the export (metrics.json keeps them under the strategy name)."""
        return {}

    def run_metrics(self, metrics: dict, metric_names: list[str]) -> dict:
        """Strategy-specific numbers that need the run's scores (merged with ``export_metrics``)."""
        return {}
