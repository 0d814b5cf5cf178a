"""The independent oracle of the explicit regularizer: the noise Laplacian by autograd.

Write the per-sample loss as a function of every injected noise variable,
ℓ(ξ) = cross_entropy(model(x, ξ), y) with ξ of shape (batch, M, r). With all noise scaled
by ε and ξ of mean 0, identity covariance and independent entries,

    E ℓ(εξ) = ℓ(0) + (ε²/2) E[ξᵀ ∇²ℓ(0) ξ] + O(ε⁴) = ℓ(0) + (ε²/2) Δ_ξ ℓ(0) + O(ε⁴),

so the Laplacian Δ_ξ ℓ(0) = Σ_{k,j} ∂²ℓ/∂ξ_{kj}² at ξ = 0 equals q + r of
``nrnn.regularizer.explicit_regularizer`` exactly, for every cell, both paper noise modes
and ``ReleasedNoise`` (whose ξ = [ζ, η] has unit variance too; ξ = 0 is then the mean
path). The oracle never uses the regularizer's recursions nor the cell's derivatives: it
differentiates the model twice.

Cost: ``exact`` takes the Hessian diagonal from M·r Hessian-vector products (vectorised in
chunks), O(M² r d² batch); ``hutchinson`` averages ξᵀ∇²ℓ ξ over Rademacher probes ξ.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import contract
from .model import NoisyRNN, check_batch

LAPLACIAN_METHODS = ("exact", "hutchinson")


def loss_of_noise(
    model: NoisyRNN, x: torch.Tensor, y: torch.Tensor, xi: torch.Tensor
) -> torch.Tensor:
    """Per-sample cross-entropy (batch,) of ``model(x, xi)``; ``xi`` (batch, M, r)."""
    return F.cross_entropy(model(x, xi), y, reduction="none")


def _noise_gradient(
    model: NoisyRNN, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ξ at 0 requiring grad, ∂ℓ/∂ξ with its graph kept) for Hessian-vector products."""
    batch, steps, _ = x.shape
    reference = model.readout.weight
    xi = torch.zeros(
        batch,
        steps,
        model.noise_dim,
        dtype=reference.dtype,
        device=reference.device,
        requires_grad=True,
    )
    loss = loss_of_noise(model, x, y, xi)
    (gradient,) = torch.autograd.grad(loss.sum(), xi, create_graph=True)
    return xi, gradient


def _hessian_vector_products(
    xi: torch.Tensor, gradient: torch.Tensor, directions: torch.Tensor
) -> torch.Tensor:
    """∇²ℓ v for a stack of directions v (n, batch, M, r) -> (n, batch, M, r).

    Samples do not interact, so one product of the summed loss gives every sample's own.
    """
    if not gradient.requires_grad:  # the loss does not depend on ξ at all (no noise)
        return torch.zeros_like(directions)
    (products,) = torch.autograd.grad(
        gradient, xi, directions, retain_graph=True, is_grads_batched=True
    )
    return products


def _exact_laplacian(model: NoisyRNN, x: torch.Tensor, y: torch.Tensor, chunk: int) -> torch.Tensor:
    xi, gradient = _noise_gradient(model, x, y)
    batch, steps, width = xi.shape
    count = steps * width
    total = xi.new_zeros(batch)
    for start in range(0, count, chunk):
        index = torch.arange(start, min(start + chunk, count), device=xi.device)
        basis = torch.zeros(len(index), count, dtype=xi.dtype, device=xi.device)
        basis[torch.arange(len(index), device=xi.device), index] = 1.0
        directions = basis.view(len(index), 1, steps, width).expand(-1, batch, -1, -1)
        products = _hessian_vector_products(xi, gradient, directions)
        products = products.reshape(len(index), batch, count)
        total = total + products.gather(2, index.view(-1, 1, 1).expand(-1, batch, 1)).sum((0, 2))
    return total.detach()


def hutchinson_samples(
    model: NoisyRNN,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    probes: int,
    generator: torch.Generator | None = None,
    chunk: int = 64,
) -> torch.Tensor:
    """ξᵀ ∇²ℓ ξ for ``probes`` Rademacher probes ξ: (probes, batch); each has mean Δ_ξ ℓ."""
    xi, gradient = _noise_gradient(model, x, y)
    samples = []
    for start in range(0, probes, chunk):
        count = min(chunk, probes - start)
        signs = torch.randint(0, 2, (count, *xi.shape), generator=generator, dtype=torch.int64).to(
            xi
        )
        directions = 2.0 * signs - 1.0
        products = _hessian_vector_products(xi, gradient, directions)
        samples.append((directions * products).sum((-1, -2)))
    return torch.cat(samples).detach()


def noise_laplacian(
    model: NoisyRNN,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: str = "exact",
    probes: int = 64,
    generator: torch.Generator | None = None,
    chunk: int = 64,
) -> torch.Tensor:
    """Δ_ξ ℓ at ξ = 0 per sample, (batch,): the autograd oracle of q + r.

    Args:
        model: the noisy RNN (its mode does not matter: ξ is passed explicitly).
        x: inputs (batch, M, p).
        y: class indices (batch,).
        method: ``"exact"`` (the full Hessian diagonal) or ``"hutchinson"`` (the mean of
            ξᵀ∇²ℓ ξ over ``probes`` Rademacher probes drawn from ``generator``).
        chunk: Hessian-vector products evaluated together (memory vs speed).

    Returns a detached tensor: the oracle checks values, it is not meant for training.
    """
    contract.choice("method", method, LAPLACIAN_METHODS)
    contract.integer("chunk", chunk)
    x, y = check_batch(model, x, y, probes=probes)
    if method == "exact":
        return _exact_laplacian(model, x, y, chunk)
    return hutchinson_samples(model, x, y, probes=probes, generator=generator, chunk=chunk).mean(0)
