"""Reliability of a run: atomic checkpoints and exact resume, resume checks the recipe, a non-finite loss keeps the
last good state, one run per output folder, nothing left behind on failure."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import write_csv
from safetensors.torch import load_file

import nlp_transfer
from nlp_transfer import OutputDirError, RecipeError, TrainingError
from nlp_transfer.training import checkpoints as ckpt
from nlp_transfer.cli import main
from nlp_transfer.outputs.export import partial_dir
from nlp_transfer.training.runlock import RunLock, lock_path
from nlp_transfer.strategies.full import FullStrategy

SETTINGS = dict(epochs=3, checkpoint_every=4, group_by_length=True, eval_every=1000)  # 18 steps, one evaluation at the end
_ORIGINAL_LOSS = FullStrategy.loss


def _recipe(toy_recipe, out: Path, **train) -> dict:
    return {**toy_recipe, "train": {**toy_recipe["train"], **train}, "output": {"dir": str(out)}}


def _weights(out: Path) -> dict:
    return load_file(str(Path(out) / "model.safetensors"))


def _assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name  # bit-identical


def _on_loss_call(monkeypatch, call: int, action):
    """Run ``action(loss)`` at the ``call``-th training loss (1-based) instead of returning it."""
    calls = []

    def loss(self, model, batch, ctx):
        calls.append(1)
        value, extra = _ORIGINAL_LOSS(self, model, batch, ctx)
        return (action(value), extra) if len(calls) == call else (value, extra)

    monkeypatch.setattr(FullStrategy, "loss", loss)
    return calls


def _crash(loss):
    raise KeyboardInterrupt


@pytest.fixture
def reference(toy_recipe, tmp_path) -> Path:
    """The uninterrupted run's output."""
    return nlp_transfer.train(_recipe(toy_recipe, tmp_path / "reference", **SETTINGS)).output_dir


# ---------------------------------------------------------------------- atomic checkpoints, exact resume
def test_a_kill_mid_checkpoint_resumes_from_the_newest_complete_one(toy_recipe, tmp_path, monkeypatch, reference, caplog):
    """The write of step 12's checkpoint dies after accelerate wrote the weights, before the marker (what kill -9
    mid-write leaves); an older-style step folder without a marker is there too. Resume skips both, says so, and
    ends bit-identical to the uninterrupted run."""
    out = tmp_path / "resumed"
    recipe = _recipe(toy_recipe, out, **SETTINGS)
    original = ckpt._write_synced
    written = []

    def die_on_third(path, text):
        written.append(path)
        if len(written) == 3:
            raise KeyboardInterrupt  # killed while writing step 12
        original(path, text)

    monkeypatch.setattr(ckpt, "_write_synced", die_on_third)
    with pytest.raises(KeyboardInterrupt):
        nlp_transfer.train(recipe)
    monkeypatch.setattr(ckpt, "_write_synced", original)
    work = partial_dir(out)
    # what a kill -9 leaves (no cleanup runs): the half-written folder, and a step folder without a marker
    shutil.copytree(work / "checkpoints" / "step-00000008", work / "checkpoints" / ".step-00000012.incomplete")
    shutil.copytree(work / "checkpoints" / "step-00000008", work / "checkpoints" / "step-00000016")
    (work / "checkpoints" / "step-00000016" / ckpt.COMPLETE_FILE).unlink()
    (work / "checkpoints" / "step-00000016" / "model.safetensors").write_bytes(b"truncated")
    assert [c.name for c in ckpt.complete_checkpoints(work)] == ["step-00000004", "step-00000008"]

    caplog.set_level("INFO")
    resumed = nlp_transfer.train(recipe, resume=True)
    assert "Skipping checkpoint" in caplog.text and "step-00000016" in caplog.text
    assert "Resuming from checkpoint" in caplog.text and "step-00000008" in caplog.text
    assert resumed.metrics["train"]["steps"] == 18
    _assert_same_weights(_weights(resumed.output_dir), _weights(reference))
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r] == list(range(1, 19))  # the log restarts from the checkpoint's copy
    assert not work.exists()


def test_checkpoint_marker_lists_every_file(toy_recipe, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _on_loss_call(monkeypatch, 10, _crash)
    with pytest.raises(KeyboardInterrupt):
        nlp_transfer.train(_recipe(toy_recipe, out, **SETTINGS))
    checkpoint = ckpt.latest_checkpoint(partial_dir(out))
    marker = json.loads((checkpoint / ckpt.COMPLETE_FILE).read_text())
    assert marker["step"] == 8
    assert {"loop_state.json", "run.json", "model.safetensors"} <= set(marker["files"])
    assert ckpt.incomplete_reason(checkpoint) is None
    (checkpoint / "loop_state.json").write_text("{}")
    assert "loop_state.json is missing or has another size" in ckpt.incomplete_reason(checkpoint)
    # a failed run keeps only its checkpoints
    assert sorted(p.name for p in partial_dir(out).iterdir()) == ["checkpoints"]


# ---------------------------------------------------------------------- resume checks the recipe
@pytest.fixture
def interrupted(toy_recipe, tmp_path, monkeypatch) -> dict:
    recipe = _recipe(toy_recipe, tmp_path / "out", **SETTINGS)
    _on_loss_call(monkeypatch, 10, _crash)
    with pytest.raises(KeyboardInterrupt):
        nlp_transfer.train(recipe)
    monkeypatch.setattr(FullStrategy, "loss", _ORIGINAL_LOSS)
    return recipe


def test_resume_refuses_keys_that_change_the_trajectory(interrupted):
    with pytest.raises(RecipeError, match=r"(?s)3 problems.*train\.head_lr: .*train\.lr: the checkpoint was trained with 0\.003; now 0\.001"
                                          r".*train\.seed: the checkpoint was trained with 7; now 8.*put these keys back"):
        nlp_transfer.train(interrupted, {"train.lr": 1e-3, "train.seed": 8}, resume=True)
    assert ckpt.complete_checkpoints(partial_dir(Path(interrupted["output"]["dir"])))  # nothing was removed


def test_resume_accepts_keys_that_do_not(interrupted, reference):
    resumed = nlp_transfer.train(interrupted, {"train.log_every": 5, "train.patience": 3}, resume=True)
    _assert_same_weights(_weights(resumed.output_dir), _weights(reference))


def test_resume_with_another_process_count_is_refused(interrupted, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RecipeError, match=r"number of processes: the checkpoint was trained on 1; now 2"):
        nlp_transfer.train(interrupted, resume=True)


def test_resume_before_the_first_checkpoint_says_none_was_reached_yet(toy_recipe, tmp_path, monkeypatch, capsys):
    """Interrupted at step 2 of a run that checkpoints every 4 steps: --resume exits 2 saying that no checkpoint was
    reached yet and to run again without --resume (not to set train.checkpoint_every, which is set); that works."""
    out = tmp_path / "out"
    recipe_file = _recipe_file(toy_recipe, tmp_path, out, **SETTINGS)
    _on_loss_call(monkeypatch, 2, _crash)
    assert main(["-q", "train", recipe_file]) == 130  # as after Ctrl-C: one line, no traceback
    last_line = capsys.readouterr().err.splitlines()[-1]
    assert last_line == (f"training of '{out}' was interrupted by SIGINT before a checkpoint was written, so nothing was "
                         f"kept. To start again: nlp-transfer -q train {recipe_file}")
    monkeypatch.setattr(FullStrategy, "loss", _ORIGINAL_LOSS)
    assert main(["-q", "train", recipe_file, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint was reached yet. With train.checkpoint_every=4 the first one is written after step 4" in err
    assert "Run the same command again without --resume" in err and "set train.checkpoint_every" not in err
    assert not out.exists() and not partial_dir(out).exists()
    assert main(["-q", "train", recipe_file]) == 0  # as the message says
    assert (out / "model.safetensors").is_file()


# ---------------------------------------------------------------------- non-finite loss
def test_non_finite_loss_keeps_the_state_from_before_and_resume_with_a_lower_lr_works(toy_recipe, tmp_path, monkeypatch):
    """The loss at step 9 is computed with step 8's weights: those are not a good state, checkpoint 4 is."""
    out = tmp_path / "out"
    recipe = _recipe(toy_recipe, out, **SETTINGS)
    _on_loss_call(monkeypatch, 9, lambda loss: loss * float("inf"))
    with pytest.raises(TrainingError, match=r"non-finite training loss \(inf\) at step 9, epoch 2\. .*last good state is "
                                            r"checkpoint step-00000004 .*train\.lr=0\.0003\) and rerun with --resume"):
        nlp_transfer.train(recipe)
    work = partial_dir(out)
    assert [c.name for c in ckpt.complete_checkpoints(work)] == ["step-00000004"]
    assert ckpt.read_divergence(work)["step"] == 9
    monkeypatch.setattr(FullStrategy, "loss", _ORIGINAL_LOSS)
    with pytest.raises(RecipeError, match=r"train\.seed"):  # only the learning-rate keys may change
        nlp_transfer.train(recipe, {"train.lr": 3e-4, "train.seed": 1}, resume=True)
    resumed = nlp_transfer.train(recipe, {"train.lr": 3e-4}, resume=True)
    assert resumed.metrics["train"]["steps"] == 18
    lrs = [r["lr"] for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "lr" in r]
    assert lrs[4] < 3e-4 < lrs[3]  # steps 1-4 at 3e-3's schedule, step 5 on at 3e-4's


# ---------------------------------------------------------------------- one run per output folder
def test_a_second_run_on_a_held_output_fails_at_once_naming_the_holder(toy_recipe, tmp_path):
    out = tmp_path / "out"
    with RunLock(out):
        with pytest.raises(OutputDirError, match=rf"output\.dir: '{out}' is in use by another run: process {os.getpid()} "):
            nlp_transfer.train(_recipe(toy_recipe, out))
        assert not out.exists() and not partial_dir(out).exists()
        code = main(["train", _recipe_file(toy_recipe, tmp_path, out)])
        assert code == 2
    assert not lock_path(out).exists()


def test_a_stale_lock_of_a_dead_run_is_taken_over_with_a_warning(toy_recipe, tmp_path, caplog):
    out = tmp_path / "out"
    lock_path(out).write_text(json.dumps({"pid": 999999, "host": "h", "started": "then", "command": "x"}))
    caplog.set_level("WARNING")
    nlp_transfer.train(_recipe(toy_recipe, out, epochs=1))
    assert "Taking over the lock" in caplog.text and "999999" in caplog.text
    assert (out / "model.safetensors").is_file() and not lock_path(out).exists()


# ---------------------------------------------------------------------- nothing left behind
def _recipe_file(toy_recipe, tmp_path, out, **train) -> str:
    import yaml

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(_recipe(toy_recipe, out, **train)))
    return str(path)


@pytest.mark.parametrize("where", ["under-a-file", "unwritable"])
def test_unusable_output_dir_exits_2_with_a_clear_message(toy_recipe, tmp_path, capsys, monkeypatch, where):
    if where == "under-a-file":
        (tmp_path / "blocker").write_text("x")
        out, expected = tmp_path / "blocker" / "out", r"'.*blocker' is a file, not a folder"
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        out, expected = tmp_path / "ro" / "out", r"no permission to write in '.*ro'"
        real_open = os.open

        def refuse(path, *args, **kwargs):  # as a non-root user in a read-only folder (root writes anywhere)
            if str(path).startswith(str(tmp_path / "ro")):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, *args, **kwargs)

        monkeypatch.setattr("nlp_transfer.training.runlock.os.open", refuse)
    assert main(["train", _recipe_file(toy_recipe, tmp_path, out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    import re
    assert re.search(rf"output\.dir: cannot write .*{expected}", err), err


def test_a_finished_output_exits_2(toy_recipe, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["train", _recipe_file(toy_recipe, tmp_path, out)]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err


def test_a_failure_before_training_leaves_no_partial_folder(toy_recipe, tmp_path):
    files = {"train": write_csv(tmp_path / "bad.csv", [("a", "b")], header=("sentence", "label")),
             "validation": toy_recipe["data"]["files"]["validation"]}
    out = tmp_path / "out"
    with pytest.raises(nlp_transfer.DataError, match=r"text"):
        nlp_transfer.train({**_recipe(toy_recipe, out), "data": {"files": files}})
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []
