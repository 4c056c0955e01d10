"""What the head of each vision family reads, so ``frozen`` can cache it and replay the head.

Two layouts cover the common image classifiers of transformers (the families table's ``image_features``):

- transformer backbones (ViT, DeiT): the classifier reads the first (``[CLS]``) token of the
  final, layer-normed hidden states (``first_token``);
- convolutional backbones (ResNet, ConvNeXt, RegNet): the classifier reads the pooled output (``pooled``).
"""

from __future__ import annotations

import torch

from ..errors import ModelError
from .families import Family, families_with, model_family


def is_image_model(model) -> bool:
    """Whether ``model`` reads ``pixel_values`` (its main input is an image)."""
    return getattr(model, "main_input_name", None) == "pixel_values"


def image_features(model, inputs: dict) -> torch.Tensor:
    """What an image classifier's head reads, per image (see the module docstring)."""
    family = _supported_family(model)
    encoder = getattr(model, model.base_model_prefix)
    out = encoder(pixel_values=inputs["pixel_values"])
    if family.image_features == "first_token":
        return out.last_hidden_state[:, 0]
    return out.pooler_output.flatten(1)


def image_head_logits(model, features: torch.Tensor) -> torch.Tensor:
    """Logits from cached features, as the model's own forward computes them."""
    _supported_family(model)
    return model.classifier(features)


def _supported_family(model) -> Family:
    family = model_family(model)
    if family is None or family.image_features is None:
        raise ModelError(f"strategy frozen: cached image features are supported for model types "
                         f"{', '.join(families_with('image_features'))}; got {model.config.model_type!r}. Use strategy "
                         "full (or lora for attention backbones) with this model")
    return family
