"""First-token-only last layer: the same logits as the full model, weights and saving untouched."""

import pytest
import torch
from transformers import (BertConfig, BertForSequenceClassification, BertForTokenClassification, DistilBertConfig,
                          DistilBertForSequenceClassification, ElectraConfig, ElectraForSequenceClassification,
                          MPNetConfig, MPNetForSequenceClassification, RobertaConfig, RobertaForSequenceClassification,
                          ViTConfig, ViTForImageClassification)

from nlp_transfer.models.first_token import (disable_first_token, enable_first_token, first_token_enabled, first_token_last_layer, supports_first_token)

SMALL = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=40, num_labels=3)


def _text_models():
    yield "bert", BertForSequenceClassification(BertConfig(**SMALL))
    yield "roberta", RobertaForSequenceClassification(RobertaConfig(**SMALL, pad_token_id=1))
    yield "electra", ElectraForSequenceClassification(ElectraConfig(**SMALL, embedding_size=16))
    yield "distilbert", DistilBertForSequenceClassification(DistilBertConfig(
        vocab_size=64, dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=40, num_labels=3))
    mpnet = MPNetForSequenceClassification(MPNetConfig(**SMALL, pad_token_id=1))
    torch.nn.init.normal_(mpnet.mpnet.encoder.relative_attention_bias.weight)  # a position bias large enough to matter
    yield "mpnet", mpnet


def _batch():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 64, (4, 11), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:], mask[2, 3:], mask[3, 10:] = 0, 0, 0  # rows of different lengths: padding must stay masked
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("family", ["bert", "roberta", "electra", "distilbert", "mpnet"])
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


def _vit():
    return ViTForImageClassification(ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2,
                                               num_attention_heads=4, intermediate_size=48, num_labels=3))


def _lora_bert():
    from peft import LoraConfig, get_peft_model

    model = BertForSequenceClassification(BertConfig(**SMALL))
    return get_peft_model(model, LoraConfig(r=4, target_modules=["query", "value"], modules_to_save=["classifier"],
                                            init_lora_weights=False))  # non-zero B: the adapters change the logits


@pytest.mark.parametrize("family", ["bert", "roberta", "electra", "distilbert", "mpnet", "vit", "lora-bert"])
def test_training_gradients_match_the_full_model(family):
    """No gradient flows from the skipped positions, so one training step is the same step (dropout off to compare)."""
    torch.manual_seed(0)
    model = {"vit": _vit, "lora-bert": _lora_bert}.get(family, lambda: dict(_text_models())[family])()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for config in {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}.values():
        for key in ("attention_probs_dropout_prob", "attention_dropout", "dropout"):
            if isinstance(getattr(config, key, None), float):
                setattr(config, key, 0.0)
    model.train()
    batch = {"pixel_values": torch.randn(4, 3, 16, 16)} if family == "vit" else _batch()
    labels = torch.tensor([0, 1, 2, 1])

    def grads():
        model.zero_grad()
        model(**batch, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    full = grads()
    with first_token_last_layer(model) as used:
        assert used and first_token_enabled(model)
        fast = grads()
    assert not first_token_enabled(model)  # the block gave the full layer back
    assert full.keys() == fast.keys() and len(full) > 4
    assert any(full[name].abs().sum() > 0 for name in full if "layer.1." in name or "layers.1." in name)
    for name in full:
        assert torch.allclose(fast[name], full[name], atol=1e-5), name


def test_dropout_still_applies_at_the_first_position_while_training():
    """The last layer's dropouts run on position 0 in training (and not at evaluation)."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**SMALL, hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5))
    last = model.bert.encoder.layer[-1]
    seen = []
    for module in (last.attention.output.dropout, last.output.dropout):
        module.register_forward_hook(lambda module, args, out: seen.append((args[0].shape[1], module.training)))
    with first_token_last_layer(model):
        model.train()
        first, second = model(**_batch()).logits, model(**_batch()).logits
        assert seen == [(1, True)] * 4  # both dropouts, position 0 only, twice
        assert not torch.allclose(first, second)  # random masks
        model.eval()
        with torch.no_grad():
            assert torch.equal(model(**_batch()).logits, model(**_batch()).logits)


def test_a_block_leaves_a_model_that_ran_it_before_as_it_was():
    model = BertForSequenceClassification(BertConfig(**SMALL))
    enable_first_token(model)
    with first_token_last_layer(model, wanted=False) as used:
        assert used
    assert first_token_enabled(model)
    token_model = BertForTokenClassification(BertConfig(**SMALL))
    with first_token_last_layer(token_model) as used:
        assert not used


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


@pytest.mark.parametrize("strategy, pooling, used", [("full", "cls", True), ("lora", "cls", True), ("partial", "cls", True),
                                                     ("full", "mean", False), ("frozen", "cls", False)])
def test_runs_train_with_it_where_the_loss_reads_only_first_token_logits(toy_recipe, strategy, pooling, used):
    """Recorded in metrics.json (the export's reload check compares the saved model's logits with the trained one's)."""
    from nlp_transfer.api import train

    recipe = {**toy_recipe, "model": {**toy_recipe["model"], "pooling": pooling}, "strategy": {"name": strategy},
              "train": {**toy_recipe["train"], "epochs": 1}}
    out = train(recipe)
    assert out.metrics["train"]["first_token_last_layer"] is used


@pytest.mark.parametrize("pooling, used", [("cls", True), ("mean", False)])
def test_frozen_feature_pass_runs_it_where_the_feature_is_the_first_token(toy_recipe, monkeypatch, pooling, used):
    """cls features (the last layer's position 0) come from the first-token layer, equal to the full layer's on every
    batch of the pass; mean pooling reads every position and runs the full layer."""
    from nlp_transfer.models import build as models
    from nlp_transfer.api import train

    real, passes = models.pooled_features, []

    def checked(model, batch, pool):
        features = real(model, batch, pool)
        passes.append(first_token_enabled(model))
        if passes[-1]:
            disable_first_token(model)
            torch.testing.assert_close(features, real(model, batch, pool), atol=1e-5, rtol=1e-5)
            enable_first_token(model)
        return features

    monkeypatch.setattr(models, "pooled_features", checked)
    recipe = {**toy_recipe, "model": {**toy_recipe["model"], "pooling": pooling}, "strategy": {"name": "frozen"},
              "train": {**toy_recipe["train"], "epochs": 1}}
    train(recipe)
    assert passes and set(passes) == {used}
