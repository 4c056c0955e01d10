"""The ``nlp-transfer`` command line: train, evaluate, predict, and how it reports bad input."""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import toy_sentences, write_csv

from nlp_transfer.cli import main

TEXTS = ["the food was good", "it was awful and broken", "a lovely happy movie"]
EXPECTED = ["positive", "negative", "positive"]


def _write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def _json_out(capsys) -> dict:
    """The JSON document a command prints (train also prints a one-line "Saved ..." note before it)."""
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def trained_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """One model trained through the CLI, shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("cli")
    recipe = {
        "model": {"name": tiny_model_dir, "max_length": 32},
        "data": {"files": {"train": write_csv(folder / "train.csv", toy_sentences(96, seed=1)),
                           "validation": write_csv(folder / "validation.csv", toy_sentences(32, seed=2))}},
        "train": {"epochs": 10, "batch_size": 16, "lr": 3e-3, "seed": 7, "warmup_ratio": 0.0},
        "output": {"dir": str(folder / "out")},
    }
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["-q", "train", str(_write_recipe(folder / "recipe.yaml", recipe))]) == 0
    return folder / "out"


def test_train_prints_a_summary_and_applies_overrides(toy_recipe, tmp_path, capsys):
    recipe = _write_recipe(tmp_path / "recipe.yaml", {**toy_recipe, "train": {**toy_recipe["train"], "epochs": 1}})
    out = tmp_path / "cli-out"
    assert main(["-q", "train", str(recipe), "train.epochs=3", f"output.dir={out}"]) == 0
    printed = _json_out(capsys)
    assert printed["output_dir"] == str(out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert printed["validation"] == metrics["validation"] and set(printed["validation"]) == {"loss", "accuracy", "f1"}
    assert metrics["train"]["steps"] == 18  # 3 epochs of 6 batches: the override won over the file's 1 epoch
    assert yaml.safe_load((out / "recipe.yaml").read_text())["train"]["epochs"] == 3
    # a second run into the same folder is refused (exit 2: an output.dir problem is bad input)...
    assert main(["-q", "train", str(recipe), "train.epochs=1", f"output.dir={out}"]) == 2
    assert "already exists and is not empty; pass --overwrite" in capsys.readouterr().err
    # ...unless asked to overwrite
    assert main(["-q", "train", str(recipe), "train.epochs=1", f"output.dir={out}", "--overwrite"]) == 0
    assert yaml.safe_load((out / "recipe.yaml").read_text())["train"]["epochs"] == 1


def test_evaluate_and_predict(trained_dir, capsys):
    assert main(["evaluate", str(trained_dir)]) == 0
    scores = _json_out(capsys)["validation"]
    saved = json.loads((trained_dir / "metrics.json").read_text())["validation"]
    assert scores == pytest.approx(saved, abs=1e-5)

    assert main(["evaluate", str(trained_dir), "--split", "train"]) == 0
    assert set(_json_out(capsys)["train"]) == {"loss", "accuracy", "f1"}

    assert main(["predict", str(trained_dir), *TEXTS]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in lines] == TEXTS
    assert [r["label"] for r in lines] == EXPECTED
    assert all(0.5 <= r["score"] <= 1.0 for r in lines)


def test_evaluate_a_split_the_data_lacks(trained_dir, capsys):
    assert main(["evaluate", str(trained_dir), "--split", "test"]) == 2
    assert "--split: the recipe's data has no 'test' split; it has: train, validation" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", ["txt", "csv", "tsv"])
def test_predict_from_a_file_to_jsonl(trained_dir, tmp_path, capsys, suffix):
    file = tmp_path / f"texts.{suffix}"
    if suffix == "txt":
        file.write_text("\n".join(TEXTS) + "\n\n", encoding="utf-8")
    elif suffix == "csv":
        file.write_text("id,review\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(TEXTS)), encoding="utf-8")
    else:  # tsv is read without quoting: a quote is just a character
        file.write_text("review\tid\n" + "".join(f"{t}\t{i}\n" for i, t in enumerate(TEXTS)), encoding="utf-8")
    out = tmp_path / "predictions.jsonl"
    args = ["predict", str(trained_dir), "--file", str(file), "--out", str(out)]
    if suffix == "csv":
        args += ["--column", "review"]
    assert main(args) == 0
    assert f"wrote 3 predictions to {out}" in capsys.readouterr().out
    rows = _jsonl(out)
    assert [r["text"] for r in rows] == TEXTS
    assert [r["label"] for r in rows] == EXPECTED


def test_predict_tsv_keeps_quotes(trained_dir, tmp_path, capsys):
    file = tmp_path / "quoted.tsv"
    file.write_text('text\n"good\nsay "awful" twice\n', encoding="utf-8")
    out = tmp_path / "p.jsonl"
    assert main(["predict", str(trained_dir), "--file", str(file), "--out", str(out)]) == 0
    assert [r["text"] for r in _jsonl(out)] == ['"good', 'say "awful" twice']


def test_predict_file_with_a_missing_column(trained_dir, tmp_path, capsys):
    file = tmp_path / "texts.csv"
    file.write_text("id,review\n1,good\n", encoding="utf-8")
    assert main(["predict", str(trained_dir), "--file", str(file), "--column", "text"]) == 2
    assert "missing column(s) ['text']; columns present: ['id', 'review']" in capsys.readouterr().err


def test_predict_with_nothing_to_predict(trained_dir, capsys):
    assert main(["predict", str(trained_dir)]) == 2
    assert "give texts as arguments or --file" in capsys.readouterr().err


def test_bad_recipe_reports_every_problem_and_writes_nothing(toy_recipe, tmp_path, capsys):
    out = tmp_path / "never"
    bad = {**toy_recipe, "train": {"epochs": "abc", "mixed_precision": "fp8", "learning_rate": 1e-3},
           "output": {"dir": str(out)}}
    recipe = _write_recipe(tmp_path / "bad.yaml", bad)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["train", str(recipe)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "bad.yaml: 3 problems in the recipe" in captured.err
    for key in ("train.epochs: got 'abc'", "train.mixed_precision: got 'fp8'", "train.learning_rate: unknown key"):
        assert key in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no partial folder


def test_bad_override_on_the_command_line(toy_recipe, tmp_path, capsys):
    recipe = _write_recipe(tmp_path / "r.yaml", {**toy_recipe, "output": {"dir": str(tmp_path / "never")}})
    assert main(["train", str(recipe), "train.lr"]) == 2
    assert "override 'train.lr': expected key=value" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_missing_recipe_file(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope.yaml")]) == 2
    assert "recipe file not found" in capsys.readouterr().err


def test_help_via_python_dash_m():
    result = subprocess.run([sys.executable, "-m", "nlp_transfer", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: nlp-transfer")
    for command in ("train", "evaluate", "predict"):
        assert command in result.stdout
