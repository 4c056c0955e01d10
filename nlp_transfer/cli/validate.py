"""``nlp-transfer validate RECIPE [KEY=VALUE ...]``: check a recipe and print it resolved, without torch."""

from __future__ import annotations

import yaml

# not through nlp_transfer.api, which imports the training stack: validating loads no torch
from ..recipe.load import load_any_recipe
from ..recipe.read import read_recipe
from ..recipe.schema import SEARCH_SECTION
from ..search.base import BaseRecipe
from ..search.space import read_search


def add_parser(subparsers) -> None:
    """Add ``validate`` and its options."""
    validate = subparsers.add_parser("validate", help="check a recipe (all problems at once, exit 2) and print it resolved",
                                     description="Check a recipe without training: print it with every default resolved "
                                                 "(the strategy's train.lr, model.pooling, ...), or every problem with exit 2.")
    validate.add_argument("recipe", help="path of a YAML recipe")
    validate.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. strategy.name=frozen")
    validate.set_defaults(run=run)


def run(args) -> int:
    """Print the resolved recipe (a RecipeError lists every problem); with a ``tune`` section, check the search too."""
    recipe = load_any_recipe(args.recipe, args.overrides)
    print(f"# {recipe.source}: valid. Unset keys resolved: "
          + (", ".join(f"{k}={v}" for k, v in recipe.defaults_used.items()) or "none"))
    if SEARCH_SECTION in read_recipe(args.recipe)[0]:
        search = read_search(BaseRecipe.read(args.recipe, args.overrides))
        print(f"# tune: valid; {len(search.space)} keys searched ({', '.join(p.key for p in search.space)}), "
              f"{search.n_trials} trials on validation {search.metric} ({search.direction}), {search.sampler} sampler, "
              f"{search.pruner} pruner")
    print(yaml.safe_dump(recipe.to_dict(), sort_keys=False), end="")
    return 0
