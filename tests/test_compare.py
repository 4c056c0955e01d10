"""nlp-transfer compare: identical nested subsets, resume, the judgments, bad input, LogME, the card section."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from nlp_transfer.compare import grid as compare_grid
from nlp_transfer.compare import plan as compare_plan
from nlp_transfer.compare.grid import compare
from nlp_transfer.compare.plan import CompareError, plan_grid, write_pool
from nlp_transfer.compare.report import judge, write_card_section
from nlp_transfer.errors import NlpTransferError
from nlp_transfer.recipe.load import load_recipe

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# thuml/LogME's LogME().fit (the fixed-point version of You et al. 2021) on _fixed_features(), computed once with it
REFERENCE_LOGME = -0.4331189308979511
# thuml/LogME's LogME(regression=True).fit on _fixed_features() and _regression_targets(), computed once with it
REFERENCE_LOGME_REGRESSION = 0.013803008983727327


@pytest.fixture
def grid_recipe(toy_recipe) -> dict:
    toy_recipe["train"].update(epochs=1, batch_size=32)
    return toy_recipe


def _in_process(calls: list):
    """Run a cell in this process (what the child process does), counting the runs."""
    from nlp_transfer.compare.cell import run_cell

    def launch(folder, threads, env, log):
        calls.append(Path(folder).name)
        run_cell(Path(folder))
        return 0

    return launch


def test_subsets_identical_across_strategies_nested_across_fractions(grid_recipe, tmp_path):
    base = load_recipe(grid_recipe)
    grid = plan_grid(base, tmp_path / "cmp", "frozen,full,lora", "0.25,0.5,1", 2, "scratch", [], [])
    pool = write_pool(base, grid)
    for cell in grid.cells:
        compare_plan.write_cell_recipe(base, grid, pool, cell, False, [])
    recipes = {c.name: yaml.safe_load((tmp_path / "cmp" / "cells" / c.name / "recipe.yaml").read_text()) for c in grid.cells}
    for seed in grid.seeds:
        for fraction in grid.fractions:
            same = {recipes[f"{s}-f{fraction:g}-s{seed}"]["data"]["files"]["train"] for s in ("frozen", "full", "lora", "scratch")}
            assert len(same) == 1  # every strategy (and scratch) reads the same training file
        rows = [set(pool["subsets"][f"{seed}/{f:g}"]["rows"]) for f in grid.fractions]
        assert rows[0] < rows[1] < rows[2] and len(rows[2]) == 96  # nested, and 1 is the whole pool
        assert len(rows[0]) == 24
    assert pool["subsets"]["7/0.25"]["rows"] != pool["subsets"]["8/0.25"]["rows"]  # the seed draws the subset
    train = __import__("datasets").Dataset.from_parquet(pool["subsets"]["7/0.25"]["file"])
    assert sorted(set(train["label"])) == ["negative", "positive"] and train["label"].count("positive") == 12  # stratified
    assert len({json.dumps(r["data"]["files"]["validation"]) for r in recipes.values()}) == 1
    scratch = recipes["scratch-f0.25-s7"]
    assert scratch["model"]["from_scratch"] is True and scratch["strategy"]["name"] == "full"
    assert recipes["lora-f1-s8"]["train"]["lr"] is None and recipes["lora-f1-s8"]["train"]["seed"] == 8
    assert all(r["task"]["labels"] == ["negative", "positive"] for r in recipes.values())


def test_min_steps_raises_the_epochs_of_small_cells_only(grid_recipe, tmp_path):
    base = load_recipe(grid_recipe)  # 1 epoch at batch 32 on a 96-row pool
    grid = plan_grid(base, tmp_path / "cmp", "full", "0.25,1", 1, "none", [], [])
    pool = write_pool(base, grid)
    for min_steps in (10, 3):
        for cell in grid.cells:
            compare_plan.write_cell_recipe(base, grid, pool, cell, False, [], min_steps)
        train = {c.fraction: yaml.safe_load((tmp_path / "cmp" / "cells" / c.name / "recipe.yaml").read_text())["train"]
                 for c in grid.cells}
        if min_steps == 10:  # 24 rows: 1 step an epoch -> 10 epochs; 96 rows: 3 steps an epoch -> 4 epochs (12 steps)
            assert (train[0.25]["epochs"], train[0.25]["eval_every"]) == (10, 10)  # evaluated once, as 1 epoch would be
            assert (train[1.0]["epochs"], train[1.0]["eval_every"]) == (4, 12)
            cell = json.loads((tmp_path / "cmp" / "cells" / "full-f0.25-s7" / "cell.json").read_text())["cell"]
            assert cell["epochs"] == 10
        else:  # 96 rows already take 3 steps: the recipe's budget stands
            assert (train[1.0]["epochs"], train[1.0]["eval_every"]) == (1, 0)
            assert train[0.25]["epochs"] == 3


def test_grid_report_and_resume(grid_recipe, tmp_path, monkeypatch, caplog):
    calls: list = []
    monkeypatch.setattr(compare_grid, "_launch", _in_process(calls))
    out = tmp_path / "cmp"
    report = compare(grid_recipe, out=out, strategies="frozen,full", fractions="0.5,1", seeds=1)
    assert len(calls) == 6
    assert "trains only 2 optimizer steps" in caplog.text and "--min-steps 150" in caplog.text  # said before any cell
    for name in ("report.md", "report.json", "learning_curve_accuracy.png", "learning_curve_f1.png", "cost.png"):
        assert (out / name).is_file(), name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG_SIGNATURE
    saved = json.loads((out / "report.json").read_text())
    assert saved["tables"]["accuracy"]["scratch"]["1"]["train_rows"] == 96 and report["primary_metric"] == "accuracy"
    cell = json.loads((out / "cells" / "full-f1-s7" / "result.json").read_text())
    assert cell["parameters"]["trainable"] == cell["parameters"]["total"] > 0
    assert cell["train_rows"] == 96 and cell["peak_rss_mb"] > 0 and cell["model_mb"] > 0 and cell["latency_ms_per_row"] > 0
    assert not (out / "cells" / "full-f1-s7" / "model").exists()  # metrics only unless keep_models
    assert "Recommendation at 50%" in (out / "report.md").read_text()
    # 48 rows, 1 epoch at batch 32: 2 steps, and the report says what that budget means
    assert "cells at 50% trained only 2 optimizer steps" in (out / "report.md").read_text()

    calls.clear()
    compare(grid_recipe, out=out, strategies="frozen,full", fractions="0.5,1", seeds=1)
    assert calls == []  # every cell finished: nothing reruns
    (out / "cells" / "frozen-f0.5-s7" / "result.json").unlink()  # as if killed during that cell
    compare(grid_recipe, out=out, strategies="frozen,full", fractions="0.5,1", seeds=1)
    assert calls == ["frozen-f0.5-s7"]

    changed = {**grid_recipe, "train": {**grid_recipe["train"], "seed": 1}}
    with pytest.raises(CompareError, match="another recipe's data"):
        compare(changed, out=out, strategies="frozen,full", fractions="0.5,1", seeds=1)


def test_cell_runs_in_its_own_process(grid_recipe, tmp_path):
    report = compare(grid_recipe, out=tmp_path / "cmp", strategies="frozen", fractions="1", seeds=1, baseline="none",
                     figures=False)
    assert report["cells"] == 1 and not report["failed"]
    cell = json.loads((tmp_path / "cmp" / "cells" / "frozen-f1-s7" / "result.json").read_text())
    assert cell["strategy"] == "frozen" and cell["parameters"]["trainable"] < cell["parameters"]["total"]


def _results(strategy: str, scores: dict, seconds: float = 10.0, trainable: int = 100) -> list[dict]:
    """Constructed cell results: ``scores`` maps fraction -> one accuracy per seed."""
    return [{"strategy": strategy, "fraction": f, "seed": 42 + i, "train_rows": int(1000 * f), "validation": {"accuracy": a},
             "train_seconds": seconds, "parameters": {"trainable": trainable, "total": 1000}}
            for f, accs in scores.items() for i, a in enumerate(accs)]


def _verdict(results):
    from nlp_transfer.compare.report import summarize

    return judge(summarize(results, "accuracy", "validation"), "scratch")


def test_negative_transfer_is_flagged_and_positive_is_not():
    scratch = _results("scratch", {0.1: [0.70, 0.71, 0.69], 1.0: [0.80, 0.81, 0.79]}, seconds=20, trainable=1000)
    # a source whose features hurt (as one trained on shuffled labels): well below scratch at both fractions
    bad = _results("frozen", {0.1: [0.55, 0.56, 0.54], 1.0: [0.60, 0.62, 0.61]}, seconds=2)
    good = _results("full", {0.1: [0.82, 0.83, 0.81], 1.0: [0.88, 0.87, 0.89]}, seconds=20, trainable=1000)
    verdict = _verdict(scratch + bad + good)
    flagged = {(n["strategy"], n["fraction"]) for n in verdict["negative_transfer"]}
    assert flagged == {("frozen", 0.1), ("frozen", 1.0)}
    assert verdict["gain"]["full"][0.1]["gain"] == pytest.approx(12.0)
    assert verdict["gain"]["frozen"][1.0]["gain"] == pytest.approx(-19.0)
    assert verdict["sample_efficiency"]["full"] == {"fraction": 0.1, "train_rows": 100}
    assert verdict["sample_efficiency"]["frozen"] is None
    assert verdict["recommendation"][1.0]["strategy"] == "full"
    assert any("Negative transfer" in s and "frozen" in s for s in verdict["sentences"])


def _source_model(recipe: dict, rows: list, folder: Path, epochs: int) -> str:
    """Train the tiny BERT with ``full`` on ``rows`` (a source task); the saved model folder."""
    from conftest import write_csv

    from nlp_transfer.api import train

    folder.mkdir(parents=True)
    source_file = write_csv(folder / "source.csv", rows)
    source = {**recipe, "data": {"files": {"train": source_file, "validation": source_file}},
              "train": {**recipe["train"], "epochs": epochs}, "output": {"dir": str(folder / "model")}}
    return str(train(load_recipe(source), overwrite=True).output_dir)


def test_transfer_from_a_shuffled_label_source_is_flagged_and_from_a_real_one_is_not(toy_recipe, tmp_path, monkeypatch):
    """End to end: the same grid from two source models of one architecture. Trained on the task's real labels,
    the source beats scratch; trained to memorize shuffled labels, it ends well below scratch and is flagged."""
    import random

    from conftest import toy_sentences

    rows = toy_sentences(192, seed=5)  # source rows: the same kind of task, other sentences than the target's
    shuffled = [label for _, label in rows]
    random.Random(0).shuffle(shuffled)
    sources = {"real": _source_model(toy_recipe, rows, tmp_path / "real", epochs=30),
               "shuffled": _source_model(toy_recipe, [(text, label) for (text, _), label in zip(rows, shuffled)],
                                         tmp_path / "shuffled", epochs=60)}
    monkeypatch.setattr(compare_grid, "_launch", _in_process([]))
    verdicts = {}
    for name, source in sources.items():
        target = {**toy_recipe, "model": {**toy_recipe["model"], "name": source},
                  "train": {**toy_recipe["train"], "epochs": 20}}
        report = compare(target, out=tmp_path / f"cmp-{name}", strategies="full", fractions="0.25,1", seeds=2, figures=False)
        verdicts[name] = report["judgments"]
    assert verdicts["real"]["negative_transfer"] == []
    assert verdicts["real"]["gain"]["full"]["0.25"]["gain"] > 10  # scratch has 24 rows to learn from, the source its task
    flagged = {(n["strategy"], n["fraction"]) for n in verdicts["shuffled"]["negative_transfer"]}
    assert flagged == {("full", 0.25), ("full", 1.0)}
    assert any("Negative transfer" in s for s in verdicts["shuffled"]["sentences"])


def test_a_drop_within_seed_noise_is_not_negative_transfer_and_the_cheaper_close_strategy_is_recommended():
    scratch = _results("scratch", {1.0: [0.80, 0.70, 0.75]}, seconds=20)
    close = _results("frozen", {1.0: [0.74, 0.76, 0.72]}, seconds=1)  # 1 point below on average, seeds spread 5 points
    verdict = _verdict(scratch + close)
    assert verdict["negative_transfer"] == []
    assert verdict["recommendation"][1.0]["strategy"] == "frozen"  # within 1 point of scratch, 20x cheaper
    assert "No negative transfer" in " ".join(verdict["sentences"])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"fractions": "0,0.5"}, r"0 is outside \(0, 1\]"),
    ({"fractions": "1.5"}, r"1.5 is outside \(0, 1\]"),
    ({"fractions": "half"}, "'half' is not a number"),
    ({"strategies": "full,transfusion"}, "unknown 'transfusion'; registered: full, frozen, lora"),
    ({"baseline": "imagenet"}, "'imagenet' is not a baseline; use one of: scratch, none"),
    ({"seeds": 0}, "--seeds"),
    ({"min_steps": -1}, "--min-steps: -1; give a whole number of optimizer steps"),
    ({"cell_overrides": ["scratch:strategy.name=lora"]}, "cannot build its from-scratch baseline.*from_scratch"),
])
def test_bad_input_is_a_clear_error(grid_recipe, tmp_path, kwargs, match):
    with pytest.raises(CompareError, match=match):
        compare(grid_recipe, out=tmp_path / "cmp", figures=False, **{"strategies": "full", **kwargs})
    assert not (tmp_path / "cmp").exists()  # nothing ran


def test_a_baseline_without_an_architecture_is_a_clear_error(grid_recipe, tmp_path):
    (tmp_path / "weights-only").mkdir()
    grid_recipe["model"]["name"] = str(tmp_path / "weights-only")
    with pytest.raises(CompareError, match="cannot read the architecture.*--baseline none"):
        compare(grid_recipe, out=tmp_path / "cmp", strategies="full", figures=False)


def test_missing_matplotlib_names_the_install(grid_recipe, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    with pytest.raises(NlpTransferError, match=r"pip install 'nlp-transfer\[compare\]'.*--no-figures"):
        compare(grid_recipe, out=tmp_path / "cmp", strategies="full")


def test_card_section_is_added_once(tmp_path):
    (tmp_path / "README.md").write_text("# model\n\nSome text.\n")
    report = {"primary_metric": "accuracy", "split": "validation", "seeds": [42], "pool_rows": {"train": 100},
              "tables": {"accuracy": {"full": {"1": {"mean": 80.0, "std": 0.0, "train_rows": 100}}}},
              "judgments": {"sentences": ["Recommendation at 100%: **full**."]}}
    write_card_section(tmp_path, report)
    report["tables"]["accuracy"]["full"]["1"]["mean"] = 81.0
    text = write_card_section(tmp_path, report).read_text()
    assert text.count("## How this compares") == 1 and "81.0 ± 0.0" in text and "80.0" not in text
    assert text.startswith("# model\n\nSome text.")
    with pytest.raises(NlpTransferError, match="no model card"):
        write_card_section(tmp_path / "nothing", report)


def _fixed_features() -> tuple[np.ndarray, np.ndarray]:
    i, j = np.meshgrid(np.arange(40), np.arange(6), indexing="ij")
    features = np.sin(0.7 * i + 1.3 * j) + 0.1 * j
    labels = np.arange(40) % 3
    features[:, 0] += labels  # one informative feature
    return features, labels


def test_logme_matches_the_reference_implementation():
    from nlp_transfer.compare.logme import logme

    features, labels = _fixed_features()
    # thuml/LogME (LogME().fit, the fixed-point version of You et al. 2021) on the same matrix and labels
    assert logme(features, labels) == pytest.approx(REFERENCE_LOGME, abs=1e-4)
    shuffled = np.random.default_rng(0).permutation(labels)
    assert logme(features, shuffled) < logme(features, labels)  # features that predict the labels score higher


def test_cli_reports_bad_input_with_exit_2(grid_recipe, tmp_path, capsys):
    from nlp_transfer.cli import main

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(grid_recipe))
    code = main(["compare", str(recipe), "--out", str(tmp_path / "cmp"), "--fractions", "0.5,2", "--strategies", "full,nope"])
    err = capsys.readouterr().err
    assert code == 2 and "2 is outside (0, 1]" in err and "unknown 'nope'" in err  # every problem at once


def test_jobs_run_cells_side_by_side_with_the_threads_split(tmp_path, monkeypatch):
    import os
    import threading

    from nlp_transfer.compare.grid import _run_cells
    from nlp_transfer.compare.plan import Cell

    barrier, seen = threading.Barrier(2, timeout=10), []

    def launch(folder, threads, env, log):
        barrier.wait()  # both cells must be running at once, or this times out
        seen.append((threads, env["OMP_NUM_THREADS"]))
        (Path(folder) / "result.json").write_text("{}")
        return 0

    monkeypatch.setattr(compare_grid, "_launch", launch)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    cells = [Cell("full", 1.0, 1), Cell("frozen", 1.0, 1)]
    for cell in cells:
        (tmp_path / "cells" / cell.name).mkdir(parents=True)
    assert _run_cells(tmp_path, cells, jobs=2) == {}
    assert seen == [(2, "2"), (2, "2")]


def test_a_strategy_missing_what_it_needs_fails_before_any_cell(grid_recipe, tmp_path):
    with pytest.raises(CompareError, match=r"--set STRATEGY:KEY=VALUE\): distill: strategy\.teacher: missing"):
        compare(grid_recipe, out=tmp_path / "cmp", strategies="full,distill", figures=False)
    assert not (tmp_path / "cmp").exists()


def test_image_task_grid(image_recipe, tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(compare_grid, "_launch", _in_process(calls))
    image_recipe["train"]["epochs"] = 1
    report = compare(image_recipe, out=tmp_path / "cmp", strategies="frozen", fractions="0.5,1", seeds=1, figures=False)
    assert sorted(calls) == ["frozen-f0.5-s7", "frozen-f1-s7", "scratch-f0.5-s7", "scratch-f1-s7"]
    table = report["tables"]["accuracy"]
    assert table["frozen"]["0.5"]["train_rows"] == 12 and table["scratch"]["1"]["train_rows"] == 24
    assert table["frozen"]["1"]["trainable"] < table["scratch"]["1"]["trainable"]


def _trained_backbone(model_dir: str, folder: Path, task: dict, train_file: str) -> str:
    """``model_dir`` fine-tuned (full, 10 epochs) on a source task; the saved model folder."""
    from nlp_transfer.api import train

    recipe = {"model": {"name": model_dir, "max_length": 32}, "task": task,
              "data": {"files": {"train": train_file, "validation": train_file}, **({"format": "conll"} if task["type"]
                                                                                     == "token-classification" else {})},
              "strategy": {"name": "full"},
              "train": {"epochs": 10, "batch_size": 16, "lr": 3e-3, "seed": 7, "warmup_ratio": 0.0, "mixed_precision": "no"},
              "output": {"dir": str(folder / "model"), "save": "model"}}
    return str(train(recipe).output_dir)


@pytest.fixture(scope="module")
def sentiment_backbone(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny BERT fine-tuned on toy sentiment rows other than the grid's own: its features tell the opinion words'
    polarity apart, where a random init's do not."""
    from conftest import toy_sentences, write_csv

    folder = tmp_path_factory.mktemp("sentiment-backbone")
    return _trained_backbone(tiny_model_dir, folder, {"type": "text-classification"},
                             write_csv(folder / "source.csv", toy_sentences(192, seed=5)))


@pytest.fixture(scope="module")
def tagging_backbone(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny BERT fine-tuned on toy NER sentences other than the grid's own. (A sentence-level sentiment backbone
    does not do here: its token features blur toward the sentence's polarity and it ranks last for tags.)"""
    from conftest import toy_tagged_sentences, write_conll

    folder = tmp_path_factory.mktemp("tagging-backbone")
    return _trained_backbone(tiny_model_dir, folder, {"type": "token-classification"},
                             write_conll(folder / "source.txt", toy_tagged_sentences(96, seed=11)))


@pytest.mark.parametrize("recipe_fixture, trained_fixture", [("grid_recipe", "sentiment_backbone"),
                                                             ("toy_token_recipe", "tagging_backbone")])
def test_backbones_ranked_by_logme_beside_their_fine_tuned_scores(recipe_fixture, trained_fixture, tiny_model_dir, tmp_path,
                                                                  monkeypatch, request):
    """The grid's random-init tiny BERT, another random init, and one trained on a source task of the same kind:
    LogME ranks the trained one first, by a margin (two random inits score alike: their order is noise)."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    recipe = request.getfixturevalue(recipe_fixture)
    trained_backbone = request.getfixturevalue(trained_fixture)
    recipe["train"]["epochs"] = 1
    other = tmp_path / "other-bert"
    shutil.copytree(tiny_model_dir, other)
    torch.manual_seed(1)
    BertModel(BertConfig.from_pretrained(other)).save_pretrained(other)
    calls: list = []
    monkeypatch.setattr(compare_grid, "_launch", _in_process(calls))
    report = compare(recipe, out=tmp_path / "cmp", strategies="frozen", fractions="1", seeds=1, baseline="none",
                     backbones=[str(other), trained_backbone], figures=False)
    assert sorted(calls) == sorted([f"bb-{compare_plan.slug(b)}-frozen-f1-s7" for b in (str(other), trained_backbone)]
                                   + ["frozen-f1-s7"])
    rows = {r["backbone"]: r for r in report["backbones"]["rows"]}
    assert set(rows) == {tiny_model_dir, str(other), trained_backbone}
    assert all(np.isfinite(r["logme"]) and r["fine_tuned"] is not None for r in rows.values())
    assert rows[trained_backbone]["logme_rank"] == 1
    assert {rows[b]["logme_rank"] for b in (tiny_model_dir, str(other))} == {2, 3}
    trained, untrained = rows[trained_backbone]["logme"], max(rows[b]["logme"] for b in (tiny_model_dir, str(other)))
    assert trained > untrained + 0.05  # a clear margin, not a tie broken by noise
    assert rows[trained_backbone]["fine_tuned_rank"] == 1  # and fine-tuned (a frozen head) it scores best too
    assert report["backbones"]["metric"] == report["primary_metric"]
    assert "LogME" in (tmp_path / "cmp" / "report.md").read_text()
    # the cells' caches were their own (cold, removed after); the ranking's feature pass of the pool's train is cached
    # once per backbone, so a rerun of the report reads it
    assert len(list((tmp_path / "nlp_transfer_cache" / "features").iterdir())) == 3
    assert not list((tmp_path / "cmp" / "cells").glob("*/cache"))


def _regression_targets(labels: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(0.3 * np.arange(40)) + 0.5 * labels, 0.2 * np.arange(40) / 40], axis=1)


def test_logme_regression_matches_the_reference_implementation():
    from nlp_transfer.compare.logme import log_evidence

    features, labels = _fixed_features()
    assert log_evidence(features, _regression_targets(labels)) == pytest.approx(REFERENCE_LOGME_REGRESSION, abs=1e-6)


@pytest.mark.parametrize("recipe_fixture", ["toy_token_recipe", "image_recipe", "toy_regression_recipe",
                                            "toy_multilabel_recipe"])
def test_logme_reads_the_frozen_features_of_every_task_type(recipe_fixture, request):
    """Token tasks: one row per tagged token; images: one per image; regression: the value; multi-label: the labels."""
    from collections import Counter

    from conftest import toy_multilabel_rows, toy_scores, toy_tagged_sentences

    from nlp_transfer.compare.logme import frozen_features, log_evidence

    raw = request.getfixturevalue(recipe_fixture)
    features, targets = frozen_features(load_recipe({**raw, "strategy": {"name": "frozen"}}))
    hidden = 32  # the tiny BERT's and the tiny ViT's hidden size
    if recipe_fixture == "toy_token_recipe":
        tags = [tag for sentence in toy_tagged_sentences(96, seed=1) for _, tag in sentence]  # one word piece per word
        assert features.shape == (len(tags), hidden)
        assert sorted(targets.sum(0).tolist()) == sorted(Counter(tags).values())
    elif recipe_fixture == "image_recipe":
        assert features.shape == (24, hidden) and targets.sum(0).tolist() == [12, 12]
    elif recipe_fixture == "toy_regression_recipe":
        assert targets.shape == (96, 1)
        assert sorted(targets[:, 0]) == pytest.approx(sorted(score for _, score in toy_scores(96, seed=1)))
    else:
        counts = Counter(label for _, labels in toy_multilabel_rows(96, seed=1) for label in labels.split("|"))
        assert targets.shape == (96, 3) and targets.sum(0).tolist() == [counts[k] for k in sorted(counts)]
    assert np.isfinite(log_evidence(features, targets))
