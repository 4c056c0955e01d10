"""MPNet (all-mpnet-base-v2's family) under every strategy, on a tiny random-init MPNet.

The strategy contract of tests/test_strategies.py (exactly the expected parameters train, one
step changes exactly those, save -> load gives the same logits) runs here on MPNet. A whole run
with an MPNet student (another tokenizer than its teacher's) is in tests/test_distill_xtok.py.
"""

import pytest
import torch
from transformers import MPNetForSequenceClassification

from nlp_transfer.strategies.distill.models import build_student, encoder_layers_path

from conftest import tiny_mpnet_config
from test_strategies import _check_contract, _contract_recipe, _pieces

_LORA = r"mpnet\.encoder\.layer\.\d+\.attention\.attn\.(q|k|v)\.lora_[AB]\.default\.weight"
SEQUENCE = [
    ("full", {"name": "full"}, [r".*"]),
    ("frozen-cls", {"name": "frozen", "model.pooling": "cls"}, [r"classifier\..*"]),  # MPNet's head: dense + out_proj, no pooler
    ("frozen-mean", {"name": "frozen", "model.pooling": "mean"}, [r"classifier\..*"]),
    ("lora", {"name": "lora", "r": 4, "alpha": 8}, [_LORA, r"classifier\.modules_to_save\.default\..*"]),
]
TOKEN = [
    ("token-full", {"name": "full"}, [r".*"]),
    ("token-frozen", {"name": "frozen"}, [r"classifier\..*"]),
    ("token-lora", {"name": "lora", "r": 4, "alpha": 8}, [_LORA, r"classifier\.modules_to_save\.default\..*"]),
]


@pytest.mark.parametrize("options, patterns", [pytest.param(o, p, id=i) for i, o, p in SEQUENCE])
def test_mpnet_strategy_contract(options, patterns, toy_recipe, tiny_mpnet_dir, tmp_path, request):
    recipe = {**toy_recipe, "model": {"name": tiny_mpnet_dir, "max_length": 32}}
    _check_contract(_pieces(_contract_recipe(recipe, options, request), tmp_path), patterns, tmp_path)


@pytest.mark.parametrize("options, patterns", [pytest.param(o, p, id=i) for i, o, p in TOKEN])
def test_mpnet_token_classification_contract(options, patterns, toy_token_recipe, tiny_mpnet_dir, tmp_path, request):
    recipe = {**toy_token_recipe, "model": {"name": tiny_mpnet_dir, "max_length": 32}}
    pieces = _pieces(_contract_recipe(recipe, options, request), tmp_path)
    assert type(pieces["model"]).__name__ == "MPNetForTokenClassification"
    _check_contract(pieces, patterns, tmp_path)


def test_an_mpnet_student_copies_the_teachers_layers_bit_for_bit():
    torch.manual_seed(0)
    teacher = MPNetForSequenceClassification(tiny_mpnet_config(num_hidden_layers=4, num_labels=2)).eval()
    assert encoder_layers_path(teacher) == "mpnet.encoder.layer"
    student = build_student(teacher, [1, 3]).eval()
    weights = teacher.state_dict()
    for name, tensor in student.state_dict().items():
        source = name
        for new, old in ((0, 1), (1, 3)):
            source = source.replace(f"mpnet.encoder.layer.{new}.", f"mpnet.encoder.layer.{old}.") if name.startswith(
                f"mpnet.encoder.layer.{new}.") else source
        assert torch.equal(tensor, weights[source]), name
    assert "mpnet.encoder.relative_attention_bias.weight" in student.state_dict()  # shared by all layers, kept whole
    with torch.inference_mode():
        assert student(input_ids=torch.tensor([[0, 7, 9, 2]])).logits.shape == (1, 2)
