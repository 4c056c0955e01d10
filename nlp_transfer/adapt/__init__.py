"""Domain adaptation: alignment losses (dann, mmd, coral), minimum class confusion (mcc), importance weights,
mixed source/target batches, self-training rounds on pseudo-labelled target rows (``self_training``) and model
selection on labelled target rows (``selection``).

Small pieces any model can use (``losses``, ``weights``, ``batches``); ``strategy`` puts them around a strategy's hooks
when a recipe has an ``adapt`` section; ``data`` loads the target rows, ``checks`` are its recipe checks, ``card`` what
the model card says. This module holds only the default weights: validating a recipe reads them, so it stays a leaf.
The modules sit in the layers of what they do (``tests/test_layering.py``): ``checks`` with the recipe, ``strategy``
and its losses with the strategies, ``data``, ``selection``, ``self_training`` and ``card`` above the loop.
"""

from __future__ import annotations

# adapt.weight left unset: the alignment term's scale per method. dann's term is a domain cross-entropy
# (order 0.7) behind a warmed-up reversal. With Adam the encoder's step follows the direction of the summed
# gradients, so once the task loss flattens a reversed domain gradient of the task's size takes over: at weight 1,
# books -> kitchen (1,700 rows, 1 epoch, 64 tokens, bf16) ended with the domain classifier at 3% accuracy on
# held-out rows (the encoder had flipped the domains, not merged them) and target accuracy 55.1% against
# source-only's 88.0%; weight 0.3 gave 78.4%, weight 0.1 87.8% with the classifier at chance: 0.1, the range
# used with BERT-size encoders. mmd's multi-kernel estimate is about 0.08 on MiniLM's features of two review
# domains: weight 1. CORAL's |C_s - C_t|^2 / 4d^2 is tiny on sentence-embedding features: it
# scales with the fourth power of the features' scale, and all-MiniLM-L6-v2's mean-pooled features have a
# per-dimension std of about 0.1. Measured at initialisation on 600 books and 600 kitchen reviews (128 tokens),
# batches of 32 + 32 rows: the term is 3.5e-6 (task loss 0.69), and its gradient at the pooled features is about
# 1/47,000 of the task loss's. Weight 10 (Deep CORAL's scale for 31-d features) left it at 1/5,000 of the task
# gradient, in effect no alignment; 1e4 makes it about 1/5 (term 0.035): it shapes the features without
# overriding the task. A backbone whose features have another scale needs its own adapt.weight (the logged
# alignment_loss shows the term); about 2/3 of a 32-row batch's term is sampling noise (same-domain batches
# give 2-4e-6), so much larger weights mostly chase noise. mcc's term is bounded by (classes - 1) / classes (0.5 for
# two classes, where a torn or a collapsed batch sits), the size of the task loss at initialisation: weight 1, the
# MCC paper's trade-off.
DEFAULT_WEIGHTS = {"dann": 0.1, "mmd": 1.0, "coral": 1e4, "mcc": 1.0}


def alignment_weight(method: str | None, weight: float | None) -> float:
    """The scale of the alignment term: ``adapt.weight``, else the method's default."""
    if method is None:
        return 0.0
    return DEFAULT_WEIGHTS[method] if weight is None else weight


