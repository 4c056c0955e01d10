"""``full``: every parameter trains, with optional layer-wise learning-rate decay."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Strategy, StrategyOptions


@dataclass
class FullOptions(StrategyOptions):
    """``strategy.layer_decay``: lr multiplier per layer group below the top (e.g. 0.9); null disables."""

    name: str = "full"
    layer_decay: float | None = None

    summary = "every weight of the backbone and of the new task head trained"
    description = "full fine-tune"
    train_defaults = {"lr": 5e-5}
    head_lr_factor = 20.0

    def validate(self, recipe) -> list[str]:
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            return [f"strategy.layer_decay: got {self.layer_decay}; expected a number in (0, 1], e.g. 0.9, or null"]
        return []


class FullStrategy(Strategy):
    """Full fine-tuning: unfreeze everything; lower layers may learn more slowly."""

    name = "full"
    Options = FullOptions

    def prepare(self, model):
        model.requires_grad_(True)
        return model

    def param_groups(self, model, lr, head_lr, weight_decay):
        decay = self.options.layer_decay
        if decay is None:
            return super().param_groups(model, lr, head_lr, weight_decay)
        from ..models import layer_groups

        groups = layer_groups(model)
        top = groups[-1].depth
        out = []
        for group in groups:
            rate = head_lr if group.is_head else lr * decay ** (top - group.depth)
            for with_decay in (True, False):
                params = [p for p in group.params if p.requires_grad and (p.ndim >= 2) == with_decay]
                if params:
                    out.append({"params": params, "lr": rate, "weight_decay": weight_decay if with_decay else 0.0,
                                "group": group.name})
        return out
