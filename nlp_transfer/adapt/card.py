"""What a model card says about a run's domain adaptation: method, source and target data, batches, selection."""

from __future__ import annotations

from . import alignment_weight


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
