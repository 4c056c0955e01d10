"""The seams: torch-free recipe validation, strategy defaults, the staged runner's options, hooks with a run context."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from accelerate import Accelerator
from datasets import Dataset
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

import nlp_transfer
from nlp_transfer import RecipeError, load_recipe
from nlp_transfer.training import loop as loop_lib
from nlp_transfer.training.checkpoints import BEST_WEIGHTS
from nlp_transfer.cli import main as cli_main
from nlp_transfer.data.loaders import eval_loader, train_loader
from nlp_transfer.data.sampling import sample_fraction
from nlp_transfer.models.build import layer_groups
from nlp_transfer.training.stages import build_run_model, load_data, prepare, preprocess
from nlp_transfer.strategies.registry import STRATEGIES, build_strategy
from nlp_transfer.strategies.base import StepContext
from nlp_transfer.strategies.full import FullStrategy

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- validation without torch
def test_loading_and_validating_a_recipe_imports_no_torch():
    code = ("import sys, nlp_transfer.recipe.load as r; from nlp_transfer.cli import main; "
            "main(['-q', 'validate', 'recipes/sst2/full.yaml']); r.load_recipe('recipes/conll2003/lora.yaml'); "
            "r.load_recipe('recipes/digits/frozen.yaml'); "
            "heavy = [m for m in ('torch', 'transformers', 'datasets', 'peft', 'accelerate', 'evaluate', 'numpy') if m in sys.modules]; "
            "print('HEAVY', heavy)")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "HEAVY []" in run.stdout
    assert "model:\n  name: sentence-transformers/all-MiniLM-L6-v2" in run.stdout  # the resolved recipe was printed


def test_validate_prints_the_resolved_recipe_or_every_problem(capsys):
    assert cli_main(["-q", "validate", "recipes/sst2/frozen.yaml", "train.lr=null", "train.epochs=null"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# recipes/sst2/frozen.yaml: valid. Unset keys resolved: ")
    assert "train.lr=0.01" in out and "train.epochs=20.0" in out and "model.pooling=mean" not in out.split("\n")[0]
    assert "  pooling: mean\n" in out  # the recipe's own model.pooling
    assert cli_main(["-q", "validate", "recipes/sst2/full.yaml", "task.type=tagging", "strategy.name=frozn"]) == 2
    err = capsys.readouterr().err
    assert "task.type: got 'tagging'; expected one of: text-classification, multi-label-classification" in err
    assert "strategy.name: unknown strategy 'frozn'" in err


# ---------------------------------------------------------------- strategy-owned defaults
@pytest.mark.parametrize("name, lr, head_lr, epochs", [
    ("full", 5e-5, 1e-3, 3.0), ("frozen", 1e-2, 1e-2, 20.0), ("lora", 1e-3, 5e-3, 3.0),
])
def test_unset_train_keys_take_the_strategys_defaults(name, lr, head_lr, epochs, toy_recipe):
    train = {k: v for k, v in toy_recipe["train"].items() if k not in ("lr", "epochs")}
    recipe = load_recipe({**toy_recipe, "strategy": {"name": name}, "train": train})
    assert (recipe.train.lr, recipe.train.head_lr, recipe.train.epochs) == pytest.approx((lr, head_lr, epochs))
    assert recipe.defaults_used["train.lr"] == pytest.approx(lr)
    given = load_recipe({**toy_recipe, "strategy": {"name": name}, "train": {**train, "lr": 1e-2, "head_lr": 4e-2}})
    assert (given.train.lr, given.train.head_lr) == (1e-2, 4e-2) and "train.lr" not in given.defaults_used
    assert given.to_dict()["train"]["head_lr"] == 4e-2


def test_head_lr_must_be_positive(toy_recipe):
    with pytest.raises(RecipeError, match=r"train.head_lr: got -0.1; expected a positive number"):
        load_recipe({**toy_recipe, "train": {**toy_recipe["train"], "head_lr": -0.1}})


def test_a_recipe_file_without_output_dir_writes_to_runs_and_its_name(toy_recipe, tmp_path):
    recipe_dict = {k: v for k, v in toy_recipe.items() if k != "output"}
    path = tmp_path / "my-recipe.yaml"
    path.write_text(yaml.safe_dump(recipe_dict))
    recipe = load_recipe(path)  # a default is written nowhere: it is the working directory's
    expected = str(Path.cwd() / "runs" / "my-recipe")
    assert recipe.output.dir == expected and recipe.defaults_used["output.dir"] == expected
    with pytest.raises(RecipeError, match=r"output\.dir: missing"):  # a dict has no name to borrow
        load_recipe(recipe_dict)


@pytest.mark.parametrize("typed, meant", [("no", "no"), ("off", "no"), ("bf16", "bf16")])
def test_yaml_reading_no_as_false_still_means_no(typed, meant, toy_recipe):
    """YAML 1.1 reads a bare `no` (as typed on the command line: train.mixed_precision=no) as false."""
    assert load_recipe(toy_recipe, [f"train.mixed_precision={typed}"]).train.mixed_precision == meant
    with pytest.raises(RecipeError, match=r"train\.mixed_precision: got True; expected one of: auto, no, fp16, bf16"):
        load_recipe(toy_recipe, ["train.mixed_precision=yes"])


def test_pooling_follows_the_model_folder(tiny_model_dir, toy_recipe, tmp_path):
    assert load_recipe(REPO / "recipes" / "sst2" / "full.yaml").model.pooling == "mean"  # all-MiniLM-L6-v2 says so
    assert load_recipe(toy_recipe).model.pooling == "cls"  # a plain BERT folder
    sentence_model = tmp_path / "sentence-model"
    shutil.copytree(tiny_model_dir, sentence_model)
    (sentence_model / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (sentence_model / "1_Pooling").mkdir()
    (sentence_model / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    recipe = {**toy_recipe, "model": {**toy_recipe["model"], "name": str(sentence_model)},
              "train": {**toy_recipe["train"], "epochs": 1}, "output": {"dir": str(tmp_path / "out")}}
    assert load_recipe(recipe).model.pooling == "mean"
    out = nlp_transfer.train(recipe).output_dir
    saved = load_recipe(out / "recipe.yaml")
    assert saved.model.pooling == "mean" and (out / "modeling_mean_pooling.py").is_file()
    assert type(nlp_transfer.load_model(out)).__name__ == "MeanPoolingForSequenceClassification"
    # plain transformers refuses the folder rather than load its weights into BERT's first-token head
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        AutoModelForSequenceClassification.from_pretrained(out)
    assert type(AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)).__name__ == \
        "MeanPoolingForSequenceClassification"
    # lora keeps the native head unless asked: peft's Auto classes rebuild the base model's own head
    assert load_recipe({**recipe, "strategy": {"name": "lora"}}).model.pooling == "cls"


def test_pooling_is_refused_where_nothing_is_pooled(toy_token_recipe):
    with pytest.raises(RecipeError, match=r"model.pooling: got 'mean', but a token-classification head reads every token's"):
        load_recipe({**toy_token_recipe, "model": {**toy_token_recipe["model"], "pooling": "mean"}})


# ---------------------------------------------------------------- the staged runner's options
def test_fraction_is_seeded_stratified_and_nested():
    labels = [0] * 80 + [1] * 20
    ds = Dataset.from_dict({"row": list(range(100)), "labels": labels})
    tenth = sample_fraction(ds, 0.1, seed=3, strata=labels)
    half = sample_fraction(ds, 0.5, seed=3, strata=labels)
    assert sorted(tenth["labels"]) == [0] * 8 + [1] * 2 and sorted(half["labels"]) == [0] * 40 + [1] * 10
    assert set(tenth["row"]) < set(half["row"])  # nested
    assert tenth["row"] == sample_fraction(ds, 0.1, seed=3, strata=labels)["row"]  # seeded
    assert tenth["row"] != sample_fraction(ds, 0.1, seed=4, strata=labels)["row"]
    assert tenth["row"] == sorted(tenth["row"])  # rows keep their order
    assert len(sample_fraction(ds, 0.01, seed=3, strata=labels)) == 2  # at least one row of each class
    assert len(sample_fraction(ds, 1.0, seed=3, strata=labels)) == 100


def test_fraction_in_a_recipe(toy_recipe):
    recipe = load_recipe({**toy_recipe, "data": {**toy_recipe["data"], "fraction": 0.25}})
    splits, task = load_data(recipe.data, recipe.task, recipe.train.seed)
    assert len(splits["train"]) == 24 and len(splits["validation"]) == 32
    assert sorted(set(splits["train"]["labels"])) == [0, 1] and splits["train"]["labels"].count(0) == 12
    with pytest.raises(RecipeError, match=r"data.fraction: got 1.5; expected the share of train to keep, in \(0, 1\]"):
        load_recipe({**toy_recipe, "data": {**toy_recipe["data"], "fraction": 1.5}})


def test_a_metrics_only_run_writes_no_weights(toy_recipe, tmp_path):
    out = nlp_transfer.train({**toy_recipe, "train": {**toy_recipe["train"], "epochs": 2},
                              "output": {"dir": str(tmp_path / "m"), "save": "metrics"}})
    files = sorted(p.name for p in out.output_dir.iterdir())
    assert files == ["metrics.json", "recipe.yaml", "train_log.jsonl"]
    saved = json.loads((out.output_dir / "metrics.json").read_text())
    assert saved["validation"]["accuracy"] == out.metrics["validation"]["accuracy"] and "reload_check" not in saved


def test_text_models_train_from_scratch(toy_recipe, tiny_model_dir, tmp_path):
    recipe = load_recipe({**toy_recipe, "model": {**toy_recipe["model"], "from_scratch": True}})
    splits, task = load_data(recipe.data, recipe.task, recipe.train.seed)
    scratch, _ = build_run_model(recipe.model, task, build_strategy(recipe.strategy, task))
    pretrained, _ = build_run_model(load_recipe(toy_recipe).model, task, build_strategy(recipe.strategy, task))
    assert type(scratch) is type(pretrained) and scratch.config.num_hidden_layers == pretrained.config.num_hidden_layers
    # every weight matrix of the backbone is random (norms and biases start at ones and zeros either way)
    same = [torch.equal(a, b) for a, b in zip(scratch.bert.parameters(), pretrained.bert.parameters()) if a.ndim >= 2]
    assert same and not any(same)


# ---------------------------------------------------------------- layer groups
def test_layer_groups_run_from_embeddings_to_the_head(toy_recipe, tmp_path):
    recipe = load_recipe(toy_recipe)
    _, task = load_data(recipe.data, recipe.task, recipe.train.seed)
    model, _ = build_run_model(recipe.model, task, build_strategy(recipe.strategy, task))
    groups = layer_groups(model)
    assert [(g.name, g.depth) for g in groups] == [("embeddings", 0), ("layer.0", 1), ("layer.1", 2), ("top", 3), ("head", 3)]
    names = {id(p): n for n, p in model.named_parameters()}
    by_group = {g.name: {names[id(p)].split(".")[0] + "." + names[id(p)].split(".")[1] for p in g.params} for g in groups}
    assert by_group["top"] == {"bert.pooler"} and by_group["head"] == {"classifier.weight", "classifier.bias"}
    assert sum(len(g.params) for g in groups) == len(names)


# ---------------------------------------------------------------- hooks with a run context
class HeadFirst(FullStrategy):
    """A schedule: epoch 0 trains the head alone, later epochs everything; records what the loop tells it."""

    def __init__(self, options, task):
        super().__init__(options, task)
        self.contexts, self.snapshots = [], {}

    def on_epoch(self, model, ctx):
        self.contexts.append(("epoch", ctx.epoch, ctx.step))
        model.requires_grad_(ctx.epoch > 0)
        model.classifier.requires_grad_(True)
        self.snapshots[ctx.epoch] = {n: p.detach().clone() for n, p in model.named_parameters()}

    def on_step(self, model, ctx):
        self.contexts.append(("step", ctx.epoch, ctx.step, round(ctx.progress, 4)))
        if ctx.step == ctx.total_steps:
            self.snapshots["end"] = {n: p.detach().clone() for n, p in model.named_parameters()}

    def loss(self, model, batch, ctx):
        assert isinstance(ctx, StepContext) and ctx.total_steps == 12
        return super().loss(model, batch, ctx)


def test_hooks_see_the_run_and_the_best_weights_hold_every_parameter_that_may_train(toy_recipe, tmp_path, monkeypatch):
    recipe = load_recipe({**toy_recipe, "train": {**toy_recipe["train"], "epochs": 2, "batch_size": 16}})
    splits, task = load_data(recipe.data, recipe.task, recipe.train.seed)
    strategy = HeadFirst(recipe.strategy, task)
    model, tokenizer = build_run_model(recipe.model, task, strategy)
    inputs, _ = preprocess(recipe, task, tokenizer, splits)
    accelerator = Accelerator(cpu=True)
    trained, prepared, _ = prepare(strategy, model, tokenizer, inputs, accelerator)
    collator = strategy.collator(tokenizer)
    scores = iter([0.9, 0.5])  # epoch 0 (head only) is the best; epoch 1 trains the encoder too, and is worse
    monkeypatch.setattr(loop_lib, "evaluate_loader", lambda *a, **k: {"loss": 1.0, "accuracy": next(scores)})
    work = tmp_path / "work"
    work.mkdir()
    result = loop_lib.run_loop(trained, strategy, train_loader(prepared["train"], 16, 7, False, collator),
                               eval_loader(prepared["validation"], 16, collator), recipe.train, accelerator, task=task,
                               metric_names=["accuracy"], work_dir=work)
    assert result.total_steps == 12 and result.state.best_step == 6
    assert strategy.contexts[0] == ("epoch", 0, 0) and strategy.contexts[7] == ("epoch", 1, 6)
    assert [c for c in strategy.contexts if c[0] == "step"][-1] == ("step", 1, 12, 1.0)
    best = load_file(str(work / BEST_WEIGHTS))
    assert set(best) == {n for n, _ in model.named_parameters()}  # all of them, though only the head trained at epoch 0
    start, after_epoch_0, end = strategy.snapshots[0], strategy.snapshots[1], strategy.snapshots["end"]
    embeddings = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(after_epoch_0[embeddings], start[embeddings])  # frozen in epoch 0
    assert not torch.equal(end[embeddings], after_epoch_0[embeddings])  # trained in epoch 1
    assert not torch.equal(after_epoch_0["classifier.weight"], start["classifier.weight"])
    for name, param in model.named_parameters():  # restored: every weight as it was after epoch 0, the encoder too
        torch.testing.assert_close(param.detach(), after_epoch_0[name], atol=0, rtol=0, msg=name)


def test_every_strategy_declares_its_traits():
    for name, cls in STRATEGIES.items():
        options = cls.Options()
        assert options.description and isinstance(options.train_defaults, dict) and options.head_lr_factor > 0, name
        assert set(options.train_defaults) <= {"epochs", "lr", "weight_decay", "warmup_ratio"}, name
