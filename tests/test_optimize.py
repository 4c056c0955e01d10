"""nlp-transfer optimize: every variant measured, reloaded and used; the selection respects the tolerance."""

import importlib
import importlib.util
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import nlp_transfer
from nlp_transfer.inference import variants as variants_lib
from nlp_transfer.cli import main
from nlp_transfer.errors import ModelError
from nlp_transfer.inference.variants import OPTIMIZED, VARIANTS, unavailable_reason

from nlp_transfer.inference import optimize as optimize_lib
HAS_ONNX = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir):
    """A toy sentiment model trained once for this module (fp32, so the references are exact)."""
    from conftest import toy_sentences, write_csv

    folder = tmp_path_factory.mktemp("optimize")
    files = {"train": write_csv(folder / "train.csv", toy_sentences(96, seed=1)),
             "validation": write_csv(folder / "validation.csv", toy_sentences(48, seed=2))}
    recipe = {"model": {"name": tiny_model_dir, "max_length": 32}, "task": {"type": "text-classification"},
              "data": {"files": files}, "strategy": {"name": "full"},
              "train": {"epochs": 8, "batch_size": 16, "lr": 3e-3, "seed": 7, "warmup_ratio": 0.0, "mixed_precision": "no"},
              "output": {"dir": str(folder / "out")}}
    out = nlp_transfer.train(recipe)
    assert out.metrics["validation"]["accuracy"] >= 0.9
    return out.output_dir


@pytest.fixture
def output(trained, tmp_path):
    """A private copy of the trained output (optimize writes into it)."""
    import shutil

    return shutil.copytree(trained, tmp_path / "out")


def _runnable():
    return [v for v in VARIANTS if unavailable_reason(v, torch.device("cpu"), images=False) is None]


def _force(monkeypatch, variant):
    """Make the selection pick ``variant`` (after the real selection has annotated every result)."""
    real = optimize_lib._select

    def pick(results, metric, tolerance):
        real(results, metric, tolerance)
        return variant

    monkeypatch.setattr(optimize_lib, "_select", pick)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "fp32"])
def test_each_variant_is_written_reloads_and_predicts(output, monkeypatch, variant):
    reason = unavailable_reason(variant, torch.device("cpu"), images=False)
    if reason:
        pytest.skip(f"{variant} cannot run on this machine: {reason}")
    _force(monkeypatch, variant)
    report = nlp_transfer.optimize(output, variants=[variant], repeats=1, rows=32)
    measured = report["variants"][variant]
    assert measured["status"] == "measured" and measured["selected"]
    assert measured["label_agreement"] >= 0.9  # reported, whatever it is; a toy model near its boundary may flip a few
    on_disk = json.loads((output / OPTIMIZED / "optimize.json").read_text())
    assert on_disk["selected"]["variant"] == variant
    texts = ["the food was great", "awful and boring service"]
    optimized, fp32 = nlp_transfer.Predictor(output), nlp_transfer.Predictor(output, variant="fp32")
    assert (optimized.variant, fp32.variant) == (variant, "fp32")
    assert [p["label"] for p in optimized(texts)] == [p["label"] for p in fp32(texts)] == ["positive", "negative"]
    assert np.abs(optimized.logits(texts) - fp32.logits(texts)).max() < 0.25  # int8/bf16 rounding, not another model


def test_selection_never_picks_a_variant_outside_the_tolerance(output, monkeypatch):
    """A variant that is fastest but wrong (constant logits, no work) is measured, reported and not selected."""
    real_build = variants_lib.build_variant

    class Broken(torch.nn.Module):
        config = None

        def forward(self, input_ids, **_):
            return SimpleNamespace(logits=torch.tensor([[3.0, -3.0]]).expand(len(input_ids), 2))

    def build(variant, model, workdir, sample=None):
        return Broken() if variant == "bf16" else real_build(variant, model, workdir, sample)

    monkeypatch.setattr(optimize_lib, "build_variant", build)
    monkeypatch.setattr(optimize_lib, "unavailable_reason", lambda *a: None if a[0] in ("fp32", "bf16") else "not here")
    report = nlp_transfer.optimize(output, tolerance=0.5, repeats=1)
    broken = report["variants"]["bf16"]
    assert broken["rows_per_second"] > report["variants"]["fp32"]["rows_per_second"]
    assert broken["metric_delta_points"] < -0.5 and broken["within_tolerance"] is False
    assert broken["label_agreement"] < 0.75
    assert report["selected"]["variant"] == "fp32"
    card = (output / "README.md").read_text()
    assert "## Optimized inference" in card and "outside tolerance" in card and "**selected**" in card


def test_select_prefers_the_fastest_within_tolerance():
    results = {"fp32": {"status": "measured", "rows_per_second": 100, "metrics": {"accuracy": 0.900}},
               "bf16": {"status": "measured", "rows_per_second": 400, "metrics": {"accuracy": 0.890}},  # -1.0 point
               "int8-dynamic": {"status": "measured", "rows_per_second": 300, "metrics": {"accuracy": 0.897}},  # -0.3
               "onnx-fp32": {"status": "skipped", "reason": "not installed"}}
    assert optimize_lib._select(results, "accuracy", 0.5) == "int8-dynamic"
    assert optimize_lib._select(results, "accuracy", 1.5) == "bf16"
    assert optimize_lib._select(results, "accuracy", 0.0) == "fp32"
    mse = {"fp32": {"status": "measured", "rows_per_second": 1, "metrics": {"mse": 0.10}},
           "bf16": {"status": "measured", "rows_per_second": 9, "metrics": {"mse": 0.11}}}  # lower is better: 1 point worse
    assert optimize_lib._select(mse, "mse", 0.5) == "fp32"


def test_predict_and_evaluate_use_the_optimized_variant(output, monkeypatch, capsys):
    runnable = [v for v in _runnable() if v != "fp32"]
    if not runnable:
        pytest.skip("no variant besides fp32 runs on this machine")
    _force(monkeypatch, runnable[0])
    nlp_transfer.optimize(output, variants=[runnable[0]], repeats=1, rows=16)
    scores = nlp_transfer.evaluate(output)
    fp32_scores = nlp_transfer.evaluate(output, variant="fp32")
    assert scores["accuracy"] >= 0.9 and fp32_scores["accuracy"] >= 0.9
    assert scores["loss"] != fp32_scores["loss"]  # a different model ran
    assert main(["predict", str(output), "the service was lovely", "--variant", "fp32"]) == 0
    assert '"label": "positive"' in capsys.readouterr().out


def test_optimized_variant_must_exist(output):
    with pytest.raises(ModelError, match=r"has no optimized/optimize.json; run `nlp-transfer optimize"):
        nlp_transfer.Predictor(output, variant="optimized")


@pytest.mark.skipif(HAS_ONNX, reason="checks the message shown without the onnx extra")
def test_onnx_variants_say_how_to_install():
    assert unavailable_reason("onnx-int8", torch.device("cpu"), images=False) == (
        "onnx and onnxruntime not installed: `pip install 'nlp-transfer[onnx]'`")


def test_image_models_are_optimized_on_their_validation_images(image_recipe, monkeypatch):
    recipe = {**image_recipe, "train": {**image_recipe["train"], "mixed_precision": "no"}}
    out = nlp_transfer.train(recipe).output_dir
    _force(monkeypatch, "int8-dynamic")
    report = nlp_transfer.optimize(out, repeats=1, variants=["int8-dynamic", "onnx-fp32"])
    assert report["variants"]["onnx-fp32"] == {"status": "skipped", "reason": "the ONNX variants cover text models",
                                               "selected": False}
    assert report["variants"]["int8-dynamic"]["label_agreement"] >= 0.9
    predictor = nlp_transfer.Predictor(out)
    assert predictor.variant == "int8-dynamic"
    assert nlp_transfer.evaluate(out)["accuracy"] == pytest.approx(report["variants"]["int8-dynamic"]["metrics"]["accuracy"])


def test_optimize_command_line(output, capsys):
    assert main(["-q", "optimize", str(output), "--variants", "int8-dynamic", "--rows", "16", "--repeats", "1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["selected"] in ("fp32", "int8-dynamic") and printed["metric"] == "accuracy"
    assert printed["variants"]["int8-dynamic"]["status"] == "measured"
    assert (output / OPTIMIZED / "optimize.json").is_file() and not (output / ".optimized.partial").exists()
    assert main(["-q", "optimize", str(output), "--variants", "int4"]) == 2
    assert "optimize --variants: unknown ['int4']; choose from fp32, bf16, int8-dynamic" in capsys.readouterr().err
