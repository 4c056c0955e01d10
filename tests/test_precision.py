"""Mixed precision from the recipe; several runs with different settings in one process."""

import json

import pytest

import nlp_transfer


@pytest.mark.parametrize("precision", ["bf16", "no"])
def test_mixed_precision_trains_and_saves_a_model_that_reloads(toy_recipe, tmp_path, precision):
    recipe = dict(toy_recipe, train=dict(toy_recipe["train"], mixed_precision=precision))
    out = nlp_transfer.train(recipe)
    assert out.metrics["validation"]["accuracy"] >= 0.9
    assert out.metrics["reload_check"]["passed"] is True


def test_runs_with_different_precisions_in_one_process(toy_recipe, tmp_path):
    """Accelerate keeps settings in process-wide singletons; each run must get its own."""
    for precision in ("bf16", "no"):
        recipe = dict(toy_recipe, train=dict(toy_recipe["train"], mixed_precision=precision, epochs=1),
                      output={"dir": str(tmp_path / precision)})
        assert nlp_transfer.train(recipe).output_dir.is_dir()


@pytest.fixture
def cpu_without_bf16(monkeypatch):
    """A CPU whose flags lack bf16 instructions, and no GPU: the capability check is mocked, not the math."""
    from nlp_transfer.training import precision

    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"sse4_2", "avx2", "avx512f", "fma"}))
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)


def test_auto_resolves_to_fp32_on_a_cpu_without_native_bf16(cpu_without_bf16):
    from nlp_transfer.training.precision import resolve_mixed_precision

    resolved = resolve_mixed_precision("auto")
    assert (resolved.requested, resolved.used) == ("auto", "no")
    assert resolved.reason.startswith("CPU without native bf16")
    assert resolve_mixed_precision("bf16").used == "bf16"  # an explicit choice is kept


def test_auto_resolves_to_bf16_on_a_cpu_with_native_bf16(monkeypatch):
    from nlp_transfer.training import precision

    monkeypatch.setattr(precision, "_cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: False)
    resolved = precision.resolve_mixed_precision("auto")
    assert resolved.used == "bf16" and resolved.reason == "CPU with native bf16 (avx512_bf16)"


def test_auto_is_the_default_and_the_run_records_what_it_chose(toy_recipe, cpu_without_bf16, monkeypatch):
    from nlp_transfer.training import stages as runner

    asked = []
    real = runner.new_accelerator
    monkeypatch.setattr(runner, "new_accelerator", lambda **kw: asked.append(kw.get("mixed_precision")) or real(**kw))
    recipe = dict(toy_recipe, train=dict(toy_recipe["train"], epochs=1))
    out = nlp_transfer.train(recipe)
    assert asked == ["no"]
    recorded = json.loads((out.output_dir / "metrics.json").read_text())["mixed_precision"]
    assert recorded["requested"] == "auto" and recorded["used"] == "no"
    assert "mixed precision `no` (`auto`: CPU without native bf16" in (out.output_dir / "README.md").read_text()
