"""Learning-rate schedules: slanted triangular against ULMFiT's formula, the others against transformers'."""

import math

import pytest
import torch
from transformers import get_scheduler

from nlp_transfer import RecipeError, load_recipe
from nlp_transfer.recipe.schema import TrainConfig
from nlp_transfer.training.schedules import build_scheduler, slanted_triangular


def _paper(t: int, T: int, cut_frac: float, ratio: float) -> float:
    """Howard & Ruder (2018), eq. 3, as printed: the rate at iteration t as a share of the peak."""
    cut = math.floor(T * cut_frac)
    p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / cut_frac - 1))
    return (1 + p * (ratio - 1)) / ratio


def _rates(scheduler, optimizer, steps: int) -> list[list[float]]:
    """The rate of every group at each of ``steps`` optimizer steps."""
    rates = []
    for _ in range(steps):
        rates.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return rates


def _optimizer(*lrs):
    return torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs])


@pytest.mark.parametrize("T, cut_frac, ratio", [(1000, 0.1, 32), (200, 0.25, 10), (50, 0.2, 32)])
def test_slanted_triangular_is_the_papers_formula(T, cut_frac, ratio):
    # T * cut_frac is whole here, where the paper's decay length cut * (1/cut_frac - 1) is T - cut
    for t in range(T + 1):
        assert slanted_triangular(t, T, cut_frac, ratio) == pytest.approx(_paper(t, T, cut_frac, ratio), abs=1e-12), t
    cut = math.floor(T * cut_frac)
    assert slanted_triangular(0, T, cut_frac, ratio) == pytest.approx(1 / ratio)
    assert slanted_triangular(cut, T, cut_frac, ratio) == pytest.approx(1.0)
    assert slanted_triangular(T, T, cut_frac, ratio) == pytest.approx(1 / ratio)


def test_slanted_triangular_never_goes_below_its_floor_when_the_cut_is_not_whole():
    T, cut_frac, ratio = 105, 0.1, 32  # the paper's form would end at a negative rate here
    assert _paper(T, T, cut_frac, ratio) < 0
    values = [slanted_triangular(t, T, cut_frac, ratio) for t in range(T + 1)]
    assert min(values) == pytest.approx(1 / ratio) and values[-1] == pytest.approx(1 / ratio)
    assert max(values) == pytest.approx(1.0) and values.index(max(values)) == 10
    assert slanted_triangular(0, 5, 0.1, 32) == pytest.approx(1 / 32)  # fewer steps than 1 / cut_frac: a one-step rise


def test_the_scheduler_steps_every_group_through_slanted_triangular():
    cfg = TrainConfig(scheduler="slanted_triangular", cut_frac=0.1, ratio=32.0)
    optimizer = _optimizer(0.01, 0.001)
    rates = _rates(build_scheduler(optimizer, cfg, 100), optimizer, 100)
    for t, (top, lower) in enumerate(rates):
        assert top == pytest.approx(0.01 * _paper(t, 100, 0.1, 32)) and lower == pytest.approx(top / 10)


@pytest.mark.parametrize("name, hf_name", [("linear", "linear"), ("cosine", "cosine"), ("constant", "constant_with_warmup")])
def test_the_other_schedules_are_transformers_own(name, hf_name):
    cfg = TrainConfig(scheduler=name, warmup_ratio=0.1)
    ours_opt, theirs_opt = _optimizer(0.01, 0.5), _optimizer(0.01, 0.5)
    ours = _rates(build_scheduler(ours_opt, cfg, 57), ours_opt, 57)
    theirs = _rates(get_scheduler(hf_name, theirs_opt, num_warmup_steps=5, num_training_steps=57), theirs_opt, 57)
    assert ours == theirs  # bit for bit: existing runs keep their numbers


def test_group_factors_multiply_the_schedule():
    cfg = TrainConfig(scheduler="constant", warmup_ratio=0.0)
    optimizer = _optimizer(1.0, 1.0)
    late = lambda step: 0.0 if step < 3 else 1.0  # noqa: E731
    rates = _rates(build_scheduler(optimizer, cfg, 6, [None, late]), optimizer, 6)
    assert rates == [[1.0, 0.0]] * 3 + [[1.0, 1.0]] * 3


@pytest.mark.parametrize("key, value, message", [
    ("cut_frac", 0.0, r"train.cut_frac: got 0.0; expected the share of steps the slanted triangular schedule spends rising"),
    ("ratio", 0.5, r"train.ratio: got 0.5; expected how many times the peak lr exceeds the lowest, a number >= 1"),
    ("scheduler", "triangular", r"train.scheduler: got 'triangular'; expected one of: linear, cosine, constant, slanted_triangular"),
])
def test_bad_schedule_settings_name_the_key(toy_recipe, key, value, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe({**toy_recipe, "train": {**toy_recipe["train"], key: value}})
