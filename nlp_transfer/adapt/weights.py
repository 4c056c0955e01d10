"""Importance weights p_target(x) / p_source(x) from a domain classifier, and the proxy A-distance.

The weights come from a cross-fitted, L2-regularised logistic regression (a row's ratio is predicted by a
classifier fitted on the other folds, so it never saw that row), its L2 strength chosen by out-of-fold log loss.
When the domains barely overlap, the exact ratio puts nearly all weight on a few rows; the weights are then
flattened, ratio ** exponent (Shimodaira 2000), with the exponent chosen to keep an effective sample size of
at least half the source rows unless one is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)  # strength per mean loss on standardised features; chosen by out-of-fold log loss
MIN_EFFECTIVE_SHARE = 0.5  # the automatic exponent keeps (sum w)^2 / sum w^2 >= this share of the source rows


def fit_domain_classifier(source: torch.Tensor, target: torch.Tensor, l2: float = 1e-3, steps: int = 100):
    """A logistic regression telling source (0) from target (1) on standardised features (full-batch L-BFGS).

    Returns:
        A function mapping (n, d) features to P(target | x).
    """
    logit = _fit_logit(source, target, l2, steps)
    return lambda features: torch.sigmoid(logit(features))


def _fit_logit(source: torch.Tensor, target: torch.Tensor, l2: float, steps: int = 100):
    """The fitted log-odds function; each domain counts equally, so with balanced domains it estimates log p_t(x)/p_s(x)."""
    x = torch.cat([source, target]).double()
    y = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).double()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mean) / std
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    # each domain counts equally, so the classifier's odds are the density ratio up to the known prior n_t / n_s
    sample_weight = torch.where(y > 0, len(x) / (2 * len(target)), len(x) / (2 * len(source)))
    optimizer = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y, reduction="none") * sample_weight).mean()
        loss = loss + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    w, b = w.detach(), b.detach()
    return lambda features: ((features.double() - mean) / std) @ w + b


@dataclass
class DomainRatio:
    """A cross-fitted density-ratio estimate for the source rows.

    Attributes:
        log_ratio: Per source row, log p_target(x) / p_source(x), from a classifier that never saw the row.
        domain_accuracy: Out-of-fold balanced accuracy of the domain classifier (0.5: indistinguishable).
        l2: The L2 strength chosen (lowest out-of-fold log loss over ``L2_GRID``).
        folds: How many folds.
    """

    log_ratio: torch.Tensor
    domain_accuracy: float
    l2: float
    folds: int


def cross_fitted_ratio(source: torch.Tensor, target: torch.Tensor, folds: int = 5, seed: int = 0,
                       l2_grid: tuple[float, ...] = L2_GRID) -> DomainRatio:
    """The density ratio p_target/p_source at each source row, estimated out of fold (k-fold cross-fitting).

    Each domain's rows are split into ``folds`` seeded folds; fold k's rows are scored by a classifier fitted on
    all other folds of both domains. For each L2 strength in ``l2_grid`` the out-of-fold balanced log loss is
    computed; the best one's out-of-fold log-odds are the estimate.
    """
    folds = max(2, min(folds, len(source), len(target)))
    generator = torch.Generator().manual_seed(seed)
    fold_s = torch.randperm(len(source), generator=generator) % folds
    fold_t = torch.randperm(len(target), generator=generator) % folds
    best = None
    for l2 in l2_grid:
        logit_s = torch.empty(len(source), dtype=torch.float64)
        logit_t = torch.empty(len(target), dtype=torch.float64)
        for k in range(folds):
            logit = _fit_logit(source[fold_s != k], target[fold_t != k], l2)
            logit_s[fold_s == k] = logit(source[fold_s == k])
            logit_t[fold_t == k] = logit(target[fold_t == k])
        # balanced log loss: -log(1 - p) over source rows and -log p over target rows, each domain counting half
        log_loss = (torch.nn.functional.softplus(logit_s).mean() + torch.nn.functional.softplus(-logit_t).mean()).item() / 2
        if best is None or log_loss < best[0]:
            accuracy = ((logit_s < 0).double().mean() + (logit_t >= 0).double().mean()).item() / 2
            best = (log_loss, DomainRatio(logit_s, accuracy, l2, folds))
    return best[1]


def effective_share(weights: torch.Tensor) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 as a share of the rows (1: uniform weights)."""
    weights = weights.double()
    return (weights.sum() ** 2 / weights.pow(2).sum() / len(weights)).item()


def flattened_weights(log_ratio: torch.Tensor, clip: float, exponent: float = 1.0) -> torch.Tensor:
    """Weights proportional to ratio ** exponent, clipped to [1/clip, clip] and with mean 1, both at once.

    The clip is relative to the mean weight: the scale is chosen (bisection) so that after clipping the mean is 1,
    so no row counts more than ``clip`` times, or less than 1/``clip`` times, an average row.
    """
    scaled = exponent * log_ratio.double()
    if clip <= 1 or scaled.max() - scaled.min() < 1e-12:
        return torch.ones_like(scaled)
    log_clip = math.log(clip)
    low, high = -scaled.max().item() - log_clip, -scaled.min().item() + log_clip  # mean <= 1/clip ... mean >= clip
    for _ in range(100):
        shift = (low + high) / 2
        if (scaled + shift).exp().clamp(1 / clip, clip).mean() < 1:
            low = shift
        else:
            high = shift
    weights = (scaled + (low + high) / 2).exp().clamp(1 / clip, clip)
    return weights / weights.mean()


def choose_exponent(log_ratio: torch.Tensor, clip: float, min_share: float = MIN_EFFECTIVE_SHARE) -> float:
    """The largest exponent in [0, 1] whose weights keep an effective sample size of at least ``min_share``."""
    if effective_share(flattened_weights(log_ratio, clip, 1.0)) >= min_share:
        return 1.0
    low, high = 0.0, 1.0  # exponent 0: uniform weights, share 1
    for _ in range(30):
        middle = (low + high) / 2
        if effective_share(flattened_weights(log_ratio, clip, middle)) >= min_share:
            low = middle
        else:
            high = middle
    return low


@dataclass
class ImportanceWeights:
    """Per source row training weights and how they were estimated (``summary`` for logs and metrics.json)."""

    weights: torch.Tensor
    ratio: DomainRatio
    exponent: float
    exponent_chosen: bool
    clip: float

    def summary(self) -> dict:
        weights = self.weights
        exact = effective_share(flattened_weights(self.ratio.log_ratio, self.clip, 1.0))
        return {
            "rows": len(weights), "min": round(weights.min().item(), 4), "max": round(weights.max().item(), 4),
            "effective_sample_size": round(effective_share(weights) * len(weights), 1),
            "effective_sample_share": round(effective_share(weights), 4),
            "exponent": round(self.exponent, 4), "exponent_chosen": self.exponent_chosen,
            "exact_ratio_effective_share": round(exact, 4),
            "domain_accuracy_out_of_fold": round(self.ratio.domain_accuracy, 4),
            "folds": self.ratio.folds, "l2": self.ratio.l2, "clip": self.clip,
        }


def estimate_importance_weights(source: torch.Tensor, target: torch.Tensor, clip: float = 10.0,
                                exponent: float | None = None, folds: int = 5, seed: int = 0) -> ImportanceWeights:
    """Training weights for the source rows: the cross-fitted ratio, flattened, clipped and normalised to mean 1.

    Args:
        source, target: (n, d) and (m, d) features of the two domains.
        clip: Weights stay in [1/clip, clip] (relative to their mean, 1).
        exponent: Weights follow ratio ** exponent; None: the largest exponent in (0, 1] that keeps an effective
            sample size of ``MIN_EFFECTIVE_SHARE`` of the rows (1, the exact ratio, when the shift is mild).
        folds, seed: The cross-fitting.
    """
    ratio = cross_fitted_ratio(source, target, folds, seed)
    chosen = exponent is None
    if chosen:
        exponent = choose_exponent(ratio.log_ratio, clip)
    return ImportanceWeights(flattened_weights(ratio.log_ratio, clip, exponent), ratio, exponent, chosen, clip)


def importance_weights(source: torch.Tensor, target: torch.Tensor, clip: float = 10.0, exponent: float | None = None):
    """Per source row, p_target(x) / p_source(x) estimated out of fold, flattened, clipped and normalised to mean 1.

    Returns:
        (weights, ratio): the training weights and the raw (unclipped, unflattened) cross-fitted ratio, both
        (n_source,) float64.
    """
    estimate = estimate_importance_weights(source, target, clip, exponent)
    return estimate.weights, estimate.ratio.log_ratio.exp()


def proxy_a_distance(source: torch.Tensor, target: torch.Tensor, seed: int = 0) -> tuple[float, float]:
    """Ben-David et al.'s proxy A-distance 2 (1 - 2 err) of a linear domain classifier scored on held-out halves.

    Returns:
        (proxy A-distance, the held-out domain accuracy); 0 and 0.5 when the domains are indistinguishable.
    """
    generator = torch.Generator().manual_seed(seed)
    halves = []
    for x in (source, target):
        order = torch.randperm(len(x), generator=generator)
        halves.append((x[order[: len(x) // 2]], x[order[len(x) // 2:]]))
    (s_fit, s_test), (t_fit, t_test) = halves
    predict = fit_domain_classifier(s_fit, t_fit, l2=1e-2)
    correct = (predict(s_test) < 0.5).sum() + (predict(t_test) >= 0.5).sum()
    accuracy = correct.item() / (len(s_test) + len(t_test))
    return 2 * (1 - 2 * (1 - accuracy)), accuracy
