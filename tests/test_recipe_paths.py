"""One rule for every path in a recipe: a path resolves against the place it was written (docs/recipes.md, "Paths").

A path written in a recipe file resolves against the file's folder, an override's against the working directory,
absolute paths and ``~`` stay as they are; ``model.name`` and ``strategy.teacher`` are a folder when one is there (or
when written as a path), else a Hub id.
"""

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import toy_sentences, write_csv

from nlp_transfer import ModelError
from nlp_transfer.cli import main
from nlp_transfer.compare.plan import Cell, cell_recipe_dict
from nlp_transfer.models.files import resolve_model_path, written_as_path
from nlp_transfer.recipe import bundled
from nlp_transfer.recipe.load import load_any_recipe, load_recipe

REPO = Path(__file__).resolve().parents[1]
HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture
def project(tmp_path, tiny_model_dir, monkeypatch) -> Path:
    """project/{data,models/tiny,recipes/exp/}, and the working directory elsewhere (tmp_path/elsewhere)."""
    root = tmp_path / "project"
    (root / "data").mkdir(parents=True)
    (root / "recipes" / "exp").mkdir(parents=True)
    for name, n, seed in (("train", 96, 0), ("validation", 32, 1), ("target", 32, 2), ("target_val", 16, 3)):
        write_csv(root / "data" / f"{name}.csv", toy_sentences(n, seed))
    shutil.copytree(tiny_model_dir, root / "models" / "tiny")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return root


def _recipe(**sections) -> dict:
    """A small recipe whose paths are relative to project/recipes/exp/."""
    recipe = {"model": {"name": "../../models/tiny", "max_length": 32},
              "task": {"type": "text-classification", "text": "text", "label": "label"},
              "data": {"files": {"train": "../../data/train.csv", "validation": "../../data/validation.csv"}},
              "strategy": {"name": "full"},
              "train": {"epochs": 1, "batch_size": 16, "lr": 3e-3, "seed": 7, "warmup_ratio": 0.0},
              "output": {"dir": "../../runs/exp"}}
    return {**recipe, **sections}


def _write(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def test_every_path_written_in_a_recipe_resolves_against_its_folder(project):
    recipe = load_recipe(_write(project / "recipes" / "exp" / "recipe.yaml", _recipe()))
    assert recipe.data.files == {"train": str(project / "data" / "train.csv"),
                                 "validation": str(project / "data" / "validation.csv")}
    assert recipe.model.name == str(project / "models" / "tiny")
    assert recipe.output.dir == str(project / "runs" / "exp")  # not under the working directory


def test_a_model_folder_named_like_a_hub_id_is_the_folder_beside_the_recipe(project):
    """``models/tiny`` has one ``/`` like a Hub id; beside the recipe there is such a folder, so it is that folder."""
    recipe = load_recipe(_write(project / "recipe.yaml", {**_recipe(), "model": {"name": "models/tiny", "max_length": 32},
                                                          "data": {"files": {"train": "data/train.csv"}}}))
    assert recipe.model.name == str(project / "models" / "tiny")


def test_overrides_resolve_against_the_working_directory(project):
    cwd = Path.cwd()
    write_csv(cwd / "mine.csv", toy_sentences(32, 4))
    shutil.copytree(project / "models" / "tiny", cwd / "my-model")
    path = _write(project / "recipes" / "exp" / "recipe.yaml", _recipe())
    recipe = load_recipe(path, ["output.dir=x", "data.files.validation=mine.csv", "model.name=./my-model"])
    assert recipe.output.dir == str(cwd / "x")
    assert recipe.data.files == {"train": str(project / "data" / "train.csv"), "validation": str(cwd / "mine.csv")}
    assert recipe.model.name == str(cwd / "my-model")
    # a whole section given on the command line: every path in it was typed here
    whole = load_recipe(path, {"data.files": {"train": "mine.csv"}, "output": {"dir": "y"}})
    assert whole.data.files == {"train": str(cwd / "mine.csv")} and whole.output.dir == str(cwd / "y")


def test_a_recipe_given_as_a_dict_resolves_against_the_working_directory(project, monkeypatch):
    monkeypatch.chdir(project)
    recipe = load_recipe({**_recipe(), "model": {"name": "models/tiny"}, "output": {"dir": "runs/d"},
                          "data": {"files": {"train": "data/train.csv"}}})
    assert (recipe.model.name, recipe.data.files["train"], recipe.output.dir) == (
        str(project / "models" / "tiny"), str(project / "data" / "train.csv"), str(project / "runs" / "d"))


def test_a_hub_id_stays_a_hub_id_beside_a_folder_that_resolves(project):
    folder = str(project / "models" / "tiny")
    student = load_recipe(_write(project / "recipes" / "exp" / "student.yaml", _recipe(
        model={"name": HUB_ID}, strategy={"name": "distill", "teacher": "../../models/tiny"})))
    assert (student.model.name, student.strategy.teacher) == (HUB_ID, folder)
    teacher = load_recipe(_write(project / "recipes" / "exp" / "teacher.yaml", _recipe(
        strategy={"name": "distill", "teacher": "some-org/some-teacher"})))
    assert (teacher.model.name, teacher.strategy.teacher) == (folder, "some-org/some-teacher")


@pytest.mark.parametrize("name, is_path", [
    (HUB_ID, False), ("bert-base-uncased", False), ("runs/digits-source", False),
    ("./x", True), ("../x", True), (".", True), ("~/models/x", True), ("/abs/x", True), ("runs/a/b", True),
    ("runs\\x", True),
])
def test_what_is_written_as_a_path(name, is_path):
    assert written_as_path(name) is is_path


def test_a_missing_model_folder_written_as_a_path_is_a_clear_error_naming_where_it_looked(project):
    recipe = load_recipe(_write(project / "recipes" / "exp" / "recipe.yaml", _recipe(model={"name": "./missing-model"})))
    looked = project / "recipes" / "exp" / "missing-model"
    assert recipe.model.name == str(looked)
    with pytest.raises(ModelError, match=rf"model\.name: '{looked}' is not a local folder, and written as a path it is "
                                         r"not a Hub id; paths written in a recipe resolve against the recipe's folder"):
        resolve_model_path(recipe.model.name)


def test_absolute_paths_stay_and_home_is_expanded(project, monkeypatch):
    monkeypatch.setenv("HOME", str(project))
    absolute = {"train": str(project / "data" / "train.csv"), "validation": str(project / "data" / "validation.csv")}
    recipe = load_recipe(_write(project / "recipes" / "exp" / "recipe.yaml", _recipe(
        model={"name": str(project / "models" / "tiny")}, data={"files": absolute}, output={"dir": "~/runs/home"})))
    assert recipe.data.files == absolute and recipe.model.name == str(project / "models" / "tiny")
    assert recipe.output.dir == str(project / "runs" / "home")


def test_the_teacher_resolves_against_the_recipe_and_becomes_the_student(project):
    recipe = load_recipe(_write(project / "recipes" / "exp" / "distill.yaml", _recipe(
        model={"max_length": 32}, strategy={"name": "distill", "teacher": "../../models/tiny", "student_num_layers": 1})))
    assert recipe.strategy.teacher == recipe.model.name == str(project / "models" / "tiny")


def test_adapt_files_resolve_like_every_path(project):
    cwd = Path.cwd()
    write_csv(cwd / "other-target.csv", toy_sentences(16, 5))
    path = _write(project / "recipes" / "exp" / "adapt.yaml", _recipe(adapt={
        "target": {"files": ["../../data/target.csv"]}, "method": "dann",
        "target_validation": {"files": ["../../data/target_val.csv"]}}))
    recipe = load_recipe(path)
    assert recipe.adapt.target.files == [str(project / "data" / "target.csv")]
    assert recipe.adapt.target_validation.files == [str(project / "data" / "target_val.csv")]
    assert load_recipe(path, ["adapt.target.files=[other-target.csv]"]).adapt.target.files == [str(cwd / "other-target.csv")]
    # the whole target section given in Python: its files were typed here too
    whole = load_recipe(path, {"adapt.target": {"files": ["other-target.csv"]}})
    assert whole.adapt.target.files == [str(cwd / "other-target.csv")]


def test_multitask_paths_resolve_like_every_path(project):
    cwd = Path.cwd()
    write_csv(cwd / "mine.csv", toy_sentences(32, 6))
    files = {"train": "../../data/train.csv", "validation": "../../data/validation.csv"}
    task = {"type": "text-classification", "text": "text", "label": "label"}
    raw = {key: _recipe()[key] for key in ("model", "strategy", "train", "output")}
    path = _write(project / "recipes" / "exp" / "multi.yaml", {**raw, "output": {"dir": "../../runs/multi"}, "tasks": {
        "a": {**task, "data": {"files": dict(files)}}, "b": {**task, "data": {"files": dict(files)}}}})
    recipe = load_any_recipe(path, ["tasks.b.data.files.validation=mine.csv"])
    assert recipe.output.dir == str(project / "runs" / "multi") and recipe.model.name == str(project / "models" / "tiny")
    a, b = (entry.recipe for entry in recipe.tasks)
    assert a.data.files == {"train": str(project / "data" / "train.csv"), "validation": str(project / "data" / "validation.csv")}
    assert b.data.files == {"train": str(project / "data" / "train.csv"), "validation": str(cwd / "mine.csv")}
    assert (a.output.dir, b.output.dir) == (str(project / "runs" / "multi" / "a"), str(project / "runs" / "multi" / "b"))


def test_a_compare_cells_recipe_loads_from_its_folder_and_reads_what_was_meant(project, monkeypatch):
    """``--backbones`` and ``--set`` paths are typed on the command line: the cell's recipe.yaml holds them absolute."""
    base = load_recipe(_write(project / "recipes" / "exp" / "recipe.yaml", _recipe()))
    monkeypatch.chdir(project)  # where the user typed `--backbones models/tiny --set full:data.files.test=data/target_val.csv`
    cell = Cell("full", 1.0, 7, "models/tiny")
    folder = project / "grid" / "cells" / cell.name
    folder.mkdir(parents=True)
    raw = cell_recipe_dict(base, cell, ["full:data.files.test=data/target_val.csv"], run_dir=folder / "model")
    monkeypatch.chdir(project.parent / "elsewhere")
    loaded = load_recipe(_write(folder / "recipe.yaml", raw))
    assert loaded.model.name == str(project / "models" / "tiny")
    assert loaded.data.files == {"train": str(project / "data" / "train.csv"), "test": str(project / "data" / "target_val.csv"),
                                 "validation": str(project / "data" / "validation.csv")}
    assert loaded.output.dir == str(folder / "model")


def test_a_copied_bundled_recipe_reads_and_writes_beside_the_copy_as_the_repository_does(tmp_path, monkeypatch):
    """``recipes copy``: paths that ship become the installed files; the others are rebased onto the copy's folder."""
    monkeypatch.setattr(bundled, "_bundle_dir", lambda: REPO / "recipes")  # this checkout's recipes, however installed
    mine = tmp_path / "mine"
    copied = bundled.copy_bundled_recipe("digits/full", mine / "full.yaml")
    assert ("model.name", "../../runs/digits-source", "./runs/digits-source") in copied.rebased
    assert ("output.dir", "../../runs/digits-full", "./runs/digits-full") in copied.rebased
    assert {key for key, _, _ in copied.not_found} == {"model.name", "data.dir"}  # written by the demo's earlier steps
    (mine / "runs" / "digits-source").mkdir(parents=True)
    recipe = load_recipe(mine / "full.yaml")
    assert (recipe.model.name, recipe.data.dir, recipe.output.dir) == (
        str(mine / "runs" / "digits-source"), str(mine / "runs" / "digits" / "target"), str(mine / "runs" / "digits-full"))
    source = bundled.copy_bundled_recipe("digits/source", mine / "source.yaml")
    assert source.rewritten == [("model.name", "./tiny-vit", str(REPO / "recipes" / "digits" / "tiny-vit"))]
    assert load_recipe(mine / "source.yaml").model.name == str(REPO / "recipes" / "digits" / "tiny-vit")


def test_a_run_from_another_folder_reads_and_writes_beside_its_recipe(project, capsys):
    """The one training run: the recipe's data, its local model and its output are all where the recipe says."""
    path = _write(project / "recipes" / "exp" / "recipe.yaml", _recipe())
    assert main(["-q", "train", str(path)]) == 0
    out = project / "runs" / "exp"
    assert (out / "config.json").is_file() and not (Path.cwd() / "runs").exists()
    saved = load_recipe(out / "recipe.yaml")  # the resolved recipe loads from the output folder: the same files
    assert saved.data.files == {"train": str(project / "data" / "train.csv"),
                                "validation": str(project / "data" / "validation.csv")}
    assert (saved.model.name, saved.output.dir) == (str(project / "models" / "tiny"), str(out))
