"""On a CUDA GPU: training in each precision, prediction, the first-token layer and `auto` precision.

Skipped where there is no GPU (CI has none); `benchmarks/gpu/run.sh` runs this file on a GPU machine before its
benchmark. The CPU suite checks the same behaviour on the CPU; these check that it holds on the GPU's kernels.
"""

import csv
import json

import pytest
import torch

import nlp_transfer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def batch_devices(monkeypatch) -> list[str]:
    """The device of every training batch the loop steps on (recorded, then the real step runs)."""
    from nlp_transfer.training import loop

    devices, real_step = [], loop._train_step

    def recording_step(model, strategy, batch, *args):
        devices.append(next(v.device.type for v in batch.values() if isinstance(v, torch.Tensor)))
        return real_step(model, strategy, batch, *args)

    monkeypatch.setattr(loop, "_train_step", recording_step)
    return devices


@pytest.mark.parametrize("precision", ["no", "bf16", "fp16"])
def test_trains_on_the_gpu_in_each_precision_and_the_model_reloads(toy_recipe, batch_devices, precision):
    recipe = dict(toy_recipe, train=dict(toy_recipe["train"], mixed_precision=precision))
    out = nlp_transfer.train(recipe)
    assert batch_devices and set(batch_devices) == {"cuda"}
    recorded = json.loads((out.output_dir / "metrics.json").read_text())["mixed_precision"]
    assert recorded["used"] == precision
    assert out.metrics["validation"]["accuracy"] >= 0.9
    assert out.metrics["reload_check"]["passed"] is True


def test_auto_picks_bf16_on_a_gpu_that_has_it():
    from nlp_transfer.training.precision import resolve_mixed_precision

    resolved = resolve_mixed_precision("auto")
    assert resolved.used == ("bf16" if torch.cuda.is_bf16_supported() else "no"), resolved.reason


def test_predictor_on_the_gpu_agrees_with_the_cpu(toy_recipe):
    out = nlp_transfer.train(toy_recipe)
    with open(toy_recipe["data"]["files"]["validation"], newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    gpu, cpu = nlp_transfer.Predictor(out.output_dir), nlp_transfer.Predictor(out.output_dir, device="cpu")
    assert gpu.device.type == "cuda" and next(gpu.model.parameters()).device.type == "cuda"
    on_gpu, on_cpu = gpu.logits(texts, batch_size=8), cpu.logits(texts, batch_size=8)
    assert (on_gpu.argmax(-1) == on_cpu.argmax(-1)).all()
    assert abs(on_gpu - on_cpu).max() < 1e-3, abs(on_gpu - on_cpu).max()
    assert abs(on_cpu[0] - on_cpu[1]).max() > 1e-2  # the rows differ: agreement means something


def test_first_token_layer_matches_the_full_model_on_the_gpu():
    from transformers import BertConfig, BertForSequenceClassification

    from nlp_transfer.models.first_token import enable_first_token

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=64, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                                     intermediate_size=96, num_labels=3)).cuda().eval()
    ids = torch.randint(5, 64, (4, 11), device="cuda")
    mask = torch.ones_like(ids)
    mask[1, 7:], mask[2, 3:] = 0, 0
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        assert enable_first_token(model)
        fast = model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(fast, full, atol=1e-5), (fast - full).abs().max()
    assert not torch.allclose(full[0], full[1], atol=1e-3)
