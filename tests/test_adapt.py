"""Domain adaptation: the losses (exact where a closed form exists), importance weights, mixed batches,
target data handling, whole runs on the tiny model, and bad input."""

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import NEUTRAL, write_csv
from nlp_transfer.adapt.batches import MixedBatchSampler
from nlp_transfer.adapt.losses import (DomainClassifier, coral, grl_coefficient, minimum_class_confusion, mmd,
                                       reverse_gradient)
from nlp_transfer.adapt.weights import (choose_exponent, effective_share, estimate_importance_weights, fit_domain_classifier,
                                        flattened_weights, importance_weights, proxy_a_distance)
from nlp_transfer.errors import DataError, RecipeError
from nlp_transfer.recipe.load import load_recipe
from nlp_transfer.tasks.spec import REGISTERED
from nlp_transfer.api import train

# ---------------------------------------------------------------------------------------------- losses


def test_gradient_reversal_flips_and_scales_the_gradient_reaching_the_encoder():
    torch.manual_seed(0)
    encoder = torch.nn.Linear(4, 3)
    head = DomainClassifier(3, hidden=5)
    x = torch.randn(6, 4)

    def encoder_grads(coefficient):
        encoder.zero_grad()
        head.zero_grad()
        head.eval()  # no dropout: both passes see the same function
        if coefficient is None:
            out = head.net(encoder(x)).sum()  # the same head without the reversal layer
        else:
            out = head(encoder(x), coefficient).sum()
        out.backward()
        return encoder.weight.grad.clone(), next(head.parameters()).grad.clone()

    plain, head_plain = encoder_grads(None)
    for coefficient in (1.0, 0.25):
        reversed_, head_reversed = encoder_grads(coefficient)
        torch.testing.assert_close(reversed_, -coefficient * plain, rtol=0, atol=0)  # exact: one multiplication
        torch.testing.assert_close(head_reversed, head_plain, rtol=0, atol=0)  # the domain classifier itself is not reversed
    assert torch.equal(reverse_gradient(x, 0.5), x)


def test_reversal_weight_warms_up_from_zero_towards_one():
    assert grl_coefficient(0.0) == 0.0
    assert 0.98 < grl_coefficient(0.5) < grl_coefficient(1.0) < 1.0
    values = [grl_coefficient(p / 10) for p in range(11)]
    assert values == sorted(values)


def _closed_form_mmd(delta2: float, s2: float, d: int, sigma2: float) -> float:
    """MMD^2 of N(mu1, s2 I) and N(mu2, s2 I) under exp(-|x-y|^2 / (2 sigma2)), |mu1 - mu2|^2 = delta2."""
    c = (sigma2 / (sigma2 + 2 * s2)) ** (d / 2)
    return 2 * c * (1 - math.exp(-delta2 / (2 * (sigma2 + 2 * s2))))


def test_mmd_is_near_zero_for_one_distribution_and_follows_the_closed_form_as_the_shift_grows():
    generator = torch.Generator().manual_seed(0)
    d, n, bandwidths = 4, 1500, [2.0, 8.0]
    sample = lambda shift: torch.randn(n, d, generator=generator, dtype=torch.float64) + shift  # noqa: E731
    same = mmd(sample(0.0), sample(0.0), bandwidths).item()
    assert abs(same) < 0.005
    measured = []
    for shift in (0.5, 1.0, 2.0):
        expected = np.mean([_closed_form_mmd(d * shift ** 2, 1.0, d, s) for s in bandwidths])
        got = mmd(sample(0.0), sample(shift), bandwidths).item()
        assert got == pytest.approx(expected, abs=0.01, rel=0.1)
        measured.append(got)
    assert measured == sorted(measured) and measured[0] > 10 * abs(same)
    assert mmd(sample(0.0), sample(1.0)).item() > mmd(sample(0.0), sample(0.0)).item() + 0.01  # default kernel family


def test_coral_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    source, target = rng.normal(size=(20, 3)), rng.normal(size=(15, 3)) @ np.diag([1.0, 2.0, 0.5])
    cs, ct = np.cov(source, rowvar=False), np.cov(target, rowvar=False)
    expected = ((cs - ct) ** 2).sum() / (4 * 3 * 3)
    assert coral(torch.tensor(source), torch.tensor(target)).item() == pytest.approx(expected, rel=1e-5)
    assert coral(torch.tensor(source), torch.tensor(source)).item() == pytest.approx(0.0, abs=1e-7)


def test_minimum_class_confusion_matches_a_hand_computation_and_punishes_confusion_and_collapse():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
    temperature = 2.0
    p = np.exp(logits / temperature)
    p /= p.sum(1, keepdims=True)
    entropy = -(p * np.log(p)).sum(1)
    w = 1 + np.exp(-entropy)
    w = len(p) * w / w.sum()
    c = (p * w[:, None]).T @ p
    c /= c.sum(1, keepdims=True)
    expected = (c.sum() - np.trace(c)) / 3
    assert minimum_class_confusion(torch.tensor(logits), temperature).item() == pytest.approx(expected, rel=1e-5)

    confident = torch.tensor([[30.0, 0.0], [0.0, 30.0]] * 8)  # certain, both classes present
    uniform = torch.zeros(16, 2)  # every row torn between the classes
    collapsed = torch.tensor([[30.0, 0.0]] * 16)  # certain, but all one class
    assert minimum_class_confusion(confident).item() < 1e-3
    assert minimum_class_confusion(uniform).item() == pytest.approx(0.5)
    assert minimum_class_confusion(collapsed).item() == pytest.approx(0.5, abs=1e-3)  # collapse gains nothing
    logits = torch.zeros(16, 2, requires_grad=True)
    minimum_class_confusion(logits + torch.tensor([[0.1, 0.0], [0.0, 0.1]] * 8)).backward()
    assert (logits.grad[0::2, 0] < 0).all() and (logits.grad[1::2, 1] < 0).all()  # a step sharpens each row's lean


def test_importance_weights_recover_a_known_density_ratio():
    # source N(0, 1), target N(1, 1) in 1-D: p_t(x) / p_s(x) = exp(x - 1/2)
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(4000, 1, generator=generator, dtype=torch.float64)
    target = torch.randn(3000, 1, generator=generator, dtype=torch.float64) + 1.0
    weights, ratio = importance_weights(source, target, clip=1000.0)
    true = torch.exp(source[:, 0] - 0.5)
    central = source[:, 0].abs() < 2
    assert torch.allclose(ratio[central], true[central], rtol=0.15)
    assert weights.mean().item() == pytest.approx(1.0)
    clipped, _ = importance_weights(source, target, clip=2.0)
    assert clipped.max() / clipped.min() <= 4.0 + 1e-9


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ranks = [x.argsort().argsort().double() for x in (a, b)]
    return torch.corrcoef(torch.stack(ranks))[0, 1].item()


def test_weights_of_a_separable_but_overlapping_shift_are_spread_and_keep_an_effective_sample():
    # 5-d N(0, I) vs N(4 e1, I): a linear classifier tells them apart ~98% of the time, as frozen-encoder features
    # tell two review domains apart. The exact ratio exp(4 x1 - 8) is below 1/10 for ~92% of source rows, so an
    # in-sample fit clipped to [0.1, 10] ties most rows at the floor; cross-fitting and flattening keep the ranking.
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(1000, 5, generator=generator, dtype=torch.float64)
    target = torch.randn(1000, 5, generator=generator, dtype=torch.float64)
    target[:, 0] += 4.0
    true_log_ratio = 4.0 * source[:, 0] - 8.0
    estimate = estimate_importance_weights(source, target, clip=10.0)
    weights, summary = estimate.weights, estimate.summary()
    assert 0.94 < summary["domain_accuracy_out_of_fold"] < 0.995
    assert weights.std() > 0.5 and len(torch.unique(weights.round(decimals=6))) > 500  # not all equal, not mostly tied
    assert _spearman(weights, true_log_ratio) > 0.95
    assert summary["exact_ratio_effective_share"] < 0.3  # the exact ratio leaves few effective rows ...
    assert 0 < summary["exponent"] < 1 and summary["exponent_chosen"]  # ... so it is flattened
    assert 0.49 < summary["effective_sample_share"] < 1 and summary["effective_sample_size"] == pytest.approx(
        summary["effective_sample_share"] * 1000, abs=0.1)
    assert weights.mean().item() == pytest.approx(1.0) and 0.1 - 1e-9 <= weights.min() <= weights.max() <= 10 + 1e-9
    exact = estimate_importance_weights(source, target, clip=10.0, exponent=1.0)
    assert exact.summary()["effective_sample_share"] == pytest.approx(summary["exact_ratio_effective_share"], abs=1e-4)


def test_a_rows_weight_comes_from_a_classifier_that_never_saw_it():
    # one distribution for both "domains", 50-d and 150 rows each: fitted on all rows, a classifier finds a
    # separation that is not there; out of fold it cannot, and the weights stay near uniform
    generator = torch.Generator().manual_seed(1)
    source, target = (torch.randn(150, 50, generator=generator, dtype=torch.float64) for _ in range(2))
    in_sample = fit_domain_classifier(source, target)
    assert ((in_sample(source) < 0.5).double().mean() + (in_sample(target) >= 0.5).double().mean()) / 2 > 0.62
    summary = estimate_importance_weights(source, target, clip=10.0).summary()
    assert abs(summary["domain_accuracy_out_of_fold"] - 0.5) < 0.08
    assert summary["effective_sample_share"] > 0.95 and summary["max"] < 1.5


def test_flattened_weights_keep_the_clip_and_mean_one_and_follow_the_ratio():
    generator = torch.Generator().manual_seed(2)
    log_ratio = 3 * torch.randn(500, generator=generator, dtype=torch.float64)
    exact = flattened_weights(log_ratio, clip=1e9, exponent=1.0)
    torch.testing.assert_close(exact, log_ratio.exp() / log_ratio.exp().mean())  # no clip reached: the ratio itself
    assert torch.equal(flattened_weights(log_ratio, clip=10.0, exponent=0.0), torch.ones(500, dtype=torch.float64))
    for clip, exponent in ((3.0, 1.0), (10.0, 0.4)):
        weights = flattened_weights(log_ratio, clip, exponent)
        assert weights.mean().item() == pytest.approx(1.0)
        assert 1 / clip - 1e-9 <= weights.min() and weights.max() <= clip + 1e-9
        assert weights.min() < 1 / clip + 1e-6 and weights.max() > clip - 1e-6  # both ends reached: clipped, not squeezed
        in_ratio_order = weights[log_ratio.argsort()]
        assert (in_ratio_order.diff() >= -1e-12).all()  # a larger ratio never gets a smaller weight
    exponent = choose_exponent(log_ratio, clip=10.0)
    assert 0 < exponent < 1
    assert effective_share(flattened_weights(log_ratio, 10.0, exponent)) == pytest.approx(0.5, abs=0.01)
    assert choose_exponent(0.1 * log_ratio, clip=10.0) == 1.0  # a mild shift keeps the exact ratio


def test_proxy_a_distance_is_near_zero_for_one_domain_and_near_two_for_separate_ones():
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(400, 5, generator=generator, dtype=torch.float64) for _ in range(2))
    same, _ = proxy_a_distance(a, b)
    apart, accuracy = proxy_a_distance(a, b + 5.0)
    assert abs(same) < 0.3 and apart > 1.9 and accuracy > 0.97


# --------------------------------------------------------------------------------------------- batches


@pytest.mark.parametrize("num_source, num_target, batch_size, ratio", [(50, 30, 8, 0.5), (37, 100, 10, 0.3), (20, 7, 4, 0.25)])
def test_every_batch_holds_both_domains_at_the_ratio(num_source, num_target, batch_size, ratio):
    sampler = MixedBatchSampler(num_source, num_target, batch_size, ratio, seed=3)
    want_target = round(batch_size * ratio)
    seen_source = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for batch in batches:
            source = [i for i in batch if i < num_source]
            target = [i for i in batch if i >= num_source]
            assert source and target and max(target) < num_source + num_target
            if len(source) == batch_size - want_target:
                assert len(target) == want_target
            else:  # the short last batch keeps the ratio
                assert abs(len(target) / len(batch) - ratio) <= 1 / len(batch)
        epoch_source = sorted(i for b in batches for i in b if i < num_source)
        assert epoch_source == list(range(num_source))  # each source row once per epoch
        seen_source.append([i for b in batches for i in b])
    assert seen_source[0] != seen_source[1]
    sampler.set_epoch(0)
    assert [i for b in sampler for i in b] == seen_source[0]  # seeded per epoch: a resume sees the same batches


# ----------------------------------------------------------------------------------------- whole runs


def _target_rows(n: int, seed: int, label_of=None) -> list[dict]:
    """Target-domain text: the toy vocabulary's neutral words plus a domain word the source never has."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.sample(NEUTRAL, 3) + ["awful" if i % 2 else "lovely", "today", "today"]
        rng.shuffle(words)
        row = {"text": " ".join(words)}
        if label_of is not None:
            row["label"] = label_of(i)
        rows.append(row)
    return rows


def _write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def adapt_recipe(toy_recipe, tmp_path) -> dict:
    recipe = dict(toy_recipe)
    recipe["train"] = {**toy_recipe["train"], "epochs": 2, "mixed_precision": "no"}
    recipe["output"] = {"dir": str(tmp_path / "out"), "save": "model"}
    target = _write_jsonl(tmp_path / "target.jsonl", _target_rows(40, seed=5))
    recipe["adapt"] = {"target": {"files": [target]}, "method": "dann", "target_ratio": 0.25, "eval_rows": 32}
    return recipe


@pytest.mark.parametrize("method", ["dann", "mmd", "coral", "mcc"])
def test_a_run_logs_the_domain_numbers_and_exports_a_plain_classifier(method, adapt_recipe, tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification

    from nlp_transfer.adapt import DEFAULT_WEIGHTS
    from nlp_transfer.adapt.strategy import AdaptedStrategy

    # every training step's total: d total / d task term must be 1 and d total / d alignment term adapt.weight
    # (a term dropped from the total, detached or mis-scaled fails here, not only in the logged numbers)
    terms, slopes = {}, []
    real_loss, real_task_loss, real_alignment = AdaptedStrategy.loss, AdaptedStrategy._task_loss, AdaptedStrategy._alignment

    def task_spy(self, logits, batch):
        terms["task"] = real_task_loss(self, logits, batch)
        return terms["task"]

    def alignment_spy(self, *args, **kwargs):
        out = real_alignment(self, *args, **kwargs)
        terms["alignment"] = out[0]
        return out

    def loss_spy(self, model, batch, ctx):
        terms.clear()
        total, extra = real_loss(self, model, batch, ctx)
        slopes.append([None if g is None else g.item() for g in torch.autograd.grad(
            total, [terms["task"], terms["alignment"]], retain_graph=True, allow_unused=True)])
        return total, extra

    monkeypatch.setattr(AdaptedStrategy, "loss", loss_spy)
    monkeypatch.setattr(AdaptedStrategy, "_task_loss", task_spy)
    monkeypatch.setattr(AdaptedStrategy, "_alignment", alignment_spy)
    adapt_recipe["adapt"]["method"] = method
    exports = method == "dann"  # one export and card is enough; the others write metrics only
    adapt_recipe["output"]["save"] = "model" if exports else "metrics"
    out = train(adapt_recipe)
    log = [json.loads(line) for line in (out.output_dir / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r and "validation" not in r]
    evaluations = [r for r in log if "validation" in r]
    assert steps and all(math.isfinite(r["alignment_loss"]) and "task_loss" in r for r in steps)  # unbiased mmd may dip below 0
    weight = DEFAULT_WEIGHTS[method]
    assert len(slopes) == len(steps) and all(s == [1.0, pytest.approx(weight)] for s in slopes)
    # the logged total is the task term plus adapt.weight x the alignment term, and that term is not negligible
    for r in steps:
        assert r["loss"] == pytest.approx(r["task_loss"] + weight * r["alignment_loss"], rel=1e-5, abs=1e-6)
    assert max(abs(weight * r["alignment_loss"]) for r in steps) > 1e-3
    assert len(evaluations) == 2 and all("proxy_a_distance" in r["adapt"] for r in evaluations)
    assert ("domain_classifier_accuracy" in evaluations[0]["adapt"]) == (method == "dann")
    assert "proxy_a_distance" not in evaluations[0]["validation"]  # logged, never a selection metric
    metrics = out.metrics
    assert metrics["adapt"]["selected_on"] == "source validation" and metrics["adapt"]["method"] == method
    assert metrics["data"]["target"] == 40
    if not exports:
        return
    model = AutoModelForSequenceClassification.from_pretrained(out.output_dir)
    assert not any("domain" in name for name in model.state_dict())
    card = (out.output_dir / "README.md").read_text()
    assert "target.jsonl" in card and "train.csv" in card and f"`{method}`" in card


def test_the_alignment_term_trains_in_the_runs_precision(adapt_recipe, monkeypatch):
    """A bf16 run computes the features the alignment term reads under bf16 autocast too: adapt's loss calls the
    encoder's modules itself, outside the prepared model's forward (which alone carried the autocast before)."""
    import nlp_transfer.adapt.losses as adapt_losses

    trained_on = []
    real_dann_loss = adapt_losses.dann_loss

    def spy(classifier, source, target, coefficient):
        if torch.is_grad_enabled():  # training steps, not the evaluation's domain numbers
            trained_on.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32)
        return real_dann_loss(classifier, source, target, coefficient)

    monkeypatch.setattr(adapt_losses, "dann_loss", spy)
    adapt_recipe["train"].update(mixed_precision="bf16", epochs=1)
    adapt_recipe["output"]["save"] = "metrics"
    out = train(adapt_recipe)
    assert out.metrics["mixed_precision"]["used"] == "bf16"
    assert trained_on and set(trained_on) == {torch.bfloat16}


@pytest.mark.parametrize("strategy, method", [("lora", "mmd"), ("gradual", "dann")])  # gradual: its lr factors + the domain group
def test_adapt_wraps_other_adaptable_strategies(strategy, method, adapt_recipe):
    adapt_recipe["strategy"] = {"name": strategy}
    adapt_recipe["adapt"]["method"] = method
    adapt_recipe["train"]["epochs"] = 1
    out = train(adapt_recipe)
    assert out.metrics["reload_check"] and out.metrics["adapt"]["method"] == method
    assert "proxy_a_distance" in out.metrics["adapt"]["last_evaluation"]


def test_a_target_files_labels_are_never_read(adapt_recipe, tmp_path):
    adapt_recipe["train"]["epochs"] = 1
    adapt_recipe["output"]["save"] = "metrics"
    first = train(adapt_recipe).metrics
    garbage = ["not a label", None, {"x": [1]}, 3.5, -7]
    rows = _target_rows(40, seed=5, label_of=lambda i: garbage[i % len(garbage)])
    adapt_recipe["adapt"]["target"]["files"] = [_write_jsonl(tmp_path / "target_with_labels.jsonl", rows)]
    adapt_recipe["output"]["dir"] = str(tmp_path / "out2")
    second = train(adapt_recipe).metrics
    assert second["validation"] == first["validation"]
    assert second["rank_weight_checksums"] == first["rank_weight_checksums"]


def test_instance_weights_from_a_domain_classifier_and_a_weight_column(adapt_recipe, toy_files, tmp_path):
    adapt_recipe["adapt"].update({"method": None, "instance_weights": "domain_classifier", "weight_clip": 5.0})
    adapt_recipe["train"]["epochs"] = 1
    adapt_recipe["output"]["save"] = "metrics"
    summary = train(adapt_recipe).metrics["adapt"]["importance_weights"]
    assert 1 / 5.0 - 1e-6 <= summary["min"] <= 1.0 <= summary["max"] <= 5.0 + 1e-6
    assert summary["features_from_cache"] is False and summary["rows"] == 96 and summary["folds"] == 5
    assert 0.5 - 1e-3 <= summary["effective_sample_share"] <= 1 and 0 <= summary["domain_accuracy_out_of_fold"] <= 1
    assert summary["effective_sample_size"] == pytest.approx(96 * summary["effective_sample_share"], abs=0.1)

    # data.weight_column alone: a zero weight removes a row from the loss (flipping its label changes nothing),
    # and weights are relative (all 2 trains as all 1)
    rows = [r.split(",") for r in open(toy_files["train"]).read().splitlines()[1:]]
    flip = {"positive": "negative", "negative": "positive"}
    weights = [1.0, 1.0, 0.0, 0.0] * 24

    def run(name, labels, row_weights):
        file = write_csv(tmp_path / f"{name}.csv", [(t, lab, w) for (t, _), lab, w in zip(rows, labels, row_weights)],
                         header=("text", "label", "w"))
        recipe = {**adapt_recipe, "adapt": None, "data": {"files": {**toy_files, "train": file}, "weight_column": "w"},
                  "train": {**adapt_recipe["train"], "epochs": 1}, "output": {"dir": str(tmp_path / name), "save": "metrics"}}
        return train(recipe).metrics["validation"]

    labels = [lab for _, lab in rows]
    flipped = [flip[lab] if w == 0 else lab for lab, w in zip(labels, weights)]
    assert run("weighted", labels, weights) == run("flipped", flipped, weights)
    ones = run("ones", labels, [1.0] * 96)
    assert ones == run("twos", labels, [2.0] * 96)
    assert ones != run("flipped_ones", flipped, [1.0] * 96)  # the flip matters unweighted


@pytest.mark.parametrize("task_type", sorted(REGISTERED))
def test_the_weighted_task_loss_is_the_task_types_own_loss(task_type):
    """All-equal weights train on exactly the task type's loss (MSE, BCE, per-token cross-entropy...); target rows of a
    mixed batch (no label: ``unlabeled_value``) never reach it, weighted or not."""
    from test_task_losses import _batch

    from nlp_transfer.adapt.strategy import DOMAIN, WEIGHTS, AdaptedStrategy
    from nlp_transfer.recipe.schema import AdaptConfig
    from nlp_transfer.strategies.registry import STRATEGIES, build_strategy

    spec, logits, labels = _batch(task_type)
    weighted = build_strategy(STRATEGIES["full"].Options(), spec, None, weight_column="w")
    for value in (1.0, 3.0):
        batch = {"labels": labels, WEIGHTS: torch.full((len(labels),), value)}
        torch.testing.assert_close(weighted._task_loss(logits, batch), spec.loss(logits, labels))
    if not spec.kind.pools:  # adapt aligns pooled sequence features only
        return
    mixed = AdaptedStrategy(STRATEGIES["full"](STRATEGIES["full"].Options(), spec), AdaptConfig(method="mmd"))
    target = torch.tensor([spec.kind.unlabeled_value(spec)] * 3, dtype=labels.dtype)
    batch = {"labels": torch.cat([labels, target]), DOMAIN: torch.tensor([0] * len(labels) + [1] * 3)}
    all_logits = torch.cat([logits, 5 * torch.randn(3, *logits.shape[1:])])
    torch.testing.assert_close(mixed._task_loss(all_logits, batch), spec.loss(logits, labels))
    batch[WEIGHTS] = torch.tensor([2.0] * len(labels) + [0.0] * 3)
    torch.testing.assert_close(mixed._task_loss(all_logits, batch), spec.loss(logits, labels))


def test_a_weighted_regression_trains_on_its_squared_error(adapt_recipe, tmp_path):
    """data.weight_column on a regression task: the weighted loss is the MSE of the rows (cross-entropy on its one output
    would be 0 for these scores and learn nothing), and weight-0 rows, scored the wrong way round here, change nothing."""
    def scored(name, split, keep):
        rows = [r.split(",") for r in Path(adapt_recipe["data"]["files"][split]).read_text().splitlines()[1:]]
        score = {"positive": 0.9, "negative": -0.9}  # below 1 in size: as a class id, each would be class 0
        return write_csv(tmp_path / name, [(t, score[lab] * (1 if keep(i) else -1), float(keep(i)))
                                           for i, (t, lab) in enumerate(rows)], header=("text", "score", "w"))

    files = {"train": scored("train_scores.csv", "train", lambda i: i % 4 < 2),  # half of each class flipped, weight 0
             "validation": scored("validation_scores.csv", "validation", lambda i: True)}
    recipe = {**adapt_recipe, "adapt": None, "task": {"type": "regression", "text": "text", "label": "score"},
              "data": {"files": files, "weight_column": "w"}, "train": {**adapt_recipe["train"], "epochs": 10},
              "output": {"dir": str(tmp_path / "out"), "save": "metrics"}}
    out = train(recipe)
    log = [json.loads(line) for line in (out.output_dir / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r and "validation" not in r]
    assert min(losses) > 0.01 and losses[-1] < losses[0] / 2  # a squared error, and it falls
    validation = out.metrics["validation"]
    assert validation["pearson"] > 0.8 and validation["mse"] < 0.81 / 2  # 0.81: predicting the mean


def test_instance_weighting_alone_trains_on_whole_batches_of_source_rows(adapt_recipe, monkeypatch):
    """Without an alignment term a target row would only pad the batch (no label, no term reads it): the run's
    batches are the source rows alone, every one labelled and weighted, one step per train.batch_size source rows."""
    from nlp_transfer.adapt.strategy import DOMAIN, WEIGHTS, AdaptedStrategy

    seen = []
    real_task_loss = AdaptedStrategy._task_loss

    def spy(self, logits, batch):
        seen.append(batch)
        return real_task_loss(self, logits, batch)

    monkeypatch.setattr(AdaptedStrategy, "_task_loss", spy)
    adapt_recipe["adapt"].update({"method": None, "instance_weights": "domain_classifier"})
    adapt_recipe["train"]["epochs"] = 1
    adapt_recipe["output"]["save"] = "metrics"
    out = train(adapt_recipe)
    assert len(seen) == 96 // 16  # the toy train split's 96 rows in batches of train.batch_size
    assert all(DOMAIN not in b and len(b["labels"]) == 16 and (b["labels"] >= 0).all() and (b[WEIGHTS] > 0).all() for b in seen)
    assert out.metrics["adapt"]["target_ratio"] is None and "proxy_a_distance" in out.metrics["adapt"]["last_evaluation"]


# ------------------------------------------------------------------------------------------- bad input


def test_bad_adapt_settings_are_errors_naming_the_key(adapt_recipe):
    bad = {**adapt_recipe, "strategy": {"name": "frozen"},
           "adapt": {"target": {"files": ["missing.jsonl"]}, "method": "tca", "target_ratio": 1.5}}
    with pytest.raises(RecipeError) as info:
        load_recipe(bad)
    message = str(info.value)
    for expected in ("adapt: strategy 'frozen' cannot be adapted", "adapt.method: got 'tca'",
                     "adapt.target_ratio: got 1.5", "adapt.target.files[0]: file not found"):
        assert expected in message
    with pytest.raises(RecipeError, match="adapt: strategy 'partial' cannot be adapted"):
        load_recipe({**adapt_recipe, "strategy": {"name": "partial"}})
    with pytest.raises(RecipeError, match="data.weight_column: strategy 'frozen' has its own loss"):
        load_recipe({**adapt_recipe, "adapt": None, "strategy": {"name": "frozen"},
                     "data": {**adapt_recipe["data"], "weight_column": "w"}})
    with pytest.raises(RecipeError, match="adapt.target: no target data"):
        load_recipe({**adapt_recipe, "adapt": {"method": "mmd"}})
    regression = {**adapt_recipe, "task": {**adapt_recipe["task"], "type": "regression"},
                  "adapt": {**adapt_recipe["adapt"], "method": "mcc", "mcc_temperature": 0}}
    with pytest.raises(RecipeError) as info:
        load_recipe(regression)
    assert "adapt.method: mcc reads the class probabilities" in str(info.value)
    assert "adapt.mcc_temperature: got 0" in str(info.value)
    with pytest.raises(RecipeError, match="adapt.method: missing"):
        load_recipe({**adapt_recipe, "adapt": {"target": adapt_recipe["adapt"]["target"]}})


def test_bad_target_data_is_an_error_naming_the_key(adapt_recipe, tmp_path):
    no_text = _write_jsonl(tmp_path / "no_text.jsonl", [{"review": "fine"}] * 5)
    adapt_recipe["adapt"]["target"]["files"] = [no_text]
    with pytest.raises(DataError, match=r"adapt.target.files\[0\].*missing text column\(s\) \['text'\].*review"):
        train(adapt_recipe)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    adapt_recipe["adapt"]["target"]["files"] = [str(empty)]
    with pytest.raises(DataError, match=r"adapt.target: the target data .*empty.jsonl\) has no rows"):
        train(adapt_recipe)


def test_a_bad_weight_column_is_an_error_naming_the_key(toy_recipe, toy_files, tmp_path):
    rows = [r.split(",") for r in open(toy_files["train"]).read().splitlines()[1:]]
    negative = write_csv(tmp_path / "neg.csv", [(t, lab, -1.0) for t, lab in rows], header=("text", "label", "w"))
    recipe = {**toy_recipe, "data": {"files": {**toy_files, "train": negative}, "weight_column": "w"}}
    with pytest.raises(DataError, match=r"data.weight_column: column 'w': row 0 holds -1.0"):
        train(recipe)
    with pytest.raises(DataError, match=r"data.weight_column: column 'weight' not in the train split"):
        train({**recipe, "data": {**recipe["data"], "weight_column": "weight"}})


# ----------------------------------------------------------------------------- model selection on target rows


def _flipped_label(i: int) -> str:
    """Target-validation labels opposite to the opinion words' source meaning: the better a model fits the
    source, the worse it scores on these rows, so target and source selection pick different evaluations."""
    return "positive" if i % 2 else "negative"  # _target_rows: odd rows say "awful", even rows "lovely"


def test_labelled_target_rows_pick_the_best_model_and_the_run_says_so(adapt_recipe, tmp_path, caplog):
    selection_file = _write_jsonl(tmp_path / "target_dev.jsonl", _target_rows(24, seed=9, label_of=_flipped_label))
    # no alignment term (weight 0): the source is learnt as plainly as the tiny model allows; train.best_metric: loss
    # makes the choice follow a number that moves at every evaluation (the toy's accuracy stays flat for epochs)
    adapt_recipe["adapt"].update({"method": "mmd", "weight": 0.0, "target_validation": {"files": [selection_file]}})
    adapt_recipe["train"].update({"epochs": 6, "best_metric": "loss"})
    caplog.set_level("WARNING")
    out = train(adapt_recipe)
    assert "Model selection uses labelled target data" in caplog.text and "target/loss" in caplog.text
    evaluations = [r for r in (json.loads(line) for line in (out.output_dir / "train_log.jsonl").read_text().splitlines())
                   if "validation" in r]
    assert len(evaluations) == 6
    assert all({"loss", "accuracy", "target/loss", "target/accuracy"} <= set(r["validation"]) for r in evaluations)
    first_best = lambda key: min(evaluations, key=lambda r: r["validation"][key])["step"]  # noqa: E731 (min: first of ties)
    assert first_best("loss") != first_best("target/loss")  # the setup tells the two selections apart
    metrics = out.metrics
    assert metrics["train"]["best_step"] == first_best("target/loss")
    chosen = next(r["validation"] for r in evaluations if r["step"] == metrics["train"]["best_step"])
    assert metrics["validation"] == {k: v for k, v in chosen.items() if not k.startswith("target/")}  # the source scores
    target_scores = {k.removeprefix("target/"): v for k, v in chosen.items() if k.startswith("target/")}
    assert set(target_scores) == {"loss", "accuracy", "f1"}
    assert metrics["model_selection"] == {"on": "adapt.target_validation", "metric": "target/loss", "rows": 24,
                                          "files": [selection_file], "scores": target_scores}
    assert metrics["adapt"]["selected_on"] == "adapt.target_validation" and metrics["data"]["target_validation"] == 24
    saved = json.loads((out.output_dir / "metrics.json").read_text())
    assert saved["model_selection"] == metrics["model_selection"]
    card = (out.output_dir / "README.md").read_text()
    assert "chosen on 24 labelled target rows" in card and "target_dev.jsonl" in card
    assert "source validation split" not in card

    # train.best_metric unset: the run's first metric, on the target rows
    adapt_recipe["train"].update({"epochs": 1, "best_metric": None})
    adapt_recipe["output"] = {"dir": str(tmp_path / "by_accuracy"), "save": "metrics"}
    assert train(adapt_recipe).metrics["model_selection"]["metric"] == "target/accuracy"


def test_without_target_validation_the_source_validation_split_picks_the_model(adapt_recipe, toy_files):
    adapt_recipe["train"]["epochs"] = 1
    adapt_recipe["output"]["save"] = "metrics"
    metrics = train(adapt_recipe).metrics
    assert metrics["model_selection"] == {"on": "source validation", "metric": "accuracy", "rows": 32,
                                          "files": [toy_files["validation"]]}
    assert "target_validation" not in metrics["data"] and not any(k.startswith("target/") for k in metrics["validation"])


def test_bad_target_validation_is_an_error_naming_the_key(adapt_recipe, tmp_path):
    good = _write_jsonl(tmp_path / "target_dev.jsonl", _target_rows(8, seed=3, label_of=_flipped_label))
    adapt = adapt_recipe["adapt"]
    with pytest.raises(RecipeError) as info:
        load_recipe({**adapt_recipe, "adapt": {**adapt, "target_validation": {}, "weight_exponent": 1.5}})
    for expected in ("adapt.target_validation.files: no files", "adapt.weight_exponent: got 1.5"):
        assert expected in str(info.value)
    with pytest.raises(RecipeError, match=r"adapt.target_validation.files\[0\]: file not found: '.*nowhere.jsonl'"):
        load_recipe({**adapt_recipe, "adapt": {**adapt, "target_validation": {"files": [str(tmp_path / "nowhere.jsonl")]}}})
    with pytest.raises(RecipeError, match=r"adapt.target_validation.files\[0\]: '.*dev.jsonl' is also data.files.test"):
        load_recipe({**adapt_recipe, "data": {"files": {**adapt_recipe["data"]["files"], "test": good}},
                     "adapt": {**adapt, "target_validation": {"files": [good]}}})
    with pytest.raises(RecipeError, match=r"adapt.target_validation: got '.*target_dev.jsonl'; expected"):
        load_recipe({**adapt_recipe, "adapt": {**adapt, "target_validation": good}})
    with pytest.raises(RecipeError, match="adapt.weight_exponent: set, but adapt.instance_weights is null"):
        load_recipe({**adapt_recipe, "adapt": {**adapt, "weight_exponent": 0.5}})
    with pytest.raises(RecipeError, match="target_validation: unknown section"):  # it belongs in the adapt section
        load_recipe({**adapt_recipe, "adapt": None, "target_validation": {"files": [good]}})
    with pytest.raises(RecipeError) as info:  # an adapt section that holds only target_validation
        load_recipe({**adapt_recipe, "adapt": {"target_validation": {"files": [good]}}})
    assert "adapt.target: no target data" in str(info.value) and "adapt.method: missing" in str(info.value)

    def fails_with(rows, pattern, **data_files):
        adapt_recipe["adapt"]["target_validation"] = {"files": [_write_jsonl(tmp_path / "bad_dev.jsonl", rows)]}
        adapt_recipe["data"] = {"files": {**adapt_recipe["data"]["files"], **data_files}}
        with pytest.raises(DataError, match=pattern):
            train(adapt_recipe)

    fails_with(_target_rows(8, seed=3), r"adapt.target_validation.files\[0\]: .*missing column\(s\) \['label'\]")
    fails_with(_target_rows(8, seed=3, label_of=lambda i: "meh"),
               r"adapt.target_validation.files\[0\]: .*labels \['meh'\] never occur in train")
    rows = _target_rows(8, seed=3, label_of=_flipped_label)
    test = write_csv(tmp_path / "test.csv", [(r["text"], r["label"]) for r in rows[:3]])
    fails_with(rows, r"adapt.target_validation: 3 of its 8 rows have the same text as rows of the test split \(.*test.csv\)",
               test=test)
