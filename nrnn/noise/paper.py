"""The paper's noise: h_{k+1} = h_k + Δt f(h_k, x_k) + √Δt σ(h_k) ξ_k with σ(h) = σ₁ I + σ₂ diag(h),
on one Brownian motion per unit or with its multiplicative part on one scalar Brownian
motion."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .. import contract
from .._generated import stability as _bounds
from ..steps import UniformStep
from .base import NoiseForm, Parameters, StepNoise
from .brownian import BROWNIAN_LAYOUTS, BrownianLayout

__all__ = ["BROWNIAN_MODES", "Noise"]

BROWNIAN_MODES = tuple(BROWNIAN_LAYOUTS)
"""The config values of the Brownian layouts: one Brownian motion per unit (``"diagonal"``)
or the multiplicative part on one scalar Brownian motion (``"scalar"``)."""


@dataclass(frozen=True)
class Noise(NoiseForm):
    """The paper's noise: h_{k+1} = h_k + Δt f(h_k, x_k) + √Δt σ(h_k) ξ_k.

    Args:
        additive: σ₁ ≥ 0, the additive level.
        multiplicative: σ₂ ≥ 0, the multiplicative level.
        brownian: ``"diagonal"``: σ(h) = σ₁ I + σ₂ diag(h) with one Brownian motion per
            unit (r = n); ``"scalar"``: σ₁ I on n Brownian motions plus σ₂ h on one extra
            scalar Brownian motion (r = n + 1). The config value of :attr:`layout`, the
            object that owns the difference (``nrnn.noise.brownian``).
    """

    additive: float = 0.0
    multiplicative: float = 0.0
    brownian: str = "diagonal"

    def __post_init__(self) -> None:
        object.__setattr__(self, "additive", contract.real("additive", self.additive, minimum=0))
        multiplicative = contract.real("multiplicative", self.multiplicative, minimum=0)
        object.__setattr__(self, "multiplicative", multiplicative)
        contract.choice("brownian", self.brownian, BROWNIAN_MODES)

    @property
    def layout(self) -> BrownianLayout:
        """The Brownian layout that :attr:`brownian` names."""
        return BROWNIAN_LAYOUTS[self.brownian]

    def noise_dim(self, state_dim: int) -> int:
        return self.layout.noise_dim(state_dim)

    def families(self, state_dim: int) -> tuple[str, ...]:
        return ("normal",) * self.noise_dim(state_dim)

    def sample(
        self,
        shape: Sequence[int],
        *,
        dtype: torch.dtype,
        device: torch.device | str,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Standard normal increments ξ of the given shape (..., r)."""
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def step_terms(
        self,
        xi: torch.Tensor | None,
        *,
        steps: int,
        dt: float,
        parameters: Parameters,
    ) -> list[StepNoise]:
        """Additive √Δt σ₁ ξ[:n]; multiplier √Δt σ₂ ξ (diagonal) or √Δt σ₂ ξ[n] (scalar)."""
        if xi is None:
            return [StepNoise(dt, None, None)] * steps
        added, multiplied = self.layout.split(xi)
        root_dt = math.sqrt(dt)
        additive = (root_dt * self.additive * added).unbind(0)
        multiplier = (root_dt * self.multiplicative * multiplied).unbind(0)
        return [StepNoise(dt, a, m) for a, m in zip(additive, multiplier, strict=True)]

    def mean_step(self, dt: float, parameters: Parameters) -> UniformStep:
        return UniformStep(dt)

    def evaluation_step(self, dt: float, parameters: Parameters) -> UniformStep:
        return UniformStep(dt)

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
        """ξ's cotangent √Δt (σ₁ λ + σ₂ h ⊙ λ) (the scalar form sums the second part over
        the units); the generated ``noise_adjoint`` formulas."""
        if "xi" not in wanted or xi is None:
            return {}
        return {
            "xi": self.layout.noise_cotangent(
                cotangent, state, self.additive, self.multiplicative, dt
            )
        }

    def diffusion_points(
        self,
        states: torch.Tensor,
        drifts: Callable[[], torch.Tensor],
        parameters: Parameters,
    ) -> torch.Tensor:
        return states

    def diffusion(self, points: torch.Tensor, dt: float) -> torch.Tensor:
        return self.layout.diffusion(points, self.additive, self.multiplicative)

    def unit_noise(self, xi: torch.Tensor, state_dim: int) -> torch.Tensor:
        return self.layout.unit_noise(xi, state_dim)

    def noise_matrices(self, state_dim: int) -> torch.Tensor:
        """The Bᵢ of the multiplicative part Σᵢ Bᵢ h dβᵢ, float64: σ₂ I (1, n, n) for a
        scalar Brownian motion, σ₂ eᵢeᵢᵀ (n, n, n) for one per unit."""
        return self.layout.noise_matrices(self.multiplicative, state_dim)

    def almost_sure_bound(self, kappa: torch.Tensor, state_dim: int) -> torch.Tensor:
        """κ − σ₂²/2 (scalar Brownian motion); κ + σ₂²(1/2 − 1/n) (one per unit, weaker)."""
        sigma = torch.as_tensor(self.multiplicative, dtype=kappa.dtype, device=kappa.device)
        return self.layout.almost_sure_bound(kappa, sigma, state_dim)

    def mean_square_bound(self, kappa: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(self.multiplicative, dtype=kappa.dtype, device=kappa.device)
        return _bounds.mean_square_bound(kappa, sigma)

    def multiplicative_level(self, what: str) -> float:
        return self.multiplicative

    def common_multiplicative_level(self, state_dim: int, what: str) -> float:
        if not self.layout.one_common_motion and state_dim > 1:
            raise ValueError(
                f"{what} needs the multiplicative noise on one scalar Brownian motion "
                "(Noise(brownian='scalar')) or a one-unit state; for per-unit noise use "
                "almost_sure_bound"
            )
        return self.multiplicative
