"""The recipes that ship with the package: list them, copy one out to edit (``nlp-transfer recipes list|copy``).

The repository's ``recipes/`` folder is installed as the package ``nlp_transfer.bundled_recipes``. Its recipes are
written for the repository's layout: ``recipes/`` beside ``nlp_transfer/``, every path relative to the recipe's own
folder (the one rule, ``paths.py``: ``data.files``, ``data.dir``, ``adapt.*.files``, ``model.name`` and
``strategy.teacher`` when they name a folder, ``output.dir``), so that from the repository root
``../../runs/sst2-full`` in ``recipes/sst2/`` is ``runs/sst2-full``. A copy lives somewhere else, so copying reads
every relative path as the repository layout would and:

- a path to something that ships in the package (the quickstart's CSVs in ``nlp_transfer/quickstart_data``, the
  digits demo's tiny ViT config) is rewritten to the installed file's absolute path, and reported;
- any other relative path (``runs/`` folders that recipes write and read, the larger data sets under
  ``../shared/data``) is rewritten relative to the copy as it was to the repository root (``../../runs/sst2-full``
  becomes ``./runs/sst2-full``: a copy behaves as if it sat at the repository root, where the header comment's
  commands run), and reported; a path the run reads is reported again when the copy would not find it, with where
  it looks and the override that points it elsewhere.

Hub ids and absolute paths stay as written, and nothing else in the file changes (the header comment included).
Imports no torch.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from ..errors import BundledRecipeError
from .paths import path_fields, resolve_path
from .schema import OUTPUT

BUNDLE_PACKAGE = "nlp_transfer.bundled_recipes"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the installed nlp_transfer/
_REPO_ROOT = _PACKAGE_DIR.parent  # what the recipes call the repo root: the folder nlp_transfer/ sits in
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")


@dataclass(frozen=True)
class BundledRecipe:
    """One bundled recipe: its name (``sst2/full``), its file and the first sentence of its header comment."""

    name: str
    path: Path
    purpose: str


@dataclass
class RecipeCopy:
    """What ``copy_bundled_recipe`` wrote.

    Attributes:
        name: The bundled recipe's name.
        dest: The file written.
        rewritten: ``(key, as written, now)`` for each path that points into the installed package.
        rebased: ``(key, as written, now)`` for each other relative path, now relative to the copy as it was to the
            repository root.
        not_found: ``(key, as in the copy, where the copy looks)`` for each relative path the run reads and the copy
            will not find.
    """

    name: str
    dest: Path
    rewritten: list[tuple[str, str, str]] = field(default_factory=list)
    rebased: list[tuple[str, str, str]] = field(default_factory=list)
    not_found: list[tuple[str, str, str]] = field(default_factory=list)


def bundled_recipes() -> list[BundledRecipe]:
    """Every bundled recipe, sorted by name."""
    folder = _bundle_dir()
    recipes = [BundledRecipe(path.relative_to(folder).with_suffix("").as_posix(), path, _purpose(path))
               for path in folder.rglob("*.yaml")]
    return sorted(recipes, key=lambda r: r.name)


def find_bundled_recipe(name: str) -> BundledRecipe:
    """The bundled recipe called ``name`` (``sst2/full``; a trailing ``.yaml`` is accepted).

    Raises:
        BundledRecipeError: No bundled recipe has that name; the message lists the valid names.
    """
    wanted = name.strip().removesuffix(".yaml")
    recipes = bundled_recipes()
    for recipe in recipes:
        if recipe.name == wanted:
            return recipe
    raise BundledRecipeError(f"no bundled recipe named '{name}'; the bundled recipes are: "
                             f"{', '.join(r.name for r in recipes)} (`nlp-transfer recipes list` says what each is for)")


def copy_bundled_recipe(name: str, dest: str | Path | None = None) -> RecipeCopy:
    """Copy a bundled recipe to ``dest`` so it can be edited and run from anywhere.

    Args:
        name: A bundled recipe's name, as ``bundled_recipes()`` lists it (``sst2/full``, ``quickstart``).
        dest: The file to write; an existing folder gets ``<basename>.yaml`` inside it; default
            ``./<basename>.yaml``. Missing parent folders are created.

    Returns:
        The file written, the paths rewritten to files that ship in the package, the paths rebased onto the
        copy's folder, and the relative paths the copy will not find (see the module docstring).

    Raises:
        BundledRecipeError: Unknown name, or ``dest`` already exists (a copy never overwrites).
    """
    recipe = find_bundled_recipe(name)
    target = Path(dest) if dest is not None else Path(f"{recipe.path.stem}.yaml")
    if target.is_dir():
        target = target / f"{recipe.path.stem}.yaml"
    if target.exists():
        raise BundledRecipeError(f"'{target}' already exists; `recipes copy` never overwrites a file: remove it, "
                                 f"or give another destination, e.g. `nlp-transfer recipes copy {recipe.name} my-{target.name}`")
    text = recipe.path.read_text(encoding="utf-8")
    raw = yaml.safe_load(text) or {}
    result = RecipeCopy(recipe.name, target)
    replacements: dict[str, str] = {}
    virtual_dir = _REPO_ROOT / "recipes" / recipe.path.parent.relative_to(_bundle_dir())
    for found in path_fields(raw):
        if Path(found.value).expanduser().is_absolute():
            continue
        in_layout = resolve_path(found.value, virtual_dir, found.kind)
        if in_layout == found.value:
            continue  # a Hub id
        shipped = _shipped_file(Path(in_layout))
        if shipped is not None:
            replacements[found.value] = str(shipped)
            result.rewritten.append((found.dotted, found.value, str(shipped)))
            continue
        rebased = _as_from_repo_root(Path(in_layout))
        if rebased != found.value:
            replacements[found.value] = rebased
            result.rebased.append((found.dotted, found.value, rebased))
        looked = Path(os.path.normpath(target.parent.resolve() / rebased))
        if found.kind != OUTPUT and not looked.exists():
            result.not_found.append((found.dotted, rebased, str(looked)))
    _write_whole(target, _rewritten_text(text, raw, replacements))
    return result


def _bundle_dir() -> Path:
    return Path(str(resources.files(BUNDLE_PACKAGE))).resolve()


def _purpose(path: Path) -> str:
    """The first sentence of the header comment's first paragraph."""
    paragraph = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#") or not text:
            break
        paragraph.append(text)
    return _SENTENCE_END.split(" ".join(paragraph), maxsplit=1)[0]


def _shipped_file(wanted: Path) -> Path | None:
    """The installed file or folder a path in the repository layout means; None if it does not ship."""
    for layout_dir, installed_dir in ((_REPO_ROOT / "recipes", _bundle_dir()), (_PACKAGE_DIR, _PACKAGE_DIR)):
        if wanted.is_relative_to(layout_dir):
            installed = installed_dir / wanted.relative_to(layout_dir)
            return installed if installed.exists() else None
    return None


def _as_from_repo_root(wanted: Path) -> str:
    """A path in the repository layout, relative to the repository root, written as a path (``./runs/x``, ``../x``)."""
    relative = Path(os.path.relpath(wanted, _REPO_ROOT)).as_posix()
    return relative if relative.startswith("../") else f"./{relative}"


def _rewritten_text(text: str, raw: dict, replacements: dict[str, str]) -> str:
    """``text`` with each replaced value swapped on the YAML lines (comments untouched), checked by parsing it back."""
    if not replacements:
        return text
    olds = "|".join(re.escape(old) for old in sorted(replacements, key=len, reverse=True))
    pattern = re.compile(r"(?<=[\s\[,])(" + olds + r")(?=\s|,|\]|$)")

    def scalar(match: re.Match) -> str:  # one pass: a new value is never replaced again
        new = replacements[match.group(1)]
        return new if yaml.safe_load(f"k: {new}") == {"k": new} else json.dumps(new)

    lines = text.splitlines(keepends=True)
    new_text = "".join(line if line.lstrip().startswith("#") else pattern.sub(scalar, line) for line in lines)
    if yaml.safe_load(new_text) != _replaced(raw, replacements):
        raise RuntimeError(f"copying a bundled recipe: rewriting {sorted(replacements)} changed more than those paths; "
                           "this is a bug in nlp_transfer.recipe.bundled, please report it")
    return new_text


def _replaced(value, replacements: dict[str, str]):
    """``value`` (a parsed recipe) with the path fields in ``replacements`` swapped."""
    new = copy.deepcopy(value)
    for found in path_fields(value):
        if found.value in replacements:
            node = new
            for key in found.keys[:-1]:
                node = node[key]
            node[found.keys[-1]] = replacements[found.value]
    return new


def _write_whole(target: Path, text: str) -> None:
    """Write into a temporary sibling, then move it into place: the copy appears whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, target)
