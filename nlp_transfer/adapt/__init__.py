"""Domain adaptation: alignment losses (dann, mmd, coral), minimum class confusion (mcc), importance weights,
mixed source/target batches, self-training rounds on pseudo-labelled target rows (``self_training``) and model
selection on labelled target rows (``selection``).

Small pieces any model can use; ``strategies/adapted.py`` puts them around a strategy's hooks when a recipe
has an ``adapt`` section. Module level stays light (validating a recipe reads ``DEFAULT_WEIGHTS``).
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


def adapt_note(recipe, metrics: dict | None = None) -> str:
    """One sentence for the card: which source and target data the model was adapted on, how, and which rows
    chose the best model (``metrics``: the run's metrics.json, for its ``model_selection``)."""
    adapt = recipe.adapt
    if adapt is None:
        return ""
    files = recipe.data.files
    source = ", ".join(_short(files[s]) for s in ("train",) if s in files) or f"{recipe.data.source} (train)"
    target = adapt.target
    target_data = ", ".join(_short(f) for f in target.files) or f"{target.source} ({target.split})"
    how = []
    if adapt.method:
        term = "minimum class confusion on the target predictions" if adapt.method == "mcc" else "alignment"
        how.append(f"`{adapt.method}` {term} (weight {alignment_weight(adapt.method, adapt.weight):g})")
    if adapt.instance_weights:
        how.append(f"source rows weighted by a `{adapt.instance_weights}` importance ratio")
    if adapt.self_training:
        rounds = adapt.self_training.rounds
        how.append(f"{rounds} self-training round{'s' * (rounds > 1)} on the {adapt.self_training.keep:.0%} of target rows "
                   "it predicted most confidently (per class), labelled with its own predictions, beside as many source rows")
    return (f"; domain-adapted from the labelled source data {source} to the unlabelled target data {target_data} "
            f"with {' and '.join(how)} ({_batches_note(adapt)}, their labels, if any, never read; "
            f"{_selection_note(adapt, (metrics or {}).get('model_selection') or {})})")


def _batches_note(adapt) -> str:
    if adapt.method is None and adapt.instance_weights is None:
        return "the target rows were read for their pseudo-labels only"
    if adapt.method is None:
        return "the target rows were read by the importance weights' domain classifier only"
    return f"{adapt.target_ratio:.0%} of every training batch were target rows"


def _selection_note(adapt, selection: dict) -> str:
    if adapt.target_validation is None:
        return "the best model was chosen on the source validation split"
    files = ", ".join(_short(f) for f in adapt.target_validation.files)
    rows = f"{selection['rows']} " if "rows" in selection else ""
    scores = selection.get("scores") or {}
    metric = selection.get("metric", "")
    score = f" ({metric} {scores[metric.split('/', 1)[-1]]:.4f} there)" if metric.split("/", 1)[-1] in scores else ""
    return (f"the best model was chosen on {rows}labelled target rows, `adapt.target_validation` {files}{score}, so "
            "scores on those rows are optimistic; only a separate target test set measures the adapted model")


def _short(path: str) -> str:
    parts = path.replace("\\", "/").split("/")
    return "`" + "/".join(parts[-2:]) + "`"
