"""First-token-only last layer: skip the work a [CLS]-reading head never looks at.

A sequence classifier whose head reads only the first position (BERT's pooler, RoBERTa's, ELECTRA's
and MPNet's classification heads, DistilBERT's pre-classifier, ViT's [CLS] classifier) needs
the last encoder layer's output at that one position. Keys and values still come from every
position, but the query, the attention output projection, the residual, the norms and the
feed-forward block run for position 0 alone: about 10/12 of the last layer's matmul work
(1/6 of the model's for 6 layers, minus the keys and values) is skipped. Logits are the full
model's up to float rounding (tests hold them within 1e-5), and so are one step's gradients:
no gradient flows from the positions the head never reads. ``Predictor`` uses it, and so does
training where the strategy's loss reads nothing but the model's logits (``full``, ``lora``,
``gradual``, ``partial``: ``Strategy.first_token_training``); dropout still applies at position 0.

The last layer's ``forward`` is replaced on that one module instance (weights, module names
and ``state_dict`` stay exactly as they were, so saving and loading are unaffected);
``disable`` restores it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Callable, Iterator

import torch

from .families import model_family

logger = logging.getLogger(__name__)

_MARK = "_nlp_transfer_first_token"


def supports_first_token(model) -> bool:
    """Whether ``model`` (or the model inside a peft wrapper) is a classifier this module can speed up."""
    return _plan(_unwrap(model)) is not None


def enable_first_token(model) -> bool:
    """Make the last encoder layer of ``model`` compute position 0 only.

    Args:
        model: A transformers classifier, or a peft model around one. Anything else is left alone.

    Returns:
        True when the model now runs a first-token-only last layer (also when it already did).
    """
    plan = _plan(_unwrap(model))
    if plan is None:
        return False
    layer, forward = plan
    if not getattr(layer, _MARK, False):
        layer.forward = forward.__get__(layer)  # an instance attribute: nn.Module.__call__ looks it up first
        setattr(layer, _MARK, True)
    return True


def disable_first_token(model) -> None:
    """Give the last encoder layer its own full forward back."""
    plan = _plan(_unwrap(model))
    if plan is not None and getattr(plan[0], _MARK, False):
        del plan[0].forward
        delattr(plan[0], _MARK)


def first_token_enabled(model) -> bool:
    """Whether ``model`` currently runs a first-token-only last layer."""
    plan = _plan(_unwrap(model))
    return plan is not None and bool(getattr(plan[0], _MARK, False))


@contextlib.contextmanager
def first_token_last_layer(model, wanted: bool = True) -> Iterator[bool]:
    """Within the block, ``model``'s last layer computes position 0 alone where ``wanted`` and the head allows it;
    yields whether it does. A model that already ran it before the block keeps it after."""
    already = first_token_enabled(model)
    enabled = wanted and enable_first_token(model)
    try:
        yield bool(enabled or already)
    finally:
        if enabled and not already:
            disable_first_token(model)


def _unwrap(model):
    """The transformers model inside a peft wrapper or ``partial``'s ``PartialModel`` (its modules are the ones that run)."""
    model = getattr(model, "task_model", model)
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _plan(model) -> tuple[torch.nn.Module, Callable] | None:
    """(the last encoder layer, its first-token forward), or None when the model's head reads more than position 0.

    The families table names the classifier class whose head reads position 0 alone (not, say, a mean-pooling
    head on the same encoder), where its layers are, and which of ``LAYER_FORWARDS`` runs its last one.
    """
    name, config = type(model).__name__, getattr(model, "config", None)
    if config is None or getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return None
    family = model_family(model)
    if family is None or family.first_token_layer is None or name != family.first_token_class:
        return None
    try:
        return model.base_model.get_submodule(family.layers)[-1], LAYER_FORWARDS[family.first_token_layer]
    except (AttributeError, IndexError):  # another transformers version laid the model out differently: run it as it is
        logger.debug("first-token last layer: unexpected layout of %s; left unchanged", name)
    return None


def _attend_first(attention, q_proj, k_proj, v_proj, first, hidden, mask, heads: int, head_dim: int, dropout: float,
                  **kwargs) -> torch.Tensor:
    """Attention of position 0 over every position, through the model's own attention function (eager, sdpa, ...)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    batch = hidden.shape[0]
    query = q_proj(first).view(batch, 1, heads, head_dim).transpose(1, 2)
    key = k_proj(hidden).view(batch, -1, heads, head_dim).transpose(1, 2)
    value = v_proj(hidden).view(batch, -1, heads, head_dim).transpose(1, 2)
    mask = _first_query_row(mask)
    eager = getattr(sys.modules[type(attention).__module__], "eager_attention_forward", None)
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager)
    out, _ = interface(attention, query, key, value, mask, dropout=dropout if attention.training else 0.0,
                       scaling=getattr(attention, "scaling", head_dim ** -0.5), **kwargs)
    return out.reshape(batch, 1, heads * head_dim)


def _first_query_row(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Of a (batch, heads or 1, queries, keys) mask or score bias, the row of position 0's query."""
    return mask[:, :, :1] if mask is not None and mask.dim() == 4 and mask.shape[2] > 1 else mask


def _bert_layer_forward(self, hidden_states, attention_mask=None, *args, **kwargs):
    """BertLayer (and RoBERTa / ELECTRA) at position 0: attention, output projection + norm, feed-forward."""
    sa = self.attention.self
    first = hidden_states[:, :1]
    context = _attend_first(sa, sa.query, sa.key, sa.value, first, hidden_states, attention_mask, sa.num_attention_heads,
                            sa.attention_head_size, sa.dropout.p, **_attention_kwargs(kwargs))
    return self.feed_forward_chunk(self.attention.output(context, first))


def _distilbert_layer_forward(self, hidden_states, attention_mask=None, **kwargs):
    """DistilBERT's TransformerBlock at position 0."""
    sa = self.attention
    first = hidden_states[:, :1]
    context = _attend_first(sa, sa.q_lin, sa.k_lin, sa.v_lin, first, hidden_states, attention_mask, sa.n_heads,
                            sa.attention_head_size, sa.dropout.p, **_attention_kwargs(kwargs))
    attended = self.sa_layer_norm(sa.out_lin(context) + first)
    return self.output_layer_norm(self.ffn(attended) + attended)


def _mpnet_layer_forward(self, hidden_states, attention_mask=None, position_bias=None, *args, **kwargs):
    """MPNetLayer at position 0: MPNet's own attention arithmetic (relative position bias added to the scores; it has
    no pluggable attention function), output projection + norm, feed-forward. Returns the layer's 1-tuple."""
    sa = self.attention.attn
    first = hidden_states[:, :1]
    batch, heads, head_dim = hidden_states.shape[0], sa.num_attention_heads, sa.attention_head_size
    query = sa.q(first).view(batch, 1, heads, head_dim).transpose(1, 2)
    key = sa.k(hidden_states).view(batch, -1, heads, head_dim).transpose(1, 2)
    value = sa.v(hidden_states).view(batch, -1, heads, head_dim).transpose(1, 2)
    scores = torch.matmul(query, key.transpose(-1, -2)) / head_dim ** 0.5
    for bias in (position_bias, attention_mask):
        if bias is not None:
            scores = scores + _first_query_row(bias)
    probs = sa.dropout(torch.softmax(scores, dim=-1))
    context = torch.matmul(probs, value).transpose(1, 2).reshape(batch, 1, heads * head_dim)
    attended = self.attention.LayerNorm(self.attention.dropout(sa.o(context)) + first)
    return (self.output(self.intermediate(attended), attended),)


def _vit_layer_forward(self, hidden_states, attention_mask=None, **kwargs):
    """ViTLayer (pre-norm) at position 0, the [CLS] token the classifier reads."""
    sa = self.attention
    normed = self.layernorm_before(hidden_states)
    context = _attend_first(sa, sa.q_proj, sa.k_proj, sa.v_proj, normed[:, :1], normed, attention_mask,
                            sa.num_attention_heads, sa.head_dim, sa.attention_dropout, **_attention_kwargs(kwargs))
    attended = self.dropout(sa.o_proj(context)) + hidden_states[:, :1]
    return self.dropout(self.mlp(self.layernorm_after(attended))) + attended


# The first-token forward of each layer layout, by the families table's ``first_token_layer``.
LAYER_FORWARDS: dict[str, Callable] = {"bert": _bert_layer_forward, "distilbert": _distilbert_layer_forward,
                                       "mpnet": _mpnet_layer_forward, "vit": _vit_layer_forward}


def _attention_kwargs(kwargs: dict) -> dict:
    """What the attention function may read from the layer's keyword arguments (none of the encoder's own)."""
    return {k: v for k, v in kwargs.items() if k not in ("encoder_hidden_states", "encoder_attention_mask", "cache",
                                                          "past_key_values", "output_attentions", "output_hidden_states")}
