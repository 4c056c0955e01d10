"""Importance weights p_target(x) / p_source(x) from a domain classifier, and the proxy A-distance."""

from __future__ import annotations

import torch


def fit_domain_classifier(source: torch.Tensor, target: torch.Tensor, l2: float = 1e-3, steps: int = 100):
    """A logistic regression telling source (0) from target (1) on standardised features (full-batch L-BFGS).

    Returns:
        A function mapping (n, d) features to P(target | x).
    """
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
    return lambda features: torch.sigmoid(((features.double() - mean) / std) @ w + b)


def importance_weights(source: torch.Tensor, target: torch.Tensor, clip: float = 10.0):
    """Per source row, p_target(x) / p_source(x) estimated by a domain classifier, clipped and normalised.

    With balanced domain weights in the fit, the classifier's odds p / (1 - p) estimate the density ratio itself.
    Weights are clipped to [1/clip, clip] (a few near-target rows must not dominate) and normalised to mean 1.

    Returns:
        (weights, ratio): the clipped, normalised weights and the raw ratio estimate, both (n_source,) float64.
    """
    p = fit_domain_classifier(source, target)(source).clamp(1e-6, 1 - 1e-6)
    ratio = p / (1 - p)
    weights = ratio.clamp(1.0 / clip, clip)
    return weights / weights.mean(), ratio


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
