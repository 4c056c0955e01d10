"""A raw single-task recipe (overrides applied, paths resolved: ``paths.py``) -> typed dataclasses: every key checked
against its field's type, unknown keys listed with the valid ones, defaults filled; every problem collected."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from ..adapt.checks import adapt_files
from ..errors import RecipeError
from ..models.files import default_pooling, local_model_path
from ..strategies.base import StrategyOptions
from ..strategies.registry import DEFAULT_STRATEGY, STRATEGIES
from ..tasks import TASK_TYPES
from .paths import default_output_dir
from .schema import (
    ALL_SECTIONS,
    PATHS_RULE,
    SEARCH_SECTION,
    SECTIONS,
    TRAIN_DEFAULTS,
    AdaptConfig,
    Recipe,
    dataclass_of,
)
from .validate import check_semantics


def recipe_from_raw(raw: dict, source: str, problems: list[str] | None = None) -> Recipe:
    """Validate a raw single-task recipe (overrides applied, paths resolved by ``paths.resolve_recipe_paths``);
    ``problems`` found so far are reported with the rest.

    Raises:
        RecipeError: Listing every problem, each with its key path and value.
    """
    problems = list(problems or [])
    recipe_obj = _build_recipe(raw, problems, source)
    for split, file in recipe_obj.data.files.items():
        if not Path(file).is_file():
            problems.append(f"data.files.{split}: file not found: '{file}'; {PATHS_RULE}")
    for key, file in adapt_files(recipe_obj):
        if not Path(file).is_file():
            problems.append(f"{key}: file not found: '{file}'; {PATHS_RULE}")
        elif key.startswith("adapt.target_validation") and file == recipe_obj.data.files.get("test"):
            problems.append(f"{key}: '{file}' is also data.files.test; the rows that choose the model must not be the rows "
                            "that test it. Give a separate labelled target file")
    if problems:
        raise RecipeError(problems, source)
    resolve_model_defaults(recipe_obj)
    return recipe_obj


def _build_recipe(raw: dict, problems: list[str], source: str) -> Recipe:
    for key in raw:
        if key == "tasks":
            problems.append("tasks: a multi-task recipe, which `nlp-transfer train` and `validate` (nlp_transfer.train, "
                            "load_any_recipe) read; this one takes a single-task recipe (task and data sections)")
        elif key == SEARCH_SECTION:
            continue  # `nlp-transfer tune` reads it (search/space.py); a run trains the recipe's own settings
        elif key not in ALL_SECTIONS:
            problems.append(f"{key}: unknown section; valid sections: {', '.join(ALL_SECTIONS)} (or tasks, for several tasks)")
    sections = {}
    for name, cls in SECTIONS.items():
        sections[name] = _build_dataclass(cls, _section(raw, name, problems), name, problems)
    sections["strategy"] = _build_strategy(_section(raw, "strategy", problems), problems)
    adapt = _section(raw, "adapt", problems)
    sections["adapt"] = _build_dataclass(AdaptConfig, adapt, "adapt", problems) if adapt else None
    recipe = Recipe(**sections, source=source)
    recipe.strategy.complete(recipe)
    recipe.defaults_used = _fill_train_defaults(recipe)
    if not recipe.output.dir and source != "<dict>":  # a recipe file's runs go to runs/<its name> unless it says
        recipe.output.dir = recipe.defaults_used["output.dir"] = default_output_dir(source)
    check_semantics(recipe, problems)
    return recipe


def _fill_train_defaults(recipe: Recipe) -> dict[str, Any]:
    """Unset ``train`` keys take the strategy's default, else the general one; return what was filled."""
    train, strategy, filled = recipe.train, recipe.strategy, {}
    for key, general in TRAIN_DEFAULTS.items():
        if getattr(train, key) is None:
            setattr(train, key, strategy.train_defaults.get(key, general))
            filled[f"train.{key}"] = getattr(train, key)
    if train.head_lr is None and isinstance(train.lr, (int, float)):
        filled["train.head_lr"] = train.head_lr = train.lr * strategy.head_lr_factor
    return filled


def _section(raw: dict, name: str, problems: list[str]) -> dict:
    value = raw.get(name) or {}
    if not isinstance(value, dict):
        problems.append(f"{name}: must be a mapping of keys; got {value!r}")
        return {}
    return value


def _build_strategy(raw: dict, problems: list[str]):
    name = raw.get("name", DEFAULT_STRATEGY)
    if name is None:  # strategy.name=null: not set
        name = DEFAULT_STRATEGY
    if not isinstance(name, str) or name not in STRATEGIES:
        problems.append(f"strategy.name: unknown strategy {name!r}; registered strategies: {', '.join(sorted(STRATEGIES))}")
        return StrategyOptions()
    options_cls = STRATEGIES[name].Options
    return _build_dataclass(options_cls, {**raw, "name": name}, "strategy", problems)


# Keys that moved to another section: an unknown-key error names the new place.
_MOVED = {"strategy.pooling": "model.pooling"}


def _build_dataclass(cls, raw: dict, path: str, problems: list[str]):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            moved = _MOVED.get(f"{path}.{key}")
            hint = f" (it is now {moved}: move it there)" if moved else ""
            problems.append(f"{path}.{key}: unknown key{hint}; valid keys for '{path}': {', '.join(fields)}")
            continue
        if value is None and not _allows_none(hints[key]):
            continue  # key=null (or key= on the command line) means "not set": the default applies
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{path}.{key}: got {value}; expected a finite number")
            continue
        section = dataclass_of(hints[key])
        if section is not None and isinstance(value, dict):  # a nested section, e.g. output.push_to_hub
            kwargs[key] = _build_dataclass(section, value, f"{path}.{key}", problems)
            continue
        ok, converted = _check_type(value, hints[key])
        if not ok:
            problems.append(f"{path}.{key}: got {value!r}; expected {_describe(hints[key])}")
            continue
        kwargs[key] = converted
    return cls(**kwargs)


def _allows_none(hint) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint)


def _check_type(value, hint) -> tuple[bool, Any]:
    """Check ``value`` against a type hint; return (ok, value converted to the hint)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        for arg in args:
            ok, converted = _check_type(value, arg)
            if ok:
                return True, converted
        return False, value
    if hint is type(None):
        return value is None, value
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads a bare no/off as false and yes/on as true
            value = next((word for word in (("no", "off", "false") if not value else ("yes", "on", "true"))
                          if word in args), value)
        return value in args, value
    if origin is list:
        if not isinstance(value, list):
            return False, value
        checked = [_check_type(v, args[0]) for v in value]
        return all(ok for ok, _ in checked), [v for _, v in checked]
    if origin is dict:
        if not isinstance(value, dict):
            return False, value
        checked = {k: _check_type(v, args[1]) for k, v in value.items()}
        ok = all(isinstance(k, args[0]) for k in value) and all(c[0] for c in checked.values())
        return ok, {k: c[1] for k, c in checked.items()}
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-5 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                return False, value
            return math.isfinite(number), number
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, hint), value


def _describe(hint) -> str:
    """Say in words what a type hint allows, for error messages."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of: " + ", ".join(map(str, args))
    if origin is list:
        return f"a list of {_describe(args[0])}s"
    if origin is dict:
        return f"a mapping of {_describe(args[0])} keys to {_describe(args[1])}s"
    if dataclasses.is_dataclass(hint):
        return "a mapping with keys " + ", ".join(f.name for f in dataclasses.fields(hint))
    names = {type(None): "null", bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def resolve_model_defaults(recipe: Recipe, model_path: str | None = None) -> dict[str, Any]:
    """Fill the keys whose default follows the strategy or the model folder (``model.pooling``); return what was filled.

    Args:
        model_path: The resolved ``model.name``; default: look for it on this machine (never downloads).
            Nothing is filled when the model is not found.
    """
    kind = TASK_TYPES[recipe.task.type]
    if recipe.model.pooling is not None or not kind.pools:
        return {}
    pooling = recipe.strategy.pooling_default
    if pooling is None:
        path = model_path or local_model_path(recipe.model.name, recipe.model.revision)
        if path is None:
            return {}
        pooling = default_pooling(path)
    recipe.model.pooling = recipe.defaults_used["model.pooling"] = pooling
    return {"model.pooling": pooling}
