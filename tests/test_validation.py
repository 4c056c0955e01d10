"""Validation before any work: bad numbers, metric typos, max_length beyond the model, bad data cells and bytes,
``key=null``; each a clear error (exit 2 from the command line), and nothing written."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import toy_sentences, write_csv

import nlp_transfer
from nlp_transfer import DataError, ModelError, RecipeError
from nlp_transfer.cli import main
from nlp_transfer.recipe.load import load_recipe


def _recipe(toy_recipe, out: Path, **sections) -> dict:
    return {**toy_recipe, **sections, "output": {"dir": str(out)}}


def _nothing_written(tmp_path: Path) -> None:
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith((".out", "out"))]


@pytest.mark.parametrize("override, expected", [
    ("train.epochs=.inf", r"train\.epochs: got inf; expected a finite number"),
    ("train.lr=.nan", r"train\.lr: got nan; expected a finite number"),
    ("train.lr=-1e-3", r"train\.lr: got -0\.001; expected a positive number"),
    ("train.metrics=[acuracy]", r"metric 'acuracy' is unknown; did you mean 'accuracy'\?"),
    ("train.metrics=[bleurt_score]", r"metric 'bleurt_score' is not shipped .*offline"),
])
def test_bad_values_are_caught_by_validation(toy_recipe, override, expected):
    with pytest.raises(RecipeError, match=expected):
        load_recipe(toy_recipe, [override])


def test_key_null_and_key_empty_mean_not_set(toy_recipe):
    recipe = load_recipe(toy_recipe, ["train.batch_size=null", "model.max_length=", "train.scheduler=null"])
    assert (recipe.train.batch_size, recipe.model.max_length, recipe.train.scheduler) == (32, 128, "linear")
    assert load_recipe(toy_recipe, ["train.patience=3", "train.patience="]).train.patience is None


def test_distill_advice_works_as_typed(toy_recipe, tiny_teacher_dir):
    recipe = {**toy_recipe, "strategy": {"name": "distill", "teacher": tiny_teacher_dir, "student_num_layers": 1}}
    with pytest.raises(RecipeError, match=r"on the command line: model\.name=null") as raised:
        load_recipe(recipe)
    assert "model.name=\"\"" not in str(raised.value)
    assert load_recipe(recipe, ["model.name=null"]).strategy.student_num_layers == 1  # the advice, as a shell passes it


def test_max_length_beyond_the_model_is_an_error_before_any_work(toy_recipe, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RecipeError, match=r"model\.max_length: got 100000, but .* reads at most 64 tokens "
                                          r"\(max_position_embeddings=64 .*set model\.max_length=64 or less"):
        nlp_transfer.train(_recipe(toy_recipe, out), {"model.max_length": 100000})
    _nothing_written(tmp_path)


def test_default_max_length_is_clamped_to_the_model(toy_recipe, tmp_path, caplog):
    caplog.set_level("WARNING")
    recipe = _recipe(toy_recipe, tmp_path / "out", model={"name": toy_recipe["model"]["name"]},
                     train={**toy_recipe["train"], "epochs": 1})
    out = nlp_transfer.train(recipe)
    assert "the default 128 exceeds the 64 positions" in caplog.text
    assert yaml.safe_load((out.output_dir / "recipe.yaml").read_text())["model"]["max_length"] == 64


def _bad_cell_files(tmp_path: Path) -> dict:
    rows = toy_sentences(20, seed=1)
    rows[3] = ("", "positive")          # empty text (csv reads it as null)
    rows[7] = ("   ", "negative")       # whitespace only
    rows[11] = ("good movie", "")       # empty label
    return {"train": write_csv(tmp_path / "train.csv", rows),
            "validation": write_csv(tmp_path / "validation.csv", toy_sentences(8, seed=2))}


def test_empty_cells_are_listed_with_file_column_and_row(toy_recipe, tmp_path, capsys):
    files = _bad_cell_files(tmp_path)
    recipe = _recipe(toy_recipe, tmp_path / "out", data={"files": files})
    with pytest.raises(DataError) as raised:
        nlp_transfer.train(recipe)
    message = str(raised.value)
    assert message.startswith("3 empty or missing cells in the data; nothing was trained")
    assert f"{files['train']}, column 'text', row 4 (line 5): empty (no value)" in message
    assert f"{files['train']}, column 'text', row 8 (line 9): empty text ('   ')" in message
    assert f"{files['train']}, column 'label', row 12 (line 13): empty (no value)" in message
    _nothing_written(tmp_path)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["train", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_nan_cells_in_jsonl(toy_recipe, tmp_path):
    rows = [{"text": t, "label": label} for t, label in toy_sentences(10, seed=1)]
    rows[2]["text"] = None
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows).replace('"text": null', '"text": NaN'))
    recipe = _recipe(toy_recipe, tmp_path / "out", data={"files": {"train": str(train),
                                                                  "validation": toy_recipe["data"]["files"]["validation"]}})
    with pytest.raises(DataError, match=r"train\.jsonl, column 'text', row 3: empty \(no value\)"):
        nlp_transfer.train(recipe)


def test_undecodable_bytes_name_the_line(toy_recipe, tmp_path):
    train = Path(write_csv(tmp_path / "train.csv", toy_sentences(20, seed=1)))
    lines = train.read_bytes().split(b"\n")
    lines[6] = lines[6].replace(b"the", b"th\xe9", 1) if b"the" in lines[6] else b"caf\xe9," + lines[6].split(b",")[-1]
    train.write_bytes(b"\n".join(lines))
    recipe = _recipe(toy_recipe, tmp_path / "out", data={"files": {"train": str(train),
                                                                  "validation": toy_recipe["data"]["files"]["validation"]}})
    with pytest.raises(DataError, match=r"data\.files\.train: cannot read '.*train\.csv': byte 0xe9 at offset \d+ \(line 7\) "
                                        r"is not UTF-8; save the file as UTF-8"):
        nlp_transfer.train(recipe)
    _nothing_written(tmp_path)


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_evaluate_and_predict_on_a_folder_that_is_not_an_output(tmp_path, capsys, command):
    for folder in (tmp_path / "missing", tmp_path):
        args = [command, str(folder)] + (["some text"] if command == "predict" else [])
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and ("not an output folder" in err or "is not a folder" in err or "holds no" in err), err
    with pytest.raises(ModelError, match=r"not an output folder of `nlp-transfer train` \(no such folder\)"):
        nlp_transfer.evaluate(tmp_path / "missing")
