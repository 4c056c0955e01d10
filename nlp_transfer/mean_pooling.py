"""A sequence classifier that reads the mean of the encoder's token states.

Sentence-embedding encoders (all-MiniLM, mpnet, e5, ...) are trained for mean pooling,
so a head on the mean often beats the native CLS head. This file is self-contained on
purpose: it is copied next to the weights of every ``mean`` model, and ``config.json``
points ``auto_map`` at it, so the folder loads with plain transformers::

    AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)

(``nlp_transfer.load_model(folder)`` loads it without ``trust_remote_code``.)
"""

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class MeanPoolingForSequenceClassification(PreTrainedModel):
    """Any ``AutoModel`` encoder + masked mean of its last hidden states + a linear head."""

    config_class = PretrainedConfig
    base_model_prefix = "encoder_model"
    supports_gradient_checkpointing = True
    _supports_sdpa = True

    def __init__(self, config):
        super().__init__(config)
        self.num_labels = config.num_labels
        try:
            self.encoder_model = AutoModel.from_config(config)
        except ValueError:  # the encoder has no SDPA attention (MPNet), which this wrapper's loading asked for
            self.encoder_model = AutoModel.from_config(config, attn_implementation="eager")
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
