"""The Python API: train, evaluate, predict, optimize, compare, tune and push, in one place.

    >>> from nlp_transfer import api
    >>> out = api.train("recipes/quickstart.yaml", overrides=["train.epochs=1"])
    >>> api.predict(out.output_dir, ["Great service, would come back."])

The top of the package: it may import every layer below and nothing imports it but ``cli``.
"""

from __future__ import annotations

from pathlib import Path

from .compare.grid import compare
from .errors import RecipeError
from .hub.push import push_to_hub
from .inference.optimize import optimize
from .inference.predictor import Predictor, predict
from .models.build import load_model
from .multitask.runner import train_multitask
from .recipe.load import load_any_recipe, load_recipe
from .recipe.schema import MultiTaskRecipe, Recipe
from .training import single
from .training.session import TrainOutput
from .training.single import evaluate
from .search.runner import SearchResult, tune

__all__ = ["MultiTaskRecipe", "Predictor", "Recipe", "SearchResult", "TrainOutput", "compare", "evaluate", "load_any_recipe",
           "load_model", "load_recipe", "optimize", "predict", "push_to_hub", "train", "tune"]


def train(recipe: Recipe | MultiTaskRecipe | str | Path | dict, overrides=None, *, resume: bool = False,
          overwrite: bool = False, single_task_baselines: bool = False) -> TrainOutput:
    """Train, evaluate and export the model a recipe describes.

    Args:
        recipe: A ``Recipe`` or ``MultiTaskRecipe``, a YAML path or a dict (with a ``tasks`` section: multi-task).
        overrides: Dotted ``key=value`` strings or a dict, applied before validation.
        resume: Continue from the latest checkpoint of an interrupted run.
        overwrite: Replace an existing, non-empty ``output.dir``.
        single_task_baselines: Multi-task recipes: then train each task alone with the same budget and add the
            per-task comparison to the output (``multitask/baselines.py``).

    Returns:
        The output folder and the metrics written to its ``metrics.json``.

    Raises:
        OutputDirError: ``output.dir`` is unusable or another run holds it (before any work).
        RecipeError: ``--resume`` with keys that change the training trajectory (before any work).

    A run that fails removes its work folder (``.<output>.partial``) unless it holds complete
    checkpoints; then only those are kept, for ``--resume``.
    """
    recipe = recipe if isinstance(recipe, (Recipe, MultiTaskRecipe)) else load_any_recipe(recipe, overrides)
    if isinstance(recipe, MultiTaskRecipe):
        return train_multitask(recipe, resume=resume, overwrite=overwrite, single_task_baselines=single_task_baselines)
    if single_task_baselines:
        raise RecipeError([f"--single-task-baselines: {recipe.source} is a single-task recipe; the option compares a "
                           "multi-task recipe's tasks (a tasks section) with each trained alone"], recipe.source)
    return single.train(recipe, resume=resume, overwrite=overwrite)
