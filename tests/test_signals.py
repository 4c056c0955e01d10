"""Real signals against a real ``nlp-transfer train`` process: kill -9 at a random step and in the middle of a
checkpoint write, Ctrl-C (SIGINT) and SIGTERM, each followed by ``--resume``; and predict while a run replaces the
output it reads.

Each run is a child process (``python -m nlp_transfer train``, a tiny random-init model, ``OMP_NUM_THREADS=1``)
under a deadline that kills it and everything it started. The uninterrupted run every case compares with runs once.
"""

import hashlib
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from conftest import _kill_tree, toy_sentences, write_csv

from nlp_transfer.outputs.export import partial_dir
from nlp_transfer.training import checkpoints as ckpt
from nlp_transfer.training.runlock import lock_path

STEPS = 80  # 20 epochs of 4 batches: a few seconds of training, a checkpoint every 2 steps
TRAIN = dict(epochs=20, batch_size=8, checkpoint_every=2, eval_every=1000, log_every=1, lr=3e-3, seed=7,
             warmup_ratio=0.0)
DEADLINE = 180  # seconds a child may run (a loaded 2-core machine); then it and its children are killed
KILL_SEED = 20240607


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("signals")


@pytest.fixture(scope="module")
def base_recipe(tiny_model_dir, folder) -> dict:
    files = {"train": write_csv(folder / "train.csv", toy_sentences(32, seed=1)),
             "validation": write_csv(folder / "validation.csv", toy_sentences(16, seed=2))}
    return {"model": {"name": tiny_model_dir, "max_length": 32},
            "task": {"type": "text-classification", "text": "text", "label": "label"},
            "data": {"files": files}, "strategy": {"name": "full"}, "train": TRAIN}


class Case:
    """One case's recipe file and output folder (``<case>/out``), its work folder, and how to run it."""

    def __init__(self, base_recipe: dict, root: Path, **train):
        root.mkdir()
        self.out, self.work = root / "out", partial_dir(root / "out")
        self.recipe = root / "recipe.yaml"
        recipe = {**base_recipe, "train": {**base_recipe["train"], **train}, "output": {"dir": str(self.out)}}
        self.recipe.write_text(yaml.safe_dump(recipe))
        self.logs = root

    @contextmanager
    def started(self, *args: str):
        """``nlp-transfer train <recipe> *args`` as a running child; killed (with everything it started) if still
        running at the end of the block."""
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        name = f"run{len(list(self.logs.glob('run*.err')))}"
        with open(self.logs / f"{name}.out", "w") as out, open(self.logs / f"{name}.err", "w") as err:
            run = subprocess.Popen([sys.executable, "-m", "nlp_transfer", "train", str(self.recipe), *args], stdout=out,
                                   stderr=err, env=env, cwd=self.logs)
            run.started, run.stderr_file = time.monotonic(), self.logs / f"{name}.err"
            try:
                yield run
            finally:
                if run.poll() is None:
                    _kill_tree(run.pid)
                    run.wait()

    def finished(self, *args: str) -> tuple[int, str]:
        """Run ``nlp-transfer train <recipe> *args`` to its end: the exit status and standard error."""
        with self.started(*args) as run:
            _wait(run)
        return run.returncode, run.stderr_file.read_text()

    def checkpoints(self) -> list[str]:
        return [c.name for c in ckpt.complete_checkpoints(self.work)]


def _wait(run, until=None, what: str = "the run to finish") -> None:
    """Wait for ``until()`` (or for the child's end), checking often; fail at the deadline (the child is killed)."""
    while until is None or not until():
        if run.poll() is not None:
            if until is None:
                return
            pytest.fail(f"the run ended (status {run.returncode}) before {what}:\n{run.stderr_file.read_text()[-3000:]}")
        _within_deadline(run, what)
        time.sleep(0.002)


def _within_deadline(run, what: str = "the run to finish") -> None:
    if time.monotonic() - run.started > DEADLINE:
        pytest.fail(f"waited {DEADLINE} s for {what}; the run and every process it started are killed")


def _logged_steps(work: Path) -> int:
    log = work / ckpt.LOG_FILE
    return log.read_text().count("\n") if log.is_file() else 0


def _stop_in_a_checkpoint_write(run, work: Path) -> Path:
    """Freeze the child (SIGSTOP) while it writes a checkpoint; return the half-written folder."""
    while True:
        found = []
        _wait(run, lambda: found.extend((work / ckpt.CHECKPOINTS).glob(".step-*.incomplete")) or found,
              "a checkpoint write")
        os.kill(run.pid, signal.SIGSTOP)
        if found[0].is_dir():  # still unfinished now that the child is frozen
            return found[0]
        os.kill(run.pid, signal.SIGCONT)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _result(out: Path) -> dict:
    """What must match the uninterrupted run: the weights, byte for byte, and the validation scores."""
    return {"weights": _sha256(out / "model.safetensors"), "validation": json.loads((out / "metrics.json").read_text())["validation"]}


@pytest.fixture(scope="module")
def reference(base_recipe, folder) -> dict:
    """The uninterrupted run."""
    case = Case(base_recipe, folder / "reference")
    status, stderr = case.finished()
    assert status == 0, stderr[-3000:]
    return {**_result(case.out), "out": case.out}


def _interrupt_line(stderr: str, name: str) -> str:
    lines = [line for line in stderr.splitlines() if f"interrupted by {name}" in line]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def _resume_command(line: str, case: Case) -> list[str]:
    """The arguments after ``nlp-transfer`` of the command the interrupt line gives."""
    command = shlex.split(line.split("To continue from it: ", 1)[1])
    assert command[:3] == ["nlp-transfer", "train", str(case.recipe)] and "--resume" in command, line
    return command[3:]


def _assert_only_complete_checkpoints_kept(case: Case, step: int) -> None:
    """The work folder holds complete checkpoints and nothing else, the newest at ``step``; the lock is released."""
    assert sorted(p.name for p in case.work.iterdir()) == [ckpt.CHECKPOINTS]
    names = sorted(p.name for p in (case.work / ckpt.CHECKPOINTS).iterdir())
    assert names and names == case.checkpoints(), names  # no half-written checkpoint
    assert names[-1] == f"step-{step:08d}"
    assert not lock_path(case.out).exists()


# ---------------------------------------------------------------------- kill -9, then --resume
def test_kill_9_at_a_random_step_then_resume_ends_as_the_uninterrupted_run(base_recipe, folder, reference):
    step = random.Random(KILL_SEED).randint(6, STEPS - 10)
    case = Case(base_recipe, folder / "kill-at-step")
    with case.started() as run:
        _wait(run, lambda: _logged_steps(case.work) >= step, f"step {step}")
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert run.returncode == -signal.SIGKILL
    assert not case.out.exists() and case.checkpoints(), f"killed after step {step}"
    status, stderr = case.finished("--resume")
    assert status == 0, stderr[-3000:]
    assert "Taking over the lock" in stderr and "Resuming from checkpoint" in stderr
    assert _result(case.out) == {k: reference[k] for k in ("weights", "validation")}, f"killed after step {step}"


def test_kill_9_in_a_checkpoint_write_then_resume_ends_as_the_uninterrupted_run(base_recipe, folder, reference):
    case = Case(base_recipe, folder / "kill-in-write")
    with case.started() as run:
        _wait(run, lambda: len(case.checkpoints()) >= 3, "the third checkpoint")
        half_written = _stop_in_a_checkpoint_write(run, case.work)
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert half_written.is_dir() and ckpt.incomplete_reason(half_written) is not None  # the kill landed mid-write
    status, stderr = case.finished("--resume")
    assert status == 0, stderr[-3000:]
    assert f"Skipping checkpoint {half_written}" in stderr
    assert _result(case.out) == {k: reference[k] for k in ("weights", "validation")}


# ---------------------------------------------------------------------- Ctrl-C and SIGTERM: one line, checkpoints kept
def test_ctrl_c_exits_130_with_one_line_keeps_the_checkpoint_and_resumes_as_the_uninterrupted_run(base_recipe, folder,
                                                                                                 reference):
    case = Case(base_recipe, folder / "sigint")
    with case.started() as run:
        _wait(run, lambda: _logged_steps(case.work) >= STEPS // 3, f"step {STEPS // 3}")
        run.send_signal(signal.SIGINT)
        _wait(run)
    stderr = run.stderr_file.read_text()
    assert run.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "The run failed" not in stderr
    line = _interrupt_line(stderr, "SIGINT")
    step = int(line.split("last complete checkpoint is kept: step ")[1].split(",")[0])
    assert f"training of '{case.out}' was interrupted by SIGINT" in line and step >= STEPS // 3 - 2
    _assert_only_complete_checkpoints_kept(case, step)
    assert not case.out.exists()  # nothing in output.dir
    status, stderr = case.finished(*_resume_command(line, case))
    assert status == 0, stderr[-3000:]
    assert _result(case.out) == {k: reference[k] for k in ("weights", "validation")}


def test_sigterm_in_a_checkpoint_write_of_an_overwrite_exits_143_and_keeps_the_old_output(base_recipe, folder,
                                                                                          reference):
    """SIGTERM lands while a run that replaces a finished output writes a checkpoint: the half-written checkpoint
    goes, the complete ones stay, the old output is untouched; the command the line gives (--overwrite --resume)
    ends as the uninterrupted run."""
    case = Case(base_recipe, folder / "sigterm")
    shutil.copytree(reference["out"], case.out)
    old = {p.name: _sha256(p) for p in case.out.iterdir() if p.is_file()}
    with case.started("--overwrite") as run:
        _wait(run, lambda: len(case.checkpoints()) >= 2, "the second checkpoint")
        half_written = _stop_in_a_checkpoint_write(run, case.work)
        run.send_signal(signal.SIGTERM)
        os.kill(run.pid, signal.SIGCONT)
        _wait(run)
    stderr = run.stderr_file.read_text()
    assert run.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    line = _interrupt_line(stderr, "SIGTERM")
    assert not half_written.exists()
    kept = int(half_written.name.removeprefix(".step-").removesuffix(".incomplete")) - TRAIN["checkpoint_every"]
    assert f"last complete checkpoint is kept: step {kept}," in line
    _assert_only_complete_checkpoints_kept(case, kept)
    assert {p.name: _sha256(p) for p in case.out.iterdir() if p.is_file()} == old
    command = _resume_command(line, case)
    assert "--overwrite" in command
    status, stderr = case.finished(*command)
    assert status == 0, stderr[-3000:]
    assert _result(case.out) == {k: reference[k] for k in ("weights", "validation")}


# ---------------------------------------------------------------------- reading an output while a run replaces it
def test_predict_while_a_run_overwrites_the_output_gets_the_old_or_the_new_output(base_recipe, folder, reference):
    """``predict`` on an output folder while a run with --overwrite writes it: the previous complete output until
    the new one is published whole (or, in the instant between, a clear message), never a half-written one."""
    import nlp_transfer

    texts = [text for text, _ in toy_sentences(16, seed=3)]
    case = Case(base_recipe, folder / "overwrite", seed=8)
    shutil.copytree(reference["out"], case.out)
    old = nlp_transfer.predict(case.out, texts)
    seen, messages = [], []
    with case.started("--overwrite") as run:
        while run.poll() is None:
            try:
                seen.append(nlp_transfer.predict(case.out, texts))
            except nlp_transfer.ModelError as exc:
                messages.append(str(exc))
            time.sleep(0.1)  # (leave the run some of the CPU)
            _within_deadline(run)
    assert run.returncode == 0, run.stderr_file.read_text()[-3000:]
    new = nlp_transfer.predict(case.out, texts)
    assert new != old  # another seed: the two outputs tell apart
    assert seen.count(old) >= 2 and all(result in (old, new) for result in seen)
    assert all("is not a folder; give the output.dir of a finished training run" in m for m in messages), messages
