"""Real pretrained MiniLM on real SST-2 subsets: every strategy learns well above chance."""

import json

import pytest
from transformers import AutoModelForSequenceClassification, pipeline

import nlp_transfer

from conftest import MINILM, shared_data

pytestmark = pytest.mark.integration


def sst2_recipe(tmp_path, strategy: dict, train: dict) -> dict:
    """1,000 training rows and 300 validation rows of real SST-2, sequences cut at 64 tokens."""
    return {
        "model": {"name": MINILM, "max_length": 64},
        "task": {"type": "text-classification", "text": "sentence", "label": "label", "labels": ["negative", "positive"]},
        "data": {"files": {"train": str(shared_data("sst2") / "train.tsv"), "validation": str(shared_data("sst2") / "validation.tsv")},
                 "limit": {"train": 1000, "validation": 300}},
        "strategy": strategy,
        "train": {"batch_size": 32, "seed": 13, "metrics": ["accuracy", "f1"], **train},
        "output": {"dir": str(tmp_path / strategy["name"])},
    }


def test_full_fine_tuning_learns_sst2(tmp_path):
    out = nlp_transfer.train(sst2_recipe(tmp_path, {"name": "full"}, {"epochs": 2, "lr": 6e-5, "batch_size": 16}))
    assert out.metrics["validation"]["accuracy"] >= 0.75
    # MiniLM's folder says mean pooling, so the output is a mean-pooling head: its class ships beside the weights
    assert json.loads((out.output_dir / "config.json").read_text())["model_type"] == "nlp_transfer_mean_pooling"
    classifier = pipeline("text-classification", model=str(out.output_dir), trust_remote_code=True)
    assert classifier("a gorgeous, witty, seductive movie.")[0]["label"] == "positive"
    assert classifier("the plot is a tedious, joyless mess.")[0]["label"] == "negative"


def test_frozen_features_learn_sst2_and_are_cached(tmp_path):
    recipe = sst2_recipe(tmp_path, {"name": "frozen", "pooling": "mean"}, {"epochs": 30, "lr": 3e-3, "batch_size": 64})
    out = nlp_transfer.train(recipe)
    assert out.metrics["validation"]["accuracy"] >= 0.75
    assert out.metrics["parameters"]["trainable_percent"] < 1.0
    assert out.metrics["feature_cache_hits"] == {"train": False, "validation": False}
    # the mean-pooling class ships beside the weights: plain transformers loads it
    model = AutoModelForSequenceClassification.from_pretrained(out.output_dir, trust_remote_code=True)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    # a second run on the same data reuses the cached features and scores the same
    again = nlp_transfer.train(recipe, overrides={"output.dir": str(tmp_path / "again")})
    assert again.metrics["feature_cache_hits"] == {"train": True, "validation": True}
    assert again.metrics["validation"]["accuracy"] == pytest.approx(out.metrics["validation"]["accuracy"])
    saved = json.loads((out.output_dir / "metrics.json").read_text())
    assert saved["validation"] == out.metrics["validation"]
