"""Property-based tests (hypothesis): random recipe trees, override strings and small malformed data files give
either a result or one of the project's own errors, never a raw exception; generated valid recipes, overrides and
data files load, with the values and rows given; a kill at a random step (or in the
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
from nlp_transfer.training import checkpoints as ckpt
from nlp_transfer.recipe.schema import DataConfig, TaskConfig
from nlp_transfer.tasks.splits import encode_labels, load_task_splits
from nlp_transfer.recipe.load import load_recipe
from nlp_transfer.recipe.read import parse_overrides
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
            splits = load_task_splits(data, seed=0, task=task)
            encode_labels(splits, task, data)
        except NlpTransferError:
            pass



# ---------------------------------------------------------------------- valid input is accepted, as given
# The tests above would pass if every input were refused; these generate only valid recipes, overrides and data and
# require that they load, with the values given.
POSITIVE_FLOATS = st.floats(1e-6, 1e-1, allow_nan=False, allow_infinity=False)
VALID_TRAIN = st.fixed_dictionaries({}, optional={
    "epochs": st.one_of(st.integers(1, 20), st.floats(0.25, 20.0)), "batch_size": st.integers(1, 256),
    "lr": POSITIVE_FLOATS, "head_lr": POSITIVE_FLOATS, "weight_decay": st.floats(0.0, 0.3),
    "warmup_ratio": st.floats(0.0, 0.5), "scheduler": st.sampled_from(["linear", "cosine", "constant", "slanted_triangular"]),
    "grad_accum_steps": st.integers(1, 8), "seed": st.integers(0, 2**31 - 1), "mixed_precision": st.sampled_from(["auto", "no"]),
    "log_every": st.integers(1, 100), "eval_every": st.integers(0, 100), "checkpoint_every": st.integers(0, 100),
    "group_by_length": st.booleans()})
VALID_STRATEGIES = st.one_of(
    st.fixed_dictionaries({"name": st.just("full")}, optional={"layer_decay": st.floats(0.5, 1.0)}),
    st.fixed_dictionaries({"name": st.just("frozen")}, optional={"cache_features": st.booleans()}),
    st.fixed_dictionaries({"name": st.just("lora")}, optional={"r": st.integers(1, 64), "alpha": st.floats(1.0, 64.0),
                                                               "dropout": st.floats(0.0, 0.5), "merge": st.booleans()}),
    st.fixed_dictionaries({"name": st.just("gradual")}, optional={"unfreeze_every": st.integers(1, 5)}),
    st.fixed_dictionaries({"name": st.just("partial")}, optional={"train_top_layers": st.integers(1, 4)}))
VALID_TASKS = st.sampled_from(["text-classification", "regression", "multi-label-classification"])


@pytest.fixture(scope="module")
def train_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("valid") / "train.csv"
    path.write_text("text,label\nfine,a\nbad,b\n")
    return str(path)


def _assert_holds(recipe, given_sections: dict) -> None:
    """Every value given in ``given_sections`` is the typed recipe's value at the same key path."""
    for section, values in given_sections.items():
        for key, value in values.items():
            if value is None:  # null: a default the recipe resolves (model.pooling follows the model folder)
                continue
            got = getattr(getattr(recipe, section), key)
            assert got == (pytest.approx(value) if isinstance(value, float) else value), f"{section}.{key}"


@settings(max_examples=80, deadline=2000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(train=VALID_TRAIN, strategy=VALID_STRATEGIES, task_type=VALID_TASKS, max_length=st.integers(8, 512),
       pooling=st.sampled_from([None, "cls", "mean"]), limit=st.none() | st.integers(1, 10**6),
       fraction=st.none() | st.floats(0.01, 1.0))
def test_valid_recipes_load_with_the_values_given(train_file, train, strategy, task_type, max_length, pooling, limit, fraction):
    data = {"files": {"train": train_file}, **({"limit": {"train": limit}} if limit else {}),
            **({"fraction": fraction} if fraction else {})}
    model = {"name": "some/model", "max_length": max_length, "pooling": pooling}
    raw = {"model": model, "task": {"type": task_type}, "data": data, "strategy": strategy, "train": train,
           "output": {"dir": "out"}}
    recipe = load_recipe(raw)
    _assert_holds(recipe, {"model": model, "train": train, "strategy": strategy, "task": {"type": task_type}})
    assert recipe.data.limit == data.get("limit", {}) and recipe.data.fraction == data.get("fraction")
    assert load_recipe(recipe.to_dict()) == recipe  # what an output's recipe.yaml holds loads back to the same recipe


def _override_value(value) -> str:
    return repr(value) if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


@settings(max_examples=80, deadline=2000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(train=VALID_TRAIN, strategy=VALID_STRATEGIES, max_length=st.integers(8, 512))
def test_valid_override_strings_set_the_values_given(train_file, train, strategy, max_length):
    base = {"model": {"name": "some/model"}, "data": {"files": {"train": train_file}}, "output": {"dir": "out"}}
    items = [f"train.{k}={_override_value(v)}" for k, v in train.items()]
    items += [f"strategy.{k}={_override_value(v)}" for k, v in strategy.items()] + [f"model.max_length={max_length}"]
    recipe = load_recipe(base, items)
    _assert_holds(recipe, {"train": train, "strategy": strategy, "model": {"max_length": max_length}})
    assert recipe == load_recipe({**base, "train": train, "strategy": strategy, "model": {**base["model"], "max_length": max_length}})


# A text cell "nan", "null", "NA" or "None" is that text in every format (csv/tsv read text columns as written).
TEXTS = st.one_of(st.from_regex(r"[a-z][a-z ,']{0,12}[a-z]", fullmatch=True),
                  st.sampled_from(["nan", "null", "NA", "None", "N/A", "NaN", "n/a", "NULL"]))


def _labelled_rows(task_type: str):
    if task_type == "text-classification":
        labels = st.sampled_from(["positive", "negative", "neutral"])
    elif task_type == "regression":
        labels = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
    else:
        labels = st.lists(st.sampled_from(["sports", "politics", "tech"]), unique=True, max_size=3)
    return st.lists(st.tuples(TEXTS, labels), min_size=2, max_size=12)


def _write_rows(path: Path, rows: list, task_type: str) -> None:
    cell = (lambda y: "|".join(y)) if task_type == "multi-label-classification" else (
        repr if task_type == "regression" else str)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps({"text": t, "label": cell(y) if task_type != "regression" else y}) + "\n"
                                for t, y in rows))
    elif path.suffix == ".tsv":  # read with csv.QUOTE_NONE: no quoting, a tab and a newline are the only separators
        path.write_text("text\tlabel\n" + "".join(f"{t}\t{cell(y)}\n" for t, y in rows))
    else:
        path.write_bytes(_csv_bytes([[t, cell(y)] for t, y in rows], ["text", "label"]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), task_type=VALID_TASKS, suffix=st.sampled_from([".csv", ".tsv", ".jsonl"]))
def test_valid_data_files_load_with_every_row_and_label(data, task_type, suffix):
    from hypothesis import assume

    rows = data.draw(_labelled_rows(task_type))
    if task_type == "text-classification":
        assume(len({y for _, y in rows}) >= 2)
    if task_type == "multi-label-classification":
        assume(any(y for _, y in rows))
    with tempfile.TemporaryDirectory() as folder:
        train, validation = Path(folder) / f"train{suffix}", Path(folder) / f"validation{suffix}"
        _write_rows(train, rows, task_type)
        # (a multi-label validation split whose rows all have no label is taken for a Hub split with hidden labels)
        _write_rows(validation, [next((t, y) for t, y in rows if y or y == 0)], task_type)
        config, task = DataConfig(files={"train": str(train), "validation": str(validation)}), TaskConfig(type=task_type)
        splits, spec = encode_labels(load_task_splits(config, seed=0, task=task), task, config)
        assert len(splits["train"]) == len(rows) and len(splits["validation"]) == 1
        texts, labels = splits["train"]["text"], splits["train"]["labels"]
        if task_type == "text-classification":
            assert spec.label_names == sorted({y for _, y in rows})
            got = [(t, spec.id2label[i]) for t, i in zip(texts, labels)]
        elif task_type == "regression":
            got = [(t, pytest.approx(v)) for t, v in zip(texts, labels)]
        else:
            assert spec.label_names == sorted({name for _, y in rows for name in y})
            got = [(t, sorted(spec.id2label[i] for i, hot in enumerate(v) if hot)) for t, v in zip(texts, labels)]
            rows = [(t, sorted(y)) for t, y in rows]
        assert got == rows  # every row, in file order, with its own label

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
