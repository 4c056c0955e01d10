"""The one registry of strategies. A new strategy is a module in this package plus one entry below."""

from __future__ import annotations

from ..adapt.strategy import AdaptedStrategy
from .base import StepContext, Strategy, StrategyOptions
from .distill.strategy import DistillStrategy
from .frozen import FrozenStrategy
from .full import FullStrategy
from .gradual import GradualStrategy
from .lora import LoraStrategy
from .partial.strategy import PartialStrategy

STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (FullStrategy, FrozenStrategy, LoraStrategy, DistillStrategy,
                                                                    PartialStrategy, GradualStrategy)}
DEFAULT_STRATEGY = FullStrategy.name  # a recipe without strategy.name fine-tunes every weight


def build_strategy(options: StrategyOptions, task, adapt=None, weight_column: str | None = None) -> Strategy:
    """The strategy named by ``options.name``, configured with its recipe options.

    With a recipe's ``adapt`` section or ``data.weight_column``, it comes wrapped in ``AdaptedStrategy``
    (domain adaptation and weighted losses over the strategy's own hooks).
    """
    strategy = STRATEGIES[options.name](options, task)
    if adapt is None and not weight_column:
        return strategy
    return AdaptedStrategy(strategy, adapt)


__all__ = ["DEFAULT_STRATEGY", "STRATEGIES", "StepContext", "Strategy", "StrategyOptions", "build_strategy"]
