"""nlp_transfer: transfer learning on the Hugging Face stack from one YAML recipe.

    >>> import nlp_transfer
    >>> out = nlp_transfer.train("recipes/quickstart.yaml", overrides=["train.epochs=1"])
    >>> nlp_transfer.predict(out.output_dir, ["Great service, would come back."])
    >>> classify = nlp_transfer.Predictor(out.output_dir)  # loads once, for many calls
    >>> classify(["Slow and rude.", "Lovely staff."], batch_size=64)
"""

from .errors import DataError, ExportError, HubError, ModelError, NlpTransferError, RecipeError, TrainingError
from .hub import push_to_hub
from .inference import Predictor, predict
from .models import load_model
from .optimize import optimize
from .recipe import Recipe, load_recipe
from .runner import TrainOutput, evaluate, train

__all__ = [
    "DataError", "ExportError", "HubError", "ModelError", "NlpTransferError", "Predictor", "Recipe", "RecipeError", "TrainOutput",
    "TrainingError", "evaluate", "load_model", "load_recipe", "optimize", "predict", "push_to_hub", "train",
]
__version__ = "0.1.0"
