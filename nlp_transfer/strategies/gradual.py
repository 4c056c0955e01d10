"""``gradual``: gradual unfreezing (ULMFiT). The head trains first; every ``unfreeze_every`` epochs (or
steps) one more layer group unfreezes, from the top down to the embeddings (or ``stop_at``).

The schedule is data: which groups train follows from the optimizer step alone, so ``--resume``
restores it exactly. The optimizer holds every group from the start (a frozen group has no
gradient, so it does not move); each group's rate may re-warm up after it unfreezes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import partial
from typing import Literal

from ..errors import ModelError
from .base import StepContext, Strategy
from .layerwise import LayerwiseOptions, layerwise_param_groups

logger = logging.getLogger(__name__)


@dataclass
class GradualOptions(LayerwiseOptions):
    """``strategy`` keys of ``gradual``.

    ``unfreeze_every``: how many ``unfreeze_unit`` (``epochs`` or ``steps``) pass between two unfreezings;
    ``stop_at``: the lowest encoder layer (0-based) that unfreezes (null: all of them and then the
    embeddings); ``rewarmup_steps``: a newly unfrozen group's rate rises linearly from 0 over this many
    steps (0: none); ``layer_decay`` / ``lr_divisor``: discriminative rates (see ``full``).
    """

    name: str = "gradual"
    adaptable = True  # trains the encoder on the fly: an ``adapt`` section may align its features
    unfreeze_every: float = 1.0
    unfreeze_unit: Literal["epochs", "steps"] = "epochs"
    stop_at: int | None = None
    rewarmup_steps: int = 0

    summary = ("gradual unfreezing: the new task head trained first, then one more layer group every {unfreeze_every:g} "
               "{unfreeze_unit}, from the top down")
    description = "gradual-unfreezing fine-tune"
    train_defaults = {"lr": 5e-5}
    head_lr_factor = 20.0

    def validate(self, recipe) -> list[str]:
        problems = super().validate(recipe)
        if not self.unfreeze_every > 0:
            problems.append(f"strategy.unfreeze_every: got {self.unfreeze_every:g}; expected a positive number of "
                            f"{self.unfreeze_unit} between two unfreezings, e.g. 1")
        elif self.unfreeze_unit == "steps" and not float(self.unfreeze_every).is_integer():
            problems.append(f"strategy.unfreeze_every: got {self.unfreeze_every:g} steps; expected a whole number of steps")
        if self.stop_at is not None and self.stop_at < 0:
            problems.append(f"strategy.stop_at: got {self.stop_at}; expected the lowest encoder layer to unfreeze "
                            "(0-based), or null to unfreeze down to the embeddings")
        if self.rewarmup_steps < 0:
            problems.append(f"strategy.rewarmup_steps: got {self.rewarmup_steps}; expected a number of steps >= 0")
        return problems


def _rewarmup(step: int, start: int, length: int) -> float:
    """A group's lr factor: 0 before it unfreezes at ``start``, then a linear rise over ``length`` steps."""
    if step < start:
        return 0.0
    return 1.0 if length <= 0 else min(1.0, (step - start + 1) / length)


class GradualStrategy(Strategy):
    """Unfreeze one layer group at a time from the top; lower groups may learn more slowly."""

    name = "gradual"
    Options = GradualOptions
    first_token_training = True
    changes_trainable = True

    def __init__(self, options, task):
        super().__init__(options, task)
        self.stages: list[list] = []  # stage k: the parameters that unfreeze at the k-th unfreezing (0: head and top)
        self.stage_names: list[list[str]] = []
        self.unfrozen = -1  # stages unfrozen so far, minus one

    def prepare(self, model):
        from ..models.build import layer_groups

        model.requires_grad_(False)
        groups = layer_groups(model)
        top = groups[-1].depth
        lowest = 0 if self.options.stop_at is None else self.options.stop_at + 1
        if self.options.stop_at is not None and self.options.stop_at > top - 2:
            raise ModelError(f"strategy.stop_at: got {self.options.stop_at}, but {type(model).__name__} has {top - 1} "
                             f"encoder layer groups (0 to {top - 2}); pick one of them, or null")
        by_depth: dict[int, list] = {}
        for group in groups:
            by_depth.setdefault(group.depth, []).append(group)
        self.stages = [[p for g in by_depth[d] for p in g.params] for d in sorted(by_depth, reverse=True) if d >= lowest]
        self.stage_names = [[g.name for g in by_depth[d]] for d in sorted(by_depth, reverse=True) if d >= lowest]
        self._apply(StepContext(0, 1, 0))  # the head (and the backbone's top) alone, as at the first step
        return model

    def param_groups(self, model, lr, head_lr, weight_decay):
        may_train = {id(p) for stage in self.stages for p in stage}
        return layerwise_param_groups(model, lr, head_lr, weight_decay, self.options.layer_factor(),
                                      include=lambda p: id(p) in may_train)

    def _steps_between(self, steps_per_epoch: int) -> int:
        every = self.options.unfreeze_every
        return max(1, round(every * steps_per_epoch) if self.options.unfreeze_unit == "epochs" else int(every))

    def lr_factors(self, groups, steps_per_epoch, total_steps):
        between = self._steps_between(steps_per_epoch)
        top = max(g["depth"] for g in groups)
        return [partial(_rewarmup, start=(top - g["depth"]) * between, length=self.options.rewarmup_steps) for g in groups]

    def stages_unfrozen(self, ctx: StepContext) -> int:
        """How many stages train at optimizer step ``ctx.step`` (1: the head and the backbone's top)."""
        return min(len(self.stages), 1 + math.floor(ctx.step / self._steps_between(ctx.steps_per_epoch)))

    def _apply(self, ctx: StepContext) -> None:
        # always set (not only on a change): the loop marks every group trainable before a multi-process wrap
        count = self.stages_unfrozen(ctx)
        for k, stage in enumerate(self.stages):
            for param in stage:
                param.requires_grad_(k < count)
        if count == self.unfrozen:
            return
        self.unfrozen = count
        logger.info("gradual: step %d, epoch %d: training %s (%d of %d groups; frozen below)", ctx.step, ctx.epoch + 1,
                    ", ".join(n for names in self.stage_names[:count] for n in names), count, len(self.stages))

    def on_epoch(self, model, ctx):
        self._apply(ctx)

    def on_step(self, model, ctx):
        self._apply(ctx)

    def loss(self, model, batch, ctx):
        loss, extra = super().loss(model, batch, ctx)
        return loss, {**extra, "unfrozen_groups": self.unfrozen}
