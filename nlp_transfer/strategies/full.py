"""``full``: every parameter trains, with optional discriminative (layer-wise) learning rates."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Strategy
from .layerwise import LayerwiseOptions, layerwise_param_groups


@dataclass
class FullOptions(LayerwiseOptions):
    """``strategy.layer_decay`` (lr multiplier per layer group below the top, e.g. 0.9) or ``strategy.lr_divisor``
    (ULMFiT: lr / 2.6 per group below); null disables."""

    name: str = "full"
    adaptable = True  # trains the encoder on the fly: an ``adapt`` section may align its features

    summary = "every weight of the backbone and of the new task head trained"
    description = "full fine-tune"
    train_defaults = {"lr": 5e-5}
    head_lr_factor = 20.0


class FullStrategy(Strategy):
    """Full fine-tuning: unfreeze everything; lower layers may learn more slowly."""

    name = "full"
    Options = FullOptions
    first_token_training = True

    def prepare(self, model):
        model.requires_grad_(True)
        return model

    def param_groups(self, model, lr, head_lr, weight_decay):
        if self.options.layer_decay is None and self.options.lr_divisor is None:
            return super().param_groups(model, lr, head_lr, weight_decay)
        return layerwise_param_groups(model, lr, head_lr, weight_decay, self.options.layer_factor())
