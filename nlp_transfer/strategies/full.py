"""``full``: every parameter trains, with optional layer-wise learning-rate decay."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .base import Strategy, StrategyOptions

_LAYER_INDEX = re.compile(r"\.layers?\.(\d+)\.")


@dataclass
class FullOptions(StrategyOptions):
    """``strategy.layer_decay``: lr multiplier per layer below the top (e.g. 0.9); null disables."""

    name: str = "full"
    layer_decay: float | None = None

    def validate(self, recipe) -> list[str]:
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            return [f"strategy.layer_decay: got {self.layer_decay}; expected a number in (0, 1], e.g. 0.9, or null"]
        return []


class FullStrategy(Strategy):
    """Full fine-tuning: unfreeze everything; lower layers may learn more slowly."""

    name = "full"
    Options = FullOptions

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        model.requires_grad_(True)
        return model

    def param_groups(self, model: torch.nn.Module, weight_decay: float) -> list[dict]:
        decay = self.options.layer_decay
        if decay is None:
            return super().param_groups(model, weight_decay)
        num_layers = model.config.num_hidden_layers
        groups: dict[tuple[int, bool], dict] = {}
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            depth = _layer_depth(name, num_layers)
            key = (depth, param.ndim >= 2)
            group = groups.setdefault(key, {
                "params": [], "weight_decay": weight_decay if key[1] else 0.0,
                "lr_scale": decay ** (num_layers + 1 - depth),
            })
            group["params"].append(param)
        return list(groups.values())


def _layer_depth(param_name: str, num_layers: int) -> int:
    """0 for embeddings, i+1 for encoder layer i, num_layers+1 for pooler and head."""
    if "embeddings" in param_name:
        return 0
    match = _LAYER_INDEX.search(param_name)
    return int(match.group(1)) + 1 if match else num_layers + 1
