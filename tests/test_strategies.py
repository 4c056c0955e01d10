"""The strategy contract, run over every registered strategy, plus each strategy's own promises."""

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import AutoModelForSequenceClassification

import nlp_transfer
from nlp_transfer.data.loaders import eval_loader, train_loader
from nlp_transfer import load_recipe
from nlp_transfer.training.loop import run_loop
from nlp_transfer.errors import ModelError
from nlp_transfer.models import build as models_module
from nlp_transfer.models.build import load_tokenizer
from nlp_transfer.training.stages import build_run_model, load_data, prepare, preprocess
from nlp_transfer.strategies.registry import STRATEGIES, build_strategy

# What each registered strategy must train. A strategy registered without an entry here fails
# the contract test on purpose: add its expected options and trainable parameter names.
# Each variant: (id, recipe "strategy" section (a "model.<key>" entry sets that key of the model section),
# regexes of the parameter names that must train).
EXPECTATIONS: dict[str, list[tuple[str, dict, list[str]]]] = {
    "full": [("full", {"name": "full"}, [r".*"])],
    "frozen": [
        ("frozen-cls", {"name": "frozen", "model.pooling": "cls"}, [r"classifier\..*", r"bert\.pooler\..*"]),
        ("frozen-mean", {"name": "frozen", "model.pooling": "mean"}, [r"classifier\..*"]),
    ],
    # peft adapts the attention projections in place; the head (classifier + BERT pooler) trains as a saved copy
    "lora": [("lora", {"name": "lora", "r": 4, "alpha": 8},
              [r"bert\.encoder\.layer\.\d+\.attention\.self\.(query|key|value)\.lora_[AB]\.default\.weight",
               r"bert\.pooler\.dense\.lora_[AB]\.default\.weight", r"classifier\.modules_to_save\.default\..*"])],
    # the whole student (here model.name) trains; the teacher (TINY_TEACHER: the tiny_teacher_dir fixture) never does
    "distill": [("distill", {"name": "distill", "teacher": "TINY_TEACHER", "speed_rows": 0}, [r".*"])],
    # the top layer, the pooler and the head; trained from the cached output of layer 0 (and, uncached, through it)
    "partial": [("partial", {"name": "partial", "train_top_layers": 1}, [r"bert\.encoder\.layer\.1\..*", r"bert\.pooler\..*", r"classifier\..*"]),
                ("partial-uncached", {"name": "partial", "train_top_layers": 1, "cache_bottom": False},
                 [r"bert\.encoder\.layer\.1\..*", r"bert\.pooler\..*", r"classifier\..*"])],
    # the first step trains the head and the backbone's top (the pooler); lower groups unfreeze later
    "gradual": [("gradual", {"name": "gradual", "lr_divisor": 2.6}, [r"bert\.pooler\..*", r"classifier\..*"])],
}
CASES = [pytest.param(name, variant, id=variant[0]) for name in sorted(STRATEGIES)
         for variant in EXPECTATIONS.get(name, [(name, None, None)])]
# The same contract for token classification (AutoModelForTokenClassification: no pooler, a per-token head).
TOKEN_EXPECTATIONS: dict[str, tuple[dict, list[str]]] = {
    "full": ({"name": "full"}, [r".*"]),
    "frozen": ({"name": "frozen"}, [r"classifier\..*"]),
    "lora": ({"name": "lora", "r": 4, "alpha": 8},
             [r"bert\.encoder\.layer\.\d+\.attention\.self\.(query|key|value)\.lora_[AB]\.default\.weight",
              r"classifier\.modules_to_save\.default\..*"]),
    "distill": ({"name": "distill", "teacher": "TINY_TOKEN_TEACHER", "speed_rows": 0}, [r".*"]),
    "partial": ({"name": "partial", "train_top_layers": 1}, [r"bert\.encoder\.layer\.1\..*", r"classifier\..*"]),
    "gradual": ({"name": "gradual"}, [r"classifier\..*"]),
}
_TEACHERS = {"TINY_TEACHER": "tiny_teacher_dir", "TINY_TOKEN_TEACHER": "tiny_token_teacher_dir"}

# The same contract on image models (tiny ViT; the ResNet where a strategy supports convolutional backbones).
# Each variant: (id, backbone fixture, recipe "strategy" section, regexes of the parameter names that must train).
_VIT_LORA = r"vit\.layers\.\d+\.attention\.(q_proj|v_proj)\.lora_[AB]\.default\.weight"
VISION_EXPECTATIONS: dict[str, list[tuple[str, str, dict, list[str]]]] = {
    "full": [("vit-full", "tiny_vit_dir", {"name": "full"}, [r".*"]),
             ("resnet-full", "tiny_resnet_dir", {"name": "full"}, [r".*"])],
    "frozen": [("vit-frozen", "tiny_vit_dir", {"name": "frozen"}, [r"classifier\..*"]),
               ("resnet-frozen", "tiny_resnet_dir", {"name": "frozen"}, [r"classifier\..*"])],
    "lora": [("vit-lora", "tiny_vit_dir", {"name": "lora", "r": 4, "alpha": 8},
              [_VIT_LORA, r"classifier\.modules_to_save\.default\..*"])],
    # a student built from the teacher's layers 0 and 3 (the whole student trains)
    "distill": [("vit-distill", "tiny_vit_teacher_dir",
                 {"name": "distill", "teacher": "BACKBONE", "student_layers": [0, 3], "speed_rows": 0}, [r".*"])],
    # the last layer, the final norm and the head (the ResNet: its last stage and the head), from a cached bottom
    "partial": [("vit-partial", "tiny_vit_dir", {"name": "partial", "train_top_layers": 1},
                 [r"vit\.layers\.1\..*", r"vit\.layernorm\..*", r"classifier\..*"]),
                ("resnet-partial", "tiny_resnet_dir", {"name": "partial", "train_top_layers": 1},
                 [r"resnet\.encoder\.stages\.1\..*", r"classifier\..*"])],
    "gradual": [("vit-gradual", "tiny_vit_dir", {"name": "gradual"}, [r"vit\.layernorm\..*", r"classifier\..*"]),
                ("resnet-gradual", "tiny_resnet_dir", {"name": "gradual"}, [r"classifier\..*"])],
}
VISION_CASES = [pytest.param(name, variant, id=variant[0]) for name in sorted(STRATEGIES)
                for variant in VISION_EXPECTATIONS.get(name, [(name, None, None, None)])]


def _pieces(recipe_dict: dict, tmp_path: Path):
    """Everything ``runner.train`` builds before the loop, from a recipe dict."""
    recipe = load_recipe(recipe_dict)
    set_seed(recipe.train.seed)
    splits, spec = load_data(recipe.data, recipe.task, recipe.train.seed)
    strategy = build_strategy(recipe.strategy, spec)
    model, tokenizer = build_run_model(recipe.model, spec, strategy)  # an image processor for image recipes
    tokenized, _ = preprocess(recipe, spec, tokenizer, splits)
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=recipe.train.grad_accum_steps)
    trained, prepared, _ = prepare(strategy, model, tokenizer, tokenized, accelerator)
    collator = strategy.collator(tokenizer)
    return dict(recipe=recipe, spec=spec, tokenizer=tokenizer, tokenized=tokenized, strategy=strategy, model=model,
                trained=trained, accelerator=accelerator, prepared=prepared, collator=collator, splits=splits)


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name, variant", CASES)
def test_strategy_contract(name, variant, toy_recipe, tmp_path, request):
    if variant[1] is None:
        pytest.fail(f"strategy {name!r} is registered but tests/test_strategies.py has no expectation for it; "
                    f"add an EXPECTATIONS[{name!r}] entry (its recipe options and the parameter names that must train)")
    _, options, patterns = variant
    _check_contract(_pieces(_contract_recipe(toy_recipe, options, request), tmp_path), patterns, tmp_path)


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_contract_token_classification(name, toy_token_recipe, tmp_path, request):
    if name not in TOKEN_EXPECTATIONS:
        pytest.fail(f"strategy {name!r} has no TOKEN_EXPECTATIONS entry in tests/test_strategies.py; add one")
    options, patterns = TOKEN_EXPECTATIONS[name]
    _check_contract(_pieces(_contract_recipe(toy_token_recipe, options, request), tmp_path), patterns, tmp_path)


def _contract_recipe(base_recipe: dict, options: dict, request) -> dict:
    """``base_recipe`` under the strategy ``options`` (teacher placeholders resolved; ``model.<key>`` entries go to the
    model section), one short epoch."""
    model = {k.removeprefix("model."): v for k, v in options.items() if k.startswith("model.")}
    options = {k: request.getfixturevalue(_TEACHERS[v]) if v in _TEACHERS else v for k, v in options.items()
               if not k.startswith("model.")}
    return {**base_recipe, "model": {**base_recipe["model"], **model}, "strategy": options,
            "data": {**base_recipe["data"], "limit": {"train": 16, "validation": 8}},
            "train": {**base_recipe["train"], "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0, "lr": 1e-2}}


@pytest.mark.parametrize("name, variant", VISION_CASES)
def test_vision_strategy_contract(name, variant, image_recipe, tmp_path, request):
    if variant[1] is None:
        pytest.fail(f"strategy {name!r} is registered but tests/test_strategies.py has no vision expectation for it; "
                    f"add a VISION_EXPECTATIONS[{name!r}] entry (or one that checks its clear error on images)")
    _, backbone, options, patterns = variant
    backbone_dir = request.getfixturevalue(backbone)
    options = {k: backbone_dir if v == "BACKBONE" else v for k, v in options.items()}
    model = {} if options.get("teacher") == backbone_dir else {"name": backbone_dir}
    recipe_dict = {**image_recipe, "model": model, "strategy": options,
                   "data": {**image_recipe["data"], "limit": {"train": 16, "validation": 8}},
                   "train": {**image_recipe["train"], "epochs": 1, "batch_size": 16, "warmup_ratio": 0.0, "lr": 1e-2}}
    _check_contract(_pieces(recipe_dict, tmp_path), patterns, tmp_path)


# Multi-label and regression heads: BERT's sequence head with another loss, so text classification's expectations,
# with teachers of their own kind for distill.
_SEQUENCE_TEACHERS = {"multi-label-classification": "tiny_multilabel_teacher_dir", "regression": "tiny_regression_teacher_dir"}
_SEQUENCE_RECIPES = {"multi-label-classification": "toy_multilabel_recipe", "regression": "toy_regression_recipe"}


@pytest.mark.parametrize("task_type", sorted(_SEQUENCE_RECIPES))
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_contract_multi_label_and_regression(name, task_type, tmp_path, request):
    variant = EXPECTATIONS.get(name, [(name, None, None)])[0]
    if variant[1] is None:
        pytest.fail(f"strategy {name!r} has no EXPECTATIONS entry in tests/test_strategies.py; add one")
    _, options, patterns = variant
    options = {k: request.getfixturevalue(_SEQUENCE_TEACHERS[task_type]) if v in _TEACHERS else v for k, v in options.items()}
    recipe = request.getfixturevalue(_SEQUENCE_RECIPES[task_type])
    _check_contract(_pieces(_contract_recipe(recipe, options, request), tmp_path), patterns, tmp_path)


# Mean pooling is a head choice for every strategy that builds its model from model.name.
MEAN_POOLING_EXPECTATIONS = {
    "full": ({"name": "full"}, [r".*"]),
    "lora": ({"name": "lora", "r": 4, "alpha": 8},
             [r"encoder_model\.encoder\.layer\.\d+\.attention\.self\.(query|key|value)\.lora_[AB]\.default\.weight",
              r"classifier\.modules_to_save\.default\..*"]),
    "distill": ({"name": "distill", "teacher": "TINY_TEACHER", "speed_rows": 0}, [r".*"]),
}


@pytest.mark.parametrize("name", sorted(MEAN_POOLING_EXPECTATIONS))
def test_strategy_contract_with_a_mean_pooling_head(name, toy_recipe, tmp_path, request):
    options, patterns = MEAN_POOLING_EXPECTATIONS[name]
    recipe = {**toy_recipe, "model": {**toy_recipe["model"], "pooling": "mean"}}
    p = _pieces(_contract_recipe(recipe, options, request), tmp_path)
    assert type(p["model"]).__name__ == "MeanPoolingForSequenceClassification"
    _check_contract(p, patterns, tmp_path)


def test_lora_on_a_convolutional_backbone_says_which_strategies_apply(image_recipe, tiny_resnet_dir, tmp_path):
    recipe_dict = {**image_recipe, "model": {"name": tiny_resnet_dir}, "strategy": {"name": "lora"}}
    with pytest.raises(ModelError, match=r"lora adapts attention projections, and 'resnet' is a convolutional backbone.*"
                                         r"use strategy full, frozen or distill"):
        _pieces(recipe_dict, tmp_path)


def _check_contract(p: dict, patterns: list[str], tmp_path: Path) -> None:
    """prepare trains exactly ``patterns``; one loop step changes exactly those; save -> load gives the same logits."""
    model, strategy = p["model"], p["strategy"]

    # 1. after prepare, exactly the expected parameters require grad
    names = [n for n, _ in model.named_parameters()]
    expected = {n for n in names if any(re.fullmatch(pat, n) for pat in patterns)}
    assert expected, f"no parameter matches {patterns}; names: {names}"
    trainable = {n for n, t in model.named_parameters() if t.requires_grad}
    assert trainable == expected, f"unexpected: {sorted(trainable - expected)}; missing: {sorted(expected - trainable)}"

    # 2. one optimizer step through the real loop changes exactly those parameters
    before = _snapshot(model)
    cfg = p["recipe"].train
    train_batches = train_loader(p["prepared"]["train"], cfg.batch_size, cfg.seed, False, p["collator"])
    eval_batches = eval_loader(p["prepared"]["validation"], 8, p["collator"])
    assert len(train_batches) == 1
    work = tmp_path / "work"
    work.mkdir()
    result = run_loop(p["trained"], strategy, train_batches, eval_batches, cfg, p["accelerator"], task=p["spec"],
                      metric_names=["accuracy"], work_dir=work)
    assert result.state.global_step == 1 and result.total_steps == 1
    after = _snapshot(model)
    changed = {n for n in names if not torch.equal(before[n], after[n])}
    assert changed == expected, f"changed but frozen: {sorted(changed - expected)}; trainable but unchanged: {sorted(expected - changed)}"

    # 3. save -> load gives identical logits (on the raw token ids of the validation rows)
    out = tmp_path / "saved"
    out.mkdir()
    trained = p["accelerator"].unwrap_model(result.model)
    strategy.export(model, p["tokenizer"], out)
    reloaded = nlp_transfer.load_model(out).eval()
    trained.eval()
    n = len(p["prepared"]["validation"])
    prepared_batch = p["collator"]([p["prepared"]["validation"][i] for i in range(n)])
    raw_rows = [{k: v for k, v in p["tokenized"]["validation"][i].items() if k not in ("labels", "length")} for i in range(n)]
    raw_batch = p["spec"].kind.collator(p["tokenizer"])(raw_rows)
    with torch.inference_mode():
        expected_logits = strategy.logits(trained, prepared_batch)
        got = reloaded(**raw_batch).logits
    if p["spec"].type == "token-classification":  # one row of logits per real token (padding is layout, not output)
        assert got.shape[:2] == raw_batch["input_ids"].shape and got.shape[-1] == p["spec"].num_labels
        real = raw_batch["attention_mask"].bool()
        got, expected_logits = got[real], expected_logits[real]
    else:
        assert got.shape == (n, p["spec"].num_labels)
    torch.testing.assert_close(got, expected_logits, atol=1e-5, rtol=1e-5)

    # 4. predict works on the saved folder, with the task type's output
    _check_predict(p, out, tmp_path)


_PREDICTION_KEYS = {"text-classification": {"label", "score"}, "image-classification": {"label", "score"},
                    "multi-label-classification": {"labels", "scores"}, "regression": {"score"},
                    "token-classification": {"entities"}}


def _check_predict(p: dict, out: Path, tmp_path: Path) -> None:
    """``Predictor`` on the exported folder: one result per input, of the task type's shape; logits as the model's."""
    (out / "recipe.yaml").write_text(yaml.safe_dump(p["recipe"].to_dict()))
    task, validation = p["recipe"].task, p["splits"]["validation"]
    if task.type == "image-classification":
        inputs = [str(path) for path in sorted(Path(p["recipe"].data.dir, "validation").rglob("*.png"))[:4]]
    elif task.type == "token-classification":
        inputs = [" ".join(words) for words in validation[task.tokens][:4]]
    else:
        inputs = list(validation[task.text][:4])
    predictor = nlp_transfer.Predictor(out)
    results = predictor(inputs)
    assert len(results) == len(inputs) and all(set(r) == _PREDICTION_KEYS[task.type] for r in results)
    if task.type == "text-classification":
        reloaded = nlp_transfer.load_model(out).eval()
        with torch.inference_mode():
            direct = reloaded(**p["tokenizer"](inputs, padding=True, return_tensors="pt")).logits
        torch.testing.assert_close(torch.as_tensor(predictor.logits(inputs)), direct, atol=1e-5, rtol=1e-5)
        assert [r["label"] for r in results] == [p["spec"].id2label[int(i)] for i in direct.argmax(-1)]


def test_registry_names_match_their_classes():
    for name, cls in STRATEGIES.items():
        assert cls.name == name and cls.Options().name == name


def test_full_layer_decay_gives_lower_layers_lower_lr(toy_recipe, tmp_path):
    recipe_dict = {**toy_recipe, "strategy": {"name": "full", "layer_decay": 0.5}}
    p = _pieces(recipe_dict, tmp_path)
    groups = p["strategy"].param_groups(p["model"], lr=1.0, head_lr=3.0, weight_decay=0.01)
    names = {id(t): n for n, t in p["model"].named_parameters()}
    scale = {names[id(t)]: g["lr"] for g in groups for t in g["params"]}
    assert set(scale) == set(names.values())  # every parameter is in exactly one group
    assert sum(len(g["params"]) for g in groups) == len(names)

    def depth_scale(prefix):
        values = {v for n, v in scale.items() if n.startswith(prefix)}
        assert len(values) == 1, (prefix, values)
        return values.pop()

    embeddings = depth_scale("bert.embeddings.")
    layer0, layer1 = depth_scale("bert.encoder.layer.0."), depth_scale("bert.encoder.layer.1.")
    pooler, head = depth_scale("bert.pooler."), depth_scale("classifier.")
    # the pretrained pooler is the top of the backbone; the new head has a learning rate of its own
    assert (embeddings, layer0, layer1, pooler, head) == (0.125, 0.25, 0.5, 1.0, 3.0)
    # and no decay for biases and LayerNorm weights
    for g in groups:
        one_dim = {t.ndim for t in g["params"]}
        assert len(one_dim) == 1
        assert g["weight_decay"] == (0.01 if one_dim.pop() >= 2 else 0.0)


def test_full_without_layer_decay_uses_lr_and_head_lr(toy_recipe, tmp_path):
    p = _pieces(toy_recipe, tmp_path)
    groups = p["strategy"].param_groups(p["model"], lr=1e-4, head_lr=2e-3, weight_decay=0.01)
    names = {id(t): n for n, t in p["model"].named_parameters()}
    rates = {names[id(t)]: g["lr"] for g in groups for t in g["params"]}
    assert len(rates) == len(names) == sum(len(g["params"]) for g in groups)
    assert {n for n, lr in rates.items() if lr == 2e-3} == {"classifier.weight", "classifier.bias"}
    assert all(lr == 1e-4 for n, lr in rates.items() if not n.startswith("classifier."))


@pytest.fixture
def count_encoder_calls(monkeypatch):
    calls = []
    original = models_module.pooled_features

    def counting(model, batch, pooling):
        calls.append(pooling)
        return original(model, batch, pooling)

    monkeypatch.setattr(models_module, "pooled_features", counting)
    return calls


def _frozen_run(toy_recipe, tmp_path, name, pooling=None, **strategy):
    recipe = {**toy_recipe, "model": {**toy_recipe["model"], "pooling": pooling}, "strategy": {"name": "frozen", **strategy},
              "train": {**toy_recipe["train"], "epochs": 2}, "output": {"dir": str(tmp_path / name)}}
    return recipe


def test_frozen_feature_cache_hits_on_the_same_data(toy_recipe, tmp_path, count_encoder_calls):
    first = nlp_transfer.train(_frozen_run(toy_recipe, tmp_path, "first"))
    assert first.metrics["feature_cache_hits"] == {"train": False, "validation": False}
    assert first.metrics["feature_pass_seconds"]["train"] > 0  # the one-off pass is timed
    assert len(count_encoder_calls) > 0
    count_encoder_calls.clear()

    second = nlp_transfer.train(_frozen_run(toy_recipe, tmp_path, "second"))
    saved = json.loads((second.output_dir / "metrics.json").read_text())
    assert saved["feature_cache_hits"] == {"train": True, "validation": True}
    assert saved["feature_pass_seconds"] == {"train": 0.0, "validation": 0.0}
    assert count_encoder_calls == []  # the encoder never ran again
    assert saved["validation"] == pytest.approx(first.metrics["validation"])


# max_length 8 cuts the longest toy sentences (16 would cut none: identical inputs give identical features and hit)
@pytest.mark.parametrize("change", [{"max_length": 8}, {"pooling": "mean"}], ids=["max_length", "pooling"])
def test_frozen_feature_cache_misses_when_features_would_differ(toy_recipe, tmp_path, count_encoder_calls, change):
    nlp_transfer.train(_frozen_run(toy_recipe, tmp_path, "first"))
    count_encoder_calls.clear()
    recipe = _frozen_run(toy_recipe, tmp_path, "second", **{k: v for k, v in change.items() if k == "pooling"})
    if "max_length" in change:
        recipe["model"] = {**recipe["model"], "max_length": change["max_length"]}
    second = nlp_transfer.train(recipe)
    assert second.metrics["feature_cache_hits"] == {"train": False, "validation": False}
    assert len(count_encoder_calls) > 0


def test_frozen_without_cache_always_extracts(toy_recipe, tmp_path, count_encoder_calls):
    nlp_transfer.train(_frozen_run(toy_recipe, tmp_path, "first", cache_features=False))
    count_encoder_calls.clear()
    second = nlp_transfer.train(_frozen_run(toy_recipe, tmp_path, "second", cache_features=False))
    assert second.metrics["feature_cache_hits"] == {"train": False, "validation": False}
    assert len(count_encoder_calls) > 0


def test_frozen_mean_pooling_loads_with_plain_transformers(toy_recipe, tmp_path):
    out = nlp_transfer.train(_frozen_run(toy_recipe, tmp_path, "mean", pooling="mean")).output_dir
    assert (out / "modeling_mean_pooling.py").is_file()
    plain = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True).eval()
    ours = nlp_transfer.load_model(out).eval()
    assert type(plain).__name__ == "MeanPoolingForSequenceClassification"
    tokenizer = load_tokenizer(str(out))
    batch = tokenizer(["the food was good", "awful service today and it was broken", "nice"], padding=True,
                      return_tensors="pt")
    with torch.inference_mode():
        torch.testing.assert_close(plain(**batch).logits, ours(**batch).logits, atol=1e-6, rtol=1e-6)
