"""The Strategy protocol: the seam between "what trains" and the one shared loop.

A strategy is two classes in one module:

- its **options** (a ``StrategyOptions`` dataclass: the recipe's ``strategy`` section): its keys,
  the defaults it gives other sections (``train.lr``...), its validation rules and what cards and
  the Hub say about it. Options never need torch: ``nlp-transfer validate`` reads them.
- its **hooks** (a ``Strategy``): what trains (``prepare``), what a batch holds (``prepare_data``,
  ``collator``, ``train_batches``), the loss (``loss(model, batch, ctx)``), schedules (``on_epoch``,
  ``on_step``) and what gets saved (``export``).

The loop never knows which strategy runs; strategies never step an optimizer. Code outside
``strategies/`` never names a strategy: it asks the options' traits and the hooks.
Module level stays light; heavy libraries load on first use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .._lazy import lazy

if TYPE_CHECKING:
    from ..recipe.schema import Recipe, TaskConfig
    from ..tasks.spec import TaskSpec

torch = lazy("torch")


@dataclass
class StrategyOptions:
    """``strategy`` section of a recipe; each strategy subclasses it with its own keys.

    Class attributes (traits other modules read instead of the strategy's name):
        uses_unlabeled: Trains on ``data.files.unlabeled`` (text without labels).
        trains_encoder: Changes the pretrained encoder's weights (directly or through adapters).
        fixed_inputs: Computes something once per training input and reuses it every epoch
            (cached features), so inputs must not change between epochs (no augmentation).
        push_choices: What ``output.push_to_hub.what`` / ``push --what`` may pick for its outputs.
        summary: What the card says trained (formatted with the options, ``targets`` and ``pooling``).
        description: A few words for a Hub commit message.
        train_defaults: Values for ``train`` keys the recipe leaves unset (see ``config.TRAIN_DEFAULTS``).
        head_lr_factor: ``train.head_lr`` left unset is this many times ``train.lr``.
        pooling_default: ``model.pooling`` left unset (None: follow the model folder, see ``model_files.default_pooling``).
        multi_task: Trains several tasks on one shared encoder (a multi-task recipe's ``tasks``), one instance
            of the strategy per task on the tied task models.
        adaptable: Combines with a recipe's ``adapt`` section: it trains the encoder on the fly (no cached
            features) with the default loss and batches, which ``AdaptedStrategy`` then extends.
    """

    name: str = "full"
    uses_unlabeled: ClassVar[bool] = False
    trains_encoder: ClassVar[bool] = True
    fixed_inputs: ClassVar[bool] = False
    push_choices: ClassVar[tuple[str, ...]] = ("both",)
    summary: ClassVar[str] = "strategy `{name}`"
    description: ClassVar[str] = "model"
    train_defaults: ClassVar[dict[str, Any]] = {}
    head_lr_factor: ClassVar[float] = 1.0
    pooling_default: ClassVar[str | None] = None
    adaptable: ClassVar[bool] = False
    multi_task: ClassVar[bool] = True

    def complete(self, recipe: Recipe) -> None:
        """Fill keys of other sections that this strategy decides (runs before validation)."""

    def validate(self, recipe: Recipe) -> list[str]:
        """Cross-section problems for this strategy (empty list if none)."""
        return []

    def card_summary(self, recipe: Recipe, metrics: dict) -> str:
        """One sentence for the card: what trained and what stayed frozen."""
        options = dataclasses.asdict(self)
        return self.summary.format(**options, pooling=recipe.model.pooling or "cls")


@dataclass
class StepContext:
    """Where training is, for losses and schedules that depend on it.

    Attributes:
        step: Optimizer steps done so far.
        total_steps: Optimizer steps the run will take.
        epoch: The current epoch, 0-based.
        steps_per_epoch: Optimizer steps in one epoch (a schedule counted in epochs converts with it).
        progress: ``step / total_steps`` in [0, 1] (e.g. the gradient-reversal warm-up of domain adaptation).
    """

    step: int
    total_steps: int
    epoch: int
    steps_per_epoch: int = 1

    @property
    def progress(self) -> float:
        return min(1.0, self.step / max(1, self.total_steps))


class Strategy:
    """Base class with the behaviour of plain fine-tuning; subclasses override pieces."""

    name: ClassVar[str]
    Options: ClassVar[type[StrategyOptions]] = StrategyOptions
    # Whether what trains changes during the run (``on_epoch`` / ``on_step`` freeze and unfreeze parameters):
    # the loop then hands every parameter of ``param_groups`` to a multi-process wrapper as trainable.
    changes_trainable: ClassVar[bool] = False
    # Whether the loss reads nothing of the model but its logits. Where the head reads position 0 alone (BERT's
    # pooler, ViT's [CLS]), the last layer then computes that position alone while training (``first_token.py``):
    # the same gradients, about 1/7 fewer matmul FLOPs for 6 layers. Off for a strategy that reads hidden states.
    first_token_training: ClassVar[bool] = False

    def __init__(self, options: StrategyOptions, task: TaskSpec):
        self.options = options
        self.task = task

    # ------------------------------------------------------------------ model
    def build_model(self, build):
        """The model this strategy trains and exports; ``build()`` makes the recipe's ``model.name`` task model."""
        return build()

    def raw_columns(self, task: TaskConfig, processor) -> list[str]:
        """Raw data columns (``task``: the recipe's task section) that preprocessing keeps beside the
        model inputs for ``prepare_data``, which must drop them from what it returns; none by default."""
        return []

    def prepare(self, model):
        """Decide what trains; return the model the loop should train."""
        return model

    def param_groups(self, model, lr: float, head_lr: float, weight_decay: float) -> list[dict]:
        """Optimizer groups (each with its ``lr``) of every parameter that may ever train.

        The default: the parameters that require grad after ``prepare``; the new head's at ``head_lr``,
        the rest at ``lr``; biases and norms get no weight decay.
        """
        from ..models.build import new_head_parameter_names

        head = new_head_parameter_names(model)
        groups: dict[tuple[bool, bool], dict] = {}
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            key = (name in head, param.ndim >= 2)
            groups.setdefault(key, {"params": [], "lr": head_lr if key[0] else lr,
                                    "weight_decay": weight_decay if key[1] else 0.0})["params"].append(param)
        return list(groups.values())

    def lr_factors(self, groups: list[dict], steps_per_epoch: int, total_steps: int) -> list | None:
        """Per optimizer group, a function of the step that multiplies ``train.scheduler``'s rate, or None (all 1).

        E.g. 0 until a schedule unfreezes the group, then a re-warm-up ramp. Each must be a pure function
        of the step (picklable, e.g. a ``functools.partial``), so that ``--resume`` continues it exactly.
        """
        return None

    # ------------------------------------------------------------------- data
    def prepare_data(self, model, processor, splits, accelerator):
        """Turn preprocessed splits into what a batch holds (identity by default)."""
        return splits

    def collator(self, processor):
        """How rows become a batch (the task's collator: dynamic padding, per-token labels, stacked pixels)."""
        return self.task.kind.collator(processor)

    def train_batches(self, train, *, batch_size: int, seed: int, group_by_length: bool, collator):
        """The training batches: a DataLoader whose ``batch_sampler`` has ``set_epoch(epoch)`` (seeded per
        epoch, so a resumed run sees the same batches). A strategy may build its own, e.g. to mix streams."""
        from ..data.loaders import train_loader

        return train_loader(train, batch_size, seed, group_by_length, collator)

    # ------------------------------------------------------------------- loss
    def logits(self, model, batch: dict):
        """Head outputs for a batch (used for the loss and for evaluation)."""
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "length")}
        return model(**inputs).logits

    def loss(self, model, batch: dict, ctx: StepContext):
        """The training loss for a batch and numbers to log beside it."""
        return self.task.loss(self.logits(model, batch), batch["labels"]), {}

    def on_epoch(self, model, ctx: StepContext) -> None:
        """Called at the start of every epoch, a resumed one included (e.g. to unfreeze layers on a schedule).

        A schedule must follow from ``ctx`` alone, so that ``--resume`` restores it exactly.
        """

    def on_step(self, model, ctx: StepContext) -> None:
        """Called after every optimizer step."""

    def evaluation_extras(self, model) -> dict:
        """Numbers logged beside each validation evaluation (e.g. domain-adaptation diagnostics); never used for selection."""
        return {}

    # ----------------------------------------------------------------- export
    def export(self, model, processor, out_dir: Path) -> None:
        """Write what this strategy ships into ``out_dir`` (a plain transformers folder)."""
        from ..models.build import save_model

        save_model(model, processor, out_dir)

    def model_folders(self, out_dir: Path) -> list[Path]:
        """Every loadable model folder ``export`` wrote; each gets the reload check."""
        return [out_dir]

    def export_metrics(self, out_dir: Path) -> dict:
        """Strategy-specific numbers about the export (metrics.json keeps them under the strategy name)."""
        return {}

    def run_metrics(self, metrics: dict, metric_names: list[str]) -> dict:
        """Strategy-specific numbers that need the run's scores (merged with ``export_metrics``)."""
        return {}

    def top_level_metrics(self) -> dict:
        """Numbers metrics.json keeps at its top level (e.g. ``feature_cache_hits``)."""
        return {}
