"""Tests for nlp_transfer.metrics and the shipped evaluate modules; all offline."""

from __future__ import annotations

import json

import evaluate
import numpy as np
import pytest

from nlp_transfer.evaluation import metrics
from nlp_transfer.evaluation.metrics import SHIPPED_METRICS, MetricError, greater_is_better, load_metric_module
from nlp_transfer.tasks.metrics import check_metric_names, compute_metrics, default_metrics

MODULE_NAMES = sorted(set(SHIPPED_METRICS.values()))


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


# --- the shipped modules -------------------------------------------------------------


@pytest.mark.parametrize("module_name", MODULE_NAMES)
def test_shipped_module_loads_from_its_local_path(module_name):
    script = metrics._MODULES_DIR / module_name / f"{module_name}.py"
    module = evaluate.load(str(script), keep_in_memory=True)
    assert isinstance(module, evaluate.Metric)
    assert module.name == module_name
    assert module.info.description and module.info.citation and module.info.inputs_description


def test_load_metric_module_caches_and_resolves_recipe_names():
    assert load_metric_module("f1") is load_metric_module("f1")
    assert load_metric_module("f1_macro").name == "f1"
    assert load_metric_module("pearson").name == "pearsonr"


def test_modules_accept_multi_label_indicator_rows():
    preds = [[1, 0, 1], [0, 1, 0]]
    refs = [[1, 0, 1], [0, 1, 1]]
    assert load_metric_module("accuracy").compute(predictions=preds, references=refs) == {"accuracy": 0.5}
    # micro: tp=3, fp=0, fn=1 -> P=1, R=3/4, F1=6/7
    f1 = load_metric_module("f1").compute(predictions=preds, references=refs, average="micro")
    assert f1["f1"] == pytest.approx(6 / 7)


def test_unknown_metric_offline_fails_fast_without_calling_evaluate(monkeypatch):
    def _must_not_be_called(*args, **kwargs):
        raise AssertionError("evaluate.load must not be called while offline")

    monkeypatch.setattr(metrics.evaluate, "load", _must_not_be_called)
    with pytest.raises(MetricError, match=r"metric 'bleu' is not shipped.*accuracy, f1.*network access"):
        load_metric_module("bleu")


def test_unknown_metric_online_failure_is_wrapped(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(metrics, "_hub_offline", lambda: False)

    def _no_network(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(metrics.evaluate, "load", _no_network)
    with pytest.raises(MetricError, match=r"'not_a_metric' is not shipped.*no route to host.*network access"):
        load_metric_module("not_a_metric")


# --- compute_metrics against hand-computed values -------------------------------------


def test_accuracy_on_five_examples():
    result = compute_metrics(["accuracy"], "text-classification", [0, 1, 2, 1, 0], [0, 1, 1, 1, 2], num_labels=3)
    assert result == {"accuracy": pytest.approx(3 / 5)}


def test_plain_f1_is_binary_for_two_labels():
    # pos class 1: tp=2 (idx 1, 3), fp=1 (idx 2), fn=1 (idx 4) -> P=2/3, R=2/3, F1=2/3
    preds, refs = [0, 1, 1, 1, 0], [0, 1, 0, 1, 1]
    result = compute_metrics(["f1", "precision", "recall"], "text-classification", preds, refs, num_labels=2)
    assert result == pytest.approx({"f1": 2 / 3, "precision": 2 / 3, "recall": 2 / 3})


def test_plain_f1_is_macro_for_more_labels():
    preds, refs = [0, 1, 2, 1, 1], [0, 0, 2, 1, 1]
    # class 0: tp=1 fp=0 fn=1 -> 2/3; class 1: tp=2 fp=1 fn=0 -> 4/5; class 2: tp=1 fp=0 fn=0 -> 1
    expected = (2 / 3 + 4 / 5 + 1) / 3
    result = compute_metrics(["f1", "f1_macro"], "text-classification", preds, refs, num_labels=3)
    assert result == pytest.approx({"f1": expected, "f1_macro": expected})


def test_weighted_and_micro_averages():
    preds, refs = [0, 1, 2, 1, 1], [0, 0, 2, 1, 1]
    # support: class 0 -> 2, class 1 -> 2, class 2 -> 1; micro F1 = accuracy = 4/5 for single-label
    expected_weighted = (2 * 2 / 3 + 2 * 4 / 5 + 1 * 1) / 5
    result = compute_metrics(["f1_weighted", "f1_micro"], "text-classification", preds, refs, num_labels=3)
    assert result == pytest.approx({"f1_weighted": expected_weighted, "f1_micro": 4 / 5})


def test_matthews_correlation_by_hand():
    # tp=2 tn=1 fp=1 fn=1: (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    result = compute_metrics(["matthews_correlation"], "text-classification", [0, 1, 1, 1, 0], [0, 1, 0, 1, 1], 2)
    assert result["matthews_correlation"] == pytest.approx(1 / 6)


def test_multi_label_metrics_by_hand():
    preds = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
    refs = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]])
    # micro: tp=3 fp=2 fn=1 -> P=3/5, R=3/4, F1=2/3
    # per label: 0: tp=2 -> F1=1; 1: tp=1 fp=1 -> 2/3; 2: tp=0 fp=1 fn=1 -> 0; macro = 5/9
    # subset accuracy: only row 1 matches exactly -> 1/3
    result = compute_metrics(["f1", "f1_micro", "f1_macro", "accuracy"], "multi-label-classification", preds, refs, 3)
    assert result == pytest.approx({"f1": 2 / 3, "f1_micro": 2 / 3, "f1_macro": 5 / 9, "accuracy": 1 / 3})


def test_regression_metrics_by_hand():
    refs = [1.0, 2.0, 3.0, 4.0]
    assert compute_metrics(["pearson"], "regression", [2.0, 4.0, 6.0, 8.0], refs, 1) == {"pearson": pytest.approx(1.0)}
    assert compute_metrics(["pearson"], "regression", [4.0, 3.0, 2.0, 1.0], refs, 1) == {"pearson": pytest.approx(-1.0)}
    # monotone but not linear: Spearman is exactly 1, Pearson is below 1
    cubes = [1.0, 8.0, 27.0, 1000.0]
    result = compute_metrics(["spearman", "pearson"], "regression", cubes, refs, 1)
    assert result["spearman"] == pytest.approx(1.0)
    assert result["pearson"] < 0.99
    # errors 0.5, -1, 0, 2 -> (0.25 + 1 + 0 + 4) / 4
    mse = compute_metrics(["mse"], "regression", np.array([[1.5], [1.0], [3.0], [6.0]]), np.array([refs]).T, 1)
    assert mse == {"mse": pytest.approx(5.25 / 4)}


def test_results_are_plain_json_serialisable_floats():
    result = compute_metrics(default_metrics("text-classification"), "text-classification", [0, 1], [0, 1], 2)
    assert all(type(value) is float for value in result.values())
    assert json.loads(json.dumps(result)) == {"accuracy": 1.0, "f1": 1.0}


def test_compute_metrics_rejects_bad_inputs():
    with pytest.raises(MetricError, match=r"shape \(3,\) but references have shape \(2,\)"):
        compute_metrics(["accuracy"], "text-classification", [0, 1, 1], [0, 1], 2)
    with pytest.raises(MetricError, match=r"contain \[2\]; allowed: class ids 0\.\.1"):
        compute_metrics(["accuracy"], "text-classification", [0, 2], [0, 1], 2)
    with pytest.raises(MetricError, match=r"3 columns but num_labels is 4"):
        compute_metrics(["f1_micro"], "multi-label-classification", [[0, 1, 1]], [[0, 1, 0]], 4)
    with pytest.raises(MetricError, match=r"expects 1-D predictions, got shape \(2, 3\)"):
        compute_metrics(["accuracy"], "text-classification", np.zeros((2, 3)), np.zeros((2, 3)), 3)
    with pytest.raises(MetricError, match=r"metric 'accuracy' does not apply to task.type 'regression'"):
        compute_metrics(["accuracy"], "regression", [0.5], [0.5], 1)


# --- names, defaults and direction -------------------------------------------------------


def test_default_metrics_per_task_are_shipped():
    assert default_metrics("text-classification") == ["accuracy", "f1"]
    assert default_metrics("multi-label-classification") == ["f1_micro", "f1_macro", "accuracy"]
    assert default_metrics("regression") == ["pearson", "spearman", "mse"]
    with pytest.raises(MetricError, match=r"task.type 'translation' is not supported.*regression"):
        default_metrics("translation")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("accuracy", True), ("f1_macro", True), ("pearson", True), ("mse", False), ("eval_loss", False), ("loss", False)],
)
def test_greater_is_better(name, expected):
    assert greater_is_better(name) is expected


def test_check_metric_names(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")  # online, names that are not shipped load from the Hub (before training)
    assert check_metric_names(["accuracy", "f1_macro", "bleu"], "text-classification") == []
    assert check_metric_names(["pearson", "some_hub_metric"], "regression") == []
    assert check_metric_names(["acuracy"], "text-classification")[0].startswith(
        "metric 'acuracy' is unknown; did you mean 'accuracy'?")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline they cannot load: said by validation, not after an epoch
    assert check_metric_names(["bleu"], "text-classification")[0].startswith("metric 'bleu' is not shipped")
    assert check_metric_names(["accuracy", "mse"], "regression") == [
        "metric 'accuracy' does not apply to task.type 'regression'; use one of: pearson, spearman, mse"
    ]
    problems = check_metric_names(["pearson", "matthews_correlation"], "multi-label-classification")
    assert len(problems) == 2
    assert problems[0].startswith("metric 'pearson' does not apply to task.type 'multi-label-classification'")
    assert "matthews_correlation" in problems[1] and "f1_micro" in problems[1]
    assert "task.type 'nope' is not supported" in check_metric_names(["accuracy"], "nope")[0]


def test_shipped_metrics_cover_every_recipe_name():
    recipe_names = {"accuracy", "matthews_correlation", "pearson", "spearman", "mse"} | {
        f"{base}{suffix}" for base in ("f1", "precision", "recall") for suffix in ("", "_macro", "_micro", "_weighted")
    }
    assert set(SHIPPED_METRICS) == recipe_names
    for module_name in SHIPPED_METRICS.values():
        assert (metrics._MODULES_DIR / module_name / f"{module_name}.py").is_file()
