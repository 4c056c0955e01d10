"""Loading recipes: YAML -> dict -> dotted overrides -> typed, fully validated dataclasses (``schema.py``).

A YAML key, its dataclass field and its override path are the same string
(``train.lr`` in YAML is ``recipe.train.lr`` in Python and ``train.lr=3e-5`` on the
command line). Validation collects *every* problem before raising one ``RecipeError``;
the task type (``tasks/``) and the strategy (``strategies/``) add their own rules.
Loading a recipe imports no torch: ``nlp-transfer validate`` answers in about a second.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .build import recipe_from_raw
from .multitask import MULTITASK_SECTION, multitask_from_raw
from .paths import resolve_recipe_paths
from .read import apply_overrides, read_recipe
from .schema import Recipe

logger = logging.getLogger(__name__)


def load_recipe(
    recipe: str | Path | dict,
    overrides: list[str] | dict[str, Any] | None = None,
) -> Recipe:
    """Load, override and validate a recipe.

    Args:
        recipe: Path to a YAML file, or an already-parsed dict.
        overrides: Dotted ``key=value`` strings (values parsed as YAML) or a
            ``{"train.lr": 3e-5}`` dict, applied before validation.

    Returns:
        The validated ``Recipe``, every path in it absolute (see ``paths.py``: a path written in the recipe file
        resolves against the file's folder; an override's, or a dict's, against the working directory).

    Raises:
        RecipeError: Listing every problem, each with its key path and value.
    """
    raw, source, problems = _read(recipe, overrides)
    return recipe_from_raw(raw, source, problems)


def load_any_recipe(recipe: str | Path | dict, overrides: list[str] | dict[str, Any] | None = None):
    """A single-task ``Recipe``, or a ``MultiTaskRecipe`` when the recipe has a ``tasks`` section (see ``multitask/``)."""
    raw, source, problems = _read(recipe, overrides)
    if MULTITASK_SECTION in raw:
        return multitask_from_raw(raw, source, problems)
    return recipe_from_raw(raw, source, problems)


def _read(recipe: str | Path | dict, overrides) -> tuple[dict, str, list[str]]:
    """The raw recipe with its overrides applied and every path resolved, its source, and the problems so far."""
    raw, source, base_dir = read_recipe(recipe)
    problems: list[str] = []
    overridden = apply_overrides(raw, overrides, problems)
    resolve_recipe_paths(raw, base_dir, overridden)
    return raw, source, problems


