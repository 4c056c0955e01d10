"""Multi-task learning: task sampling, single-task batches, one folder per task that plain transformers loads with
the multi-task model's logits and one shared encoder, per-task metrics, exact resume, baselines, bad input."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import toy_scores, toy_sentences, toy_tagged_sentences, train_with_torchrun, write_conll, write_csv
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer, pipeline

import nlp_transfer
from nlp_transfer import RecipeError
from nlp_transfer.cli import main as cli_main
from nlp_transfer.data.sampling import LengthGroupedBatchSampler
from nlp_transfer.outputs.export import partial_dir
from nlp_transfer.multitask.sampling import MultiTaskBatchSampler, MultiTaskCollator, task_probabilities
from nlp_transfer.recipe.load import load_any_recipe
from nlp_transfer.multitask.strategy import MultiTaskStrategy

ENCODER_PREFIXES = ("bert.embeddings.", "bert.encoder.")


def _files(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "sentiment": {"train": write_csv(folder / "s_train.csv", toy_sentences(96, seed=1)),
                      "validation": write_csv(folder / "s_val.csv", toy_sentences(32, seed=2))},
        "score": {"train": write_csv(folder / "r_train.csv", toy_scores(48, seed=3)),
                  "validation": write_csv(folder / "r_val.csv", toy_scores(32, seed=4))},
        "tags": {"train": write_conll(folder / "t_train.txt", toy_tagged_sentences(64, seed=5)),
                 "validation": write_conll(folder / "t_val.txt", toy_tagged_sentences(32, seed=6))},
    }


def multitask_recipe(model_dir: str, folder: Path, out: Path, strategy: str = "full", tasks=("sentiment", "score", "tags"),
                     **train) -> dict:
    files = _files(folder)
    entries = {
        "sentiment": {"type": "text-classification", "data": {"files": files["sentiment"]}, "metrics": ["accuracy"]},
        "score": {"type": "regression", "data": {"files": files["score"]}, "metrics": ["pearson"], "weight": 0.5},
        "tags": {"type": "token-classification", "data": {"files": files["tags"], "format": "conll"}, "metrics": ["f1"]},
    }
    return {"model": {"name": model_dir, "max_length": 32}, "strategy": {"name": strategy},
            "train": {"epochs": 8, "batch_size": 16, "lr": 3e-3, "seed": 7, "log_every": 1, "warmup_ratio": 0.0,
                      "mixed_precision": "no", **train},
            "output": {"dir": str(out)}, "tasks": {name: entries[name] for name in tasks}}


# ---------------------------------------------------------------------- sampling
def test_task_probabilities_follow_each_scheme():
    np.testing.assert_allclose(task_probabilities([10, 40], "proportional"), [0.2, 0.8])
    np.testing.assert_allclose(task_probabilities([10, 40], "temperature", 2.0), [1 / 3, 2 / 3])  # sqrt(10):sqrt(40) = 1:2
    np.testing.assert_allclose(task_probabilities([10, 40], "temperature", 1.0), [0.2, 0.8])
    np.testing.assert_allclose(task_probabilities([10, 40, 90], "round_robin"), [1 / 3] * 3)


def _sampler(scheme: str, rows=(30, 300, 120), batch_size: int = 10, seed: int = 3) -> MultiTaskBatchSampler:
    samplers = [LengthGroupedBatchSampler(None, n, batch_size, seed + k) for k, n in enumerate(rows)]
    return MultiTaskBatchSampler(samplers, scheme, 2.0, seed)


@pytest.mark.parametrize("scheme", ["proportional", "temperature", "round_robin"])
def test_task_draws_match_the_scheme_and_no_batch_mixes_tasks(scheme):
    sampler = _sampler(scheme)
    bounds = [(0, 30), (30, 330), (330, 450)]
    counts = np.zeros(3)
    for epoch in range(60):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 3 + 30 + 12
        for batch in batches:
            tasks = {next(k for k, (lo, hi) in enumerate(bounds) if lo <= i < hi) for i in batch}
            assert len(tasks) == 1  # every batch holds one task's rows
            counts[tasks.pop()] += 1
    expected = task_probabilities([3, 30, 12], scheme, 2.0)
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.015)
    if scheme == "round_robin":
        sampler.set_epoch(0)
        assert sampler.task_order()[:6] == [0, 1, 2, 0, 1, 2]


def test_task_order_is_seeded_per_epoch_and_small_tasks_repeat_whole_passes():
    sampler = _sampler("temperature")
    sampler.set_epoch(4)
    first = list(sampler)
    sampler.set_epoch(4)
    assert list(sampler) == first  # a resumed epoch replays the same batches
    sampler.set_epoch(5)
    assert list(sampler) != first
    sampler = _sampler("round_robin")  # 15 of the 45 batches go to task 0, which has 3 per pass over its rows
    small = [i for batch in sampler for i in batch if i < 30]
    assert len(small) == 150 and all(sorted(small[p * 30:(p + 1) * 30]) == list(range(30)) for p in range(5))
    assert small[:30] != small[30:60]  # each pass reshuffles


def test_a_batch_that_mixes_tasks_is_refused():
    collate = MultiTaskCollator([lambda rows: {"x": torch.zeros(len(rows))}] * 2)
    assert collate([{"a": 1, "task_index": 1}] * 3)["task_index"].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match=r"mixes tasks \[0, 1\]"):
        collate([{"a": 1, "task_index": 0}, {"a": 2, "task_index": 1}])


# ---------------------------------------------------------------------- a trained multi-task output
@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """One multi-task run (sentiment, regression, NER on one tiny encoder), with each task's trained module kept."""
    root = tmp_path_factory.mktemp("multitask")
    captured = {}
    import nlp_transfer.multitask.runner as runner_lib

    real_stage = runner_lib.stage_output

    def keep_trained(recipe, strategy, model, trained_module, *args, **kwargs):
        captured[Path(args[-1]).name] = trained_module
        return real_stage(recipe, strategy, model, trained_module, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner_lib, "stage_output", keep_trained)
        out = nlp_transfer.train(multitask_recipe(tiny_model_dir, root / "data", root / "out"))
    return out, captured


def test_each_task_folder_loads_with_plain_transformers_and_gives_the_multitask_logits(trained):
    out, modules = trained
    assert sorted(p.name for p in out.output_dir.iterdir() if p.is_dir()) == ["score", "sentiment", "tags"]
    tokenizer = AutoTokenizer.from_pretrained(out.output_dir / "sentiment")
    batch = tokenizer(["good fine movie", "awful plot and bad acting", "the film"], padding=True, return_tensors="pt")
    for name, auto in (("sentiment", AutoModelForSequenceClassification), ("score", AutoModelForSequenceClassification),
                       ("tags", AutoModelForTokenClassification)):
        loaded = auto.from_pretrained(out.output_dir / name).eval()
        head = modules[name].eval()
        with torch.inference_mode():
            torch.testing.assert_close(loaded(**batch).logits, head(**batch).logits, atol=1e-5, rtol=1e-5)
    # pipeline() on the sentiment folder: the right class for a clear case of each, with the multi-task head's probability
    texts = ["good fine movie", "awful plot and bad acting"]
    with torch.inference_mode():
        probs = modules["sentiment"](**tokenizer(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    got = pipeline("text-classification", model=str(out.output_dir / "sentiment"))(texts)
    assert [g["label"] for g in got] == ["positive", "negative"]  # id2label: negative 0, positive 1
    assert [g["score"] for g in got] == pytest.approx([probs[0, 1].item(), probs[1, 0].item()], abs=1e-5)
    entities = pipeline("token-classification", model=str(out.output_dir / "tags"))("the movie was great today")
    assert [(e["word"], e["entity"]) for e in entities] == [("great", "B-POS")]


def test_the_shared_encoder_is_identical_in_every_exported_folder(trained):
    out, _ = trained
    weights = {name: load_file(str(out.output_dir / name / "model.safetensors")) for name in ("sentiment", "score", "tags")}
    encoder = {k for k in weights["tags"] if k.startswith(ENCODER_PREFIXES)}
    assert len(encoder) > 20 and all(encoder <= set(w) for w in weights.values())
    for key in encoder:
        assert torch.equal(weights["sentiment"][key], weights["score"][key])
        assert torch.equal(weights["sentiment"][key], weights["tags"][key])
    assert not torch.equal(weights["sentiment"]["classifier.weight"][:1], weights["score"]["classifier.weight"])
    pretrained = load_file(str(Path(out.metrics["model"]) / "model.safetensors"))
    assert not torch.equal(pretrained["embeddings.word_embeddings.weight"],
                           weights["tags"]["bert.embeddings.word_embeddings.weight"])  # the encoder did train


def test_per_task_metrics_use_each_tasks_labels_and_the_best_model_is_picked_on_their_mean(trained):
    out, _ = trained
    metrics = json.loads((out.output_dir / "metrics.json").read_text())
    for name, metric in (("sentiment", "accuracy"), ("score", "pearson"), ("tags", "f1")):
        recorded = metrics["tasks"][name]["validation"]
        assert recorded[metric] == pytest.approx(metrics["validation"][f"{name}/{metric}"])
        # the exported folder, scored from scratch on that task's own data and labels, gives the same numbers
        assert nlp_transfer.evaluate(out.output_dir / name)[metric] == pytest.approx(recorded[metric], abs=1e-6)
        assert json.loads((out.output_dir / name / "metrics.json").read_text())["validation"] == recorded
    primaries = [metrics["validation"][k] for k in ("sentiment/accuracy", "score/pearson", "tags/f1")]
    assert metrics["validation"]["mean"] == pytest.approx(sum(primaries) / 3)
    log = [json.loads(line) for line in (out.output_dir / "train_log.jsonl").read_text().splitlines()]
    evaluations = [r for r in log if "validation" in r]
    assert max(r["validation"]["mean"] for r in evaluations) == pytest.approx(metrics["validation"]["mean"])
    assert metrics["tasks"]["sentiment"]["validation"]["accuracy"] >= 0.9  # it learns, beside two other tasks
    assert metrics["tasks"]["tags"]["validation"]["f1"] >= 0.5  # untrained: about 0
    assert metrics["multitask"]["weights"] == {"sentiment": 1.0, "score": 0.5, "tags": 1.0}
    card = (out.output_dir / "sentiment" / "README.md").read_text()
    assert "multi-task run with `score`, `tags`" in card
    readme = (out.output_dir / "README.md").read_text()
    assert all(f"[`{name}/`]" in readme for name in ("sentiment", "score", "tags"))


def test_predict_works_on_a_task_folder_as_on_any_output(trained, capsys):
    out, modules = trained
    texts = ["good fine movie", "the food was awful"]
    assert cli_main(["-q", "predict", str(out.output_dir / "sentiment"), *texts]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(out.output_dir / "sentiment")
    with torch.inference_mode():
        probs = modules["sentiment"].eval()(**tokenizer(texts, padding=True, return_tensors="pt")).logits.softmax(-1)
    assert [r["label"] for r in rows] == ["positive", "negative"]
    assert [r["score"] for r in rows] == pytest.approx([probs[0, 1].item(), probs[1, 0].item()], abs=1e-5)


# ---------------------------------------------------------------------- strategies, resume, baselines
@pytest.mark.parametrize("strategy", ["frozen", "lora", "gradual", "partial"])
def test_other_strategies_train_several_tasks_on_one_encoder(strategy, tiny_model_dir, tmp_path):
    recipe = multitask_recipe(tiny_model_dir, tmp_path / "data", tmp_path / "out", strategy, tasks=("sentiment", "tags"),
                              epochs=3)
    if strategy == "gradual":
        recipe["strategy"].update(unfreeze_unit="steps", unfreeze_every=2)
    if strategy == "partial":  # the top layer trains on each task's cached bottom
        recipe["strategy"]["train_top_layers"] = 1
    out = nlp_transfer.train(recipe)
    for name in ("sentiment", "tags"):
        # each exported folder, loaded and scored from scratch, gives the run's own numbers for its task (the loss
        # too: after 3 epochs a score may sit at chance, where a label map read the wrong way round scores the same)
        recorded = out.metrics["tasks"][name]["validation"]
        assert nlp_transfer.evaluate(out.output_dir / name) == pytest.approx(recorded, abs=1e-5)
        check = out.metrics["tasks"][name]["reload_check"]
        assert check["rows"] > 0 and 0 <= check["max_abs_logit_diff"] <= 1e-4 and check["folders"]
    if strategy == "lora":  # one set of adapters in the shared encoder, a head per task
        a = load_file(str(out.output_dir / "sentiment" / "adapter_model.safetensors"))
        b = load_file(str(out.output_dir / "tags" / "adapter_model.safetensors"))
        shared = [k for k in a if "lora_" in k and ".encoder." in k]
        assert shared and all(torch.equal(a[k], b[k]) for k in shared)
        assert any(k.endswith("classifier.weight") for k in a) and a.keys() != b.keys()
    if strategy == "partial":
        assert out.metrics["tasks"]["tags"]["partial_cache_hits"] == {"train": False, "validation": False}
        a = load_file(str(out.output_dir / "sentiment" / "model.safetensors"))
        b = load_file(str(out.output_dir / "tags" / "model.safetensors"))
        assert torch.equal(a["bert.encoder.layer.1.output.dense.weight"], b["bert.encoder.layer.1.output.dense.weight"])
        pretrained = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
        assert torch.equal(a["bert.encoder.layer.0.output.dense.weight"], pretrained["encoder.layer.0.output.dense.weight"])
        assert not torch.equal(a["bert.encoder.layer.1.output.dense.weight"], pretrained["encoder.layer.1.output.dense.weight"])
    if strategy == "frozen":
        a = load_file(str(out.output_dir / "sentiment" / "model.safetensors"))
        pretrained = load_file(str(Path(tiny_model_dir) / "model.safetensors"))
        assert torch.equal(a["bert.encoder.layer.0.attention.self.query.weight"],
                           pretrained["encoder.layer.0.attention.self.query.weight"])


def test_frozen_tasks_on_the_same_text_share_one_feature_pass(tiny_model_dir, tmp_path):
    rows = [(text, label, "long" if len(text.split()) >= 5 else "short") for text, label in toy_sentences(64, seed=1)]
    val = [(text, label, "long" if len(text.split()) >= 5 else "short") for text, label in toy_sentences(32, seed=2)]
    files = {"train": write_csv(tmp_path / "train.csv", rows, ("text", "label", "size")),
             "validation": write_csv(tmp_path / "val.csv", val, ("text", "label", "size"))}
    recipe = multitask_recipe(tiny_model_dir, tmp_path / "data", tmp_path / "out", "frozen", tasks=(), epochs=2)
    recipe["tasks"] = {"polarity": {"data": {"files": files}, "metrics": ["accuracy"]},
                       "size": {"label": "size", "data": {"files": files}, "metrics": ["accuracy"]}}
    out = nlp_transfer.train(recipe)
    assert out.metrics["tasks"]["polarity"]["feature_cache_hits"] == {"train": False, "validation": False}
    assert out.metrics["tasks"]["size"]["feature_cache_hits"] == {"train": True, "validation": True}
    config = json.loads((out.output_dir / "size" / "config.json").read_text())
    assert sorted(config["id2label"].values()) == ["long", "short"]  # its own labels, on the shared features


def test_resume_mid_run_is_bit_exact(tiny_model_dir, tmp_path, monkeypatch):
    def recipe(out):
        return multitask_recipe(tiny_model_dir, tmp_path / "data", out, tasks=("sentiment", "score"), epochs=3,
                                checkpoint_every=5)

    reference = nlp_transfer.train(recipe(tmp_path / "reference"))
    calls, original = [], MultiTaskStrategy.loss

    def crash_at_step_13(self, model, batch, ctx):
        calls.append(1)
        if len(calls) == 13:
            raise KeyboardInterrupt
        return original(self, model, batch, ctx)

    monkeypatch.setattr(MultiTaskStrategy, "loss", crash_at_step_13)
    with pytest.raises(KeyboardInterrupt):
        nlp_transfer.train(recipe(tmp_path / "resumed"))
    assert (partial_dir(tmp_path / "resumed") / "checkpoints" / "step-00000010").is_dir()
    monkeypatch.setattr(MultiTaskStrategy, "loss", original)
    resumed = nlp_transfer.train(recipe(tmp_path / "resumed"), resume=True)
    for name in ("sentiment", "score"):
        a = load_file(str(resumed.output_dir / name / "model.safetensors"))
        b = load_file(str(reference.output_dir / name / "model.safetensors"))
        assert a.keys() == b.keys() and [k for k in a if not torch.equal(a[k], b[k])] == []
    assert resumed.metrics["validation"] == reference.metrics["validation"]


def test_two_processes_train_several_tasks_with_identical_weights(tiny_model_dir, tmp_path):
    recipe = multitask_recipe(tiny_model_dir, tmp_path / "data", tmp_path / "out", tasks=("sentiment", "tags"), epochs=2)
    metrics = train_with_torchrun(recipe, tmp_path, port=29571)  # checks that both ranks end with the same weights
    for name in ("sentiment", "tags"):  # what rank 0 wrote is what the run scored
        scored = nlp_transfer.evaluate(Path(recipe["output"]["dir"]) / name)
        assert scored == pytest.approx(metrics["tasks"][name]["validation"], abs=1e-5)
    assert metrics["tasks"]["sentiment"]["num_processes"] == 2


def test_single_task_baselines_report_each_tasks_difference(tiny_model_dir, tmp_path):
    recipe = multitask_recipe(tiny_model_dir, tmp_path / "data", tmp_path / "out", tasks=("sentiment", "score"), epochs=2)
    out = nlp_transfer.train(recipe, single_task_baselines=True)
    saved = json.loads((out.output_dir / "metrics.json").read_text())
    summary = saved["single_task_baselines"]
    entries = {"sentiment": ("text-classification", "accuracy"), "score": ("regression", "pearson")}
    for name, (task_type, metric) in entries.items():
        row = summary["tasks"][name]
        # the baseline is the task trained alone on the same model, strategy and budget: a plain single-task run
        # of that task gives the same score (one seed, deterministic on CPU)
        entry = recipe["tasks"][name]
        alone = nlp_transfer.train({"model": recipe["model"], "strategy": recipe["strategy"],
                                    "task": {"type": task_type}, "data": entry["data"],
                                    "train": {**recipe["train"], "metrics": entry["metrics"]},
                                    "output": {"dir": str(tmp_path / f"alone_{name}"), "save": "metrics"}})
        single, multi = alone.metrics["validation"][metric], saved["tasks"][name]["validation"][metric]
        assert row["metric"] == metric and row["single_task"] == pytest.approx(single, abs=1e-9)
        assert row["multi_task"] == multi and row["delta"] == pytest.approx(multi - single)
        assert row["negative_transfer"] == (multi < single) == (name in summary["negative_transfer"])
    assert "## Against single-task training" in (out.output_dir / "README.md").read_text()
    shutil.rmtree(out.output_dir)
    single = {"model": recipe["model"], "task": {"type": "text-classification"},
              "data": recipe["tasks"]["sentiment"]["data"], "output": {"dir": str(tmp_path / "single")}}
    with pytest.raises(RecipeError, match="--single-task-baselines: <dict> is a single-task recipe"):
        nlp_transfer.train(single, single_task_baselines=True)


# ---------------------------------------------------------------------- bad input
def test_two_tasks_with_the_same_name_are_refused(tiny_model_dir, tmp_path):
    path = tmp_path / "mt.yaml"
    path.write_text(f"model: {{name: {tiny_model_dir}}}\noutput: {{dir: {tmp_path / 'out'}}}\ntasks:\n"
                    "  a: {type: text-classification, data: {files: {train: x.csv}}}\n"
                    "  a: {type: regression, data: {files: {train: y.csv}}}\n")
    with pytest.raises(RecipeError, match=r"key 'a' appears twice \(first on line 4, again on line 5\)"):
        load_any_recipe(path)


def _bad(recipe: dict, **changes) -> RecipeError:
    for key, value in changes.items():
        node = recipe
        *path, last = key.split(".")
        for part in path:
            node = node[part]
        node[last] = value
    with pytest.raises(RecipeError) as info:
        load_any_recipe(recipe)
    return info.value


def test_bad_multitask_recipes_name_the_key(tiny_model_dir, tmp_path, image_folder):
    base = lambda: multitask_recipe(tiny_model_dir, tmp_path / "data", tmp_path / "out", tasks=("sentiment", "score"))  # noqa: E731
    assert any(p.startswith("tasks.score.data: no data given") for p in _bad(base(), **{"tasks.score.data": {}}).problems)
    image = {"type": "image-classification", "data": {"source": "imagefolder", "dir": str(image_folder)}}
    problems = _bad(base(), **{"tasks.score": image}).problems
    assert any(p.startswith("tasks.score.type: image-classification reads image, but tasks.sentiment "
                            "(text-classification) reads text") for p in problems)
    assert "tasks.score.pooling: unknown key" in str(_bad(base(), **{"tasks.score.pooling": "mean"}))
    assert "strategy.name: strategy 'distill' does not train several tasks" in str(
        _bad(base(), **{"strategy": {"name": "distill", "teacher": tiny_model_dir}}))
    assert "tasks.score.metrics: its first metric, 'mse'" in str(_bad(base(), **{"tasks.score.metrics": ["mse", "pearson"]}))
    assert "train.best_metric: got 'accuracy'; expected mean" in str(_bad(base(), **{"train.best_metric": "accuracy"}))
    assert "tasks: got" in str(_bad(base(), **{"tasks": {"only": base()["tasks"]["sentiment"]}}))
    assert "tasks.score.weight: got 0" in str(_bad(base(), **{"tasks.score.weight": 0}))
    assert "train.metrics: a multi-task recipe names metrics per task" in str(_bad(base(), **{"train.metrics": ["f1"]}))
    assert "task: not a section of a multi-task recipe" in str(_bad(base(), **{"task": {"type": "regression"}}))
    assert "tasks.single_task: not a usable task name" in str(
        _bad(base(), **{"tasks.single_task": base()["tasks"]["sentiment"]}))
    shared = _bad(base(), **{"train.lr": -1}).problems
    assert shared.count("train.lr: got -1.0; expected a positive number") == 1  # a shared section's problem, once
