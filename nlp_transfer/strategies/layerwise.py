"""Discriminative learning rates over layer groups, shared by ``full``, ``partial`` and ``gradual``.

The groups come from ``models.layer_groups`` (embeddings, each encoder layer, the backbone's top,
the new head), derived from the model, so every supported family gets them. Below the top, each
group's rate is ``train.lr`` times ``layer_decay`` per group (``layer_decay: 0.9``) or divided by
``lr_divisor`` per group (ULMFiT's ``lr_divisor: 2.6``); the new head trains at ``train.head_lr``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import StrategyOptions


@dataclass
class LayerwiseOptions(StrategyOptions):
    """``strategy.layer_decay`` (lr multiplier per group below the top, e.g. 0.9) or ``strategy.lr_divisor``
    (ULMFiT's form: each group below gets lr / divisor, e.g. 2.6); null disables, at most one of the two."""

    layer_decay: float | None = None
    lr_divisor: float | None = None

    def validate(self, recipe) -> list[str]:
        problems = []
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            problems.append(f"strategy.layer_decay: got {self.layer_decay}; expected a number in (0, 1], e.g. 0.9, or null")
        if self.lr_divisor is not None and self.lr_divisor < 1:
            problems.append(f"strategy.lr_divisor: got {self.lr_divisor}; expected a number >= 1 (each lower layer group "
                            "gets lr / lr_divisor), e.g. 2.6 as in ULMFiT, or null")
        if self.layer_decay is not None and self.lr_divisor is not None:
            problems.append(f"strategy.lr_divisor: got {self.lr_divisor} and strategy.layer_decay {self.layer_decay}; "
                            "they are two spellings of one setting (layer_decay = 1 / lr_divisor): set only one")
        return problems

    def layer_factor(self) -> float:
        """The lr multiplier from one layer group to the one below it (1.0: one rate for all)."""
        if self.lr_divisor is not None:
            return 1.0 / self.lr_divisor
        return self.layer_decay if self.layer_decay is not None else 1.0


def layerwise_param_groups(model, lr: float, head_lr: float, weight_decay: float, factor: float,
                           include=lambda param: param.requires_grad) -> list[dict]:
    """Optimizer groups per layer group: ``lr * factor ** (top - depth)``, the new head at ``head_lr``.

    Each group carries its layer group's ``group`` name and ``depth`` (a schedule finds its groups by them);
    biases and norms get no weight decay. ``include`` picks the parameters (default: those that require grad).
    """
    from ..models.build import layer_groups

    groups = layer_groups(model)
    top = groups[-1].depth
    out = []
    for group in groups:
        rate = head_lr if group.is_head else lr * factor ** (top - group.depth)
        for with_decay in (True, False):
            params = [p for p in group.params if include(p) and (p.ndim >= 2) == with_decay]
            if params:
                out.append({"params": params, "lr": rate, "weight_decay": weight_decay if with_decay else 0.0,
                            "group": group.name, "depth": group.depth})
    return out
