"""The recipes that ship with the package: list them, copy one out to edit (``nlp-transfer recipes list|copy``).

The repository's ``recipes/`` folder is installed as the package ``nlp_transfer.bundled_recipes``. Its recipes are
written for the repository's layout: ``recipes/`` beside ``nlp_transfer/``, a recipe's file paths relative to its
own folder (``data.files``, ``data.dir``, ``adapt.*.files``), ``model.name`` relative to the repo root. A copy lives
somewhere else, so copying reads every such path as the repository layout would and:

- a path to something that ships in the package (the quickstart's CSVs in ``nlp_transfer/quickstart_data``, the
  digits demo's tiny ViT config) is rewritten to the installed file's absolute path, and reported;
- any other relative file path (the larger data sets under ``../shared/data``, folders a script or another recipe
  writes) is left as written, and reported when the copy would not find it, with where it looks and the override
  that points it elsewhere.

Nothing else in the file changes (the header comment included). Imports no torch.
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
        not_found: ``(key, as written, where the copy looks)`` for each relative path the copy will not find.
    """

    name: str
    dest: Path
    rewritten: list[tuple[str, str, str]] = field(default_factory=list)
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
        The file written, the paths rewritten to files that ship in the package, and the relative
        paths the copy will not find (see the module docstring).

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
    for keys, value, relative_to_recipe in _path_fields(raw):
        shipped = _shipped_file(value, virtual_dir if relative_to_recipe else _REPO_ROOT)
        if shipped is not None:
            replacements[value] = str(shipped)
            result.rewritten.append((_dotted(keys), value, str(shipped)))
        elif relative_to_recipe and not Path(value).expanduser().is_absolute():
            looked = Path(os.path.normpath(target.parent.resolve() / value))
            if not looked.exists():
                result.not_found.append((_dotted(keys), value, str(looked)))
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


def _path_fields(raw: dict) -> list[tuple[tuple, str, bool]]:
    """``(key path, value, relative to the recipe's folder?)`` of every file path in a raw recipe.

    ``False`` marks ``model.name``: a folder relative to the working directory, or a Hub id.
    """
    found: list[tuple[tuple, str, bool]] = []
    model = raw.get("model")
    if isinstance(model, dict) and isinstance(model.get("name"), str):
        found.append((("model", "name"), model["name"], False))
    sections = [((), raw)]
    tasks = raw.get("tasks")
    if isinstance(tasks, dict):
        sections += [(("tasks", name), entry) for name, entry in tasks.items() if isinstance(entry, dict)]
    for prefix, section in sections:
        data = section.get("data") if isinstance(section.get("data"), dict) else {}
        files = data.get("files") if isinstance(data.get("files"), dict) else {}
        found += [((*prefix, "data", "files", split), v, True) for split, v in files.items() if isinstance(v, str)]
        if isinstance(data.get("dir"), str):
            found.append(((*prefix, "data", "dir"), data["dir"], True))
        adapt = section.get("adapt") if isinstance(section.get("adapt"), dict) else {}
        for part in ("target", "target_validation"):
            listed = (adapt.get(part) or {}).get("files") if isinstance(adapt.get(part), dict) else None
            for i, value in enumerate(listed if isinstance(listed, list) else []):
                if isinstance(value, str):
                    found.append(((*prefix, "adapt", part, "files", i), value, True))
    return found


def _shipped_file(value: str, base: Path) -> Path | None:
    """The installed file or folder a relative path means, read from ``base`` in the repo layout; None if it does not ship."""
    if Path(value).expanduser().is_absolute():
        return None
    wanted = Path(os.path.normpath(base / value))
    for layout_dir, installed_dir in ((_REPO_ROOT / "recipes", _bundle_dir()), (_PACKAGE_DIR, _PACKAGE_DIR)):
        if wanted.is_relative_to(layout_dir):
            installed = installed_dir / wanted.relative_to(layout_dir)
            return installed if installed.exists() else None
    return None


def _rewritten_text(text: str, raw: dict, replacements: dict[str, str]) -> str:
    """``text`` with each replaced value swapped on the YAML lines (comments untouched), checked by parsing it back."""
    lines = text.splitlines(keepends=True)
    for old, new in replacements.items():
        pattern = re.compile(r"(?<=[\s\[,])" + re.escape(old) + r"(?=\s|,|\]|$)")
        scalar = new if yaml.safe_load(f"k: {new}") == {"k": new} else json.dumps(new)
        lines = [line if line.lstrip().startswith("#") else pattern.sub(lambda _: scalar, line) for line in lines]
    new_text = "".join(lines)
    expected = _replaced(raw, replacements)
    if yaml.safe_load(new_text) != expected:
        raise RuntimeError(f"copying a bundled recipe: rewriting {sorted(replacements)} changed more than those paths; "
                           "this is a bug in nlp_transfer.recipe.bundled, please report it")
    return new_text


def _replaced(value, replacements: dict[str, str]):
    """``value`` (a parsed recipe) with the path fields in ``replacements`` swapped."""
    new = copy.deepcopy(value)
    for keys, old, _ in _path_fields(value):
        if old in replacements:
            node = new
            for key in keys[:-1]:
                node = node[key]
            node[keys[-1]] = replacements[old]
    return new


def _write_whole(target: Path, text: str) -> None:
    """Write into a temporary sibling, then move it into place: the copy appears whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, target)


def _dotted(keys: tuple) -> str:
    return ".".join(str(k) for k in keys if not isinstance(k, int))
