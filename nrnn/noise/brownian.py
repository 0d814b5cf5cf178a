"""The Brownian layout of the paper's noise: which Brownian motions drive its two parts.

σ(h) ξ = σ₁ ξ_add + σ₂ h ⊙ ξ_mult with the additive part on one Brownian motion per unit
(ξ_add = ξ[:n]) always, and the multiplicative part either

- on the same per-unit motions, :data:`PER_UNIT` (config value ``"diagonal"``, r = n), or
- on one extra scalar motion shared by every unit, :data:`SCALAR` (config value
  ``"scalar"``, r = n + 1).

A layout is an object that owns every place where the two differ (how many noise
variables a step draws, which of them the multiplicative part reads, the generated
diffusion, adjoint and bound formulas), so :class:`nrnn.noise.Noise` never asks which
layout it holds. :data:`BROWNIAN_LAYOUTS` maps each config value to its layout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from .._generated import stability as _bounds
from .._generated.expansion import diffusion_diagonal, diffusion_scalar
from .._generated.noise_adjoint import noise_cotangent_diagonal, noise_cotangent_scalar

__all__ = ["BROWNIAN_LAYOUTS", "PER_UNIT", "SCALAR", "BrownianLayout"]


class BrownianLayout(ABC):
    """Where the multiplicative part of the paper's noise draws its Brownian motion.

    Attributes:
        name: the config value (``Noise.brownian``) that selects this layout.
        label: the layout in tables and figures.
        one_common_motion: whether the multiplicative part rides one Brownian motion
            shared by every unit (the Itô bounds that need one level σ₂ for all units
            hold only then, or for a one-unit state).
    """

    name: str
    label: str
    one_common_motion: bool

    @abstractmethod
    def noise_dim(self, state_dim: int) -> int:
        """r, the noise variables one step draws for a state of n = ``state_dim`` entries."""

    @abstractmethod
    def split(self, xi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The variables of the additive part, (..., n), and of the multiplicative part,
        (..., n) or (..., 1), from ξ (..., r)."""

    @abstractmethod
    def diffusion(
        self, points: torch.Tensor, additive: float, multiplicative: float
    ) -> torch.Tensor:
        """σ(h) at points h (..., n) from σ₁, σ₂: (..., n, r) (generated ``expansion``)."""

    @abstractmethod
    def noise_cotangent(
        self,
        cotangent: torch.Tensor,
        state: torch.Tensor,
        additive: float,
        multiplicative: float,
        dt: float,
    ) -> torch.Tensor:
        """ξ's cotangent from λ and h, each (batch, n), and σ₁, σ₂, Δt: (batch, r)
        (generated ``noise_adjoint``)."""

    @abstractmethod
    def unit_noise(self, xi: torch.Tensor, state_dim: int) -> torch.Tensor:
        """Each unit's noise variables from ξ (..., r): (..., n, 1) or (..., n, 2)."""

    @abstractmethod
    def noise_matrices(self, multiplicative: float, state_dim: int) -> torch.Tensor:
        """The Bᵢ of the multiplicative part Σᵢ Bᵢ h dβᵢ, float64: (1, n, n) or (n, n, n)."""

    @abstractmethod
    def almost_sure_bound(
        self, kappa: torch.Tensor, sigma: torch.Tensor, state_dim: int
    ) -> torch.Tensor:
        """The a.s. Lyapunov exponent bound from κ and σ₂ (tensors of one shape)."""

    def __repr__(self) -> str:
        return f"BrownianLayout({self.name!r})"


class _PerUnit(BrownianLayout):
    name = "diagonal"
    label = "per unit"
    one_common_motion = False

    def diffusion(
        self, points: torch.Tensor, additive: float, multiplicative: float
    ) -> torch.Tensor:
        return diffusion_diagonal(points, additive, multiplicative)

    def noise_cotangent(
        self,
        cotangent: torch.Tensor,
        state: torch.Tensor,
        additive: float,
        multiplicative: float,
        dt: float,
    ) -> torch.Tensor:
        return noise_cotangent_diagonal(cotangent, state, additive, multiplicative, dt)

    def noise_dim(self, state_dim: int) -> int:
        return state_dim

    def split(self, xi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return xi, xi

    def unit_noise(self, xi: torch.Tensor, state_dim: int) -> torch.Tensor:
        return xi[..., None]

    def noise_matrices(self, multiplicative: float, state_dim: int) -> torch.Tensor:
        identity = torch.eye(state_dim, dtype=torch.float64)
        return multiplicative * torch.diag_embed(identity)

    def almost_sure_bound(
        self, kappa: torch.Tensor, sigma: torch.Tensor, state_dim: int
    ) -> torch.Tensor:
        """κ + σ₂²(1/2 − 1/n), the weaker bound of independent per-unit motions."""
        return _bounds.almost_sure_bound_diagonal(kappa, sigma, state_dim)


class _Scalar(BrownianLayout):
    name = "scalar"
    label = "scalar"
    one_common_motion = True

    def diffusion(
        self, points: torch.Tensor, additive: float, multiplicative: float
    ) -> torch.Tensor:
        return diffusion_scalar(points, additive, multiplicative)

    def noise_cotangent(
        self,
        cotangent: torch.Tensor,
        state: torch.Tensor,
        additive: float,
        multiplicative: float,
        dt: float,
    ) -> torch.Tensor:
        return noise_cotangent_scalar(cotangent, state, additive, multiplicative, dt)

    def noise_dim(self, state_dim: int) -> int:
        return state_dim + 1

    def split(self, xi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = xi.shape[-1] - 1
        return xi[..., :n], xi[..., n:]

    def unit_noise(self, xi: torch.Tensor, state_dim: int) -> torch.Tensor:
        additive = xi[..., :state_dim]
        return torch.stack([additive, xi[..., state_dim:].expand_as(additive)], dim=-1)

    def noise_matrices(self, multiplicative: float, state_dim: int) -> torch.Tensor:
        return multiplicative * torch.eye(state_dim, dtype=torch.float64)[None]

    def almost_sure_bound(
        self, kappa: torch.Tensor, sigma: torch.Tensor, state_dim: int
    ) -> torch.Tensor:
        """κ − σ₂²/2."""
        return _bounds.almost_sure_bound_scalar(kappa, sigma)


PER_UNIT: BrownianLayout = _PerUnit()
"""One Brownian motion per unit for both parts (config value ``"diagonal"``)."""
SCALAR: BrownianLayout = _Scalar()
"""The multiplicative part on one extra scalar Brownian motion (config value ``"scalar"``)."""

BROWNIAN_LAYOUTS: dict[str, BrownianLayout] = {layout.name: layout for layout in (PER_UNIT, SCALAR)}
"""Every layout by its config value, in the order the catalogue takes them."""
