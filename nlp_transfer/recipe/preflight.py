"""Checks a run makes before any work (after the recipe's own validation): what needs the model's files.

Kept apart from ``recipe.py`` because it reads the model folder (never downloads): validation
stays a pure function of the recipe, and these run in ``train`` before the work folder exists.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import RecipeError
from ..models.families import family_of
from ..models.files import _read_json, local_model_path

logger = logging.getLogger(__name__)

_DEFAULT_MAX_LENGTH = 128  # ModelConfig.max_length's default


def check_max_length(recipe) -> None:
    """``model.max_length`` against the positions the local model has.

    A value the recipe sets above the model's limit is an error (a long row would crash training and
    the published model would crash on long text); the default (128) is clamped with a warning.
    Nothing is checked when the model is not on this machine yet, or has no position limit.

    Raises:
        RecipeError: ``model.max_length`` exceeds the model's positions.
    """
    model = recipe.model
    path = local_model_path(model.name, model.revision) if model.name else None
    config = (_read_json(Path(path) / "config.json") if path else None) or {}
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or "image_size" in config:
        return
    family = family_of(config.get("model_type"))
    offset = (config.get("pad_token_id") or 1) + 1 if family is not None and family.position_offset else 0  # padding_idx + 1 unused
    limit = positions - offset
    if model.max_length <= limit:
        return
    if model.max_length == _DEFAULT_MAX_LENGTH:
        logger.warning("model.max_length: the default %d exceeds the %d positions of %s (max_position_embeddings=%d); "
                       "using %d", model.max_length, limit, model.name, positions, limit)
        model.max_length = limit
        return
    raise RecipeError([f"model.max_length: got {model.max_length}, but {model.name} reads at most {limit} tokens "
                       f"(max_position_embeddings={positions} in its config.json); set model.max_length={limit} or less"],
                      recipe.source)
