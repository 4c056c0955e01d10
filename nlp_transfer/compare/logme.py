"""Backbone ranking without fine-tuning: LogME (You et al., ICML 2021) on frozen features.

LogME is the log of the maximum evidence of a Bayesian linear model from features ``F`` (N x D) to
each target column ``y`` (a class's one-hot column, a label of a multi-label task, or a regression
value), with a Gaussian prior of precision ``alpha`` on the weights and Gaussian noise of precision
``beta``, averaged over the columns and divided by N. ``alpha`` and ``beta``
are found by MacKay's fixed-point updates in the eigenbasis of ``F^T F``, so one eigendecomposition
serves every class and every iteration. Higher is better; only the ranking across backbones matters.
"""

from __future__ import annotations

import logging

import numpy as np

from ..data.columns import column_values
from ..strategies.registry import build_strategy
from ..tasks.spec import IGNORE_INDEX
from ..training.processes import new_accelerator
from ..training.stages import build_run_model, load_data, preprocess
from .report import points

logger = logging.getLogger(__name__)


def logme(features: np.ndarray, labels: np.ndarray, *, max_iter: int = 100, tol: float = 1e-6) -> float:
    """The LogME score of ``features`` (N x D) for integer class ``labels`` (N): one one-hot column per class."""
    labels = np.asarray(labels)
    return log_evidence(features, np.stack([(labels == c) for c in np.unique(labels)], axis=1), max_iter=max_iter, tol=tol)


def log_evidence(features: np.ndarray, targets: np.ndarray, *, max_iter: int = 100, tol: float = 1e-6) -> float:
    """LogME's core: the mean over the columns of ``targets`` (N x K: one-hot classes, multi-hot labels, or
    regression values) of each column's maximum log evidence per example."""
    f = np.asarray(features, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64).reshape(len(f), -1)
    n, d = f.shape
    sigma, vecs = np.linalg.eigh(f.T @ f)
    sigma = np.clip(sigma, 0.0, None)
    evidences = []
    for y in targets.T:
        z = vecs.T @ (f.T @ y)  # F^T y in the eigenbasis
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            m = beta * z / (alpha + beta * sigma)  # the posterior mean of the weights, eigenbasis
            m2 = float(m @ m)
            res2 = float(y @ y - 2 * m @ z + (sigma * m) @ m)
            gamma = float((beta * sigma / (alpha + beta * sigma)).sum())
            new_alpha, new_beta = gamma / max(m2, 1e-12), (n - gamma) / max(res2, 1e-12)
            done = abs(new_alpha / new_beta - alpha / beta) <= tol * alpha / beta
            alpha, beta = new_alpha, new_beta
            if done:
                break
        m = beta * z / (alpha + beta * sigma)
        m2, res2 = float(m @ m), float(y @ y - 2 * m @ z + (sigma * m) @ m)
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.log(alpha + beta * sigma).sum()
                    - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def rank_backbones(recipes: dict, results: list[dict], strategy: str, metric: str) -> dict:
    """LogME of each backbone's frozen features of the pool's train, beside its fine-tuned score
    (``strategy`` on all of the pool, mean over seeds, in ``metric``).

    ``recipes``: ``{backbone name: its frozen cell recipe on the pool's train}``, the grid's own model first (its
    cells carry no ``backbone``). The features are exactly what ``frozen`` trains its head on (see
    ``frozen_features``). Returns ``{"rows": [...], "spearman": rho, "metric": metric}``; a backbone whose features
    fail gets a row with the error instead of a score.
    """
    own = next(iter(recipes))
    rows = []
    for name, recipe in recipes.items():
        try:
            features, targets = frozen_features(recipe)
        except Exception as exc:  # noqa: BLE001  the grid's scores stand; the table says which backbone and why
            logger.warning("--backbones: no LogME for %s: %s", name, exc)
            rows.append({"backbone": name, "logme": None, "error": str(exc), "fine_tuned": None})
            continue
        tuned = [points((r.get("test") or r["validation"]).get(metric)) for r in results
                 if (r.get("backbone") or own) == name and r["fraction"] == 1.0 and r["strategy"] == strategy]
        tuned = [v for v in tuned if v is not None]
        rows.append({"backbone": name, "logme": log_evidence(features, targets), "examples": len(features),
                     "fine_tuned": float(np.mean(tuned)) if tuned else None})
    for key, rank_key in (("logme", "logme_rank"), ("fine_tuned", "fine_tuned_rank")):
        order = sorted((r for r in rows if r[key] is not None), key=lambda r: -r[key])
        for i, r in enumerate(order, 1):
            r[rank_key] = i
    both = [r for r in rows if r.get("fine_tuned_rank")]
    rho = _spearman([r["logme_rank"] for r in both], [r["fine_tuned_rank"] for r in both]) if len(both) > 2 else None
    return {"rows": rows, "spearman": rho, "metric": metric}


def frozen_features(recipe) -> tuple[np.ndarray, np.ndarray]:
    """``(features N x D, targets N x K)`` of ``recipe``'s train split, through the ``frozen`` strategy's own
    feature pass (and its cache): the recipe's data, preprocessing, pooling and model.

    Targets: one-hot classes (sequence or image classification; per token, the tagged tokens only), the multi-hot
    labels (multi-label), or the value (regression).
    """
    from datasets import DatasetDict

    splits, task = load_data(recipe.data, recipe.task, recipe.train.seed)
    strategy = build_strategy(recipe.strategy, task)
    model, processor = build_run_model(recipe.model, task, strategy)
    inputs, _ = preprocess(recipe, task, processor, DatasetDict({"train": splits["train"]}), augment=False)
    strategy.prepare(model)
    prepared = strategy.prepare_data(model, processor, inputs, new_accelerator(mixed_precision="no"))["train"]
    features, labels = column_values(prepared, "features"), column_values(prepared, "labels")
    if task.kind.per_token:
        tokens = [(f, tag) for row, tags in zip(features, labels) for f, tag in zip(row, tags) if tag != IGNORE_INDEX]
        features, labels = [f for f, _ in tokens], [tag for _, tag in tokens]
    features, labels = np.asarray(features, dtype=np.float32), np.asarray(labels)
    if task.kind.problem_type in ("regression", "multi_label_classification"):
        return features, labels.reshape(len(labels), -1).astype(np.float64)
    return features, np.stack([labels == c for c in np.unique(labels)], axis=1).astype(np.float64)


def _spearman(a: list[int], b: list[int]) -> float:
    n = len(a)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(a, b)) / (n * (n * n - 1))
