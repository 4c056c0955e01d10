"""Build a backbone with its task head, save and load outputs, and find the parts of a task model.

One builder for every task type (``build_task_model``): the task type names the Auto class,
``pooling`` picks the mean-pooling head for sequence-level text, ``from_scratch`` gives random
weights in the architecture, and a loaded head that predicts other classes is replaced.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from ..errors import ModelError
from ..tasks.spec import TaskSpec
from .families import families_with, layer_paths, model_family
from .files import (
    ADAPTER_CONFIG,
    CONFIG,
    MEAN_POOLING_CLASS,
    TASK_CONFIG,
    check_model_folder,
    read_model_json,
    resolve_model_path,
)
from .image_heads import image_head_logits, is_image_model
from .pooling import MODEL_TYPE as MEAN_POOLING_MODEL_TYPE
from .pooling import MeanPoolingForSequenceClassification, encoder_config_from_dict

logger = logging.getLogger(__name__)

MEAN_POOLING_MODELING_FILE = "modeling_mean_pooling.py"
_HEADS = ("ForSequenceClassification", "ForTokenClassification", "ForImageClassification")


def load_tokenizer(path: str, trust_remote_code: bool = False):
    """The backbone's tokenizer (fast when available)."""
    # A mean-pooling model's config.json has a model type of its own, which AutoTokenizer (without trust_remote_code)
    # can only read as a bare PretrainedConfig, with a warning on every load: hand it the encoder's config instead.
    encoder = _saved_mean_pooling_config(path)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code,
                                             **({"config": encoder} if encoder is not None else {}))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a tokenizer from {path!r}: {exc}") from None


def build_task_model(path: str, task: TaskSpec, *, pooling: str | None = None, from_scratch: bool = False,
                     trust_remote_code: bool = False, name: str | None = None):
    """A task model on a backbone, its label maps set from the data.

    Args:
        path: A resolved model folder or Hub id (see ``resolve_model_path``).
        task: Head size, label names and problem type; its type names the Auto class.
        pooling: ``mean`` gives ``MeanPoolingForSequenceClassification`` over any encoder; else the
            task type's native head (``cls``).
        from_scratch: Random weights in the architecture of ``path`` (a config folder, or the baseline
            without transfer).
        trust_remote_code: Passed to transformers; off unless the recipe turns it on.
        name: The recipe's ``model.name``. A Hub id becomes the model's ``name_or_path``, so what
            is saved from it (a peft adapter's base model) names the Hub id, not this machine's copy.

    Raises:
        ModelError: The model cannot be built; a damaged file of its folder (a truncated weights file, a config
            that is not JSON) is named, with how to replace it.
    """
    check_model_folder(path, name, weights=not from_scratch)
    try:
        old = _load_config(path, trust_remote_code)
        config = _load_config(path, trust_remote_code, num_labels=task.num_labels, id2label=task.id2label,
                              label2id=task.label2id, problem_type=task.problem_type)
        if pooling == "mean":
            config.architectures = [MEAN_POOLING_CLASS]
        if from_scratch:
            model = (MeanPoolingForSequenceClassification(config) if pooling == "mean"
                     else task.kind.auto_class().from_config(config, trust_remote_code=trust_remote_code))
            logger.info("model.from_scratch: random weights in the architecture of %s (%s, %d-class head)", path,
                        config.model_type, task.num_labels)
        else:
            auto = MeanPoolingForSequenceClassification if pooling == "mean" else task.kind.auto_class()
            extra = {} if pooling == "mean" else {"trust_remote_code": trust_remote_code}
            model = auto.from_pretrained(path, config=config, ignore_mismatched_sizes=True, **extra)
            _fresh_head(model, old, task, path)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot build a {task.type} model from {path!r}: {exc}") from None
    if name and not Path(name).expanduser().is_dir():
        model.name_or_path = model.config.name_or_path = name
    return model


def _load_config(path: str, trust_remote_code: bool = False, **updates):
    """``AutoConfig.from_pretrained``, which also reads the config of a saved mean-pooling model (its encoder's)."""
    config = _saved_mean_pooling_config(path)
    if config is None:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **updates)
    config.update(updates)
    return config


def _saved_mean_pooling_config(path: str):
    """The encoder's config of a saved mean-pooling model folder; None for any other folder or a Hub id."""
    file = Path(path) / CONFIG
    values = read_model_json(file) if file.is_file() else {}
    return encoder_config_from_dict(values) if values.get("model_type") == MEAN_POOLING_MODEL_TYPE else None


def build_model(path: str, task: TaskSpec, *, pooling: str = "cls", trust_remote_code: bool = False,
                name: str | None = None):
    """A pretrained task model (``build_task_model`` without ``from_scratch``)."""
    return build_task_model(path, task, pooling=pooling, trust_remote_code=trust_remote_code, name=name)


def _fresh_head(model, old_config, task: TaskSpec, path: str) -> None:
    """Re-initialise a loaded head that predicts other classes, and say so."""
    new = task.label_names
    if not any(a.endswith(_HEADS) for a in (old_config.architectures or [])):
        logger.info("Backbone %s: new %d-class head (%s)", path, len(new), _short(new))
        return
    old = [str(old_config.id2label[i]) for i in sorted(old_config.id2label)]
    if old == new:
        logger.info("Classifier %s: keeping its %d-class head (same labels)", path, len(new))
        return
    for module in new_head_modules(model):  # same shape, other classes: ignore_mismatched_sizes keeps it, so reset here
        for layer in module.modules():
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
    logger.info("Classifier %s: replacing its %d-class head (%s) with a fresh %d-class head (%s)", path, len(old),
                _short(old), len(new), _short(new))


def _short(labels: list[str]) -> str:
    return ", ".join(labels[:5]) + (f", ... ({len(labels)} in all)" if len(labels) > 5 else "")


# ------------------------------------------------------------------ saving and loading
def save_model(model, processor, folder: Path) -> None:
    """A plain transformers model folder: weights, config, the tokenizer (or image processor) and, for a
    mean-pooling model, its modeling file (``trust_remote_code`` loads it)."""
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    write_modeling_file(model, folder)


def write_modeling_file(model, out_dir: Path) -> None:
    """Ship the mean-pooling class next to its weights so ``trust_remote_code`` loads it."""
    if isinstance(model, MeanPoolingForSequenceClassification):
        shutil.copyfile(Path(__file__).with_name("pooling.py"), Path(out_dir) / MEAN_POOLING_MODELING_FILE)


def load_model(folder: str | Path, trust_remote_code: bool = False):
    """Load a model folder this package wrote (native, mean-pooling or a peft adapter) for inference.

    Raises:
        ModelError: The folder holds no model, or a file of it is damaged (named, with how to replace it).
    """
    folder = Path(folder)
    check_model_folder(folder)
    if (folder / ADAPTER_CONFIG).is_file():
        return _load_adapter(folder, trust_remote_code)
    if not (folder / CONFIG).is_file():
        raise ModelError(f"'{folder}' holds no model (no config.json or {ADAPTER_CONFIG}); give an output folder "
                         "written by `nlp-transfer train`")
    config = read_model_json(folder / CONFIG)
    if MEAN_POOLING_CLASS in config.get("architectures", []):
        return MeanPoolingForSequenceClassification.from_pretrained(folder, config=encoder_config_from_dict(config))
    return _auto_class(config).from_pretrained(folder, trust_remote_code=trust_remote_code)


def _auto_class(config: dict, peft_task_type: str | None = None):
    """The Auto class that loads a saved task model (token, image or sequence classification).

    ``peft_task_type``: an adapter's ``task_type`` (its task config may still name the bare backbone).
    """
    from transformers import (
        AutoModelForImageClassification,
        AutoModelForTokenClassification,
    )
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    )

    architectures = config.get("architectures") or []
    family = config.get("model_type")
    if peft_task_type == "TOKEN_CLS" or any(a.endswith("ForTokenClassification") for a in architectures):
        return AutoModelForTokenClassification
    if any(a.endswith("ForImageClassification") for a in architectures) or (
            family in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES and family not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES):
        return AutoModelForImageClassification
    return AutoModelForSequenceClassification


def _load_adapter(folder: Path, trust_remote_code: bool = False):
    """A peft adapter on a freshly loaded base model, found like ``model.name`` (offline copies too)."""
    from peft import PeftConfig, PeftModel

    adapter = PeftConfig.from_pretrained(str(folder))
    if not adapter.base_model_name_or_path:
        raise ModelError(f"'{folder / ADAPTER_CONFIG}' names no base model (base_model_name_or_path is empty); "
                         "set it to the Hub id or folder of the model the adapter was trained on")
    base_path = resolve_model_path(adapter.base_model_name_or_path, adapter.revision)
    check_model_folder(base_path, adapter.base_model_name_or_path)
    task_config = folder / TASK_CONFIG
    saved = read_model_json(task_config) if task_config.is_file() else {}
    config = AutoConfig.from_pretrained(str(task_config)) if task_config.is_file() else None
    if MEAN_POOLING_CLASS in (saved.get("architectures") or []):
        base = MeanPoolingForSequenceClassification.from_pretrained(base_path, config=encoder_config_from_dict(saved))
    else:
        base = _auto_class(saved, adapter.task_type).from_pretrained(base_path, config=config,
                                                                     trust_remote_code=trust_remote_code)
    return PeftModel.from_pretrained(base, str(folder))


# ------------------------------------------------------------------ parts of a task model
def unwrap(model):
    """The transformers task model inside a training wrapper (peft, cached-feature head, distillation student)."""
    if hasattr(model, "get_base_model"):
        return model.get_base_model()
    return getattr(model, "task_model", model)


def base_encoder(model) -> torch.nn.Module:
    """The pretrained encoder inside a task model (what ``frozen`` freezes)."""
    return getattr(model, model.base_model_prefix)


def head_modules(model) -> list[torch.nn.Module]:
    """The modules that turn the encoder's output into logits (what ``frozen`` trains), a pretrained pooler included."""
    if isinstance(model, MeanPoolingForSequenceClassification):
        return [model.classifier]
    encoder = base_encoder(model)
    heads = [m for name, m in model.named_children() if name != model.base_model_prefix]
    pooler = getattr(encoder, "pooler", None)
    return heads + ([pooler] if pooler is not None else [])


def pretrained_pooler(model) -> torch.nn.Module | None:
    """The pooler inside the backbone (loaded with its weights), as opposed to a head's new pooler (DeBERTa's)."""
    pooler = getattr(base_encoder(model), "pooler", None)
    return pooler if any(pooler is m for m in head_modules(model)) else None


def new_head_modules(model) -> list[torch.nn.Module]:
    """The head's modules that the backbone did not bring (e.g. ``classifier``; not BERT's pretrained pooler)."""
    pooler = pretrained_pooler(model)
    return [m for m in head_modules(model) if m is not pooler]


def new_head_parameter_names(model) -> set[str]:
    """Names (in ``model``, which may be a training wrapper) of the parameters of the task model's new head."""
    head = {id(p) for m in new_head_modules(unwrap(model)) for p in m.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in head}


def model_pooling(model) -> str:
    """What a sequence-level head reads: ``mean`` or ``cls``."""
    return "mean" if isinstance(unwrap(model), MeanPoolingForSequenceClassification) else "cls"


def encoder_layers(model) -> torch.nn.ModuleList | None:
    """The encoder's list of layers (or a convolutional backbone's stages), or None when the layout is unknown."""
    found = encoder_layers_at(model)
    return found[1] if found else None


def encoder_layers_at(model) -> tuple[str, torch.nn.ModuleList] | None:
    """The dotted path (in ``model``) and the module of the encoder's layer list, or None when the layout is unknown.

    Looked for where the families table puts the family's layers, then at every layout the table knows.
    """
    for path in layer_paths(getattr(getattr(model, "config", None), "model_type", None)):
        name = f"{model.base_model_prefix}.{path}"
        try:
            layers = model.get_submodule(name)
        except AttributeError:
            continue
        if isinstance(layers, torch.nn.ModuleList):
            return name, layers
    return None


@dataclass
class LayerGroup:
    """Parameters of one depth of a task model, bottom (embeddings, depth 0) to top (head)."""

    name: str
    depth: int
    params: list
    is_head: bool = False


def layer_groups(model) -> list[LayerGroup]:
    """A task model's parameters by depth: ``embeddings`` (0), ``layer.<i>`` (i + 1), then ``top`` (the
    backbone's pooler and final norms) and ``head`` (the new head), both at depth layers + 1.

    Derived from the model (its encoder layer list and its head), not from parameter names, so it
    works for every family with a known layer list: BERT, RoBERTa, DistilBERT, ELECTRA, DeBERTa, MPNet,
    ALBERT (its shared layer groups), ViT / DeiT layers and ResNet / ConvNeXt stages. ``embeddings``
    holds everything the first layer depends on: the embeddings, ELECTRA's and ALBERT's projections, and
    the tables every layer reads (DeBERTa's relative embeddings and convolution, MPNet's relative
    attention bias), which sit in the encoder beside the layers. ``model`` may be a training wrapper.
    """
    task_model = unwrap(model)
    found = encoder_layers_at(task_model)
    layers = found[1] if found else []
    # the module holding the layer list (BERT's ``encoder``): what else it holds is shared by every layer
    holder = task_model.get_submodule(found[0].rsplit(".", 1)[0]) if found else None
    shared = set() if holder is None or holder is base_encoder(task_model) else {id(p) for p in holder.parameters()}
    layer_of = {id(p): i for i, layer in enumerate(layers) for p in layer.parameters()}
    head = {id(p) for m in new_head_modules(task_model) for p in m.parameters()}
    encoder = {id(p) for p in base_encoder(task_model).parameters()}
    count = len(layers)
    groups: dict[str, LayerGroup] = {"embeddings": LayerGroup("embeddings", 0, [])}
    groups.update({f"layer.{i}": LayerGroup(f"layer.{i}", i + 1, []) for i in range(count)})
    groups["top"] = LayerGroup("top", count + 1, [])
    groups["head"] = LayerGroup("head", count + 1, [], is_head=True)
    seen_layer = False
    for name, param in model.named_parameters():
        key = id(param)
        if key in layer_of:
            groups[f"layer.{layer_of[key]}"].params.append(param)
            seen_layer = True
        elif key in head or key not in encoder:  # the new head, and modules a wrapper adds (projections)
            groups["head"].params.append(param)
        elif key in shared:  # relative position tables, embedding projections: every layer reads them
            groups["embeddings"].params.append(param)
        else:  # the backbone's own parameters outside its layers: below them (embeddings) or above (pooler, norms)
            groups["top" if seen_layer and "embed" not in name else "embeddings"].params.append(param)
    return [g for g in groups.values() if g.params]


# ------------------------------------------------------------------ features for frozen
def pooled_features(model, batch: dict, pooling: str) -> torch.Tensor:
    """What a sequence head reads, per example: the first token's state (cls) or the masked mean."""
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "length")}
    if isinstance(model, MeanPoolingForSequenceClassification):
        return model.pool(**inputs)
    hidden = base_encoder(model)(**inputs)[0]
    return hidden[:, 0]


def token_features(model, batch: dict) -> torch.Tensor:
    """What a token head reads: the encoder's last hidden state at every position."""
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "length")}
    return base_encoder(model)(**inputs)[0]


def head_logits(model, features: torch.Tensor) -> torch.Tensor:
    """Logits from cached pooled (or, for token heads, per-token) features, exactly as the model's own forward computes them."""
    if features.ndim == 3:  # (batch, positions, hidden): every family's ForTokenClassification is dropout + linear
        if not isinstance(getattr(model, "classifier", None), torch.nn.Linear):
            raise ModelError(f"strategy frozen: cannot find the token head of {type(model).__name__} (a linear 'classifier'); "
                             "use strategy full or lora for this model")
        return model.classifier(model.dropout(features))
    if isinstance(model, MeanPoolingForSequenceClassification):
        return model.head(features)
    if is_image_model(model):
        return image_head_logits(model, features)
    family = model_family(model)
    if family is None or family.cls_head is None:
        raise ModelError(f"model.pooling: 'cls' features are supported for model types "
                         f"{', '.join(sorted(families_with('cls_head')))}; got {model.config.model_type!r}. "
                         "Use model.pooling=mean, which works with any encoder")
    return _CLS_HEADS[family.cls_head](model, features.unsqueeze(1))


class FeatureHead(torch.nn.Module):
    """The part of a task model that trains under ``frozen``: cached features in, logits out.

    It holds the whole task model (so the head's weights are trained in place), but its
    forward only runs the head; the frozen encoder is never called during training.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    @property
    def task_model(self):
        return self.model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return head_logits(self.model, features)


def _bert_head(model, seq):
    return model.classifier(model.dropout(base_encoder(model).pooler(seq)))


def _sequence_head(model, seq):
    return model.classifier(seq)


def _deberta_head(model, seq):
    return model.classifier(model.dropout(model.pooler(seq)))


def _distilbert_head(model, seq):
    hidden = torch.relu(model.pre_classifier(seq[:, 0]))
    return model.classifier(model.dropout(hidden))


def _albert_head(model, seq):
    encoder = model.albert
    return model.classifier(model.dropout(encoder.pooler_activation(encoder.pooler(seq[:, 0]))))


# How a ForSequenceClassification turns the first token's state into logits, by the families table's ``cls_head``.
_CLS_HEADS = {"pooler": _bert_head, "classifier": _sequence_head, "deberta": _deberta_head,
              "distilbert": _distilbert_head, "albert": _albert_head}
