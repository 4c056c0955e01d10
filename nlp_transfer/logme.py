"""Backbone ranking without fine-tuning: LogME (You et al., ICML 2021) on frozen features.

LogME is the log of the maximum evidence of a Bayesian linear model from features ``F`` (N x D) to
each class's one-hot column ``y``, with a Gaussian prior of precision ``alpha`` on the weights and
Gaussian noise of precision ``beta``, averaged over classes and divided by N. ``alpha`` and ``beta``
are found by MacKay's fixed-point updates in the eigenbasis of ``F^T F``, so one eigendecomposition
serves every class and every iteration. Higher is better; only the ranking across backbones matters.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def logme(features: np.ndarray, labels: np.ndarray, *, max_iter: int = 100, tol: float = 1e-6) -> float:
    """The LogME score of ``features`` (N x D) for integer class ``labels`` (N)."""
    f = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    n, d = f.shape
    sigma, vecs = np.linalg.eigh(f.T @ f)
    sigma = np.clip(sigma, 0.0, None)
    evidences = []
    for cls in np.unique(labels):
        y = (labels == cls).astype(np.float64)
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


def rank_backbones(base, pool: dict, names: list[str], cache_dir: Path, results: list[dict], strategy: str) -> dict | None:
    """LogME of each backbone's frozen, mean-pooled features of the pool's train, beside its fine-tuned score
    (``strategy`` on all of the pool, mean over seeds).

    Returns ``{"rows": [...], "spearman": rho}``, or None (with a log line) for tasks other than
    single-label text classification, which LogME's classification form does not cover.
    """
    from .tasks import get_task_type

    kind = get_task_type(base.task.type)
    if not (kind.modality == "text" and not kind.per_token and kind.problem_type == "single_label_classification"):
        logger.warning("--backbones: LogME ranking covers single-label text classification; %s is skipped", base.task.type)
        return None
    from datasets import Dataset, DatasetDict

    from . import data as data_lib

    train = Dataset.from_parquet(pool["splits"]["train"])
    encoded, _ = data_lib.encode_labels(DatasetDict({"train": train}), base.task, base.data, names=pool.get("labels"))
    labels = np.asarray(encoded["train"]["labels"])
    columns = base.task.text_columns
    texts = list(train[columns[0]]) if len(columns) == 1 else list(zip(*(train[c] for c in columns)))
    primary = (base.train.metrics or ["accuracy"])[0]
    rows = []
    for name in names:
        feats = _cached_features(name, texts, base.model.max_length, cache_dir)
        tuned = [r for r in results if (r.get("backbone") or base.model.name) == name and r["fraction"] == 1.0
                 and r["strategy"] == strategy]
        score = np.mean([100 * (r.get("test") or r["validation"])[primary] for r in tuned]) if tuned else None
        rows.append({"backbone": name, "logme": logme(feats, labels), "fine_tuned": None if score is None else float(score)})
    for key, rank_key in (("logme", "logme_rank"), ("fine_tuned", "fine_tuned_rank")):
        order = sorted((r for r in rows if r[key] is not None), key=lambda r: -r[key])
        for i, r in enumerate(order, 1):
            r[rank_key] = i
    both = [r for r in rows if r.get("fine_tuned_rank")]
    rho = _spearman([r["logme_rank"] for r in both], [r["fine_tuned_rank"] for r in both]) if len(both) > 2 else None
    return {"rows": rows, "spearman": rho, "metric": primary}


def _cached_features(name: str, texts: list, max_length: int, cache_dir: Path) -> np.ndarray:
    """Mean-pooled last hidden states of ``name`` for ``texts``, cached as .npy (keyed by model and texts)."""
    key = hashlib.sha256(repr((name, max_length, texts)).encode()).hexdigest()[:16]
    path = cache_dir / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    import torch
    from transformers import AutoModel

    from .models import load_tokenizer, resolve_model_path

    folder = resolve_model_path(name, None)
    tokenizer, model = load_tokenizer(folder), AutoModel.from_pretrained(folder).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            batch = texts[start:start + 64]
            pairs = isinstance(batch[0], tuple)
            enc = tokenizer(*(zip(*batch) if pairs else (batch,)), truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    feats = np.concatenate(out)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, feats)
    return feats


def _spearman(a: list[int], b: list[int]) -> float:
    n = len(a)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(a, b)) / (n * (n * n - 1))
