"""The recipe a search starts from: as written, its paths resolved by the one rule (``recipe/paths.py``), without its
``tune`` section; and each trial's recipe made from it with the trial's values (a path among them was written in the
recipe's ``tune`` section: it resolves against the recipe's folder)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..recipe.build import recipe_from_raw
from ..recipe.paths import resolve_recipe_paths
from ..recipe.read import apply_overrides, deep_copy, read_recipe
from ..recipe.schema import MULTITASK_SECTION, SEARCH_SECTION, Recipe
from ..strategies.registry import STRATEGIES

STRATEGY_KEY = "strategy.name"


@dataclass
class BaseRecipe:
    """A recipe file (or dict) with the command line's overrides applied and every path resolved: ``raw`` without
    ``tune``, and ``search``, its ``tune`` section."""

    raw: dict
    search: dict
    source: str
    base_dir: Path  # where the recipe's own paths resolve (its folder; the working directory for a dict)

    @classmethod
    def read(cls, recipe: str | Path | dict, overrides: list[str] | dict | None = None) -> BaseRecipe:
        raw, source, base_dir = read_recipe(recipe)
        problems: list[str] = []
        overridden = apply_overrides(raw, overrides, problems)
        if problems:
            raise RecipeError(problems, source)
        if MULTITASK_SECTION in raw:
            raise RecipeError([f"{MULTITASK_SECTION}: `nlp-transfer tune` searches single-task recipes; tune one task's "
                               "recipe, then train the multi-task recipe with its settings"], source)
        search = raw.pop(SEARCH_SECTION, None) or {}
        if not isinstance(search, dict):
            raise RecipeError([f"{SEARCH_SECTION}: must be a mapping (space, metric, n_trials, ...); got {search!r}"], source)
        resolve_recipe_paths(raw, base_dir, overridden)
        return cls(raw, search, source, base_dir)

    def with_values(self, values: dict[str, Any]) -> dict:
        """The raw recipe with a trial's ``values`` set. When they change ``strategy.name``, the strategy keys the
        recipe wrote for its own strategy that the new one does not have are dropped (``lora``'s ``r`` on ``full``)."""
        raw = deep_copy(self.raw)
        name = values.get(STRATEGY_KEY)
        section = raw.get("strategy")
        if name in STRATEGIES and isinstance(section, dict) and section.get("name", name) != name:
            own = set(STRATEGIES[name].Options.__dataclass_fields__)
            raw["strategy"] = {k: v for k, v in section.items() if k in own}
        problems: list[str] = []
        apply_overrides(raw, values, problems)
        if problems:
            raise RecipeError(problems, self.source)
        return raw

    def load(self, values: dict[str, Any] | None = None) -> Recipe:
        """The typed, validated recipe with ``values`` set (paths resolve against the recipe's folder).

        Raises:
            RecipeError: As ``train`` would for the same recipe.
        """
        raw = self.with_values(values or {})
        resolve_recipe_paths(raw, self.base_dir)  # the trial's values; the rest is absolute already
        return recipe_from_raw(raw, self.source)
