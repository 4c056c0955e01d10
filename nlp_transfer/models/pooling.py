"""A sequence classifier that reads the mean of the encoder's token states.

Sentence-embedding encoders (all-MiniLM, mpnet, e5, ...) are trained for mean pooling,
so a head on the mean often beats the native CLS head. This file is self-contained on
purpose: it is copied next to the weights of every ``mean`` model, and ``config.json``
points ``auto_map`` at it, so the folder loads with plain transformers::

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

(``nlp_transfer.load_model(folder)`` loads it without ``trust_remote_code``.) The saved ``config.json``
has a model type of its own, so plain transformers without ``trust_remote_code`` refuses the folder
instead of loading its weights into the encoder family's native (first-token) head.
"""

import json
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "nlp_transfer_mean_pooling"
AUTO_MAP = {"AutoConfig": "modeling_mean_pooling.MeanPoolingConfig",
            "AutoModelForSequenceClassification": "modeling_mean_pooling.MeanPoolingForSequenceClassification"}


class MeanPoolingConfig(PretrainedConfig):
    """A saved mean-pooling model's config: the encoder's settings, its family in ``encoder_model_type``."""

    model_type = MODEL_TYPE


def encoder_config(config) -> PretrainedConfig:
    """The wrapped encoder's own config (e.g. a ``BertConfig``), from a saved or an in-memory config."""
    if getattr(config, "model_type", None) != MODEL_TYPE:
        return config
    return encoder_config_from_dict(config.to_dict())


def encoder_config_from_dict(values: dict) -> PretrainedConfig:
    """The encoder's config from the values of a ``config.json`` (saved by this class, or by an older version)."""
    values = {k: v for k, v in values.items() if k not in ("auto_map", "transformers_version")}
    family = values.pop("encoder_model_type", None) or values["model_type"]
    values.pop("model_type", None)
    return AutoConfig.for_model(family, **values)


class MeanPoolingForSequenceClassification(PreTrainedModel):
    """Any ``AutoModel`` encoder + masked mean of its last hidden states + a linear head."""

    config_class = MeanPoolingConfig
    base_model_prefix = "encoder_model"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        encoder = encoder_config(config)
        try:
            self.encoder_model = AutoModel.from_config(encoder)
        except ValueError:  # the encoder has no SDPA attention (MPNet), which this wrapper's loading asked for
            self.encoder_model = AutoModel.from_config(encoder, attn_implementation="eager")
        if getattr(self.encoder_model, "pooler", None) is not None:
            self.encoder_model.pooler = None  # the CLS pooler is unused: keep no dead weights
        dropout = getattr(config, "classifier_dropout", None)
        if dropout is None:
            dropout = getattr(config, "hidden_dropout_prob", 0.1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        if module is self.classifier:
            nn.init.normal_(module.weight, std=getattr(self.config, "initializer_range", 0.02))
            nn.init.zeros_(module.bias)
        elif hasattr(self.encoder_model, "_init_weights"):
            self.encoder_model._init_weights(module)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Save as usual; ``config.json`` then takes this class's model type (the encoder's becomes ``encoder_model_type``)."""
        super().save_pretrained(save_directory, *args, **kwargs)
        path = Path(save_directory) / "config.json"
        config = json.loads(path.read_text(encoding="utf-8"))
        if config.get("model_type") != MODEL_TYPE:
            config["encoder_model_type"], config["model_type"] = config["model_type"], MODEL_TYPE
        config["auto_map"] = dict(AUTO_MAP)
        path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def pool(self, input_ids=None, attention_mask=None, **encoder_inputs) -> torch.Tensor:
        """Masked mean of the last hidden states: the sentence embedding the head reads."""
        hidden = self.encoder_model(input_ids=input_ids, attention_mask=attention_mask, **encoder_inputs)[0]
        if attention_mask is None:
            return hidden.mean(dim=1)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits from pooled sentence embeddings."""
        return self.classifier(self.dropout(pooled))

    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, **encoder_inputs):
        encoder_inputs = {k: v for k, v in encoder_inputs.items() if v is not None and k not in ("output_attentions", "output_hidden_states")}
        logits = self.head(self.pool(input_ids, attention_mask, **encoder_inputs))
        loss = None
        if labels is not None:
            problem = self.config.problem_type
            if problem == "regression":
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels.float())
            elif problem == "multi_label_classification":
                loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
            else:
                loss = nn.functional.cross_entropy(logits, labels.long())
        return SequenceClassifierOutput(loss=loss, logits=logits)
