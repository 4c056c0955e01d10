"""The recipe checks of ``adapt`` and ``data.weight_column``: what can be adapted, with which settings, which files.

Run by the recipe's validation (``recipe/validate.py``), so they import only the recipe schema, the strategy
options and the errors: this module sits at the recipe layer although it lives with the rest of adaptation."""

from __future__ import annotations

from ..recipe.schema import (
    ADAPT_METHODS,
    Recipe,
)
from ..strategies.registry import STRATEGIES


def adapt_files(recipe: Recipe) -> list[tuple[str, str]]:
    """(key, path) of every file the adapt section names."""
    adapt = recipe.adapt
    if adapt is None:
        return []
    selection = adapt.target_validation.files if adapt.target_validation is not None else []
    return ([(f"adapt.target.files[{i}]", f) for i, f in enumerate(adapt.target.files)]
            + [(f"adapt.target_validation.files[{i}]", f) for i, f in enumerate(selection)])


def adapt_problems(recipe: Recipe, kind) -> list[str]:
    """``adapt`` and ``data.weight_column``: what can be adapted, and with which settings."""
    problems = _weight_column_problems(recipe)
    if recipe.adapt is None:
        return problems
    return problems + _method_problems(recipe, kind) + _target_problems(recipe.adapt) + _settings_problems(recipe)


def _weight_column_problems(recipe: Recipe) -> list[str]:
    weight_column = recipe.data.weight_column
    if weight_column is not None and not weight_column:
        return ["data.weight_column: got an empty name; give the train column of per-row weights, or remove the key"]
    if weight_column and not recipe.strategy.adaptable:
        users = [n for n, cls in STRATEGIES.items() if cls.Options.adaptable]
        return [f"data.weight_column: strategy {recipe.strategy_name!r} has its own loss or cached inputs, which "
                f"per-row weights do not reach; use one of {', '.join(users)}, or remove data.weight_column"]
    return []


def _method_problems(recipe: Recipe, kind) -> list[str]:
    """What the strategy and the task type allow, and which method."""
    adapt, problems = recipe.adapt, []
    if not recipe.strategy.adaptable:
        users = [n for n, cls in STRATEGIES.items() if cls.Options.adaptable]
        problems.append(f"adapt: strategy {recipe.strategy_name!r} cannot be adapted (it does not train the encoder's features "
                        f"in the loop); use one that does ({', '.join(users)}), or remove the adapt section")
    if kind is not None and (not kind.pools or kind.per_token):
        problems.append(f"adapt: task.type {kind.name} has no pooled sequence features to align; domain adaptation "
                        "needs a sequence-level text task (e.g. text-classification)")
    elif kind is not None and adapt.method == "mcc" and kind.problem_type != "single_label_classification":
        problems.append(f"adapt.method: mcc reads the class probabilities of the target rows, and task.type {kind.name} "
                        "has none (softmax over classes); use dann, mmd or coral, which align the features")
    if adapt.method is None and adapt.instance_weights is None and adapt.self_training is None:
        problems.append(f"adapt.method: missing; choose one of {', '.join(ADAPT_METHODS)}, or set "
                        "adapt.instance_weights: domain_classifier (instance weighting alone) or adapt.self_training: {} "
                        "(pseudo-labelled target rows alone)")
    return problems + _self_training_problems(adapt.self_training, kind)


def _target_problems(adapt) -> list[str]:
    """Where the target rows come from, and the labelled ones that may pick the model."""
    target, problems = adapt.target, []
    if not target.files and not target.source:
        problems.append("adapt.target: no target data; give adapt.target.files (a list of local files of the target "
                        "domain's text) or adapt.target.source (a Hub dataset id) with adapt.target.split")
    if target.files and target.source:
        problems.append("adapt.target: give adapt.target.files or adapt.target.source, not both")
    if target.limit is not None and target.limit < 1:
        problems.append(f"adapt.target.limit: got {target.limit}; expected a positive number of rows")
    if adapt.target_validation is not None and not adapt.target_validation.files:
        problems.append("adapt.target_validation.files: no files; give local files of labelled target rows (the task.text "
                        "and task.label columns), or remove adapt.target_validation to choose the model on source validation")
    return problems


def _settings_problems(recipe: Recipe) -> list[str]:
    """The numbers: weights, ratios, clips, sizes."""
    adapt, problems = recipe.adapt, []
    if adapt.mcc_temperature <= 0:
        problems.append(f"adapt.mcc_temperature: got {adapt.mcc_temperature}; expected a positive number (2.5 in the "
                        "MCC paper)")
    if adapt.weight is not None and adapt.weight < 0:
        problems.append(f"adapt.weight: got {adapt.weight}; expected a number >= 0 (the alignment term's scale)")
    if not 0 < adapt.target_ratio < 1:
        problems.append(f"adapt.target_ratio: got {adapt.target_ratio}; expected the share of target rows in a batch, "
                        "in (0, 1), e.g. 0.5")
    elif adapt.method is not None and min(round(recipe.train.batch_size * adapt.target_ratio),
                                          round(recipe.train.batch_size * (1 - adapt.target_ratio))) < 1:
        problems.append(f"adapt.target_ratio: {adapt.target_ratio} of train.batch_size {recipe.train.batch_size} leaves a "
                        "batch without source or without target rows; raise train.batch_size or move the ratio toward 0.5")
    if adapt.weight_clip < 1:
        problems.append(f"adapt.weight_clip: got {adapt.weight_clip}; expected a number >= 1 (weights are clipped to "
                        "[1/clip, clip])")
    for key in ("domain_hidden", "eval_rows"):
        if getattr(adapt, key) < 1:
            problems.append(f"adapt.{key}: got {getattr(adapt, key)}; expected a positive integer")
    if adapt.grl_gamma <= 0:
        problems.append(f"adapt.grl_gamma: got {adapt.grl_gamma}; expected a positive number (10 in the DANN paper)")
    if adapt.weight_exponent is not None and not 0 < adapt.weight_exponent <= 1:
        problems.append(f"adapt.weight_exponent: got {adapt.weight_exponent}; expected a number in (0, 1] (1: the exact "
                        "density ratio), or null to choose it from the effective sample size")
    elif adapt.weight_exponent is not None and adapt.instance_weights is None:
        problems.append("adapt.weight_exponent: set, but adapt.instance_weights is null, so there are no importance weights "
                        "to flatten; set adapt.instance_weights: domain_classifier, or remove adapt.weight_exponent")
    return problems


def _self_training_problems(self_training, kind) -> list[str]:
    if self_training is None:
        return []
    problems = []
    if kind is not None and kind.problem_type != "single_label_classification":
        problems.append(f"adapt.self_training: pseudo-labels are the predicted class of a target row, and task.type "
                        f"{kind.name} predicts no single class; remove adapt.self_training (or use a single-label "
                        "text-classification task)")
    if self_training.rounds < 1:
        problems.append(f"adapt.self_training.rounds: got {self_training.rounds}; expected a positive integer (training "
                        "rounds on pseudo-labelled target rows after the first training, e.g. 1)")
    if not 0 < self_training.keep <= 1:
        problems.append(f"adapt.self_training.keep: got {self_training.keep}; expected the share of target rows "
                        "pseudo-labelled per round, in (0, 1], e.g. 0.5")
    return problems
