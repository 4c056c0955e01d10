"""Property-based tests (hypothesis): random recipe trees, override strings and small malformed data files give
either a result or one of the project's own errors, never a raw exception; a kill at a random step (or in the
middle of writing a checkpoint) then ``--resume`` ends bit-identical to an uninterrupted run.

Bounded: a few hundred examples in all, no deadline surprises (each test sets its own), seconds per test.
"""

import csv
import io
import json
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

import nlp_transfer
from nlp_transfer import NlpTransferError
from nlp_transfer import checkpoints as ckpt
from nlp_transfer.config import DataConfig, TaskConfig
from nlp_transfer.data import encode_labels, load_splits
from nlp_transfer.recipe import load_recipe, parse_overrides
from nlp_transfer.strategies.full import FullStrategy

KEYS = ["model", "task", "data", "strategy", "train", "output", "card", "name", "max_length", "type", "text", "label",
        "labels", "files", "limit", "fraction", "epochs", "lr", "batch_size", "metrics", "dir", "r", "teacher",
        "pooling", "scheduler", "patience", "push_to_hub", "repo_id", "train.lr", "", "x"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12), st.sampled_from(KEYS))
TREES = st.recursive(SCALARS, lambda children: st.one_of(st.lists(children, max_size=4),
                                                         st.dictionaries(st.sampled_from(KEYS), children, max_size=5)),
                     max_leaves=20)
FAST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(tree=st.dictionaries(st.sampled_from(KEYS[:7] + ["x"]), TREES, max_size=7))
def test_random_recipe_trees_give_a_recipe_or_a_recipe_error(tree):
    try:
        load_recipe(tree)
    except NlpTransferError:
        pass


@FAST
@given(items=st.lists(st.one_of(st.text(max_size=30),
                                st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS + ["train.epochs", "model.name",
                                                                                        "strategy.name", "task.text"]),
                                          st.text(max_size=15))), max_size=5))
def test_random_override_strings_give_a_recipe_or_a_recipe_error(items, tmp_path_factory):
    base = {"model": {"name": "m"}, "data": {"files": {}}, "output": {"dir": "out"}}
    try:
        parse_overrides(items)
        load_recipe(base, items)
    except NlpTransferError:
        pass


CELLS = st.one_of(st.text(max_size=8), st.sampled_from(["", "NaN", "nan", "null", "None", ",", '"', "\t", "0", "1.5"]))


def _csv_bytes(rows: list[list[str]], header: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows([header, *rows])
    return out.getvalue().encode("utf-8", errors="surrogatepass")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.lists(CELLS, min_size=0, max_size=3), max_size=6),
       header=st.lists(st.sampled_from(["text", "label", "x", ""]), min_size=0, max_size=3),
       garbage=st.one_of(st.just(b""), st.binary(max_size=6)), suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json"]),
       task_type=st.sampled_from(["text-classification", "regression", "multi-label-classification"]))
def test_small_malformed_data_files_give_data_or_a_data_error(rows, header, garbage, suffix, task_type):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"train{suffix}"
        try:
            content = _csv_bytes(rows, header)
        except UnicodeEncodeError:
            content = b""
        path.write_bytes(content + garbage)
        data, task = DataConfig(files={"train": str(path)}), TaskConfig(type=task_type)
        try:
            splits = load_splits(data, seed=0, task=task)
            encode_labels(splits, task, data)
        except NlpTransferError:
            pass



# ---------------------------------------------------------------------- kill at a random step, then resume
_ORIGINAL_LOSS = FullStrategy.loss
_ORIGINAL_WRITE = ckpt._write_synced
_REFERENCE: dict = {}
SETTINGS = dict(epochs=2, checkpoint_every=3, group_by_length=True, eval_every=1000, batch_size=16)  # 12 steps


def _train_recipe(toy_recipe, out: Path) -> dict:
    return {**toy_recipe, "train": {**toy_recipe["train"], **SETTINGS}, "output": {"dir": str(out)}}


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kill_at=st.integers(1, 12), in_checkpoint=st.booleans())
def test_a_kill_at_any_step_then_resume_is_bit_identical(toy_recipe, monkeypatch, kill_at, in_checkpoint):
    with tempfile.TemporaryDirectory() as folder:
        if "weights" not in _REFERENCE:
            out = nlp_transfer.train(_train_recipe(toy_recipe, Path(folder) / "reference")).output_dir
            _REFERENCE["weights"] = load_file(str(out / "model.safetensors"))
        recipe = _train_recipe(toy_recipe, Path(folder) / "run")
        calls = []
        if in_checkpoint:  # die while writing the checkpoint of the first multiple of 3 at or after kill_at
            def die(path, text):
                if json.loads(text)["step"] >= kill_at:
                    raise KeyboardInterrupt
                _ORIGINAL_WRITE(path, text)

            monkeypatch.setattr(ckpt, "_write_synced", die)
        else:
            def loss(self, model, batch, ctx):
                calls.append(1)
                if len(calls) == kill_at:
                    raise KeyboardInterrupt
                return _ORIGINAL_LOSS(self, model, batch, ctx)

            monkeypatch.setattr(FullStrategy, "loss", loss)
        with pytest.raises(KeyboardInterrupt):
            nlp_transfer.train(recipe)
        monkeypatch.setattr(FullStrategy, "loss", _ORIGINAL_LOSS)  # (not undo(): that drops conftest's cache isolation)
        monkeypatch.setattr(ckpt, "_write_synced", _ORIGINAL_WRITE)
        try:
            resumed = nlp_transfer.train(recipe, resume=True).output_dir
        except nlp_transfer.TrainingError as exc:  # killed before the first checkpoint: nothing to resume
            assert "no checkpoint" in str(exc) and kill_at <= 3
            return
        weights = load_file(str(resumed / "model.safetensors"))
        assert weights.keys() == _REFERENCE["weights"].keys()
        assert all(torch.equal(weights[n], _REFERENCE["weights"][n]) for n in weights)
