"""nlp_transfer: transfer learning on the Hugging Face stack from one YAML recipe.

    >>> import nlp_transfer
    >>> out = nlp_transfer.train("recipes/quickstart.yaml", overrides=["train.epochs=1"])
    >>> nlp_transfer.predict(out.output_dir, ["Great service, would come back."])
    >>> classify = nlp_transfer.Predictor(out.output_dir)  # loads once, for many calls
    >>> classify(["Slow and rude.", "Lovely staff."], batch_size=64)

The names below import on first use (``import nlp_transfer`` itself loads no torch), so loading
and validating a recipe stays fast.
"""

from __future__ import annotations

import importlib

from .errors import (
    DataError,
    ExportError,
    HubError,
    ModelError,
    NlpTransferError,
    OutputDirError,
    RecipeError,
    TrainingError,
)

_LAZY = {  # name -> the module that defines it (``load_recipe`` and ``Recipe`` stay light: no torch)
    "push_to_hub": "hub.push", "Predictor": "inference.predictor", "predict": "inference.predictor",
    "load_model": "models.build", "optimize": "inference.optimize", "Recipe": "recipe.schema", "compare": "compare.grid",
    "load_recipe": "recipe.load", "TrainOutput": "training.session", "evaluate": "training.single", "train": "api",
    "tune": "search.runner",
}

__all__ = [
    "DataError", "ExportError", "HubError", "ModelError", "NlpTransferError", "OutputDirError", "Predictor", "Recipe",
    "RecipeError", "TrainOutput", "TrainingError", "compare", "evaluate", "load_model", "load_recipe", "optimize", "predict",
    "push_to_hub", "train", "tune",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
