"""Recipes: YAML -> dict -> dotted overrides -> typed, fully validated dataclasses.

Owns the recipe schema (``schema``, a leaf that imports no torch), loading and overrides (``load``), the one
rule for every path in a recipe (``paths``: against the recipe's folder, or the working directory for overrides), the
multi-task ``tasks:`` section (``multitask``), the checks that need a model's files (``preflight``) and the
recipes that ship with the package (``bundled``: list them, copy one out).
May import: errors, tasks, strategies (their options), evaluation (metric names), models.files, adapt.checks.
Must not import training, inference, outputs, hub, compare or the API.
"""
