"""`nlp-transfer tune`: the search space's checks, conditional keys, a planted best setting, pruning through the loop's
evaluation observers, a study that survives a kill, two workers on one storage, and best.yaml reproducing its trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import FixedTrial, TrialState

from nlp_transfer.errors import RecipeError
from nlp_transfer.search.base import BaseRecipe
from nlp_transfer.search.space import read_search, sample
from nlp_transfer.search.study import INTERRUPTED, WORKER, open_storage

GOOD_LR, BAD_LR = 1e-2, 1e-7


@pytest.fixture
def search_recipe(toy_recipe) -> dict:
    """The toy recipe with a search over the encoder's lr: the tiny BERT learns the toy sentences in 4 epochs at lr 1e-2
    (validation accuracy 1.0) and stays at chance (0.5) at 1e-7, the head's lr being 1e-2 in both."""
    recipe = dict(toy_recipe)
    recipe["train"] = {**recipe["train"], "epochs": 4, "batch_size": 8, "head_lr": 1e-2, "mixed_precision": "no"}
    recipe["tune"] = {"space": {"train.lr": {"type": "categorical", "choices": [BAD_LR, GOOD_LR]}},
                      "sampler": "grid", "n_trials": 2, "pruner": "none"}
    return recipe


def _problems(recipe: dict, **overrides) -> str:
    with pytest.raises(RecipeError) as info:
        read_search(BaseRecipe.read(recipe), overrides)
    return "\n".join(info.value.problems)


def test_bad_search_spaces_are_refused_whole_each_naming_its_key(search_recipe):
    search_recipe["tune"] = {"space": {
        "train.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3},
        "train.epochs": {"type": "int", "low": 5, "high": 2},
        "train.weight_decay": {"type": "float", "low": 0.0, "high": 0.1, "log": True},
        "strategy.name": {"type": "categorical", "choices": []},
        "train.batch_size": {"type": "categorical", "choices": [16, "many"]},
    }, "sampler": "bayes"}
    text = _problems(search_recipe)
    assert "tune.space.train.learning_rate: 'train' has no key 'learning_rate'" in text
    assert "tune.space.train.epochs: low 5 is above high 2" in text
    assert "tune.space.train.weight_decay: a log range must be above 0; got low 0.0" in text
    assert "tune.space.strategy.name.choices: got []" in text
    assert "tune.space.train.batch_size: the value 'many' is refused: train.batch_size: got 'many'" in text
    assert "tune.sampler: got 'bayes'" in text


def test_a_strategy_key_needs_its_strategy_in_the_search(search_recipe):
    search_recipe["tune"]["space"]["strategy.r"] = {"type": "categorical", "choices": [4, 8]}
    assert "only the lora strategy has this key, and the recipe's strategy is full" in _problems(search_recipe)


def test_a_storage_that_cannot_be_opened_is_a_clear_error(tmp_path):
    with pytest.raises(RecipeError, match=r"--storage: cannot open 'sqlite:////no/such/folder/study.db'"):
        open_storage("sqlite:////no/such/folder/study.db", tmp_path)


def test_conditional_keys_are_sampled_only_with_their_strategy(search_recipe):
    search_recipe["tune"] = {"space": {"strategy.name": {"type": "categorical", "choices": ["full", "lora"]},
                                       "strategy.r": {"type": "int", "low": 2, "high": 8, "log": True},
                                       "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}
    settings = read_search(BaseRecipe.read(search_recipe))
    # FixedTrial raises for a key it was not given: full's trial must never ask for strategy.r
    assert sample(FixedTrial({"strategy.name": "full", "train.lr": 1e-3}), settings, "full") == {
        "strategy.name": "full", "train.lr": 1e-3}
    assert sample(FixedTrial({"strategy.name": "lora", "strategy.r": 4, "train.lr": 1e-3}), settings, "full") == {
        "strategy.name": "lora", "strategy.r": 4, "train.lr": 1e-3}


def test_the_search_finds_the_planted_best_lr_and_best_yaml_trains_to_its_value(search_recipe, tmp_path):
    from nlp_transfer import tune

    result = tune(search_recipe, out=tmp_path / "study", retrain=True)
    best = result.summary["best"]
    bad = next(t for t in result.summary["trials"] if t["params"] == {"train.lr": BAD_LR})
    assert best["params"] == {"train.lr": GOOD_LR} and best["value"] > bad["value"] + 0.1, result.summary["trials"]
    assert [len(t["evaluations"]) for t in result.summary["trials"]] == [4, 4]  # one report per epoch
    for name in ("best.yaml", "trials.csv", "study.json", "report.md", "optimization_history.png"):
        assert (result.study_dir / name).is_file(), name
    assert f"| {best['number']} | {best['value']:.4f} | 0.01 |" in (result.study_dir / "report.md").read_text()
    # --retrain: best.yaml, a recipe train takes as it is, trained into output.dir; it reproduces the trial's value
    # exactly (a deterministic tiny run), and the model card says where its settings came from
    recipe = yaml.safe_load(result.best_recipe.read_text())
    assert recipe["train"]["lr"] == GOOD_LR and "tune" not in recipe
    assert result.retrained.output_dir == Path(search_recipe["output"]["dir"]).resolve()
    assert result.retrained.metrics["validation"]["accuracy"] == best["value"]
    card = (result.retrained.output_dir / "README.md").read_text()
    assert "Settings: chosen by `nlp-transfer tune`: the best of 2 trials (grid sampler, no pruner)" in card


def test_a_pruned_trial_stops_at_the_evaluation_the_pruner_chose(search_recipe, tmp_path):
    from nlp_transfer import tune

    search_recipe["tune"].update(sampler="random", n_trials=2,
                                 pruner={"name": "median", "startup_trials": 1, "warmup_evaluations": 0})
    study_dir = tmp_path / "study"
    storage = open_storage(None, study_dir)
    planned = optuna.create_study(study_name="search", storage=storage, direction="maximize")
    planned.enqueue_trial({"train.lr": GOOD_LR})  # completes, and sets the median
    planned.enqueue_trial({"train.lr": BAD_LR})  # stays at chance: below the median at its first evaluations
    result = tune(search_recipe, out=study_dir)
    pruned = result.summary["trials"][1]
    assert pruned["state"] == "pruned", pruned
    stopped_at = len(pruned["evaluations"])
    assert stopped_at < 4 and f"pruned by the median pruner at evaluation {stopped_at}" == pruned["reason"]
    metrics = json.loads((study_dir / "trials" / "0001" / "metrics.json").read_text())
    assert metrics["train"]["stopped_by"] == pruned["reason"]
    assert metrics["train"]["steps"] == stopped_at * 12 < metrics["train"]["planned_steps"] == 48  # 96 rows / 8 per step


def _tune_command(recipe_file: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nlp_transfer", "-q", "tune", str(recipe_file), *extra]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _trials(storage_url: str | None, study_dir: Path, name: str) -> list:
    return optuna.load_study(study_name=name, storage=open_storage(storage_url, study_dir)).get_trials()


def test_a_killed_search_continues_without_rerunning_finished_trials(search_recipe, tmp_path):
    search_recipe["tune"].update(sampler="random", n_trials=3)
    recipe_file = tmp_path / "search.yaml"
    recipe_file.write_text(yaml.safe_dump(search_recipe))
    study_dir = tmp_path / "study"
    process = subprocess.Popen(_tune_command(recipe_file, "--out", str(study_dir)), env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:  # kill it in the middle of its second trial
            if (study_dir / "study.journal").is_file():
                states = [t.state for t in _trials(None, study_dir, "search")]
                if len(states) == 2 and states[1] == TrialState.RUNNING:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the search never reached its second trial")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    first = _trials(None, study_dir, "search")[0]
    assert first.state == TrialState.COMPLETE
    again = subprocess.run(_tune_command(recipe_file, "--out", str(study_dir)), env=_env(), capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "trial 1 was interrupted" in again.stdout
    trials = _trials(None, study_dir, "search")
    assert trials[0].datetime_complete == first.datetime_complete  # not rerun
    assert trials[1].state == TrialState.FAIL and trials[1].user_attrs[INTERRUPTED]
    assert [t.state for t in trials[2:]] == [TrialState.COMPLETE, TrialState.COMPLETE]  # 3 counted trials in all
    summary = json.loads((study_dir / "study.json").read_text())
    assert summary["interrupted"] == 1 and summary["counts"]["complete"] == 3


def test_two_processes_on_one_storage_split_the_trials(search_recipe, tmp_path):
    """One `tune --jobs 2` (two worker processes) and, once it has started, one plain `tune`, as on a second machine,
    on one SQLite study: the study gets exactly its trials, each run once, and more than one worker ran them."""
    search_recipe["tune"].update(sampler="random", n_trials=5)
    search_recipe["train"]["epochs"] = 12  # a few seconds a trial: long enough for every worker to join
    recipe_file = tmp_path / "search.yaml"
    recipe_file.write_text(yaml.safe_dump(search_recipe))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    commands = [_tune_command(recipe_file, "--storage", url, "--study", "shared", "--out", str(tmp_path / f"w{i}"), *extra)
                for i, extra in enumerate((["--jobs", "2"], []))]
    workers = [subprocess.Popen(commands[0], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "w0" / "trials").is_dir():
        time.sleep(0.5)  # the first trial of the --jobs workers has started
    workers.append(subprocess.Popen(commands[1], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = [t for t in _trials(url, tmp_path, "shared") if not t.user_attrs.get("surplus")]
    assert len(trials) == 5 and {t.state for t in trials} == {TrialState.COMPLETE}
    assert len({t.number for t in trials}) == 5
    ran = [t.user_attrs[WORKER] for t in trials]
    assert len(set(ran)) >= 2, (ran, outputs)  # the workers shared the trials
    assert sum(len(list((tmp_path / f"w{i}" / "trials").glob("0*"))) for i in range(2)) == 5  # each trial ran once


def test_the_command_line_refuses_a_bad_search_before_any_trial(search_recipe, tmp_path, capsys):
    from nlp_transfer.cli import main

    search_recipe["tune"]["space"]["train.epochs"] = {"type": "int", "low": 3, "high": 1}
    recipe_file = tmp_path / "search.yaml"
    recipe_file.write_text(yaml.safe_dump(search_recipe))
    assert main(["-q", "validate", str(recipe_file)]) == 2
    assert main(["-q", "tune", str(recipe_file), "--out", str(tmp_path / "study")]) == 2
    assert "tune.space.train.epochs: low 3 is above high 1; swap them" in capsys.readouterr().err
    assert not (tmp_path / "study").exists()  # nothing written
