"""The output folder: contents, loadability with plain transformers, whole-or-nothing writes, reload check."""

import json
import logging
import random
from pathlib import Path

import pytest
import torch
import yaml
from conftest import NEGATIVE, NEUTRAL, POSITIVE, toy_sentences, write_csv
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

import nlp_transfer
from nlp_transfer import ExportError
from nlp_transfer.outputs.export import partial_dir, publishable_recipe
from nlp_transfer.strategies.full import FullStrategy

TEXTS = ["the food was good", "awful service and it was broken", "a lovely happy movie", "really boring today", "nice"]


def _recipe(toy_recipe, out: Path, **train) -> dict:
    return {**toy_recipe, "train": {**toy_recipe["train"], **train}, "output": {"dir": str(out)}}


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory) -> Path:
    """The conftest toy recipe for 10 epochs, trained once for the tests that only read its output."""
    folder = tmp_path_factory.mktemp("export")
    recipe = {
        "model": {"name": tiny_model_dir, "max_length": 32},
        "data": {"files": {"train": write_csv(folder / "train.csv", toy_sentences(96, seed=1)),
                           "validation": write_csv(folder / "validation.csv", toy_sentences(32, seed=2))}},
        "train": {"epochs": 10, "batch_size": 16, "lr": 3e-3, "seed": 7, "log_every": 1, "warmup_ratio": 0.0},
        "output": {"dir": str(folder / "out")},
    }
    return nlp_transfer.train(recipe).output_dir


def test_output_folder_contents(trained):
    names = {p.name for p in trained.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "recipe.yaml",
            "metrics.json", "README.md", "train_log.jsonl"} <= names
    assert not any(n.endswith(".bin") for n in names)  # weights only as safetensors
    assert not any(n.startswith(".") for n in names)
    metrics = json.loads((trained / "metrics.json").read_text())
    assert {"validation", "train", "parameters"} <= metrics.keys()
    assert {"accuracy", "f1", "loss"} <= metrics["validation"].keys()
    assert metrics["parameters"]["trainable"] == metrics["parameters"]["total"] > 0
    assert metrics["reload_check"]["passed"] is True
    assert metrics["train"]["steps"] == 60  # 10 epochs of 6 batches
    recipe = yaml.safe_load((trained / "recipe.yaml").read_text())
    assert recipe["train"]["epochs"] == 10 and recipe["output"]["dir"] == str(trained)
    assert nlp_transfer.load_recipe(trained / "recipe.yaml").to_dict() == recipe  # the saved recipe reruns as is
    # what a push uploads holds no absolute local path: file and folder names only
    published = yaml.safe_load(publishable_recipe((trained / "recipe.yaml").read_text()))
    assert published["data"]["files"] == {"train": "train.csv", "validation": "validation.csv"}
    assert published["output"]["dir"] == "out" and not Path(published["model"]["name"]).is_absolute()
    assert published["train"] == recipe["train"]
    card = (trained / "README.md").read_text()
    assert card.startswith("---") and "nlp-transfer" in card and "accuracy" in card
    assert (trained / "train_log.jsonl").read_text().count('"validation"') == 10  # one evaluation per epoch
    # no work folder or staging left beside the output
    assert sorted(p.name for p in trained.parent.iterdir() if p.name.startswith(".")) == []


def test_plain_transformers_and_pipeline_agree_with_predict(trained):
    ours = nlp_transfer.predict(trained, TEXTS)
    model = AutoModelForSequenceClassification.from_pretrained(trained).eval()
    classifier = pipeline("text-classification", model=str(trained))
    tokenizer = AutoTokenizer.from_pretrained(trained)
    with torch.inference_mode():
        logits = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    plain_labels = [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    piped = classifier(TEXTS)
    assert [r["label"] for r in ours] == plain_labels == [r["label"] for r in piped]
    for mine, theirs in zip(ours, piped):
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-5)
    # the model learned: the opinion word decides
    assert [r["label"] for r in ours] == ["positive", "negative", "positive", "negative", "positive"]


def test_a_mean_pooling_output_loads_without_a_model_type_warning(trained, tmp_path, caplog):
    """The folder's config.json has a model type of its own; neither the package's Predictor nor plain transformers
    (with trust_remote_code) warns about it, and both predict alike."""
    recipe = yaml.safe_load((trained / "recipe.yaml").read_text())
    recipe["model"]["pooling"], recipe["train"]["epochs"], recipe["output"]["dir"] = "mean", 2, str(tmp_path / "mean")
    out = nlp_transfer.train(recipe).output_dir
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        classify = nlp_transfer.Predictor(out)
        ours = classify.logits(TEXTS)
        model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(out, trust_remote_code=True)
    assert type(classify.model).__name__ == type(model).__name__ == "MeanPoolingForSequenceClassification"
    warned = [r.getMessage() for r in caplog.records if "to instantiate a model of type" in r.getMessage()]
    assert warned == []
    with torch.inference_mode():
        plain = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(torch.as_tensor(ours), plain, atol=1e-5, rtol=0)


def test_predictor_loads_once_and_keeps_input_order(trained, monkeypatch):
    import nlp_transfer.inference.variants as variants

    loads = []
    real_load = variants.load_model
    monkeypatch.setattr(variants, "load_model", lambda folder: loads.append(folder) or real_load(folder))
    classify = nlp_transfer.Predictor(trained)
    one_by_one = [classify([text])[0] for text in TEXTS]
    batched_small = classify(TEXTS, batch_size=2)  # several length-sorted batches, results back in input order
    assert len(loads) == 1
    assert [r["label"] for r in batched_small] == [r["label"] for r in one_by_one] == [r["label"] for r in nlp_transfer.predict(trained, TEXTS)]
    for single, batched in zip(one_by_one, batched_small):
        assert single["score"] == pytest.approx(batched["score"], abs=1e-5)  # padding does not change a row's result
    assert classify([]) == []
    half = nlp_transfer.Predictor(trained, dtype="bfloat16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    assert [r["label"] for r in half(TEXTS)] == [r["label"] for r in one_by_one]
    with pytest.raises(ValueError, match="Predictor dtype: got 'fp8'; expected one of float32, bfloat16, float16"):
        nlp_transfer.Predictor(trained, dtype="fp8")


def test_label_maps_come_from_the_data(trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    assert config["label2id"] == {"negative": 0, "positive": 1}
    assert config["problem_type"] == "single_label_classification"


def test_existing_output_is_refused_without_overwrite(toy_recipe, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    before = _tree(out)
    with pytest.raises(ExportError, match=r"output\.dir: '.*out' already exists and is not empty; pass --overwrite"):
        nlp_transfer.train(_recipe(toy_recipe, out, epochs=1))
    assert _tree(out) == before
    assert not partial_dir(out).exists()

    nlp_transfer.train(_recipe(toy_recipe, out, epochs=1), overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()

    again = _recipe(toy_recipe, out, epochs=1)
    again["output"]["overwrite"] = True  # the recipe key works like the flag
    nlp_transfer.train(again)
    assert (out / "model.safetensors").is_file()


def test_empty_existing_output_dir_is_fine(toy_recipe, tmp_path):
    (tmp_path / "out").mkdir()
    nlp_transfer.train(_recipe(toy_recipe, tmp_path / "out", epochs=1))
    assert (tmp_path / "out" / "config.json").is_file()


def test_interrupted_run_leaves_no_output(toy_recipe, tmp_path, monkeypatch):
    out = tmp_path / "out"
    original, calls = FullStrategy.loss, []

    def crash_at_step_7(self, model, batch, ctx):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return original(self, model, batch, ctx)

    monkeypatch.setattr(FullStrategy, "loss", crash_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        nlp_transfer.train(_recipe(toy_recipe, out, checkpoint_every=3))
    monkeypatch.setattr(FullStrategy, "loss", original)
    assert not out.exists()  # the partial work is beside it, never at output.dir
    assert (partial_dir(out) / "checkpoints").is_dir()
    with pytest.raises(nlp_transfer.ModelError, match=r"is not an output folder of `nlp-transfer train` \(no such folder\)"):
        nlp_transfer.evaluate(out)
    # a fresh run does not silently throw the checkpoints away...
    with pytest.raises(ExportError, match=r"an earlier run of this output left checkpoints in '.*\.out\.partial'; pass --resume"):
        nlp_transfer.train(_recipe(toy_recipe, out, checkpoint_every=3))
    # ...but starts over when asked to
    result = nlp_transfer.train(_recipe(toy_recipe, out, epochs=2, checkpoint_every=3), overwrite=True)
    assert result.metrics["train"]["steps"] == 12
    assert not partial_dir(out).exists()


def _regression_rows(n: int, seed: int) -> list[tuple[str, float]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        words = rng.sample(NEUTRAL, rng.randint(2, 5)) + [rng.choice(POSITIVE if positive else NEGATIVE)]
        rng.shuffle(words)
        rows.append((" ".join(words), round((1.0 if positive else -1.0) + rng.uniform(-0.2, 0.2), 3)))
    return rows


def test_regression_trains_saves_and_reloads(toy_recipe, tmp_path):
    files = {"train": write_csv(tmp_path / "reg_train.csv", _regression_rows(96, 1), ("text", "score")),
             "validation": write_csv(tmp_path / "reg_val.csv", _regression_rows(32, 2), ("text", "score"))}
    recipe = {**_recipe(toy_recipe, tmp_path / "reg", epochs=10), "task": {"type": "regression", "label": "score"},
              "data": {"files": files}}
    out = nlp_transfer.train(recipe)
    assert set(out.metrics["validation"]) == {"loss", "pearson", "spearman", "mse"}
    assert out.metrics["validation"]["pearson"] > 0.8
    config = json.loads((out.output_dir / "config.json").read_text())
    assert config["problem_type"] == "regression"
    assert len(config["id2label"]) == 1
    ours = nlp_transfer.predict(out.output_dir, TEXTS[:2])
    assert set(ours[0]) == {"score"}
    assert ours[0]["score"] > ours[1]["score"]
    piped = pipeline("text-classification", model=str(out.output_dir))(TEXTS[:2])
    for mine, theirs in zip(ours, piped):
        assert isinstance(theirs["score"], float)
        assert theirs["score"] == pytest.approx(mine["score"], abs=1e-4)  # the raw score: no sigmoid for regression


def test_multi_label_trains_saves_and_reloads(toy_recipe, tmp_path):
    rng = random.Random(0)

    def rows(n):
        out = []
        for _ in range(n):
            pos, neg = rng.random() < 0.5, rng.random() < 0.5
            words = rng.sample(NEUTRAL, 2) + ([rng.choice(POSITIVE)] if pos else []) + ([rng.choice(NEGATIVE)] if neg else [])
            rng.shuffle(words)
            out.append((" ".join(words), "|".join(t for t, on in (("praise", pos), ("complaint", neg)) if on)))
        return out

    files = {"train": write_csv(tmp_path / "ml_train.csv", rows(128), ("text", "tags")),
             "validation": write_csv(tmp_path / "ml_val.csv", rows(32), ("text", "tags"))}
    recipe = {**_recipe(toy_recipe, tmp_path / "ml", epochs=10, lr=1e-2),
              "task": {"type": "multi-label-classification", "label": "tags"}, "data": {"files": files}}
    out = nlp_transfer.train(recipe)
    assert set(out.metrics["validation"]) == {"loss", "f1_micro", "f1_macro", "accuracy"}
    assert out.metrics["validation"]["loss"] < 0.5  # below log(2) = 0.69, where an untrained head sits
    config = json.loads((out.output_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert config["id2label"] == {"0": "complaint", "1": "praise"}
    texts = ["the good food", "it was awful", "good and bad"]
    ours = nlp_transfer.predict(out.output_dir, texts)
    assert set(ours[0]) == {"labels", "scores"}
    assert "praise" in ours[0]["labels"] and "praise" not in ours[1]["labels"]
    model = AutoModelForSequenceClassification.from_pretrained(out.output_dir).eval()
    assert model.config.problem_type == "multi_label_classification"
    tokenizer = AutoTokenizer.from_pretrained(out.output_dir)
    with torch.inference_mode():
        probs = torch.sigmoid(model(**tokenizer(texts, padding=True, return_tensors="pt")).logits)
    for row, mine in zip(probs.tolist(), ours):
        assert mine["scores"] == pytest.approx({"complaint": row[0], "praise": row[1]}, abs=1e-5)
        assert mine["labels"] == [name for name, p in zip(("complaint", "praise"), row) if p >= 0.5]


def test_reload_check_catches_a_broken_save(toy_recipe, tmp_path, monkeypatch):
    original = FullStrategy.export

    def export_perturbed(self, model, tokenizer, out_dir):
        original(self, model, tokenizer, out_dir)
        weights = load_file(str(out_dir / "model.safetensors"))
        weights["classifier.weight"] = weights["classifier.weight"] + 0.5
        save_file(weights, str(out_dir / "model.safetensors"), metadata={"format": "pt"})

    monkeypatch.setattr(FullStrategy, "export", export_perturbed)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match=r"reload check failed for '.*': the saved model's logits differ .*nothing was published"):
        nlp_transfer.train(_recipe(toy_recipe, out, epochs=1))
    assert not out.exists()
