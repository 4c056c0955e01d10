"""Every bundled recipe validates, and every command its header comment advertises parses and validates."""

import shlex
from pathlib import Path

import pytest
from conftest import missing_repo_shared_file

from nlp_transfer import RecipeError
from nlp_transfer.recipe.load import load_any_recipe
from nlp_transfer.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted(REPO.glob("recipes/**/*.yaml"))


def header_commands(path: Path) -> list[str]:
    """The ``nlp-transfer ...`` commands in a recipe's leading comment (continued lines joined)."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    commands, current = [], None
    for line in lines:
        text = line.split("  #")[0].strip()  # a trailing "# comment" after the command
        if current is not None:
            current += " " + text.rstrip("\\").strip()
        elif "nlp-transfer " in text:
            current = text[text.index("nlp-transfer "):].rstrip("\\").strip()
        if current is not None and not text.endswith("\\"):
            commands.append(current)
            current = None
    return commands


def test_every_recipe_is_found():
    assert len(RECIPES) >= 14 and (REPO / "recipes" / "quickstart.yaml") in RECIPES


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(REPO / "recipes")))
def test_recipe_validates_and_its_header_gives_a_working_command(path, monkeypatch):
    try:
        assert load_any_recipe(path).source == str(path)
    except RecipeError as exc:  # every problem is listed at once: all but the absent ../shared/data files must be none
        kept = [p for p in exc.problems if not missing_repo_shared_file(p)]
        assert not kept, f"{path} does not validate: {kept}"
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("# ") and len(header) > 20, f"{path}: the first line should say what the recipe is for"
    commands = header_commands(path)
    verb = "tune" if "\ntune:" in path.read_text(encoding="utf-8") else "train"  # a search recipe advertises its search
    assert any(c.split()[1:3] == [verb, str(path.relative_to(REPO))] for c in commands), \
        f"{path}: the header gives no `nlp-transfer {verb} {path.relative_to(REPO)}` command; found {commands}"
    assert len(commands) >= 2, f"{path}: the header should also show an override example; found {commands}"
    monkeypatch.chdir(REPO)  # the commands run from the repo root
    for command in commands:
        args = build_parser().parse_args(shlex.split(command)[1:])
        if hasattr(args, "overrides"):
            _check_overrides(Path(args.recipe), args.overrides, command)


def _check_overrides(recipe: Path, overrides: list[str], command: str) -> None:
    """The command's recipe and overrides validate; only files a user is told to bring (``path/to/...``) may be missing."""
    try:
        load_any_recipe(recipe, overrides)
    except RecipeError as exc:
        kept = [p for p in exc.problems if not _a_users_own_file(p) and not missing_repo_shared_file(p)]
        assert not kept, f"`{command}` does not validate: {kept}"


def _a_users_own_file(problem: str) -> bool:
    if ": file not found: '" not in problem:
        return False
    return "/path/to/" in problem.split(": file not found: '")[1].split("'")[0]
