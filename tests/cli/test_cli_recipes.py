"""``nlp-transfer recipes list|copy``: the bundled recipes are listed, and a copy made anywhere validates."""

import re
from pathlib import Path

import pytest
import yaml

from nlp_transfer import RecipeError
from nlp_transfer.cli import main
from nlp_transfer.recipe.load import load_any_recipe

REPO = Path(__file__).resolve().parents[2]
BUNDLED = sorted(p.relative_to(REPO / "recipes").with_suffix("").as_posix() for p in (REPO / "recipes").rglob("*.yaml"))
QUICKSTART_DATA = REPO / "nlp_transfer" / "quickstart_data"


def _listing(capsys) -> dict[str, str]:
    assert main(["recipes", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert re.match(r"recipe\s+purpose$", lines[0])
    return dict(re.match(r"(\S+)\s+(.+)$", line).groups() for line in lines[1:])


def test_list_shows_every_bundled_recipe_with_its_purpose(capsys):
    listed = _listing(capsys)
    assert len(BUNDLED) >= 14 and list(listed) == BUNDLED
    for name, purpose in listed.items():
        first_line = (REPO / "recipes" / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
        assert purpose.startswith(first_line[:20]) and purpose.endswith((".", ")")), (name, purpose)
    assert listed["sst2/full"] == "SST-2 sentiment, full fine-tuning of all-MiniLM-L6-v2 (every parameter trains)."


def test_copy_quickstart_then_validate_it_from_another_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["recipes", "copy", "quickstart"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("copied quickstart to quickstart.yaml\n")
    assert f"data.files.train: ../nlp_transfer/quickstart_data/train.csv -> {QUICKSTART_DATA / 'train.csv'}" in out
    assert "output.dir: ../runs/quickstart -> ./runs/quickstart (relative to the copy, as it was to the repository root)" in out
    copy = (tmp_path / "quickstart.yaml").read_text(encoding="utf-8")
    original = (REPO / "recipes" / "quickstart.yaml").read_text(encoding="utf-8")
    # the header comment and every other line stay as they were: only the two data paths and the output folder changed
    changed = [(a, b) for a, b in zip(original.splitlines(), copy.splitlines()) if a != b]
    assert len(copy.splitlines()) == len(original.splitlines()) and len(changed) == 3, changed
    assert ("  dir: ../runs/quickstart", "  dir: ./runs/quickstart") in changed
    assert main(["-q", "validate", "quickstart.yaml"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["files"] == {"train": str(QUICKSTART_DATA / "train.csv"),
                                        "validation": str(QUICKSTART_DATA / "validation.csv")}
    assert printed["output"]["dir"] == str(tmp_path / "runs" / "quickstart")  # runs/ beside the copy, as beside the repo


def test_copy_to_a_new_path_or_into_a_folder(tmp_path, capsys):
    assert main(["recipes", "copy", "sst2/lora.yaml", str(tmp_path / "mine" / "lora-r8.yaml")]) == 0
    original = (REPO / "recipes" / "sst2" / "lora.yaml").read_text()
    assert (tmp_path / "mine" / "lora-r8.yaml").read_text() == original.replace("../../runs/sst2-lora", "./runs/sst2-lora")
    assert main(["recipes", "copy", "sst2/frozen", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "frozen.yaml").is_file()
    assert load_any_recipe(tmp_path / "mine" / "lora-r8.yaml").strategy.name == "lora"
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["frozen.yaml", "lora-r8.yaml"]  # no partial file


def test_copy_never_overwrites(tmp_path, capsys):
    dest = tmp_path / "full.yaml"
    dest.write_text("mine: true\n", encoding="utf-8")
    assert main(["recipes", "copy", "sst2/full", str(dest)]) == 2
    captured = capsys.readouterr()
    assert f"error: '{dest}' already exists; `recipes copy` never overwrites a file" in captured.err
    assert captured.out == "" and dest.read_text(encoding="utf-8") == "mine: true\n"
    assert main(["recipes", "copy", "sst2/full", str(tmp_path)]) == 2  # a folder: the same name inside it exists
    assert "already exists" in capsys.readouterr().err


def test_copy_an_unknown_name_lists_the_valid_ones(tmp_path, capsys):
    assert main(["recipes", "copy", "sst2/fulll", str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert "error: no bundled recipe named 'sst2/fulll'; the bundled recipes are: " in err
    assert all(name in err for name in BUNDLED)
    assert not (tmp_path / "x.yaml").exists()


@pytest.mark.parametrize("name", BUNDLED)
def test_every_copy_validates_but_for_the_data_it_says_it_needs(name, tmp_path, capsys):
    """Copied outside the repo, a recipe validates; the only problems left are files the copy command listed."""
    dest = tmp_path / "elsewhere" / "recipe.yaml"
    assert main(["recipes", "copy", name, str(dest)]) == 0
    out = capsys.readouterr().out
    for key, new in re.findall(r"^  (\S+): \S+ -> (\S+) \(ships in the package\)$", out, re.M):
        assert Path(new).exists() and Path(new).is_relative_to(REPO), (key, new)
    needed = set(re.findall(r"^  (\S+): \S+ \(looked for at", out, re.M))
    try:
        load_any_recipe(dest)
    except RecipeError as exc:
        left = [p for p in exc.problems if ": file not found: '" not in p or _key(p) not in needed]
        assert not left, f"{name}: the copy has problems the copy command did not announce: {left}"
        assert exc.problems


def _key(problem: str) -> str:
    """``data.files.train`` of "data.files.train: file not found: ..." (``adapt.target.files[0]`` -> without index)."""
    return re.sub(r"\[\d+\]", "", problem.split(": file not found")[0])
