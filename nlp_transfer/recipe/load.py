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
        The validated ``Recipe``; relative ``data.files`` are resolved against the
        recipe file's folder.

    Raises:
        RecipeError: Listing every problem, each with its key path and value.
    """
    raw, source, base_dir = read_recipe(recipe)
    problems: list[str] = []
    overridden = apply_overrides(raw, overrides, problems)
    return recipe_from_raw(raw, source, base_dir, overridden, problems)


def load_any_recipe(recipe: str | Path | dict, overrides: list[str] | dict[str, Any] | None = None):
    """A single-task ``Recipe``, or a ``MultiTaskRecipe`` when the recipe has a ``tasks`` section (see ``multitask/``)."""
    raw, source, base_dir = read_recipe(recipe)
    problems: list[str] = []
    overridden = apply_overrides(raw, overrides, problems)
    if MULTITASK_SECTION in raw:
        return multitask_from_raw(raw, source, base_dir, overridden, problems)
    return recipe_from_raw(raw, source, base_dir, overridden, problems)


