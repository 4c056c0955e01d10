"""Adaptation losses: gradient reversal (dann), multi-kernel MMD and CORAL between source and target features;
minimum class confusion (mcc) on the target rows' predictions."""

from __future__ import annotations

import math

import torch
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coefficient):
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.coefficient * grad, None


def reverse_gradient(x: torch.Tensor, coefficient: float) -> torch.Tensor:
    """Identity forward; the gradient flowing back is multiplied by ``-coefficient``."""
    return _ReverseGradient.apply(x, float(coefficient))


def grl_coefficient(progress: float, gamma: float = 10.0) -> float:
    """DANN's warm-up of the reversal weight: 0 at the start, towards 1 as training ends (2/(1+e^(-gamma p)) - 1)."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class DomainClassifier(nn.Module):
    """A small MLP telling source (0) from target (1) features, read through a gradient-reversal layer."""

    def __init__(self, width: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
        return self.net(reverse_gradient(features, coefficient)).squeeze(-1)


def dann_loss(head: DomainClassifier, source: torch.Tensor, target: torch.Tensor, coefficient: float):
    """Domain cross-entropy through the reversal layer, and the domain classifier's accuracy on the batch."""
    logits = head(torch.cat([source, target]).float(), coefficient)
    domain = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(logits.device)
    loss = nn.functional.binary_cross_entropy_with_logits(logits, domain)
    accuracy = ((logits > 0).float() == domain).float().mean()
    return loss, accuracy


def gaussian_bandwidths(source: torch.Tensor, target: torch.Tensor, num_kernels: int = 5, multiplier: float = 2.0):
    """DAN's kernel family: bandwidths sigma^2 = base * multiplier^k around the mean squared pairwise distance."""
    joint = torch.cat([source, target]).detach().float()
    base = torch.cdist(joint, joint).pow(2).sum() / max(1, len(joint) ** 2 - len(joint))
    base = base.clamp(min=1e-6)
    return [base * multiplier ** (k - num_kernels // 2) for k in range(num_kernels)]


def mmd(source: torch.Tensor, target: torch.Tensor, bandwidths=None) -> torch.Tensor:
    """Multi-kernel MMD^2 (unbiased: the diagonals left out) with Gaussian kernels exp(-|x-y|^2 / (2 sigma^2)).

    Args:
        source, target: (n, d) and (m, d) features, n, m >= 2.
        bandwidths: The kernels' sigma^2 values (the estimate averages the kernels); default ``gaussian_bandwidths``.
    """
    source, target = source.float(), target.float()
    bandwidths = gaussian_bandwidths(source, target) if bandwidths is None else bandwidths
    n, m = len(source), len(target)
    distances = [torch.cdist(a, b).pow(2) for a, b in ((source, source), (target, target), (source, target))]
    total = source.new_zeros(())
    for sigma2 in bandwidths:
        ss, tt, st = (torch.exp(-d / (2 * sigma2)) for d in distances)
        total = total + (ss.sum() - ss.diagonal().sum()) / (n * (n - 1)) + (tt.sum() - tt.diagonal().sum()) / (m * (m - 1)) \
            - 2 * st.mean()
    return total / len(bandwidths)


def coral(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: |C_s - C_t|_F^2 / (4 d^2), with C the unbiased feature covariances."""
    source, target = source.float(), target.float()
    d = source.shape[1]

    def covariance(x):
        centred = x - x.mean(0, keepdim=True)
        return centred.T @ centred / max(1, len(x) - 1)

    return (covariance(source) - covariance(target)).pow(2).sum() / (4 * d * d)


def minimum_class_confusion(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """Minimum Class Confusion (Jin et al., ECCV 2020) on unlabelled target logits (n, classes).

    Predictions are softened by ``temperature``; the class-correlation matrix sums, over the rows, the outer
    product of each row's prediction with itself, rows weighted by 1 + exp(-entropy) (confident rows count more;
    weights scaled to sum to n). Each matrix row is normalised to sum to 1 (so a class predicted rarely weighs as
    much as a frequent one: collapsing onto one class does not lower the loss), and the loss is the off-diagonal
    mass over the number of classes: 0 when every row is certain of one class, and every class is one of them.
    """
    n, classes = logits.shape
    probabilities = torch.softmax(logits.float() / temperature, dim=1)
    entropy = -(probabilities * torch.log(probabilities.clamp(min=1e-12))).sum(dim=1)
    row_weights = 1 + torch.exp(-entropy.detach())
    row_weights = (n * row_weights / row_weights.sum()).unsqueeze(1)
    correlation = (probabilities * row_weights).T @ probabilities
    correlation = correlation / correlation.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return (correlation.sum() - correlation.trace()) / classes
