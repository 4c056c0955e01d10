"""``nlp-transfer recipes list|copy``: the recipes that ship with the package, and a copy of one to edit."""

from __future__ import annotations

from ..recipe.bundled import bundled_recipes, copy_bundled_recipe


def add_parser(subparsers) -> None:
    """Add ``recipes`` with its two actions, ``list`` and ``copy``."""
    recipes = subparsers.add_parser("recipes", help="the bundled recipes: list them, or copy one to edit",
                                    description="The recipes that ship with the package (<task>/<strategy> and quickstart). "
                                                "Copy one, edit it, then `nlp-transfer validate` and `train` it.")
    actions = recipes.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every bundled recipe and what it is for")
    listing.set_defaults(run=run, action="list")
    copy = actions.add_parser("copy", help="copy a bundled recipe to a file (never overwrites)",
                              description="Copy a bundled recipe. Paths to files that ship in the package are rewritten "
                                          "to the installed files; other relative paths are rewritten relative to the copy "
                                          "as they were to the repository root (runs/ beside the copy); data the package "
                                          "does not ship is listed.")
    copy.add_argument("name", metavar="NAME", help="a name from `nlp-transfer recipes list`, e.g. sst2/lora")
    copy.add_argument("dest", metavar="DEST", nargs="?", help="file (or existing folder) to write; default ./<basename>.yaml")
    copy.set_defaults(run=run, action="copy")


def run(args) -> int:
    """Run the chosen action."""
    return _copy(args) if args.action == "copy" else _list(args)


def _list(args) -> int:
    recipes = bundled_recipes()
    width = max(len(r.name) for r in recipes)
    print(f"{'recipe':<{width}}  purpose")
    for recipe in recipes:
        print(f"{recipe.name:<{width}}  {recipe.purpose}")
    return 0


def _copy(args) -> int:
    copied = copy_bundled_recipe(args.name, args.dest)
    print(f"copied {copied.name} to {copied.dest}")
    for key, old, new in copied.rewritten:
        print(f"  {key}: {old} -> {new} (ships in the package)")
    for key, old, new in copied.rebased:
        print(f"  {key}: {old} -> {new} (relative to the copy, as it was to the repository root)")
    if copied.not_found:
        print("It reads files the package does not ship; bring them, or point the keys elsewhere with overrides:")
        for key, old, looked in copied.not_found:
            example = "[PATH]" if key.startswith("adapt.") else "PATH"  # adapt.*.files is a list
            print(f"  {key}: {old} (looked for at {looked}); e.g. {key}={example}")
    print(f"Next: nlp-transfer validate {copied.dest}")
    return 0
