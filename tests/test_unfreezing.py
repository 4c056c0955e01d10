"""partial and gradual (ULMFiT): what trains when, exact resume, the cached bottom, discriminative rates, layer
groups of every family, lora on the top layers, and the errors for bad settings."""

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_strategies import _pieces

import nlp_transfer
from nlp_transfer import RecipeError, load_recipe
from nlp_transfer.errors import ModelError
from nlp_transfer.outputs.export import partial_dir
from nlp_transfer.models.build import layer_groups
from nlp_transfer.strategies.partial.layers import PartialModel
from nlp_transfer.strategies.base import StepContext
from nlp_transfer.strategies.gradual import GradualStrategy


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _matching(model, *patterns) -> set[str]:
    return {n for n, _ in model.named_parameters() if any(re.fullmatch(p, n) for p in patterns)}


def test_gradual_unfreezes_one_group_per_epoch_from_the_top(toy_recipe, tmp_path):
    p = _pieces({**toy_recipe, "strategy": {"name": "gradual"}}, tmp_path)
    model, strategy = p["model"], p["strategy"]
    expected = [
        _matching(model, r"classifier\..*", r"bert\.pooler\..*"),
        _matching(model, r"classifier\..*", r"bert\.pooler\..*", r"bert\.encoder\.layer\.1\..*"),
        _matching(model, r"classifier\..*", r"bert\.pooler\..*", r"bert\.encoder\.layer\.[01]\..*"),
        {n for n, _ in model.named_parameters()},  # then the embeddings: everything
        {n for n, _ in model.named_parameters()},
    ]
    steps_per_epoch = 6
    for epoch, names in enumerate(expected):
        strategy.on_epoch(model, StepContext(epoch * steps_per_epoch, 30, epoch, steps_per_epoch))
        assert _trainable(model) == names, epoch
    # one step before the second unfreezing (on_step runs after every optimizer step)
    strategy.on_step(model, StepContext(11, 30, 1, steps_per_epoch))
    assert _trainable(model) == expected[1]
    strategy.on_step(model, StepContext(12, 30, 2, steps_per_epoch))
    assert _trainable(model) == expected[2]


def test_gradual_in_steps_stops_at_a_layer(toy_recipe, tmp_path):
    p = _pieces({**toy_recipe, "strategy": {"name": "gradual", "unfreeze_every": 2, "unfreeze_unit": "steps",
                                            "stop_at": 1}}, tmp_path)
    model, strategy = p["model"], p["strategy"]
    top = _matching(model, r"classifier\..*", r"bert\.pooler\..*")
    with_layer1 = top | _matching(model, r"bert\.encoder\.layer\.1\..*")
    for step, names in [(0, top), (1, top), (2, with_layer1), (3, with_layer1), (4, with_layer1), (100, with_layer1)]:
        strategy.on_step(model, StepContext(step, 200, 0, 50))
        assert _trainable(model) == names, step
    groups = strategy.param_groups(model, 1e-3, 1e-2, 0.0)  # the optimizer never holds what never trains
    assert {n for n, t in model.named_parameters() if any(t is q for g in groups for q in g["params"])} == with_layer1


def test_gradual_rates_rewarm_after_each_unfreezing(toy_recipe, tmp_path):
    p = _pieces({**toy_recipe, "strategy": {"name": "gradual", "unfreeze_every": 3, "unfreeze_unit": "steps",
                                            "rewarmup_steps": 2, "lr_divisor": 2.0}}, tmp_path)
    groups = p["strategy"].param_groups(p["model"], 1.0, 10.0, 0.0)
    factors = p["strategy"].lr_factors(groups, steps_per_epoch=6, total_steps=20)
    by_group = {g["group"]: (g["lr"], f) for g, f in zip(groups, factors)}
    assert by_group["head"][0] == 10.0 and by_group["top"][0] == 1.0
    assert by_group["layer.1"][0] == 0.5 and by_group["layer.0"][0] == 0.25 and by_group["embeddings"][0] == 0.125
    layer1 = by_group["layer.1"][1]  # unfreezes at step 3, then rises over 2 steps
    assert [layer1(s) for s in range(7)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 1.0]
    assert [by_group["embeddings"][1](s) for s in (8, 9, 10, 11)] == [0.0, 0.5, 1.0, 1.0]


def _gradual_recipe(toy_recipe, out: Path, **train) -> dict:
    return {**toy_recipe, "strategy": {"name": "gradual", "lr_divisor": 2.6},
            "train": {**toy_recipe["train"], "epochs": 4, "lr": 3e-3, "warmup_ratio": 0.0, "log_every": 1,
                      "mixed_precision": "no", "eval_every": 1000, **train},
            "output": {"dir": str(out)}}


def test_gradual_run_logs_its_depth_and_resumes_bit_exactly(toy_recipe, tmp_path, monkeypatch):
    settings = dict(checkpoint_every=4, group_by_length=True)
    reference = nlp_transfer.train(_gradual_recipe(toy_recipe, tmp_path / "reference", **settings))
    log = [json.loads(line) for line in (reference.output_dir / "train_log.jsonl").read_text().splitlines()]
    depth = [r["unfrozen_groups"] for r in log if "loss" in r]
    assert depth == [1] * 6 + [2] * 6 + [3] * 6 + [4] * 6  # 6 steps per epoch, one more group each epoch

    calls = []
    original = GradualStrategy.loss

    def crash_at_step_15(self, model, batch, ctx):
        calls.append(1)
        if len(calls) == 15:  # epoch 3, third group unfrozen; the last checkpoint is step 12 (epoch 2's end)
            raise KeyboardInterrupt
        return original(self, model, batch, ctx)

    monkeypatch.setattr(GradualStrategy, "loss", crash_at_step_15)
    interrupted = _gradual_recipe(toy_recipe, tmp_path / "resumed", **settings)
    with pytest.raises(KeyboardInterrupt):
        nlp_transfer.train(interrupted)
    assert sorted(c.name for c in (partial_dir(tmp_path / "resumed") / "checkpoints").glob("step-*")) == \
        ["step-00000008", "step-00000012"]
    monkeypatch.setattr(GradualStrategy, "loss", original)
    resumed = nlp_transfer.train(interrupted, resume=True)
    a, b = load_file(str(resumed.output_dir / "model.safetensors")), load_file(str(reference.output_dir / "model.safetensors"))
    assert a.keys() == b.keys()
    different = [n for n in a if not torch.equal(a[n], b[n])]
    assert different == []  # bit for bit
    resumed_log = [json.loads(line) for line in (resumed.output_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["unfrozen_groups"] for r in resumed_log if "loss" in r][-12:] == [3] * 6 + [4] * 6


def test_partial_cached_bottom_gives_the_uncached_logits(toy_recipe, tmp_path):
    p = _pieces({**toy_recipe, "strategy": {"name": "partial", "train_top_layers": 1}}, tmp_path)
    assert p["strategy"].uses_cache and "bottom" in p["prepared"]["train"].column_names
    wrapper, collator = p["trained"], p["collator"]
    batch = collator([p["prepared"]["train"][i] for i in range(12)])
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "bottom")}
    for mode in ("eval", "train"):  # in training the frozen bottom stays in eval mode: same dropout draws above it
        getattr(wrapper, mode)()
        torch.manual_seed(0)
        cached = wrapper(bottom=batch["bottom"], **inputs).logits
        torch.manual_seed(0)
        whole = wrapper(**inputs).logits
        torch.testing.assert_close(cached, whole, atol=1e-5, rtol=1e-5)
    assert not wrapper.model.bert.encoder.layer[0].training and wrapper.model.bert.encoder.layer[1].training


def test_partial_cache_hits_on_the_second_run(toy_recipe, tmp_path):
    def run(name):
        # mean pooling: the opinion word's state reaches the head directly (a random frozen bottom's first token may not)
        return nlp_transfer.train({**toy_recipe, "model": {**toy_recipe["model"], "pooling": "mean"},
                                   "strategy": {"name": "partial", "train_top_layers": 1},
                                   "train": {**toy_recipe["train"], "epochs": 6, "lr": 3e-3, "head_lr": 1e-2,
                                             "warmup_ratio": 0.0, "mixed_precision": "no"},
                                   "output": {"dir": str(tmp_path / name)}})

    first, second = run("first"), run("second")
    assert first.metrics["partial_cache_hits"] == {"train": False, "validation": False}
    assert second.metrics["partial_cache_hits"] == {"train": True, "validation": True}
    assert second.metrics["validation"] == pytest.approx(first.metrics["validation"])
    assert first.metrics["validation"]["accuracy"] >= 0.65  # above chance (0.5) from the top layer alone (0.72 measured)


def _tiny_models():
    """Builders of tiny random-init task models of every supported family (sequence heads, and image heads for vision)."""
    import transformers as tf

    text = dict(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                max_position_embeddings=64)
    yield "bert", lambda: tf.BertForSequenceClassification(tf.BertConfig(**text)), 3
    yield "roberta", lambda: tf.RobertaForSequenceClassification(tf.RobertaConfig(**text, pad_token_id=1)), 3
    yield "electra", lambda: tf.ElectraForSequenceClassification(tf.ElectraConfig(**text, embedding_size=16)), 3
    yield "deberta-v2", lambda: tf.DebertaV2ForSequenceClassification(tf.DebertaV2Config(**text, relative_attention=True,
                                                                                    position_buckets=8)), 3
    yield "mpnet", lambda: tf.MPNetForSequenceClassification(tf.MPNetConfig(**text)), 3
    yield "albert", lambda: tf.AlbertForSequenceClassification(tf.AlbertConfig(**text, embedding_size=16)), 1  # one shared group
    yield "distilbert", lambda: tf.DistilBertForSequenceClassification(tf.DistilBertConfig(
        vocab_size=64, dim=32, n_layers=3, n_heads=2, hidden_dim=64, max_position_embeddings=64)), 3
    vision = dict(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                  intermediate_size=64, num_labels=3)
    yield "vit", lambda: tf.ViTForImageClassification(tf.ViTConfig(**vision)), 3
    yield "deit", lambda: tf.DeiTForImageClassification(tf.DeiTConfig(**vision)), 3
    yield "resnet", lambda: tf.ResNetForImageClassification(tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16],
                                                                    depths=[1, 1], num_labels=3)), 2
    yield "convnext", lambda: tf.ConvNextForImageClassification(tf.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1],
                                                                          num_labels=3)), 2


@pytest.mark.parametrize("family, model, layers", [pytest.param(*m, id=m[0]) for m in _tiny_models()])
def test_layer_groups_of_every_family(family, model, layers):
    model = model()
    groups = layer_groups(model)
    names = [g.name for g in groups]
    assert names[0] == "embeddings" and names[-1] == "head"
    assert [n for n in names if n.startswith("layer.")] == [f"layer.{i}" for i in range(layers)]
    assert [g.depth for g in groups] == sorted(g.depth for g in groups)
    ids = [id(p) for g in groups for p in g.params]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))  # every parameter in exactly one group
    by_name = {n: p for n, p in model.named_parameters()}
    group_of = {id(p): g.name for g in groups for p in g.params}
    for name, param in by_name.items():  # every table the first layer reads sits below it
        if "rel_embeddings" in name or "relative_attention_bias" in name or "embedding_hidden_mapping_in" in name:
            assert group_of[id(param)] == "embeddings", name
    assert all(group_of[id(p)] == "head" for p in model.classifier.parameters())


@pytest.mark.parametrize("family, model, layers", [pytest.param(*m, id=m[0]) for m in _tiny_models()])
def test_partial_model_from_a_cached_bottom_matches_the_whole_model(family, model, layers):
    """Every family whose encoder loops over its own layers runs from the cache exactly; ALBERT (one group
    shared by every layer) does not, and ``strategy partial`` detects that and trains without the cache."""
    torch.manual_seed(0)
    model = model()
    if model.config.model_type in ("vit", "deit", "resnet", "convnext"):
        channels = getattr(model.config, "num_channels", 3)
        inputs = {"pixel_values": torch.randn(3, channels, 16, 16) if family in ("vit", "deit") else torch.randn(3, 3, 32, 32)}
    else:
        inputs = {"input_ids": torch.randint(5, 60, (3, 10)), "attention_mask": torch.ones(3, 10, dtype=torch.long)}
        inputs["attention_mask"][1, 7:] = 0
    wrapper = PartialModel(model, layers - 1).eval()
    with torch.inference_mode():
        bottom = wrapper.bottom_outputs(inputs)
        cached, whole = wrapper(bottom=bottom, **inputs).logits, wrapper(**inputs).logits
    if family == "albert":
        assert not torch.allclose(cached, whole, atol=1e-4)
    else:
        torch.testing.assert_close(cached, whole, atol=1e-5, rtol=1e-5)


def test_partial_on_albert_trains_without_the_cache(toy_recipe, tmp_path, caplog):
    import transformers as tf

    folder = tmp_path / "tiny-albert"
    tf.AlbertModel(tf.AlbertConfig(vocab_size=64, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=64)).save_pretrained(folder)
    tokenizer = tf.AutoTokenizer.from_pretrained(toy_recipe["model"]["name"])
    tokenizer.save_pretrained(folder)
    recipe = {**toy_recipe, "model": {**toy_recipe["model"], "name": str(folder)},
              "strategy": {"name": "partial", "train_top_layers": 1}}
    with caplog.at_level("WARNING"):
        p = _pieces(recipe, tmp_path)
    assert not p["strategy"].uses_cache and "bottom" not in p["prepared"]["train"].column_names
    assert "computes differently from a cached bottom; training without the cache" in caplog.text


def test_lr_divisor_is_ulmfits_discriminative_rate(toy_recipe, tmp_path):
    p = _pieces({**toy_recipe, "strategy": {"name": "full", "lr_divisor": 2.0}}, tmp_path)
    groups = p["strategy"].param_groups(p["model"], lr=1.0, head_lr=3.0, weight_decay=0.0)
    rates = {g["group"]: g["lr"] for g in groups}
    assert rates == {"embeddings": 0.125, "layer.0": 0.25, "layer.1": 0.5, "top": 1.0, "head": 3.0}


def test_lora_on_the_top_layers_only(toy_recipe, tmp_path):
    p = _pieces({**toy_recipe, "strategy": {"name": "lora", "r": 4, "alpha": 8, "train_top_layers": 1}}, tmp_path)
    adapted = {n for n in _trainable(p["trained"]) if "lora_" in n}
    assert adapted and all(".layer.1." in n for n in adapted), sorted(adapted)
    config = p["trained"].peft_config["default"]
    assert config.layers_to_transform == [1] and config.layers_pattern == "layer"


@pytest.mark.parametrize("strategy, message", [
    ({"name": "full", "layer_decay": 0.9, "lr_divisor": 2.6},
     r"strategy\.lr_divisor: got 2\.6 and strategy\.layer_decay 0\.9; they are two spellings of one setting"),
    ({"name": "gradual", "layer_decay": 0.9, "lr_divisor": 2.6}, r"strategy\.lr_divisor: got 2\.6 and strategy\.layer_decay"),
    ({"name": "full", "lr_divisor": 0.5}, r"strategy\.lr_divisor: got 0\.5; expected a number >= 1"),
    ({"name": "gradual", "unfreeze_every": 0}, r"strategy\.unfreeze_every: got 0; expected a positive number of epochs"),
    ({"name": "gradual", "unfreeze_every": -1, "unfreeze_unit": "steps"},
     r"strategy\.unfreeze_every: got -1; expected a positive number of steps"),
    ({"name": "gradual", "unfreeze_every": 1.5, "unfreeze_unit": "steps"}, r"strategy\.unfreeze_every: got 1\.5 steps"),
    ({"name": "gradual", "stop_at": -1}, r"strategy\.stop_at: got -1"),
    ({"name": "partial", "train_top_layers": 0}, r"strategy\.train_top_layers: got 0; expected .* at least 1"),
    ({"name": "lora", "train_top_layers": 0}, r"strategy\.train_top_layers: got 0; expected .* at least 1"),
])
def test_bad_settings_name_the_key(toy_recipe, strategy, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe({**toy_recipe, "strategy": strategy})


@pytest.mark.parametrize("strategy, message", [
    ({"name": "partial", "train_top_layers": 3},
     r"strategy\.train_top_layers: got 3, but BertForSequenceClassification has 2 encoder layer groups; pick 1 to 2"),
    ({"name": "lora", "train_top_layers": 5}, r"strategy\.train_top_layers: got 5, but .* has 2 encoder layers; pick 1 to 2"),
    ({"name": "gradual", "stop_at": 2}, r"strategy\.stop_at: got 2, but .* has 2 encoder layer groups \(0 to 1\)"),
])
def test_settings_beyond_the_models_depth_name_the_key(toy_recipe, tmp_path, strategy, message):
    with pytest.raises(ModelError, match=message):
        _pieces({**toy_recipe, "strategy": strategy}, tmp_path)
