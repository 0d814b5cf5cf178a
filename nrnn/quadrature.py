"""Exact expectations over the noise by tensor Gauss quadrature: the oracle of the expansion.

For a tiny model (a few state entries, a few steps) every noise variable gets a
one-dimensional Gauss rule for its law (Gauss–Hermite for N(0, 1), Gauss–Legendre for the
uniform variables of the released-code noise), and the tensor product of the rules gives
E ℓ(model(x, εξ)) to floating-point precision whenever the integrand is (close to) a
polynomial of the rules' degree in ξ. It uses only the model's forward pass: it checks the
regularizer without sharing any of its code.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from . import contract

if TYPE_CHECKING:
    from .model import NoisyRNN

__all__ = ["MAX_POINTS", "expected_loss", "noise_rule", "one_dimensional_rule", "rule_size"]

FAMILIES = ("normal", "uniform")
MAX_POINTS = 2**22
"""The largest tensor rule :func:`noise_rule` builds: nodes^(M r) grows exponentially in
the model's size (4^12 points, hidden 3 with the released-code noise, ran over 10 minutes at
2.2 GB); the shipped profiles stay below 2 million."""


def one_dimensional_rule(family: str, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights with Σ w f(node) = E f(ξ): ``normal`` for ξ ~ N(0, 1) (exact for
    polynomials of degree ≤ 2 nodes − 1), ``uniform`` for ξ uniform on [−√3, √3]."""
    contract.choice("family", family, FAMILIES)
    contract.integer("nodes", nodes)
    if family == "normal":
        points, weights = np.polynomial.hermite_e.hermegauss(nodes)
        return points, weights / weights.sum()
    points, weights = np.polynomial.legendre.leggauss(nodes)
    return math.sqrt(3.0) * points, weights / 2.0


def noise_rule(
    model: NoisyRNN, steps: int, nodes: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tensor rule over every noise variable of ``steps`` steps: points (P, M, r) and
    weights (P,), P = nodes^(M r); each variable follows its law (``noise.families``). On
    the model's device.

    Raises:
        ValueError: P above :data:`MAX_POINTS` (before anything is allocated).
    """
    rule_size(model, steps, nodes)
    families = model.noise.families(model.state_dim) * steps
    rules = {family: one_dimensional_rule(family, nodes) for family in set(families)}
    device = model.readout.weight.device
    points = [torch.tensor(rules[f][0], dtype=dtype, device=device) for f in families]
    weights = [torch.tensor(rules[f][1], dtype=dtype, device=device) for f in families]
    grid = torch.stack(torch.meshgrid(*points, indexing="ij"), -1)
    weight = torch.stack(torch.meshgrid(*weights, indexing="ij"), -1)
    return grid.reshape(-1, steps, model.noise_dim), weight.reshape(-1, len(families)).prod(-1)


def rule_size(model: NoisyRNN, steps: int, nodes: int) -> int:
    """P = nodes^(M r), the points of :func:`noise_rule` for ``steps`` steps; a ValueError
    above :data:`MAX_POINTS` (so a caller can refuse a size before any work)."""
    contract.integer("nodes", nodes)
    points = nodes ** (contract.integer("steps", steps) * model.noise_dim)
    if points > MAX_POINTS:
        raise ValueError(
            f"a quadrature over every noise variable needs nodes^(M r) = {nodes}^({steps}·"
            f"{model.noise_dim}) = {points:,} points, more than the limit {MAX_POINTS:,} "
            "(time and memory grow with it): use fewer steps, nodes or state entries"
        )
    return points


def expected_loss(
    model: NoisyRNN,
    x: torch.Tensor,
    y: torch.Tensor,
    rule: tuple[torch.Tensor, torch.Tensor],
    epsilon: float,
    chunk: int = 2**18,
) -> torch.Tensor:
    """E ℓ(model(x, εξ)) by ``rule`` for one sequence x (1, M, p), y (1,): a 0-d tensor,
    differentiable in the parameters when grad is enabled."""
    points, weights = rule
    total = torch.zeros((), dtype=weights.dtype, device=weights.device)
    for start in range(0, len(weights), chunk):
        xi = epsilon * points[start : start + chunk]
        batch = len(xi)
        losses = F.cross_entropy(
            model(x.expand(batch, -1, -1), xi), y.expand(batch), reduction="none"
        )
        total = total + (weights[start : start + chunk] * losses).sum()
    return total
