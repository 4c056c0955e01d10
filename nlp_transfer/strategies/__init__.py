"""The one registry of strategies. A new strategy is a module here plus one entry below."""

from __future__ import annotations

from .base import StepContext, Strategy, StrategyOptions
from .distill import DistillStrategy
from .frozen import FrozenStrategy
from .full import FullStrategy
from .gradual import GradualStrategy
from .lora import LoraStrategy
from .partial import PartialStrategy

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (FullStrategy, FrozenStrategy, LoraStrategy, DistillStrategy,
                                                                    PartialStrategy, GradualStrategy)}
DEFAULT_STRATEGY = FullStrategy.name  # a recipe without strategy.name fine-tunes every weight


def build_strategy(options: StrategyOptions, task) -> Strategy:
    """The strategy named by ``options.name``, configured with its recipe options."""
    return STRATEGIES[options.name](options, task)


__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "StepContext", "Strategy", "StrategyOptions", "build_strategy"]
