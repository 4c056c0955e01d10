"""Model cards: metadata the Hub reads back, the real scores, usage code that runs, rendered offline."""

import contextlib
import io
import json
import re
import shutil
import socket
from pathlib import Path

import pytest
from conftest import MINILM, toy_sentences, write_csv
from huggingface_hub import ModelCard

import nlp_transfer
from nlp_transfer import RecipeError
from nlp_transfer.outputs.cards import render_model_card, retarget_card, write_model_card
from nlp_transfer.tasks.spec import TaskSpec

EXAMPLE = "This was a pleasant surprise."


def _no_network(*args, **kwargs):
    raise ConnectionRefusedError("card rendering tried to open a network connection")


def _run(model_dir: str, folder: Path, strategy: dict, **extra) -> Path:
    recipe = {
        "model": {"name": model_dir, "max_length": 32},
        "task": {"type": "text-classification"},
        "data": {"files": {"train": write_csv(folder / "train.csv", toy_sentences(64, seed=1)),
                           "validation": write_csv(folder / "validation.csv", toy_sentences(16, seed=2))}},
        "strategy": strategy,
        "train": {"epochs": 3, "batch_size": 16, "lr": 3e-3, "seed": 7, "warmup_ratio": 0.0, "metrics": ["accuracy", "f1_macro"]},
        "output": {"dir": str(folder / "out")},
        **extra,
    }
    return nlp_transfer.train(recipe).output_dir


@pytest.fixture(scope="module")
def full_out(tiny_model_dir, tmp_path_factory) -> Path:
    card = {"language": "en", "license": "apache-2.0", "intended_uses": "Sorting **toy** reviews.", "model_id": "me/toy-full"}
    return _run(tiny_model_dir, tmp_path_factory.mktemp("card-full"), {"name": "full"}, card=card)


@pytest.fixture(scope="module")
def frozen_mean_out(tiny_model_dir, tmp_path_factory) -> Path:
    return _run(tiny_model_dir, tmp_path_factory.mktemp("card-frozen"), {"name": "frozen"},
                model={"name": tiny_model_dir, "max_length": 32, "pooling": "mean"})


@pytest.fixture(scope="module")
def lora_out(tiny_model_dir, tmp_path_factory) -> Path:
    return _run(tiny_model_dir, tmp_path_factory.mktemp("card-lora"), {"name": "lora"})


def _card(folder: Path) -> ModelCard:
    return ModelCard.load(folder / "README.md")  # a local path: parsed offline, as the Hub parses it


def _index(card: ModelCard) -> dict[tuple[str, str], float]:
    return {(r.dataset_split, r.metric_name): r.metric_value for r in card.data.eval_results}


def _run_usage(folder: Path) -> str:
    """Execute every python block of the card, with its repo id pointed at the local folder; return what it printed."""
    card = _card(folder)
    blocks = re.findall(r"```python\n(.*?)```", card.text, re.S)
    assert blocks and json.dumps(card.data.model_name) in blocks[0]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for code in blocks:
            exec(code.replace(json.dumps(card.data.model_name), json.dumps(str(folder))), {})
    return printed.getvalue()


@pytest.mark.parametrize("fixture, sub", [("full_out", ""), ("frozen_mean_out", ""), ("lora_out", ""), ("lora_out", "merged")])
def test_model_index_equals_metrics_json(request, fixture, sub):
    run = request.getfixturevalue(fixture)
    folder = run / sub if sub else run
    metrics = json.loads((run / "metrics.json").read_text())
    expected = {("validation", n): v for n, v in metrics["validation"].items() if n != "loss"}
    card = _card(folder)
    assert _index(card) == expected and set(expected) == {("validation", "accuracy"), ("validation", "f1_macro")}
    f1 = next(r for r in card.data.eval_results if r.metric_name == "f1_macro")
    assert (f1.metric_type, f1.metric_args, f1.task_type, f1.dataset_split) == ("f1", {"average": "macro"}, "text-classification", "validation")
    assert card.data.pipeline_tag == "text-classification" and "nlp-transfer" in card.data.tags
    table_row = f"| validation | {metrics['data']['validation']} | {metrics['validation']['accuracy']:.4f} |"
    assert table_row in card.text
    assert f"{metrics['parameters']['trainable']:,} trainable of {metrics['parameters']['total']:,}" in card.text
    assert f"Training time: {metrics['train']['seconds']} s" in card.text and "- transformers " in card.text


def test_full_card_metadata_and_recipe_card_section(full_out):
    card = _card(full_out)
    assert (card.data.library_name, card.data.language, card.data.license) == ("transformers", "en", "apache-2.0")
    assert card.data.model_name == "me/toy-full" and card.text.startswith("\n# me/toy-full\n")
    assert card.data.base_model is None  # a local backbone is no Hub id; its folder name is in the text instead
    assert "full" in card.data.tags and "Sorting **toy** reviews." in card.text
    assert "Trained on 64 examples of the local dataset" in card.text and "Evaluate it on your own data" in card.text
    assert "3 epoch(s)" in card.text and "seed 7" in card.text and "learning rate 0.003" in card.text


def test_full_card_usage_runs_and_agrees_with_predict(full_out):
    (expected,) = nlp_transfer.predict(full_out, [EXAMPLE])
    printed = _run_usage(full_out)
    assert f"'label': '{expected['label']}'" in printed


def test_frozen_mean_card_says_trust_remote_code_and_its_usage_runs(frozen_mean_out):
    card = _card(frozen_mean_out)
    assert "trust_remote_code=True" in card.text and "modeling_mean_pooling.py" in card.text
    assert "mean-pooled encoder features" in card.text
    (expected,) = nlp_transfer.predict(frozen_mean_out, [EXAMPLE])
    assert f"'label': '{expected['label']}'" in _run_usage(frozen_mean_out)


def test_adapter_card_is_a_peft_card_whose_usage_runs(lora_out):
    card = _card(lora_out)
    assert card.data.library_name == "peft" and card.data.base_model is None  # local backbone: see test_hub_backbone_...
    assert "AutoPeftModelForSequenceClassification" in card.text and "pipeline(\"text-classification\"" not in card.text
    assert f"`{card.data.model_name}-merged`" in card.text  # where --what both pushes the merged copy
    (expected,) = nlp_transfer.predict(lora_out, [EXAMPLE])
    assert _run_usage(lora_out).strip() == str([expected["label"]])


def test_merged_card_usage_runs_without_peft(lora_out):
    merged = lora_out / "merged"
    card = _card(merged)
    assert card.data.library_name == "transformers"
    assert "merged-lora" in card.data.tags and card.data.model_name == _card(lora_out).data.model_name + "-merged"
    (expected,) = nlp_transfer.predict(merged, [EXAMPLE])
    assert f"'label': '{expected['label']}'" in _run_usage(merged)


def test_hub_backbone_and_dataset_reach_the_metadata(full_out, lora_out, monkeypatch):
    """A Hub backbone and Hub dataset are named in the front matter; rendered with every socket refused."""
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    metrics = json.loads((full_out / "metrics.json").read_text())
    recipe = nlp_transfer.load_recipe({
        "model": {"name": MINILM}, "task": {"type": "regression", "text": ["sentence1", "sentence2"]},
        "data": {"source": "nyu-mll/glue", "config": "stsb"}, "strategy": {"name": "full"}, "output": {"dir": "runs/stsb"},
        "card": {"language": ["en", "fr"]},
    })
    metrics["validation"] = {"pearson": 0.81, "spearman": 0.8, "loss": 0.5}
    card = render_model_card("classifier", full_out, recipe, metrics, TaskSpec("regression", {0: "score"}), "me/stsb")
    assert (card.data.base_model, card.data.base_model_relation, card.data.datasets) == (MINILM, "finetune", ["nyu-mll/glue"])
    assert card.data.language == ["en", "fr"]
    result = card.data.eval_results[0]
    assert (result.metric_type, result.dataset_type, result.dataset_config, result.task_name) == (
        "pearsonr", "nyu-mll/glue", "stsb", "Text Regression")
    assert '{"text": "A man is playing a guitar.", "text_pair": "Someone plays an instrument."}' in card.text
    assert f"[`{MINILM}`](https://huggingface.co/{MINILM})" in card.text
    for kind, folder, library, relation in (("adapter", lora_out, "peft", "adapter"),
                                            ("merged", lora_out / "merged", "transformers", "finetune")):
        card = render_model_card(kind, folder, recipe, metrics, TaskSpec("regression", {0: "score"}), "me/stsb")
        assert (card.data.library_name, card.data.base_model, card.data.base_model_relation) == (library, MINILM, relation)


def test_cards_render_with_the_network_unreachable(lora_out, tmp_path, monkeypatch):
    folder = shutil.copytree(lora_out, tmp_path / "copy")
    for readme in (folder / "README.md", folder / "merged" / "README.md"):
        readme.unlink()
    recipe = nlp_transfer.load_recipe(folder / "recipe.yaml")
    metrics = json.loads((folder / "metrics.json").read_text())
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    write_model_card(folder, recipe, metrics, TaskSpec("text-classification", {0: "negative", 1: "positive"}))
    assert (folder / "README.md").read_text() == (lora_out / "README.md").read_text()
    assert (folder / "merged" / "README.md").is_file()


def test_retarget_card_replaces_only_the_ids(lora_out):
    text = (lora_out / "README.md").read_text()
    old = _card(lora_out).data.model_name
    new = ModelCard(retarget_card(text, {old: "me/adapter", old + "-merged": "me/adapter-merged"}))
    assert new.data.model_name == "me/adapter" and new.text.startswith("\n# me/adapter\n")
    assert '"me/adapter"' in new.text and "`me/adapter-merged`" in new.text and f'"{old}"' not in new.text
    assert _index(new) == _index(_card(lora_out))
    assert retarget_card(text, {old: old}) == text


def test_card_section_is_validated(tiny_model_dir, tmp_path):
    recipe = {"model": {"name": tiny_model_dir}, "data": {"files": {"train": "t.csv"}}, "output": {"dir": str(tmp_path)},
              "card": {"licence": "mit", "language": 3}}
    with pytest.raises(RecipeError) as info:
        nlp_transfer.load_recipe(recipe)
    assert any(p.startswith("card.licence: unknown key; valid keys for 'card': model_id, language, license, intended_uses, "
                            "limitations") for p in info.value.problems), info.value.problems
    assert any(p.startswith("card.language: got 3; expected a string") for p in info.value.problems), info.value.problems
