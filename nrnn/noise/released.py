"""The noise of the authors' released code (not the paper's equations): a uniform random
multiplier of a learnable per-unit step and additive noise not scaled by √Δt."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .. import contract
from .._generated.noise_adjoint import noise_cotangent_released, step_size_cotangent
from .._generated.released_noise import released_diffusion, released_drift_scale
from ..steps import PerUnitStep
from .base import NoiseForm, Parameters, StepNoise

__all__ = ["ReferenceNoise", "ReleasedNoise"]


@dataclass(frozen=True)
class ReleasedNoise(NoiseForm):
    """The noise of the authors' released code (not the paper's equations).

    The released step is h_{k+1} = h_k + (δ ⊙ u_k) ⊙ f(h_k, x_k) + s_a ζ_k with
    u_k ~ Uniform[1 − s_m, 1] per unit, ζ_k ~ N(0, I) and δ a learnable per-unit step
    initialised to dt. We write u_k = (1 − s_m/2) + (s_m/√12) η_k with η_k uniform on
    [−√3, √3] (mean 0, variance 1), so the noise variables are ξ_k = [ζ_k, η_k], r = 2n.

    SDE equivalent (see docs/formulas.md): drift scaled by (1 − s_m/2), additive level
    s_a/√dt, and a drift-proportional noise of per-step variance (s_m²/12)(δ ⊙ f)².
    Without noise (evaluation) the step is h + δ ⊙ f.

    Args:
        additive: s_a ≥ 0, the standard deviation added per step (not scaled by √dt).
        multiplicative: s_m ∈ [0, 1], the width of the uniform step multiplier
            (u ~ Uniform[1 − s_m, 1] must stay non-negative).
    """

    additive: float = 0.0
    multiplicative: float = 0.0
    parameter_names = ("step_size",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "additive", contract.real("additive", self.additive, minimum=0))
        multiplicative = contract.real("multiplicative", self.multiplicative, minimum=0, maximum=1)
        object.__setattr__(self, "multiplicative", multiplicative)

    def noise_dim(self, state_dim: int) -> int:
        return 2 * state_dim

    def families(self, state_dim: int) -> tuple[str, ...]:
        return ("normal",) * state_dim + ("uniform",) * state_dim

    def sample(
        self,
        shape: Sequence[int],
        *,
        dtype: torch.dtype,
        device: torch.device | str,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """ξ = [ζ, η]: standard normal ζ and uniform η on [−√3, √3], shape (..., 2n)."""
        state_dim = shape[-1] // 2
        size = (*shape[:-1], state_dim)
        gaussian = torch.randn(size, generator=generator, dtype=dtype, device=device)
        uniform = torch.rand(size, generator=generator, dtype=dtype, device=device)
        return torch.cat([gaussian, (2.0 * uniform - 1.0) * math.sqrt(3.0)], dim=-1)

    def parameters(self, state_dim: int, dt: float) -> dict[str, torch.Tensor]:
        """``step_size``: the learnable per-unit step δ (n,), initialised to dt."""
        return {"step_size": torch.full((state_dim,), dt)}

    def step_terms(
        self,
        xi: torch.Tensor | None,
        *,
        steps: int,
        dt: float,
        parameters: Parameters,
    ) -> list[StepNoise]:
        """Drift step δ ⊙ u_k with u_k = 1 − s_m/2 + (s_m/√12) η_k; additive s_a ζ_k."""
        step_size = parameters["step_size"]
        if xi is None:
            return [StepNoise(step_size, None, None)] * steps
        n = xi.shape[-1] // 2
        multiplier = self.step_multiplier(xi).unbind(0)
        additive = (self.additive * xi[..., :n]).unbind(0)
        return [
            StepNoise(step_size * u, a, None) for a, u in zip(additive, multiplier, strict=True)
        ]

    def step_multiplier(self, xi: torch.Tensor) -> torch.Tensor:
        """u = 1 − s_m/2 + (s_m/√12) η of the noise variables ξ = [ζ, η] (..., 2n): (..., n)."""
        s_m = self.multiplicative
        return (1.0 - s_m / 2) + (s_m / math.sqrt(12.0)) * xi[..., xi.shape[-1] // 2 :]

    needs_drift = True
    has_step_cotangents = True

    def step_cotangents(
        self,
        cotangent: torch.Tensor,
        state: torch.Tensor,
        drift: torch.Tensor | None,
        xi: torch.Tensor | None,
        *,
        dt: float,
        parameters: Parameters,
        wanted: set[str],
    ) -> dict[str, torch.Tensor]:
        """δ's gradient Σ u ⊙ f ⊙ λ (u = 1 without noise) and ξ's cotangent
        [s_a λ, (s_m/√12) δ ⊙ f ⊙ λ]; the generated ``noise_adjoint`` formulas."""
        step_size = parameters["step_size"]
        found: dict[str, torch.Tensor] = {}
        if "step_size" in wanted:
            multiplier: float | torch.Tensor = 1.0 if xi is None else self.step_multiplier(xi)
            found["step_size"] = step_size_cotangent(cotangent, drift, multiplier)
        if "xi" in wanted and xi is not None:
            found["xi"] = noise_cotangent_released(
                cotangent, drift, step_size, self.additive, self.multiplicative
            )
        return found

    def mean_step(self, dt: float, parameters: Parameters) -> PerUnitStep:
        """δ (1 − s_m/2): the mean path shrinks the drift by E u."""
        return PerUnitStep(parameters["step_size"] * released_drift_scale(self.multiplicative))

    def evaluation_step(self, dt: float, parameters: Parameters) -> PerUnitStep:
        return PerUnitStep(parameters["step_size"])

    def diffusion_points(
        self,
        states: torch.Tensor,
        drifts: Callable[[], torch.Tensor],
        parameters: Parameters,
    ) -> torch.Tensor:
        """δ ⊙ f(h̄_k, x_k): the drift-proportional part scales with the step's drift."""
        return parameters["step_size"] * drifts()

    def diffusion(self, points: torch.Tensor, dt: float) -> torch.Tensor:
        return released_diffusion(points, self.additive, self.multiplicative, dt)

    def unit_noise(self, xi: torch.Tensor, state_dim: int) -> torch.Tensor:
        return xi.unflatten(-1, (2, state_dim)).transpose(-1, -2)


ReferenceNoise = ReleasedNoise
"""The released-code form's earlier name (``nrnn.ReferenceNoise``), kept for callers."""
