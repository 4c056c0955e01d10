"""Domain adaptation: alignment losses (dann, mmd, coral), importance weights and mixed source/target batches.

Small pieces any model can use; ``strategies/adapted.py`` puts them around a strategy's hooks when a recipe
has an ``adapt`` section. Module level stays light (validating a recipe reads ``DEFAULT_WEIGHTS``).
"""

from __future__ import annotations

# adapt.weight left unset: the alignment term's scale per method. dann's term is a domain cross-entropy
# (order 0.7) behind a warmed-up reversal; mmd's multi-kernel estimate and coral's scaled Frobenius norm are
# small numbers on normalised features, so they get more weight (as in DAN and Deep CORAL's reported setups).
DEFAULT_WEIGHTS = {"dann": 1.0, "mmd": 1.0, "coral": 10.0}


def alignment_weight(method: str | None, weight: float | None) -> float:
    """The scale of the alignment term: ``adapt.weight``, else the method's default."""
    if method is None:
        return 0.0
    return DEFAULT_WEIGHTS[method] if weight is None else weight


def adapt_note(recipe) -> str:
    """One sentence for the card: which source and target data the model was adapted on, and how."""
    adapt = recipe.adapt
    if adapt is None:
        return ""
    files = recipe.data.files
    source = ", ".join(_short(files[s]) for s in ("train",) if s in files) or f"{recipe.data.source} (train)"
    target = adapt.target
    target_data = ", ".join(_short(f) for f in target.files) or f"{target.source} ({target.split})"
    how = []
    if adapt.method:
        how.append(f"`{adapt.method}` alignment (weight {alignment_weight(adapt.method, adapt.weight):g})")
    if adapt.instance_weights:
        how.append(f"source rows weighted by a `{adapt.instance_weights}` importance ratio")
    return (f"; domain-adapted from the labelled source data {source} to the unlabelled target data {target_data} "
            f"with {' and '.join(how)} ({adapt.target_ratio:.0%} of every training batch were target rows, their labels, "
            "if any, never read; the best model was chosen on the source validation split)")


def _short(path: str) -> str:
    parts = path.replace("\\", "/").split("/")
    return "`" + "/".join(parts[-2:]) + "`"
