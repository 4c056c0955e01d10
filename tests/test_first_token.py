"""First-token-only last layer: the same logits as the full model, weights and saving untouched."""

import pytest
import torch
from transformers import (BertConfig, BertForSequenceClassification, BertForTokenClassification, DistilBertConfig,
                          DistilBertForSequenceClassification, ElectraConfig, ElectraForSequenceClassification,
                          RobertaConfig, RobertaForSequenceClassification, ViTConfig, ViTForImageClassification)

from nlp_transfer.first_token import disable_first_token, enable_first_token, first_token_enabled, supports_first_token

SMALL = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=40, num_labels=3)


def _text_models():
    yield "bert", BertForSequenceClassification(BertConfig(**SMALL))
    yield "roberta", RobertaForSequenceClassification(RobertaConfig(**SMALL, pad_token_id=1))
    yield "electra", ElectraForSequenceClassification(ElectraConfig(**SMALL, embedding_size=16))
    yield "distilbert", DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=64, dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=40, num_labels=3))


def _batch():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 64, (4, 11), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:], mask[2, 3:], mask[3, 10:] = 0, 0, 0  # rows of different lengths: padding must stay masked
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("family", ["bert", "roberta", "electra", "distilbert"])
def test_text_logits_match_the_full_model(family, attention):
    torch.manual_seed(0)
    model = dict(_text_models())[family]
    model.config._attn_implementation = attention
    model.eval()
    batch = _batch()
    with torch.no_grad():
        full = model(**batch).logits
        assert enable_first_token(model) and first_token_enabled(model)
        fast = model(**batch).logits
    assert torch.allclose(fast, full, atol=1e-5), (fast - full).abs().max()
    assert not torch.allclose(full[0], full[1], atol=1e-3)  # the rows differ: the comparison means something


def test_vit_logits_match_the_full_model():
    torch.manual_seed(0)
    model = ViTForImageClassification(ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2,
                                                num_attention_heads=4, intermediate_size=48, num_labels=5)).eval()
    pixels = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        full = model(pixel_values=pixels).logits
        assert enable_first_token(model)
        fast = model(pixel_values=pixels).logits
    assert torch.allclose(fast, full, atol=1e-5), (fast - full).abs().max()


def test_training_gradients_match_the_full_model():
    """No gradient flows from the skipped positions, so one training step is the same step."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**SMALL, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    batch, labels = _batch(), torch.tensor([0, 1, 2, 1])

    def grads():
        model.zero_grad()
        model(**batch, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    full = grads()
    enable_first_token(model)
    fast = grads()
    assert full.keys() == fast.keys()
    for name in full:
        assert torch.allclose(fast[name], full[name], atol=1e-5), name


def test_state_dict_is_unchanged_and_disable_restores(tmp_path):
    model = BertForSequenceClassification(BertConfig(**SMALL)).eval()
    keys = list(model.state_dict())
    enable_first_token(model)
    assert list(model.state_dict()) == keys
    model.save_pretrained(tmp_path)
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert not first_token_enabled(reloaded)
    with torch.no_grad():
        assert torch.allclose(reloaded(**_batch()).logits, model(**_batch()).logits, atol=1e-5)
    disable_first_token(model)
    assert not first_token_enabled(model)
    with torch.no_grad():  # the full forward again: the last layer returns every position
        hidden = model.bert(**_batch()).last_hidden_state
    assert hidden.shape[1] == 11


def test_heads_that_read_every_token_are_left_alone():
    model = BertForTokenClassification(BertConfig(**SMALL))
    assert not supports_first_token(model)
    assert enable_first_token(model) is False
    with torch.no_grad():
        assert model(**_batch()).logits.shape[:2] == (4, 11)
