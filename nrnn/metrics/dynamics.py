"""State-Jacobian products along the deterministic path of a ``NoisyRNN``: the step
Jacobians J_k and the spectral norms of their products Φ_{k→M}."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..model import NoisyRNN, check_model
from ._base import _inputs, deterministic


@dataclass(frozen=True)
class JacobianProducts:
    """Spectral norms of the state-Jacobian products along the deterministic path.

    ``norms[:, k]`` = ‖Φ_{k→M}‖₂ = ‖∂h_M/∂h_k‖₂, shape (batch, M+1); ``norms[:, M]`` = 1
    (the empty product). Without per-step norms only column 0 is filled and the others
    are NaN.
    """

    norms: torch.Tensor

    @property
    def full(self) -> torch.Tensor:
        """‖∂h_M/∂h_0‖₂ per sample, (batch,)."""
        return self.norms[:, 0]

    @property
    def mean_full(self) -> float:
        """‖∂h_M/∂h_0‖₂ averaged over the batch."""
        return float(self.full.mean())

    @property
    def per_step(self) -> torch.Tensor:
        """‖Φ_{k→M}‖₂ averaged over the batch, (M+1,), k = 0..M."""
        return self.norms.mean(dim=0)

    @property
    def mean_over_steps(self) -> float:
        """‖Φ_{k→M}‖₂ averaged over the batch and over k = 0..M−1."""
        return float(self.norms[:, :-1].mean())


# ------------------------------------------------------------------------------- dynamics
def step_jacobians(model: NoisyRNN, x: torch.Tensor) -> torch.Tensor:
    """J_k = ∂h_{k+1}/∂h_k along the deterministic path, shape (batch, M, n, n).

    The noise-free step is h_{k+1} = h_k + s ⊙ f(h_k, x_k) with s = dt (paper form) or the
    learned δ (released-code form), so J_k = I + diag(s) F_k with F_k the cell's drift
    Jacobian (its generated formula; for the Lipschitz cell F = A + diag(φ'(z_k)) W,
    z_k = W h̄_k + U x_k + b). Memory is batch·M·n²; use :func:`jacobian_products` for long
    sequences (it never holds more than one step).
    """
    return torch.stack(list(_iter_step_jacobians(model, x)), dim=1)


@torch.no_grad()
def _iter_step_jacobians(model: NoisyRNN, x: torch.Tensor) -> Iterator[torch.Tensor]:
    """Yield J_0, …, J_{M−1}, each (batch, n, n)."""
    check_model(model)
    x = _inputs(model, x)
    cell = model.cell
    with deterministic(model):
        states = model.trajectory(x)  # (batch, M+1, n)
        parameters = cell.drift_parameters()
        drives = model.input_drive(x)  # (batch, M, drive_dim)
    step = model.noise.evaluation_step(model.dt, model.noise_parameters)
    jacobian_at = step.jacobians(cell.derivatives(), parameters)
    linearisation = cell.linearisation(states[:, :-1], drives, parameters)
    for k in range(x.shape[1]):
        yield jacobian_at({name: value[:, k] for name, value in linearisation.items()})


@torch.no_grad()
def jacobian_products(
    model: NoisyRNN, x: torch.Tensor, *, per_step: bool = True
) -> JacobianProducts:
    """Spectral norms of Φ_{k→M} = ∂h_M/∂h_k = J_{M−1} ⋯ J_k along the deterministic path.

    Args:
        model: an ``nrnn.NoisyRNN`` (measured with noise off).
        x: (batch, M, p) inputs.
        per_step: compute ‖Φ_{k→M}‖₂ for every k (batch·M SVDs of d×d); otherwise only
            ‖Φ_{0→M}‖₂ = ‖∂h_M/∂h_0‖₂.
    Returns:
        :class:`JacobianProducts` with ``norms`` (batch, M+1).
    """
    jacobians = list(_iter_step_jacobians(model, x))
    batch, d = jacobians[0].shape[0], jacobians[0].shape[-1]
    steps = len(jacobians)
    dtype, device = jacobians[0].dtype, jacobians[0].device
    norms = torch.full((batch, steps + 1), math.nan, dtype=dtype, device=device)
    norms[:, steps] = 1.0
    product = torch.eye(d, dtype=dtype, device=device).expand(batch, d, d)
    for k in range(steps - 1, -1, -1):
        product = product @ jacobians[k]
        if per_step or k == 0:
            norms[:, k] = torch.linalg.matrix_norm(product, ord=2)
    return JacobianProducts(norms)
