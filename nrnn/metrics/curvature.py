"""Curvature of the mean cross-entropy loss with respect to the trainable parameters,
through Hessian-vector products: its trace (Hutchinson or exact), its top eigenvalue
(Lanczos) and, for small models, the whole Hessian."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .. import contract
from ..montecarlo import mean_and_stderr
from ._base import _parameters, mean_loss


@dataclass(frozen=True)
class TraceEstimate:
    """tr H of the mean loss. ``stderr`` is the Monte Carlo standard error (0 for
    ``method="exact"``; NaN for a single probe); ``samples`` is the number of probes
    (Hutchinson) or of Hessian-vector products (exact)."""

    value: float
    stderr: float
    samples: int
    method: str


@dataclass(frozen=True)
class EigenEstimate:
    """The largest (algebraic) Hessian eigenvalue estimate θ with its Ritz vector u
    (flattened over the parameters, unit norm) and residual ‖H u − θ u‖₂. For a
    symmetric H some eigenvalue lies within ``residual`` of θ."""

    value: float
    residual: float
    iterations: int
    vector: torch.Tensor


class _HessianOperator:
    """v ↦ H v for the Hessian H of the mean loss w.r.t. the model's trainable parameters,
    on flat vectors of length ``dim`` (double backward through one retained graph)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.params = _parameters(model)
        loss = mean_loss(model, x, y)
        gradients = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        # an unused parameter has zero gradient and zero Hessian rows
        self.gradients = [
            torch.zeros_like(p) if g is None else g
            for p, g in zip(self.params, gradients, strict=True)
        ]
        self.dim = sum(p.numel() for p in self.params)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device

    def _split(self, vector: torch.Tensor) -> list[torch.Tensor]:
        pieces, start = [], 0
        for p in self.params:
            pieces.append(vector[start : start + p.numel()].view_as(p))
            start += p.numel()
        return pieces

    def __call__(self, vector: torch.Tensor) -> torch.Tensor:
        vector = vector.to(dtype=self.dtype, device=self.device)
        pairs = [
            (g, v)
            for g, v in zip(self.gradients, self._split(vector), strict=True)
            if g.requires_grad
        ]
        if not pairs:
            return torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        products = torch.autograd.grad(
            [g for g, _ in pairs],
            self.params,
            grad_outputs=[v for _, v in pairs],
            retain_graph=True,
            allow_unused=True,
        )
        return torch.cat(
            [
                (torch.zeros_like(p) if hv is None else hv).reshape(-1)
                for p, hv in zip(self.params, products, strict=True)
            ]
        ).detach()

    def diagonal(self) -> torch.Tensor:
        """(H_11, …, H_PP): each gradient entry differentiated once more w.r.t. its own
        parameter (P backward passes)."""
        entries = []
        for param, gradient in zip(self.params, self.gradients, strict=True):
            flat = gradient.reshape(-1)
            if not flat.requires_grad:  # the gradient does not depend on any parameter
                entries.extend([0.0] * flat.numel())
                continue
            for i in range(flat.numel()):
                (row,) = torch.autograd.grad(flat[i], param, retain_graph=True, allow_unused=True)
                entries.append(0.0 if row is None else float(row.reshape(-1)[i]))
        return torch.tensor(entries, dtype=torch.float64)


# ------------------------------------------------------------------------------ curvature
def hessian_trace(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    probes: int = 32,
    seed: int = 0,
    method: str = "hutchinson",
) -> TraceEstimate:
    """Trace of the Hessian of the mean cross-entropy loss w.r.t. all trainable parameters.

    Args:
        model: an ``nn.Module`` mapping x (batch, M, p) to logits (batch, c); measured in
            eval mode (noise off).
        x: (batch, M, p) inputs; y: (batch,) integer labels.
        probes: Hutchinson probes (≥ 1); ignored by ``method="exact"``.
        seed: seed of the probe generator (the model's RNG is not touched).
        method: ``"hutchinson"``: mean of vᵀHv over Rademacher probes v, unbiased, with
            standard error s/√probes (s the sample standard deviation of vᵀHv);
            ``"exact"``: Σ_i H_ii, one double-backward pass per parameter (small models).
    """
    contract.choice("method", method, ("hutchinson", "exact"))
    if method == "hutchinson":
        contract.integer("probes", probes)
    operator = _HessianOperator(model, x, y)
    if method == "exact":
        return TraceEstimate(float(operator.diagonal().sum()), 0.0, operator.dim, "exact")
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(probes):
        signs = torch.randint(0, 2, (operator.dim,), generator=generator).to(operator.device)
        v = signs.to(operator.dtype) * 2 - 1
        samples.append(float(v @ operator(v)))
    values = torch.tensor(samples, dtype=torch.float64)
    if probes == 1:
        return TraceEstimate(float(values[0]), math.nan, probes, "hutchinson")
    mean, stderr = mean_and_stderr(values)
    return TraceEstimate(float(mean), float(stderr), probes, "hutchinson")


def hessian_matrix(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The full Hessian (P, P) of the mean loss over the flattened trainable parameters
    (in ``model.parameters()`` order), by P Hessian-vector products: small models only."""
    operator = _HessianOperator(model, x, y)
    identity = torch.eye(operator.dim, dtype=operator.dtype, device=operator.device)
    return torch.stack([operator(column) for column in identity], dim=1)


def top_hessian_eigenvalue(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    iterations: int = 30,
    seed: int = 0,
) -> EigenEstimate:
    """Largest algebraic eigenvalue of the loss Hessian by Lanczos with full
    reorthogonalisation (``iterations`` Hessian-vector products plus one for the residual).

    The Krylov space is started from a Gaussian vector drawn with ``seed``. After at most
    ``min(iterations, P)`` steps the largest eigenvalue θ of the tridiagonal matrix and its
    Ritz vector u are returned with the residual ‖H u − θ u‖₂ (computed with an explicit
    extra HVP). With ``iterations ≥ P`` (the number of parameters) the result is exact up
    to rounding.
    """
    contract.integer("iterations", iterations)
    operator = _HessianOperator(model, x, y)
    steps = min(iterations, operator.dim)
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(operator.dim, generator=generator, dtype=torch.float64).to(operator.device)
    basis, alphas, betas = _lanczos(operator, start / start.norm(), steps)
    tridiagonal = torch.diag(alphas)
    if len(betas):
        tridiagonal += torch.diag(betas, 1) + torch.diag(betas, -1)
    eigenvalues, eigenvectors = torch.linalg.eigh(tridiagonal)
    theta = eigenvalues[-1]
    ritz = basis.T @ eigenvectors[:, -1].to(basis.device)
    ritz = ritz / ritz.norm()
    residual = (operator(ritz).to(torch.float64) - theta * ritz).norm()
    return EigenEstimate(float(theta), float(residual), len(alphas), ritz.to(operator.dtype))


def _lanczos(
    operator: _HessianOperator, first: torch.Tensor, steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lanczos on ``operator`` from the unit vector ``first`` (float64 bookkeeping).

    Returns (basis (k, P), alphas (k,), betas (k−1,)); stops early when the Krylov space
    becomes invariant (β below 1e-10 of the largest |α|, β seen so far).
    """
    basis = [first]
    alphas: list[float] = []
    betas: list[float] = []
    for step in range(steps):
        w = operator(basis[-1]).to(torch.float64)
        alpha = float(basis[-1] @ w)
        alphas.append(alpha)
        stacked = torch.stack(basis)
        for _ in range(2):  # full reorthogonalisation, twice for numerical safety
            w = w - stacked.T @ (stacked @ w)
        beta = float(w.norm())
        scale = max([abs(a) for a in alphas] + betas + [1e-30])
        if step == steps - 1 or beta <= 1e-10 * scale:
            break
        betas.append(beta)
        basis.append(w / beta)
    return (
        torch.stack(basis),
        torch.tensor(alphas, dtype=torch.float64),
        torch.tensor(betas, dtype=torch.float64),
    )
