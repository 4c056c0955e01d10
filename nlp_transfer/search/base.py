"""The recipe a search starts from: as written (paths resolving against its own folder), without its ``tune`` section,
and each trial's recipe made from it with the trial's values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..recipe.build import recipe_from_raw
from ..recipe.multitask import MULTITASK_SECTION
from ..recipe.read import apply_overrides, deep_copy, read_recipe
from ..recipe.schema import SEARCH_SECTION, Recipe
from ..strategies.registry import STRATEGIES

STRATEGY_KEY = "strategy.name"


@dataclass
class BaseRecipe:
    """A recipe file (or dict) with the command line's overrides applied: ``raw`` without ``tune``, and ``search``,
    its ``tune`` section."""

    raw: dict
    search: dict
    source: str
    base_dir: Path
    overridden: frozenset = frozenset()  # keys the command line set: their paths resolve against the working directory

    @classmethod
    def read(cls, recipe: str | Path | dict, overrides: list[str] | dict | None = None) -> BaseRecipe:
        raw, source, base_dir = read_recipe(recipe)
        problems: list[str] = []
        overridden = apply_overrides(raw, overrides, problems)
        if problems:
            raise RecipeError(problems, source)
        if MULTITASK_SECTION in raw:
            raise RecipeError([(f"{MULTITASK_SECTION}: `nlp-transfer tune` searches single-task recipes; tune one task's "
                               "recipe, then train the multi-task recipe with its settings")], source)
        search = raw.pop(SEARCH_SECTION, None) or {}
        if not isinstance(search, dict):
            raise RecipeError([f"{SEARCH_SECTION}: must be a mapping (space, metric, n_trials, ...); got {search!r}"], source)
        return cls(raw, search, source, base_dir, frozenset(overridden))

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
        values = values or {}
        return recipe_from_raw(self.with_values(values), self.source, self.base_dir, self.overridden | set(values))
