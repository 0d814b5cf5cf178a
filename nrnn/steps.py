"""The drift step of one Euler step, h' = h + s ⊙ f(h, x) + …, and what it does to the
linearisation.

A noise form decides how much of the drift one step adds: the paper's Euler–Maruyama step
adds Δt f (a :class:`UniformStep`), the authors' released code adds δ ⊙ f with a learnable
per-unit step δ (a :class:`PerUnitStep`). Along a fixed path the step Jacobian is
J = I + diag(s) F with F = ∂f/∂h, and the mean correction of the small-noise expansion
steps as m' = J m + ½ s ⊙ v. Each class applies this through the cell's derivatives (the
generated formulas, see ``nrnn.cells``), so the regularizer, the metrics and the stability
tools never ask which kind of step they hold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ._generated.expansion import mean_step

__all__ = ["DriftStep", "PerUnitStep", "UniformStep", "per_unit_step"]


def per_unit_step(jacobian: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """I + diag(s) F from F (..., n, n) and per-unit steps s (n,)."""
    identity = torch.eye(jacobian.shape[-1], dtype=jacobian.dtype, device=jacobian.device)
    return identity + steps[..., :, None] * jacobian


@dataclass(frozen=True)
class DriftStep:
    """s, a float or a tensor broadcasting against (..., n)."""

    value: float | torch.Tensor

    def times(self, tensor: torch.Tensor) -> torch.Tensor:
        """s ⊙ tensor for a tensor (..., n)."""
        return self.value * tensor

    def advance(self, rows: torch.Tensor, differential: torch.Tensor) -> torch.Tensor:
        """rows + s ⊙ differential (J y from F y) in one fused multiply-add, (..., n)."""
        raise NotImplementedError

    def probe_mean_step(
        self, mean: torch.Tensor, differential: torch.Tensor, curvature: torch.Tensor
    ) -> torch.Tensor:
        """m' = m + s ⊙ (F m + ½ v) from F m (batch, n), without forming J."""
        return self.advance(mean, torch.add(differential, curvature, alpha=0.5))

    def jacobians(self, derivatives: Any, parameters: Any) -> Callable[[dict], torch.Tensor]:
        """point -> J = I + diag(s) F at that point, (batch, n, n); what does not depend on
        the point is computed once, here."""
        raise NotImplementedError

    def mean_step(
        self, mean: torch.Tensor, jacobian: torch.Tensor, curvature: torch.Tensor
    ) -> torch.Tensor:
        """m' = J m + ½ s ⊙ v: mean (batch, n), jacobian (batch, n, n), curvature (batch, n)."""
        raise NotImplementedError


class UniformStep(DriftStep):
    """s = Δt for every unit (a Python float)."""

    value: float

    def jacobians(self, derivatives: Any, parameters: Any) -> Callable[[dict], torch.Tensor]:
        """I + Δt F from the cell's generated step Jacobian."""
        return lambda point: derivatives.step_jacobian(point, parameters, self.value)

    def advance(self, rows: torch.Tensor, differential: torch.Tensor) -> torch.Tensor:
        return torch.add(rows, differential, alpha=self.value)

    def mean_step(
        self, mean: torch.Tensor, jacobian: torch.Tensor, curvature: torch.Tensor
    ) -> torch.Tensor:
        return mean_step(mean, jacobian, curvature, self.value)


class PerUnitStep(DriftStep):
    """s a tensor (n,) of per-unit steps."""

    value: torch.Tensor

    def jacobians(self, derivatives: Any, parameters: Any) -> Callable[[dict], torch.Tensor]:
        return derivatives.per_unit_step_jacobians(parameters, self.value)

    def advance(self, rows: torch.Tensor, differential: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(rows, self.value, differential)

    def mean_step(
        self, mean: torch.Tensor, jacobian: torch.Tensor, curvature: torch.Tensor
    ) -> torch.Tensor:
        """The generated mean step with the per-unit step folded into v and Δt = 1."""
        return mean_step(mean, jacobian, self.value * curvature, 1.0)
