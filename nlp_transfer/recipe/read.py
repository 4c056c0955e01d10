"""Reading a recipe: YAML (a key given twice is an error) -> dict, and dotted ``key=value`` overrides applied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import RecipeError
from .schema import (
    ALL_SECTIONS,
)


def read_recipe(recipe: str | Path | dict) -> tuple[dict, str, Path]:
    """The raw mapping of a recipe (a copy, for a dict), where it came from, and the folder its paths resolve against.

    Raises:
        RecipeError: No such file, not YAML, a key given twice in one mapping, or not a mapping at the top.
    """
    if isinstance(recipe, dict):
        raw, source, base_dir = deep_copy(recipe), "<dict>", Path.cwd()
    else:
        path = Path(recipe)
        if not path.is_file():
            raise RecipeError([f"recipe file not found: '{path}'; pass the path of a YAML recipe such as recipes/quickstart.yaml"], str(path))
        source, base_dir = str(path), path.resolve().parent
        try:
            # a copy: a YAML alias (*common) must not make two keys one object that an override would change together
            raw = deep_copy(yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {})
        except yaml.YAMLError as exc:
            raise RecipeError([f"not valid YAML: {exc}"], source) from None
    if not isinstance(raw, dict):
        raise RecipeError([f"the top level must be a mapping of sections {list(ALL_SECTIONS)}; got {type(raw).__name__}"], source)
    return raw, source, base_dir


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys in a mapping without a word; a recipe must not lose one that way."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"key {key!r} appears twice (first on line {seen[key] + 1}, again on line {key_node.start_mark.line + 1}); "
                    "each key may appear once in a mapping: rename or remove one (two tasks need two names)", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["train.lr=3e-5", "task.text=[a, b]"]`` into ``{"train.lr": 3e-05, ...}``."""
    parsed, problems = {}, []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or " " in key.strip():
            problems.append(f"override '{item}': expected key=value with a dotted key, e.g. train.lr=3e-5")
            continue
        try:
            parsed[key.strip()] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed[key.strip()] = value
    if problems:
        raise RecipeError(problems, "<command line>")
    return parsed


def apply_overrides(raw: dict, overrides, problems: list[str]) -> set[str]:
    """Set each dotted key in ``raw``; return the keys that were set."""
    if not overrides:
        return set()
    pairs = parse_overrides(overrides) if isinstance(overrides, list) else dict(overrides)
    for dotted, value in pairs.items():
        node = raw
        keys = dotted.split(".")
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                problems.append(f"override '{dotted}': '{'.'.join(keys[:depth + 1])}' is a value, not a section")
                break
            node = child
        else:
            node[keys[-1]] = value
    return set(pairs)


def deep_copy(value):
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value
