"""Model families in one table, keyed by ``config.model_type``: what the package knows about each family.

Where its encoder layers are, how its sequence head reads the first token, whether its last layer can
run for the first token alone, its LoRA targets, what its image head reads, its position offset. The
code elsewhere reads this table instead of testing model types itself; what is derived from the model
(its head modules, a pretrained pooler, the layer groups) needs no entry.

Adding a family is one ``Family`` entry. Its ``cls_head`` names one of ``models.build``'s head
functions and ``first_token_layer`` one of ``models.first_token``'s layer forwards; write a new one
there only for a layout none of them covers.

A leaf: imports nothing from the package, nor torch, so recipe checks may read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Family:
    """What the package knows about one model family.

    Attributes:
        layers: The encoder's layer list (a convolutional backbone's stages), as a dotted path inside the
            base model (``getattr(model, model.base_model_prefix)``). None: looked for among ``LAYER_PATHS``.
        cls_head: How the family's ``ForSequenceClassification`` turns the first token's state into logits,
            so ``frozen`` can replay it on cached features: a key of ``models.build``'s head functions
            (``pooler``: BERT's pretrained pooler, dropout, classifier; ``classifier``: the classifier reads the
            state itself; ``deberta``, ``distilbert``, ``albert``). None: ``cls`` features are refused.
        first_token_class: The classifier class whose head reads position 0 alone (its last layer may then
            compute that position only), e.g. ``BertForSequenceClassification``.
        first_token_layer: The first-token forward of that classifier's last layer: a key of
            ``models.first_token.LAYER_FORWARDS``.
        lora_targets: The attention projections LoRA adapts by default. Empty: peft's own table.
        attention: False for a convolutional backbone: LoRA has no attention projection to adapt.
        image_features: What the image classifier's head reads, so ``frozen`` can cache it:
            ``first_token`` (the ``[CLS]`` state of the final, normed hidden states) or ``pooled``
            (the backbone's pooled output). None: cached image features are refused.
        position_offset: Position ids start after ``pad_token_id`` (RoBERTa's), so the model reads
            ``max_position_embeddings - pad_token_id - 1`` tokens at most.
    """

    layers: str | None = None
    cls_head: str | None = None
    first_token_class: str | None = None
    first_token_layer: str | None = None
    lora_targets: tuple[str, ...] = ()
    attention: bool = True
    image_features: Literal["first_token", "pooled"] | None = None
    position_offset: bool = False


_QKV = ("query", "key", "value")
_VIT_QV = ("q_proj", "v_proj")  # vision transformers: the LoRA paper's query and value (transformers 5 names)
_CONV = Family(attention=False)


def _bert(cls_head: str = "classifier", first_token_class: str | None = None, **extra) -> Family:
    """A BERT-layout encoder (``encoder.layer`` of BertLayer-like layers with query / key / value)."""
    return Family(layers="encoder.layer", cls_head=cls_head, first_token_class=first_token_class,
                  first_token_layer="bert" if first_token_class else None, lora_targets=_QKV, **extra)


FAMILIES: dict[str, Family] = {
    # text encoders
    "bert": _bert("pooler", "BertForSequenceClassification"),
    "megatron-bert": _bert("pooler"),
    "ernie": _bert("pooler"),
    "roberta": _bert("classifier", "RobertaForSequenceClassification", position_offset=True),
    "xlm-roberta": _bert("classifier", "XLMRobertaForSequenceClassification", position_offset=True),
    "camembert": _bert("classifier", "CamembertForSequenceClassification", position_offset=True),
    "electra": _bert("classifier", "ElectraForSequenceClassification"),
    "xlm-roberta-xl": Family(position_offset=True),
    "longformer": Family(position_offset=True),
    "distilbert": Family(layers="transformer.layer", cls_head="distilbert",
                         first_token_class="DistilBertForSequenceClassification", first_token_layer="distilbert",
                         lora_targets=("q_lin", "k_lin", "v_lin")),
    "mpnet": Family(layers="encoder.layer", cls_head="classifier", first_token_class="MPNetForSequenceClassification",
                    first_token_layer="mpnet", lora_targets=("q", "k", "v")),  # peft's table has no MPNet entry
    "deberta": Family(layers="encoder.layer", cls_head="deberta", lora_targets=("in_proj",)),
    "deberta-v2": Family(layers="encoder.layer", cls_head="deberta", lora_targets=("query_proj", "key_proj", "value_proj")),
    # vision transformers
    "vit": Family(layers="layers", first_token_class="ViTForImageClassification", first_token_layer="vit",
                  lora_targets=_VIT_QV, image_features="first_token"),
    "deit": Family(layers="layers", lora_targets=_VIT_QV, image_features="first_token"),
    "beit": Family(layers="layers", lora_targets=_VIT_QV),
    "dinov2": Family(layers="encoder.layer", lora_targets=_VIT_QV),
    "vit_msn": Family(layers="layers", lora_targets=_VIT_QV),
    "vit_mae": Family(lora_targets=_VIT_QV),
    "data2vec-vision": Family(layers="encoder.layer", lora_targets=("query", "value")),
    "swin": Family(layers="encoder.layers"),
    # convolutional backbones
    "resnet": Family(layers="encoder.stages", attention=False, image_features="pooled"),
    "convnext": Family(layers="encoder.stages", attention=False, image_features="pooled"),
    "convnextv2": Family(layers="encoder.stages", attention=False, image_features="pooled"),
    "regnet": Family(layers="encoder.stages", attention=False, image_features="pooled"),
    **dict.fromkeys(("mobilenet_v1", "mobilenet_v2", "efficientnet", "bit", "van", "poolformer"), _CONV),
    # last among the layouts probed: ALBERT's layer groups (one group usually serves every layer: its weights are shared)
    "albert": Family(layers="encoder.albert_layer_groups", cls_head="albert", lora_targets=_QKV),
}

# Every layer-list layout of the table, in table order: where the layers of a family not listed are looked for.
LAYER_PATHS: tuple[str, ...] = tuple(dict.fromkeys(f.layers for f in FAMILIES.values() if f.layers))


def family_of(model_type: str | None) -> Family | None:
    """The table's entry for a ``config.model_type`` (None for a family it does not list)."""
    return FAMILIES.get(model_type) if model_type else None


def model_family(model) -> Family | None:
    """The table's entry for a model's family (None when it has no config or the table does not list it)."""
    return family_of(getattr(getattr(model, "config", None), "model_type", None))


def layer_paths(model_type: str | None) -> tuple[str, ...]:
    """Where to look for a family's layer list inside its base model: its own path first, then every known layout."""
    own = family_of(model_type)
    first = (own.layers,) if own is not None and own.layers else ()
    return tuple(dict.fromkeys(first + LAYER_PATHS))


def families_with(attribute: str) -> list[str]:
    """The model types whose entry sets ``attribute`` (e.g. ``cls_head``), in table order."""
    return [name for name, entry in FAMILIES.items() if getattr(entry, attribute)]
