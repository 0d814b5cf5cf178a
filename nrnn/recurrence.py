"""The Euler–Maruyama recurrence of the model, op by op: the reference path.

    h_0 = 0,   h_{k+1} = h_k + s_k ⊙ f(h_k, c_k) + a_k + h_k ⊙ m_k

with the drive c_k (the model's input map of x_k), the cell's drift f and the noise's step
terms (s_k, a_k, m_k) of ξ_k (:meth:`nrnn.noise.NoiseForm.step_terms`). Every step is a
few torch operations, so autograd records a graph of them and differentiates it; this is
the path for any cell and noise (a cell of your own written in torch alone), for forward-
mode and ``torch.func`` transforms, and what the fused recurrence (``nrnn.fused``) is
tested against and recomputes for a second derivative.
"""

from __future__ import annotations

from typing import Any

import torch

from .cells import Cell
from .cells.base import check_drift_shape
from .noise import NoiseForm, Parameters

__all__ = ["RECURRENCES", "reference"]

RECURRENCES = ("fused", "reference")
"""How the model runs its recurrence: ``"fused"`` (no autograd graph per step, the
generated vector–Jacobian product backwards; the default where the cell and the noise have
one) or ``"reference"`` (op by op)."""


def reference(
    cell: Cell[Any],
    noise: NoiseForm,
    dt: float,
    drives: torch.Tensor,
    xi: torch.Tensor | None,
    parameters: tuple[Any, ...],
    noise_parameters: Parameters,
    keep_path: bool,
) -> torch.Tensor:
    """Run the recurrence op by op.

    Args:
        cell, noise: the model's cell and noise form; dt: the step.
        drives: c_k time-major, (M, batch, drive_dim).
        xi: the noise variables time-major (M, batch, r), or None for noise-free steps.
        parameters: the cell's ``drift_parameters()``; noise_parameters: the noise's
            learnable parameters by name.
        keep_path: return every state, not only the last.
    Returns:
        (batch, M+1, n) with h_0 first, or h_M (batch, n).
    """
    # Per-step tensors are precomputed time-major and iterated over with unbind(0):
    # indexing a whole-sequence tensor inside the loop makes the backward pass quadratic in M.
    state = drives.new_zeros(drives.shape[1], cell.state_dim)
    step_drives = drives.unbind(0)
    terms = noise.step_terms(xi, steps=len(step_drives), dt=dt, parameters=noise_parameters)
    path = [state]
    for step, (drive, step_terms) in enumerate(zip(step_drives, terms, strict=True)):
        drift = cell.drift(state, drive, parameters)
        if step == 0:
            check_drift_shape(cell, state, drift)
        state = step_terms.advance(state, drift)
        if keep_path:
            path.append(state)
    return torch.stack(path, dim=1) if keep_path else state
