"""The documentation stays true: its recipes validate, its commands parse, and the site builds strictly.

Read: README.md and docs/**/*.md (MkDocs, mkdocs.yml). The checks are functions over markdown text, so the
tests at the bottom can show that each one catches what it is for.
"""

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from nlp_transfer import RecipeError
from nlp_transfer.cli import build_parser
from nlp_transfer.recipe.load import load_any_recipe

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)[ \t]*(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
                    re.M | re.S)
_SHELL_STOP = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1"}
_NOT_FOUND = ": file not found: '"


def code_blocks(text: str, languages: tuple[str, ...]) -> list[tuple[int, str]]:
    """``(line number, body)`` of each fenced block in ``text`` whose language is one of ``languages``."""
    blocks = []
    for match in _FENCE.finditer(text):
        if match["lang"].lower() in languages:
            blocks.append((text.count("\n", 0, match.start()) + 1, textwrap.dedent(match["body"])))
    return blocks


def recipe_problems(text: str, folder: Path) -> list[str]:
    """Every problem of the recipes in ``text``'s yaml blocks (a mapping with a top-level ``model`` or ``tasks`` key).

    A block is saved to a file in ``folder``, as a reader would save it, and loaded with the package's own loader
    (``load_any_recipe``), so an unknown key, a wrong type, a bad value or a missing section fails exactly as
    ``nlp-transfer validate`` would (and an unset ``output.dir`` defaults to ``runs/<file name>``, as for the reader).
    The one problem let through is a data file that is not on this machine (``<key>: file not found: '<path>'``): a
    guide names the reader's files (``path/to/train.csv``) or the larger sets beside the repository, and whether they
    exist here says nothing about the recipe. The loader reports every problem at once, so a missing file never hides
    another one. A yaml block that is not valid YAML is a problem too.
    """
    problems = []
    for line, body in code_blocks(text, ("yaml", "yml")):
        try:
            block = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            problems.append(f"line {line}: not valid YAML: {exc}")
            continue
        if not isinstance(block, dict) or not ({"model", "tasks"} & set(block)):
            continue  # a fragment (one section, an output listing...), not a whole recipe
        path = folder / f"recipe-line-{line}.yaml"
        path.write_text(body, encoding="utf-8")
        try:
            load_any_recipe(path)
        except RecipeError as exc:
            problems += [f"line {line}: {p}" for p in exc.problems if _NOT_FOUND not in p]
    return problems


def command_problems(text: str) -> list[str]:
    """Every ``nlp-transfer ...`` line of ``text``'s bash blocks that the CLI's parser rejects (parsed, never run).

    A line may start with ``$ `` or ``VAR=value`` assignments; a trailing ``\\`` continues it; it ends at a shell
    comment, pipe, ``&&``, ``;`` or redirection.
    """
    problems = []
    for line, body in code_blocks(text, ("bash", "sh", "shell", "console")):
        for offset, command in _commands(body):
            try:
                build_parser().parse_args(command)
            except SystemExit as exc:
                if exc.code not in (0, None):  # --help exits 0
                    problems.append(f"line {line + offset}: `nlp-transfer {shlex.join(command)}` does not parse")
    return problems


def _commands(body: str) -> list[tuple[int, list[str]]]:
    """``(line in the block, arguments after nlp-transfer)`` of each nlp-transfer command in a shell block."""
    commands, lines = [], body.splitlines()
    i = 0
    while i < len(lines):
        start, text = i, lines[i]
        while text.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text.rstrip()[:-1] + " " + lines[i]
        i += 1
        lexer = shlex.shlex(text.strip().removeprefix("$ "), posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        try:
            tokens = list(lexer)
        except ValueError:  # an unclosed quote: not a command line
            continue
        while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
            tokens = tokens[1:]
        if not tokens or tokens[0] != "nlp-transfer":
            continue
        args = []
        for token in tokens[1:]:
            if token in _SHELL_STOP:
                break
            args.append(token)
        commands.append((start + 1, args))
    return commands


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_recipe_in_the_docs_validates(page, tmp_path):
    problems = recipe_problems(page.read_text(encoding="utf-8"), tmp_path)
    assert not problems, f"{page.relative_to(REPO)}: a yaml recipe does not validate:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_nlp_transfer_command_in_the_docs_parses(page, capsys):
    problems = command_problems(page.read_text(encoding="utf-8"))
    assert not problems, f"{page.relative_to(REPO)}:\n" + "\n".join(problems) + "\n" + capsys.readouterr().err


def test_the_docs_are_there_and_hold_recipes_and_commands():
    """The checks above pass vacuously on pages without blocks: the docs must hold some of each."""
    assert (REPO / "mkdocs.yml").is_file(), "mkdocs.yml is missing at the repo root"
    texts = [p.read_text(encoding="utf-8") for p in PAGES]
    recipes = [b for t in texts for _, b in code_blocks(t, ("yaml", "yml"))
               if isinstance(yaml.safe_load(b), dict) and {"model", "tasks"} & set(yaml.safe_load(b))]
    commands = [c for t in texts for _, b in code_blocks(t, ("bash", "sh", "shell", "console")) for c in _commands(b)]
    assert len(PAGES) > 1 and recipes and len(commands) >= 10


def test_mkdocs_build_strict(tmp_path):
    """``mkdocs build --strict`` on mkdocs.yml: a broken link, a page missing from nav or a bad extension fails."""
    site = tmp_path / "site"
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(site)],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, ("mkdocs build --strict failed (mkdocs and mkdocs-material come with "
                                 "`pip install -e '.[dev]'`):\n" + run.stdout[-3000:] + run.stderr[-3000:])
    assert (site / "index.html").is_file()


# ---------------------------------------------------------------- the checks catch what they are for
_GOOD = """\
model:
  name: sentence-transformers/all-MiniLM-L6-v2
data:
  files: {train: path/to/train.csv, validation: path/to/validation.csv}
strategy:
  name: lora
"""


def test_the_recipe_check_passes_a_good_recipe_whose_files_are_elsewhere(tmp_path):
    page = f"Some text.\n\n```yaml\n{_GOOD}```\n\n```yaml\nstrategy:\n  r: 8\n```\n"
    assert recipe_problems(page, tmp_path) == []


@pytest.mark.parametrize("recipe, expected", [
    (_GOOD.replace("model:\n", "model:\n  nmae: typo\n"), "model.nmae: unknown key"),
    (_GOOD + "train:\n  epochs: abc\n", "train.epochs: got 'abc'"),
    (_GOOD + "trian:\n  epochs: 2\n", "trian: unknown section"),
])
def test_the_recipe_check_fails_an_unknown_key_or_a_wrong_type(recipe, expected, tmp_path):
    indented = textwrap.indent(f"```yaml\n{recipe}```\n", "    ")  # a block inside a list item or an admonition
    problems = recipe_problems(f"# Page\n\n{indented}", tmp_path)
    assert len(problems) == 1 and expected in problems[0] and problems[0].startswith("line 3: "), problems


def test_the_command_check_catches_what_the_parser_rejects():
    page = ("```bash\n"
            "# comment\n"
            "nlp-transfer train recipes/sst2/full.yaml train.epochs=1   # trailing comment\n"
            "$ HF_HUB_OFFLINE=1 nlp-transfer validate recipes/quickstart.yaml | head\n"
            "nlp-transfer predict runs/x \"a text\" \\\n"
            "  --batch-size 8 && echo done\n"
            "nlp-transfer --help\n"
            "nlp-transfer trian recipes/quickstart.yaml\n"
            "nlp-transfer predict runs/x --batch-size eight\n"
            "pip install nlp-transfer\n"
            "```\n")
    problems = command_problems(page)
    assert [p.split(":")[0] for p in problems] == ["line 8", "line 9"], problems
    assert len(_commands(page.split("\n", 1)[1])) == 6
