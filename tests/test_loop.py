"""The training loop: learning, resume, early stopping, accumulation, non-finite loss, evaluation and selection."""

import json
from pathlib import Path

import pytest
import torch
from conftest import toy_sentences, write_csv
from safetensors.torch import load_file
from transformers import BertConfig

import nlp_transfer
from nlp_transfer import TrainingError
from nlp_transfer.outputs.export import partial_dir
from nlp_transfer.strategies.full import FullStrategy


def _recipe(toy_recipe, out: Path, **train) -> dict:
    return {**toy_recipe, "train": {**toy_recipe["train"], **train}, "output": {"dir": str(out)}}


def _log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


def _assert_same_weights(a: dict, b: dict, **tol):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], msg=lambda m, name=name: f"{name}: {m}", **tol)


_ORIGINAL_LOSS = FullStrategy.loss


def _fail_loss_at(monkeypatch, call: int, action):
    """Make the ``call``-th training loss (1-based) run ``action(loss)`` instead of returning normally."""
    original = _ORIGINAL_LOSS
    calls = []

    def loss(self, model, batch, ctx):
        calls.append(1)
        value, extra = original(self, model, batch, ctx)
        return (action(value), extra) if len(calls) == call else (value, extra)

    monkeypatch.setattr(FullStrategy, "loss", loss)
    return calls


@pytest.fixture
def no_dropout_model(tiny_model_dir, tmp_path) -> str:
    """The tiny model with dropout off, so two runs that should compute the same thing can be compared."""
    import shutil

    folder = tmp_path / "tiny-no-dropout"
    shutil.copytree(tiny_model_dir, folder)
    config = BertConfig.from_pretrained(folder)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    config.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def toy_run(tiny_model_dir, tmp_path_factory) -> nlp_transfer.TrainOutput:
    """The conftest toy recipe (10 epochs, evaluation each epoch), trained once for the tests that only read it."""
    folder = tmp_path_factory.mktemp("toy-run")
    recipe = {
        "model": {"name": tiny_model_dir, "max_length": 32},
        "data": {"files": {"train": write_csv(folder / "train.csv", toy_sentences(96, seed=1)),
                           "validation": write_csv(folder / "validation.csv", toy_sentences(32, seed=2))}},
        "train": {"epochs": 10, "batch_size": 16, "lr": 3e-3, "seed": 7, "log_every": 1, "warmup_ratio": 0.0},
        "output": {"dir": str(folder / "out")},
    }
    return nlp_transfer.train(recipe)


def test_loss_falls(toy_run):
    losses = [r["loss"] for r in _log(toy_run.output_dir) if "loss" in r]
    assert len(losses) == 60
    first, last = sum(losses[:6]) / 6, sum(losses[-6:]) / 6  # first and last epoch
    assert last < 0.5 * first, (first, last)


def test_validation_accuracy_is_high(toy_run):
    assert toy_run.metrics["validation"]["accuracy"] >= 0.9
    assert json.loads((toy_run.output_dir / "metrics.json").read_text())["validation"]["accuracy"] >= 0.9


def test_resume_matches_an_uninterrupted_run(toy_recipe, tmp_path, monkeypatch):
    """A run killed mid-epoch and resumed from its last checkpoint ends with the same weights as a run
    never interrupted, with dropout ON and length-grouped batches.

    The interrupted run crashes at step 11 (epoch 2, batch 5); its last checkpoint is step 8 (epoch 2,
    batch 2), so the resume must restore model, optimizer, scheduler and loop counters, skip exactly the
    two batches of epoch 2 already seen (same seeded batch order), and restore the RNG state so dropout
    draws the same masks. Leaving out any of these changes the final weights.
    """
    # eval_every beyond the last step: the one evaluation is at the end, so the exported weights are the
    # final ones (trained after the resume), not a best model saved before the crash
    settings = dict(epochs=3, checkpoint_every=4, group_by_length=True, eval_every=1000)
    reference = nlp_transfer.train(_recipe(toy_recipe, tmp_path / "reference", **settings))
    assert reference.metrics["train"]["best_step"] == 18

    interrupted = _recipe(toy_recipe, tmp_path / "resumed", **settings)

    def crash(loss):
        raise KeyboardInterrupt

    calls = _fail_loss_at(monkeypatch, 11, crash)  # step 11 = epoch 2, batch 5; last checkpoint: step 8
    with pytest.raises(KeyboardInterrupt):
        nlp_transfer.train(interrupted)
    assert len(calls) == 11
    assert not (tmp_path / "resumed").exists()
    checkpoints = sorted((partial_dir(tmp_path / "resumed") / "checkpoints").glob("step-*"))
    assert [c.name for c in checkpoints] == ["step-00000004", "step-00000008"]
    monkeypatch.setattr(FullStrategy, "loss", _ORIGINAL_LOSS)  # (not undo(): that would also drop conftest's cache isolation)

    resumed = nlp_transfer.train(interrupted, resume=True)
    assert resumed.metrics["train"]["steps"] == reference.metrics["train"]["steps"] == 18
    assert resumed.metrics["train"]["best_step"] == 18
    assert resumed.metrics["validation"] == pytest.approx(reference.metrics["validation"], abs=1e-6)
    _assert_same_weights(_weights(resumed.output_dir), _weights(reference.output_dir), atol=1e-6, rtol=1e-5)


def test_resume_without_a_checkpoint_is_an_error(toy_recipe, tmp_path):
    with pytest.raises(TrainingError, match=r"--resume: no checkpoint in .*checkpoints; set train\.checkpoint_every"):
        nlp_transfer.train(_recipe(toy_recipe, tmp_path / "out"), resume=True)
    assert not (tmp_path / "out").exists()


def test_early_stopping(toy_recipe, tmp_path):
    out = nlp_transfer.train(_recipe(toy_recipe, tmp_path / "out", epochs=1000, patience=1))
    train = json.loads((out.output_dir / "metrics.json").read_text())["train"]
    assert train["stopped_early"] is True
    assert train["epochs_completed"] < 30
    evaluations = [r for r in _log(out.output_dir) if "validation" in r]
    assert len(evaluations) == train["epochs_completed"]
    # it stopped at the first evaluation that did not improve on the best accuracy
    accuracies = [r["validation"]["accuracy"] for r in evaluations]
    assert accuracies[-1] <= max(accuracies[:-1])
    assert all(b > a for a, b in zip(accuracies[:-2], accuracies[1:-1]))  # every earlier one improved


def test_gradient_accumulation_matches_a_larger_batch(toy_recipe, no_dropout_model, tmp_path):
    base = {**toy_recipe, "model": {**toy_recipe["model"], "name": no_dropout_model}}
    # one evaluation, at the end: final weights; fp32, so that the two runs can agree to 1e-5
    settings = dict(epochs=1, group_by_length=False, eval_every=1000, mixed_precision="no")
    accumulated = nlp_transfer.train(_recipe(base, tmp_path / "acc", batch_size=8, grad_accum_steps=2, **settings))
    large = nlp_transfer.train(_recipe(base, tmp_path / "large", batch_size=16, grad_accum_steps=1, **settings))
    small = nlp_transfer.train(_recipe(base, tmp_path / "small", batch_size=8, grad_accum_steps=1, **settings))
    assert accumulated.metrics["train"]["steps"] == large.metrics["train"]["steps"] == 6
    assert accumulated.metrics["train"]["best_step"] == large.metrics["train"]["best_step"] == 6
    acc_w, large_w, small_w = (_weights(o.output_dir) for o in (accumulated, large, small))
    _assert_same_weights(acc_w, large_w, atol=1e-5, rtol=1e-4)
    # the comparison can fail: plain batches of 8 (twice the updates) end elsewhere
    assert not all(torch.allclose(acc_w[n], small_w[n], atol=1e-5, rtol=1e-4) for n in acc_w)


def test_non_finite_loss_without_a_checkpoint_says_restart(toy_recipe, tmp_path, monkeypatch):
    _fail_loss_at(monkeypatch, 5, lambda loss: loss * float("nan"))
    out = tmp_path / "out"
    with pytest.raises(TrainingError, match=r"non-finite training loss \(nan\) at step 5, epoch 1\. .*no checkpoint was saved "
                                            r"before the divergence .*the run must restart\. Lower train\.lr \(now 0\.003, "
                                            r"e\.g\. train\.lr=0\.0003\)"):
        nlp_transfer.train(_recipe(toy_recipe, out))
    assert not out.exists()
    assert not partial_dir(out).exists()  # nothing to resume from, so nothing is left behind


def test_eval_every_n_steps(toy_recipe, tmp_path):
    out = nlp_transfer.train(_recipe(toy_recipe, tmp_path / "out", epochs=2, eval_every=5))
    evaluations = [r["step"] for r in _log(out.output_dir) if "validation" in r]
    assert evaluations == [5, 10, 12]  # every 5 steps (not at epoch ends), plus the end of training (12 steps)


def test_best_model_is_the_one_saved(toy_run):
    out = toy_run.output_dir
    metrics = json.loads((out / "metrics.json").read_text())
    evaluations = {r["step"]: r["validation"] for r in _log(out) if "validation" in r}
    assert sorted(evaluations) == list(range(6, 61, 6))  # once per epoch
    best_step = metrics["train"]["best_step"]
    assert best_step < metrics["train"]["steps"]  # the best is not simply the last: selection matters here
    assert evaluations[best_step] == metrics["validation"]
    assert evaluations[metrics["train"]["steps"]]["loss"] != pytest.approx(metrics["validation"]["loss"])
    assert nlp_transfer.evaluate(out) == pytest.approx(metrics["validation"], abs=1e-5)


@pytest.mark.parametrize("max_norm", [0.5, 1e6], ids=["clipped", "under-the-norm"])
def test_gradient_clipping_matches_torch_and_leaves_small_gradients_untouched(max_norm):
    from accelerate import Accelerator

    from nlp_transfer.training.loop import _clip_grad_norm

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape)) for shape in [(30, 8), (8,), (8, 2)]]
    for p in params:
        p.grad = torch.randn_like(p)
    expected = [p.grad.clone() for p in params]
    reference = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for ref, g in zip(reference, expected):
        ref.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(reference, max_norm)
    grad_ids = [id(p.grad) for p in params]
    _clip_grad_norm(Accelerator(cpu=True), params, max_norm)
    for p, ref in zip(params, reference):
        torch.testing.assert_close(p.grad, ref.grad, rtol=1e-6, atol=0)
    assert [id(p.grad) for p in params] == grad_ids
    if max_norm > 1:  # no multiply by 1: the gradients are bit for bit the ones backward wrote
        assert all(torch.equal(p.grad, g) for p, g in zip(params, expected))
    else:
        assert torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params])) == pytest.approx(max_norm, rel=1e-5)
