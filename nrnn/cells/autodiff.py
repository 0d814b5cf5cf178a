"""The derivatives of any torch drift by ``torch.func``: the route for a cell without
generated formulas (and a check of the formulas of every cell that has them).

Only ``cell.drift(state, drive, parameters)`` is used, per sample (``vmap`` over the batch):

- F = ``jacrev`` of the drift in the state, (batch, n, n);
- v = E ∇²f[δ, δ] = Σⱼₖ Cⱼₖ ∂²f/∂hⱼ∂hₖ from the Hessian of every output, (batch, n, n, n)
  contracted with C: O(n³) per sample and step, like the exact covariance recursion;
- F y by one ``jvp`` and ∇²f[y, y] by a ``jvp`` of that ``jvp`` (second directional
  derivative), per probe row: O(n²) per row.

Everything stays differentiable in the cell's parameters (torch.func composes with
autograd), so the explicit regularizer trains through this route too. It is slower than
generated code: use it for a cell before its formulas exist, and to test them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch.func import hessian, jacrev, jvp, vmap

from ..steps import per_unit_step

Point = dict[str, torch.Tensor]
"""The named per-step tensors derivatives are taken at (``nrnn.cells.base``)."""


class HasDrift(Protocol):
    """What this route uses of a cell: its drift ``f(state, drive, parameters)``."""

    def drift(self, state: torch.Tensor, drive: torch.Tensor, parameters: Any) -> torch.Tensor: ...


Drift = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""f(h, c) of one sample."""
Directional = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any]
"""A function of one sample's (state, drive, direction)."""

__all__ = ["AutodiffDerivatives"]


class AutodiffDerivatives:
    """The :class:`nrnn.cells.base.Cell` derivative interface, from ``cell.drift`` alone."""

    def __init__(self, cell: HasDrift) -> None:
        self.cell = cell

    def _drift_of_state(self, parameters: Any) -> Drift:
        """f(h, c) for one sample: h (n,), c (drive_dim,) -> (n,)."""
        return lambda state, drive: self.cell.drift(state, drive, parameters)

    def drift_jacobian(self, point: Point, parameters: Any) -> torch.Tensor:
        drift = self._drift_of_state(parameters)
        return vmap(jacrev(drift))(point["state"], point["drive"])

    def step_jacobian(self, point: Point, parameters: Any, dt: float) -> torch.Tensor:
        jacobian = self.drift_jacobian(point, parameters)
        identity = torch.eye(jacobian.shape[-1], dtype=jacobian.dtype, device=jacobian.device)
        return identity + dt * jacobian

    def per_unit_step_jacobians(
        self, parameters: Any, steps: torch.Tensor
    ) -> Callable[[Point], torch.Tensor]:
        return lambda point: per_unit_step(self.drift_jacobian(point, parameters), steps)

    def curvature(self, point: Point, parameters: Any, covariance: torch.Tensor) -> torch.Tensor:
        drift = self._drift_of_state(parameters)
        second = vmap(hessian(drift))(point["state"], point["drive"])  # (batch, n, n, n)
        return torch.einsum("bijk,bjk->bi", second, covariance)

    def _directional(self, parameters: Any) -> tuple[Directional, Directional]:
        """(∇f[y], ∇²f[y, y]) at one sample's state for one direction y."""
        drift = self._drift_of_state(parameters)

        def first(state: torch.Tensor, drive: torch.Tensor, direction: torch.Tensor) -> Any:
            return jvp(lambda h: drift(h, drive), (state,), (direction,))[1]

        def both(state: torch.Tensor, drive: torch.Tensor, direction: torch.Tensor) -> Any:
            return jvp(lambda h: first(h, drive, direction), (state,), (direction,))

        return first, both

    def _over_rows(self, function: Directional, point: Point, rows: torch.Tensor) -> Any:
        """Map a per-sample, per-row function over (batch, n) or (batch, K, n) rows."""
        per_sample = vmap(function)
        if rows.ndim == point["state"].ndim + 1:
            per_sample = vmap(vmap(function, in_dims=(None, None, 0)))
        return per_sample(point["state"], point["drive"], rows)

    def differential(self, point: Point, parameters: Any, rows: torch.Tensor) -> torch.Tensor:
        first, _ = self._directional(parameters)
        return self._over_rows(first, point, rows)

    def probe_terms(
        self, point: Point, parameters: Any, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _, both = self._directional(parameters)
        differential, second = self._over_rows(both, point, rows)
        return differential, second.mean(-2)
