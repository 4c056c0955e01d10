"""Where a path in a recipe points: one rule for every path-valued key, applied once, before the recipe is typed.

A path resolves against the place it was written: a path written in a recipe file against that file's folder; a
path given as an override (on the command line, or ``overrides=`` in Python), or in a recipe given as a dict,
against the working directory. Absolute paths stay as they are; ``~`` is expanded. Keys of kind ``MODEL``
(``model.name``, ``strategy.teacher``) name a local folder or a Hub id: the folder when it exists where the rule puts
it, or when the value is written as a path (``./x``, ``../x``, ``~/x``, absolute, more than one ``/``: see
``written_as_path``); otherwise the value stays a Hub id, untouched.

The schema marks the path-valued keys (``metadata={PATH_KIND: ...}`` on a field of ``recipe/schema.py`` or of a
strategy's options); ``path_fields`` finds them in a raw recipe, single- or multi-task, so a new path key is resolved
without a word here. After ``resolve_recipe_paths`` every path in the recipe is absolute, so a resolved recipe (an output's
``recipe.yaml``, a ``compare`` cell's) loads from anywhere and points at the same files. Imports no torch.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import NamedTuple

from ..models.files import written_as_path
from ..strategies.base import StrategyOptions
from ..strategies.registry import DEFAULT_STRATEGY, STRATEGIES
from .schema import (
    MODEL,
    MULTITASK_SECTION,
    PATH_KIND,
    SECTIONS,
    AdaptConfig,
    DataConfig,
    dataclass_of,
)


class PathField(NamedTuple):
    """One path-valued entry of a raw recipe: where it is (``("data", "files", "train")``; a list item's index is an
    int), what is written there, and its kind (``PATH`` or ``MODEL``)."""

    keys: tuple
    value: str
    kind: str

    @property
    def dotted(self) -> str:
        """The key path as an override names it (a list is overridden whole: no index)."""
        return ".".join(str(k) for k in self.keys if not isinstance(k, int))


def resolve_path(value: str, base: Path, kind: str) -> str:
    """``value`` as the rule reads it from ``base``: an absolute path, or (kind ``MODEL``) a Hub id left as written."""
    if not value.strip():
        return value  # missing: validation says so
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    if kind == MODEL and not (base / path).is_dir() and not written_as_path(value):
        return value  # a Hub id (sentence-transformers/all-MiniLM-L6-v2): never a path
    return str((base / path).resolve())


def resolve_recipe_paths(raw: dict, base_dir: Path, overridden: set[str] = frozenset()) -> None:
    """Make every path-valued key of a raw recipe absolute, in place.

    Args:
        raw: A raw recipe (overrides applied), single- or multi-task.
        base_dir: The folder of the recipe file (the working directory for a dict).
        overridden: The dotted keys set by overrides; a path at or under one of them resolves against the
            working directory.
    """
    cwd = Path.cwd()
    for found in path_fields(raw):
        given_here = any(found.dotted == key or found.dotted.startswith(f"{key}.") for key in overridden)
        node = raw
        for key in found.keys[:-1]:
            node = node[key]
        node[found.keys[-1]] = resolve_path(found.value, cwd if given_here else base_dir, found.kind)


def default_output_dir(source: str) -> str:
    """Where a recipe file without ``output.dir`` writes: ``runs/<its file name>`` in the working directory (a default
    is written nowhere, so it is the working directory's, like every path the user did not write in the recipe)."""
    return str(Path.cwd() / "runs" / Path(source).stem)


def path_fields(raw: dict) -> list[PathField]:
    """Every path-valued entry (a string) of a raw recipe, found through the schema's ``PATH_KIND`` marks.

    Sections, keys or values of the wrong shape are skipped: validation reports them.
    """
    found: list[PathField] = []
    strategy = raw.get("strategy") if isinstance(raw.get("strategy"), dict) else {}
    name = strategy.get("name") or DEFAULT_STRATEGY
    options = STRATEGIES[name].Options if isinstance(name, str) and name in STRATEGIES else StrategyOptions
    for section, cls in {**SECTIONS, "strategy": options, "adapt": AdaptConfig}.items():
        _find(raw.get(section), cls, (section,), found)
    tasks = raw.get(MULTITASK_SECTION)
    for task, entry in (tasks.items() if isinstance(tasks, dict) else ()):
        if isinstance(entry, dict):  # a task's own paths are in its data section
            _find(entry.get("data"), DataConfig, (MULTITASK_SECTION, task, "data"), found)
    return found


def _find(section, cls, keys: tuple, found: list[PathField]) -> None:
    if not isinstance(section, dict):
        return
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        value, here = section.get(field.name), (*keys, field.name)
        kind = field.metadata.get(PATH_KIND)
        if kind is not None:
            items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
            if items is None:
                found += [PathField(here, value, kind)] if isinstance(value, str) else []
            else:
                found += [PathField((*here, k), v, kind) for k, v in items if isinstance(v, str)]
        elif isinstance(value, dict) and dataclass_of(hints[field.name]) is not None:
            _find(value, dataclass_of(hints[field.name]), here, found)
