"""Self-training on the target domain (adapt.self_training): which rows get pseudo-labels, what a round trains on,
whole runs on the tiny model (alone and with an alignment method), and bad input."""

import json

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from datasets import Dataset, Features, Value

from nlp_transfer.adapt import self_training
from nlp_transfer.adapt.self_training import round_train_split, select_pseudo_labels
from nlp_transfer.errors import RecipeError
from nlp_transfer.recipe.load import load_recipe
from nlp_transfer.api import train
from test_adapt import _target_rows, _write_jsonl


def test_pseudo_labels_are_the_most_confident_rows_of_each_predicted_class_in_equal_numbers():
    # 10 rows: 7 predicted class 0 (margins 1..7), 3 predicted class 1 (margins 1..3)
    margins = [1.0, 5.0, 2.0, 7.0, 3.0, 6.0, 4.0, -1.0, -3.0, -2.0]
    logits = torch.tensor([[m, 0.0] for m in margins])
    pseudo = select_pseudo_labels(logits, keep=0.4)  # 0.4 * 10 / 2 classes = 2 per class
    assert pseudo.rows.tolist() == [3, 5, 8, 9]  # class 0's two surest (7, 6), class 1's (-3, -2); in row order
    assert pseudo.labels.tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(pseudo.confidence, torch.sigmoid(torch.tensor([7.0, 6.0, 3.0, 2.0])).numpy(), rtol=1e-6)
    # keep 1: up to 5 per class; class 1 has only 3 predicted rows, so all of them and no more of class 0
    everything = select_pseudo_labels(logits, keep=1.0)
    assert np.bincount(everything.labels).tolist() == [5, 3]
    assert set(everything.rows[everything.labels == 1]) == {7, 8, 9}
    assert everything.summary()["per_class"] == [5, 3] and everything.summary()["pseudo_labelled_rows"] == 8
    # a class the model never predicts gets no rows (and the round says so)
    one_sided = select_pseudo_labels(torch.tensor([[2.0, 0.0]] * 6), keep=0.5)
    assert one_sided.summary()["per_class"] == [1, 0]


def _rows(n: int, label: int, start: int, weights: bool) -> dict:
    columns = {"input_ids": [[start + i, 2] for i in range(n)], "labels": [label] * n}
    return {**columns, "weights": [0.5] * n} if weights else columns


@pytest.mark.parametrize("weights", [False, True])
def test_a_round_trains_on_the_pseudo_labelled_rows_and_as_many_source_rows(weights):
    features = Features({"input_ids": [Value("int64")], "labels": Value("int64"), **({"weights": Value("float32")}
                                                                                     if weights else {})})
    source = Dataset.from_dict(_rows(30, 1, 0, weights), features=features)
    target = Dataset.from_dict({"input_ids": [[100 + i, 2] for i in range(8)], "labels": [-100] * 8})  # no labels, no weights
    pseudo = select_pseudo_labels(torch.tensor([[3.0 - i, 0.0] for i in range(8)]), keep=0.5)  # rows 0, 1 and 6, 7
    split = round_train_split(source, target, pseudo, seed=3)
    assert split.features == source.features and len(split) == 2 * len(pseudo.rows)
    from_target = [row for row in split if row["input_ids"][0] >= 100]
    assert [(r["input_ids"][0] - 100, r["labels"]) for r in from_target] == [(0, 0), (1, 0), (6, 1), (7, 1)]
    from_source = [row for row in split if row["input_ids"][0] < 100]
    assert len(from_source) == 4 and len({r["input_ids"][0] for r in from_source}) == 4  # a sample, no repeats
    if weights:
        assert [r["weights"] for r in from_target] == [1.0] * 4 and {r["weights"] for r in from_source} == {0.5}
    few = source.select(range(2))  # fewer source rows than pseudo-labels: all of them
    assert len(round_train_split(few, target, pseudo, seed=3)) == 2 + 4


@pytest.fixture
def self_training_recipe(toy_recipe, tmp_path) -> dict:
    recipe = dict(toy_recipe)
    recipe["train"] = {**toy_recipe["train"], "epochs": 2, "mixed_precision": "no"}
    recipe["output"] = {"dir": str(tmp_path / "out"), "save": "model"}
    # target rows with a label column of garbage: never read (the rounds label rows with the model's predictions)
    target = _write_jsonl(tmp_path / "target.jsonl", _target_rows(40, seed=5, label_of=lambda i: "not-a-label"))
    recipe["adapt"] = {"target": {"files": [target]}, "self_training": {"rounds": 2, "keep": 0.5}, "eval_rows": 32}
    return recipe


@pytest.mark.parametrize("method", [None, "mcc"])
def test_a_run_trains_rounds_on_its_own_predictions_and_records_them(method, self_training_recipe, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    self_training_recipe["adapt"]["method"] = method
    self_training_recipe["adapt"]["target_ratio"] = 0.25
    exports = method is None
    self_training_recipe["output"]["save"] = "model" if exports else "metrics"
    seen = []  # per round: the target logits the model gave, and the rows the round then trained on
    real_select, real_split = self_training.select_pseudo_labels, self_training.round_train_split
    monkeypatch.setattr(self_training, "select_pseudo_labels",
                        lambda logits, keep: seen.append({"logits": logits.clone()}) or real_select(logits, keep))
    monkeypatch.setattr(self_training, "round_train_split",
                        lambda source, target, pseudo, seed: seen[-1].update(pseudo=pseudo, source=len(source))
                        or seen[-1].setdefault("split", real_split(source, target, pseudo, seed)))
    tracker_steps = []  # what tensorboard / wandb would get
    monkeypatch.setattr(Accelerator, "log", lambda self, values, step=None, log_kwargs=None: tracker_steps.append(step))
    out = train(self_training_recipe)
    metrics = out.metrics

    assert len(seen) == 2  # one prediction per round
    first_steps = None
    for number, (round_seen, summary) in enumerate(zip(seen, metrics["self_training"]["rounds"]), start=1):
        logits, pseudo, split = round_seen["logits"], round_seen["pseudo"], round_seen["split"]
        assert logits.shape == (40, 2)
        assert pseudo.labels.tolist() == logits.argmax(-1)[pseudo.rows].tolist()  # the model's own predictions
        trained_labels = split["labels"][len(split) - len(pseudo.rows):]
        assert trained_labels == pseudo.labels.tolist()
        assert summary["round"] == number and summary["pseudo_labelled_rows"] == len(pseudo.rows) <= 20
        assert all(n <= 10 for n in summary["per_class"])
        assert summary["source_rows"] == len(pseudo.rows) == len(split) - len(pseudo.rows)
        assert summary["steps"] > 0 and set(summary["validation"]) >= {"loss", "accuracy"}
        first_steps = first_steps or summary["steps"]
    assert not torch.equal(seen[0]["logits"], seen[1]["logits"])  # round 1 changed the model round 2 predicts with

    log = [json.loads(line) for line in (out.output_dir / "train_log.jsonl").read_text().splitlines()]
    assert {r.get("self_training_round") for r in log} == {None, 1, 2}
    assert sum(1 for r in log if "validation" in r) == 3 * 2  # 2 epochs: the first training and each round
    first_training_steps = max(r["step"] for r in log if "self_training_round" not in r)
    assert metrics["train"]["steps"] == first_training_steps + sum(s["steps"] for s in metrics["self_training"]["rounds"])
    # the trackers' steps go on across the rounds (each round's log restarts at 1; its curve must not overdraw)
    assert len(tracker_steps) == len(log) and tracker_steps == sorted(tracker_steps)
    assert tracker_steps[-1] == metrics["train"]["steps"]
    assert metrics["self_training"]["keep"] == 0.5 and "accuracy" in metrics["self_training"]["first_training"]
    assert metrics["validation"] == metrics["self_training"]["rounds"][-1]["validation"]  # the last round's model
    if not exports:
        return
    AutoModelForSequenceClassification.from_pretrained(out.output_dir)  # a plain classifier
    card = (out.output_dir / "README.md").read_text()
    assert "2 self-training rounds on the 50% of target rows" in card and "pseudo-labels only" in card
    saved = json.loads((out.output_dir / "metrics.json").read_text())
    assert saved["self_training"]["rounds"][1]["pseudo_labelled_rows"] == metrics["self_training"]["rounds"][1]["pseudo_labelled_rows"]


def test_bad_self_training_settings_are_errors_naming_the_key(self_training_recipe):
    adapt = self_training_recipe["adapt"]
    load_recipe(self_training_recipe)  # self-training alone is a complete adapt section
    with pytest.raises(RecipeError) as info:
        load_recipe({**self_training_recipe, "adapt": {**adapt, "self_training": {"rounds": 0, "keep": 1.5}}})
    assert "adapt.self_training.rounds: got 0" in str(info.value) and "adapt.self_training.keep: got 1.5" in str(info.value)
    with pytest.raises(RecipeError, match=r"adapt.self_training.keep: got 0.0;"):
        load_recipe({**self_training_recipe, "adapt": {**adapt, "self_training": {"keep": 0}}})
    regression = {**self_training_recipe, "task": {**self_training_recipe["task"], "type": "regression"}}
    with pytest.raises(RecipeError, match="adapt.self_training: pseudo-labels are the predicted class"):
        load_recipe(regression)
    with pytest.raises(RecipeError, match="adapt.self_training.turns: unknown key"):
        load_recipe({**self_training_recipe, "adapt": {**adapt, "self_training": {"turns": 2}}})
    with pytest.raises(RecipeError, match="--resume: not available with adapt.self_training"):
        train(self_training_recipe, resume=True)
