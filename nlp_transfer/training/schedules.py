"""Learning-rate schedules: ``train.scheduler`` as a function of the optimizer step, times a per-group factor.

Every schedule is a multiplier of each parameter group's own learning rate (``LambdaLR``), so the
discriminative rates of the groups (``strategy.layer_decay`` / ``lr_divisor``) keep their ratios
under any schedule. A strategy may add a factor per group (``Strategy.lr_factors``): gradual
unfreezing gives a group 0 until it unfreezes, then an optional re-warm-up ramp.

``linear``, ``cosine`` and ``constant`` compute exactly what transformers' ``get_scheduler`` does
(``linear``, ``cosine`` and ``constant_with_warmup``); ``slanted_triangular`` is ULMFiT's (Howard &
Ruder 2018, eq. 3). Schedules are pure functions of the step, so a resumed run continues them exactly.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, Sequence

from ..recipe.schema import TrainConfig

Factor = Callable[[int], float]


def slanted_triangular(step: int, total_steps: int, cut_frac: float = 0.1, ratio: float = 32.0) -> float:
    """ULMFiT's slanted triangular learning rate, as a multiplier of the peak rate.

    A short linear rise from ``1 / ratio`` to 1 over the first ``cut = floor(total_steps * cut_frac)``
    steps, then a long linear decay back to ``1 / ratio`` at ``total_steps``:
    ``p = t / cut`` before the cut, ``1 - (t - cut) / (total_steps - cut)`` after it, and the rate is
    ``(1 + p * (ratio - 1)) / ratio``. The paper writes the decay's length as ``cut * (1 / cut_frac - 1)``,
    which is ``total_steps - cut`` when ``total_steps * cut_frac`` is whole; otherwise the paper's form
    overshoots and turns the rate negative in the last steps, so the decay runs to ``total_steps`` here.

    Args:
        step: Optimizer steps taken (the rate of step ``step + 1``).
        total_steps: The run's optimizer steps (the paper's ``T``).
        cut_frac: The share of steps spent rising (0.1 in the paper).
        ratio: How much smaller the lowest rate is than the peak (32 in the paper).
    """
    cut = max(1, math.floor(total_steps * cut_frac))
    if step < cut:
        p = step / cut
    else:
        p = max(0.0, 1.0 - (step - cut) / max(1, total_steps - cut))
    return (1.0 + p * (ratio - 1.0)) / ratio


def _linear(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return float(step) / float(max(1, warmup))
    return max(0.0, float(total - step) / float(max(1, total - warmup)))


def _cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return float(step) / float(max(1, warmup))
    progress = float(step - warmup) / float(max(1, total - warmup))
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))


def _constant(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return float(step) / float(max(1.0, warmup))
    return 1.0


_WARMUP_SCHEDULES = {"linear": _linear, "cosine": _cosine, "constant": _constant}


def schedule_factor(cfg: TrainConfig, total_steps: int) -> Factor:
    """``train.scheduler`` as a multiplier of the learning rate at each step."""
    if cfg.scheduler == "slanted_triangular":
        return partial(slanted_triangular, total_steps=total_steps, cut_frac=cfg.cut_frac, ratio=cfg.ratio)
    warmup = int(cfg.warmup_ratio * total_steps)
    return partial(_WARMUP_SCHEDULES[cfg.scheduler], warmup=warmup, total=total_steps)


def _scaled(schedule: Factor, factor: Factor | None, step: int) -> float:
    value = schedule(step)
    return value * factor(step) if factor is not None else value


def build_scheduler(optimizer, cfg: TrainConfig, total_steps: int, factors: Sequence[Factor | None] | None = None):
    """A ``LambdaLR`` over ``optimizer``'s groups: ``train.scheduler`` times each group's factor (if any).

    Args:
        optimizer: Its groups' ``lr`` are the peak rates.
        cfg: ``scheduler``, ``warmup_ratio``, ``cut_frac`` and ``ratio`` are read.
        total_steps: Optimizer steps of the run.
        factors: One per optimizer group, or None; see ``Strategy.lr_factors``.
    """
    import torch

    schedule = schedule_factor(cfg, total_steps)
    groups = len(optimizer.param_groups)
    if factors is not None and len(factors) != groups:
        raise ValueError(f"lr_factors: got {len(factors)} factors for {groups} optimizer groups")
    # partials: LambdaLR checkpoints a lambda's __dict__, and a partial's is empty (the schedule follows from the step)
    lambdas = [partial(_scaled, schedule, factors[i] if factors is not None else None) for i in range(groups)]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
