"""Noise specifications: the paper's SDE form and the authors' released-code form.

A noise object says how the Euler–Maruyama step perturbs the hidden state. It owns the
number ``r`` of noise variables drawn per step (``noise_dim``) and how to draw them; the
model applies them. Every noise variable has mean 0 and variance 1, so an explicit ``xi``
of shape (batch, M, r) replays any run and the expansion in ``nrnn.regularizer`` sees the
noise through its covariance alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

BROWNIAN_MODES = ("diagonal", "scalar")


def _check_level(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


@dataclass(frozen=True)
class Noise:
    """The paper's noise: h_{k+1} = h_k + dt f(h_k, x_k) + sqrt(dt) σ(h_k) ξ_k.

    Args:
        additive: σ₁ ≥ 0, the additive level.
        multiplicative: σ₂ ≥ 0, the multiplicative level.
        brownian: ``"diagonal"``: σ(h) = σ₁ I + σ₂ diag(h) with one Brownian motion per
            unit (r = d); ``"scalar"``: σ₁ I on d Brownian motions plus σ₂ h on one extra
            scalar Brownian motion (r = d + 1).
    """

    additive: float = 0.0
    multiplicative: float = 0.0
    brownian: str = "diagonal"

    def __post_init__(self) -> None:
        object.__setattr__(self, "additive", _check_level("additive", self.additive))
        object.__setattr__(
            self, "multiplicative", _check_level("multiplicative", self.multiplicative)
        )
        if self.brownian not in BROWNIAN_MODES:
            raise ValueError(f"brownian must be one of {BROWNIAN_MODES}, got {self.brownian!r}")

    @property
    def is_zero(self) -> bool:
        return self.additive == 0.0 and self.multiplicative == 0.0

    def noise_dim(self, hidden_dim: int) -> int:
        """r, the number of Brownian increments per step."""
        return hidden_dim + 1 if self.brownian == "scalar" else hidden_dim

    def sample(self, shape: tuple[int, ...], *, dtype, device) -> torch.Tensor:
        """Standard normal increments ξ of the given shape (..., r)."""
        return torch.randn(shape, dtype=dtype, device=device)

    def scaled(self, factor: float) -> Noise:
        """The same noise with both levels multiplied by ``factor`` (the ε of the expansion)."""
        return Noise(self.additive * factor, self.multiplicative * factor, self.brownian)


@dataclass(frozen=True)
class ReferenceNoise:
    """The noise of the authors' released code (not the paper's equations).

    The released step is h_{k+1} = h_k + (δ ⊙ u_k) ⊙ f(h_k, x_k) + s_a ζ_k with
    u_k ~ Uniform[1 − s_m, 1] per unit, ζ_k ~ N(0, I) and δ a learnable per-unit step
    initialised to dt. We write u_k = (1 − s_m/2) + (s_m/√12) η_k with η_k uniform on
    [−√3, √3] (mean 0, variance 1), so the noise variables are ξ_k = [ζ_k, η_k], r = 2d.

    SDE equivalent (see docs/formulas.md): drift scaled by (1 − s_m/2), additive level
    s_a/√dt, and a drift-proportional noise of per-step variance (s_m²/12)(δ ⊙ f)².
    Without noise (evaluation) the step is h + δ ⊙ f.

    Args:
        additive: s_a ≥ 0, the standard deviation added per step (not scaled by √dt).
        multiplicative: s_m ∈ [0, 1], the width of the uniform step multiplier.
    """

    additive: float = 0.0
    multiplicative: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "additive", _check_level("additive", self.additive))
        multiplicative = _check_level("multiplicative", self.multiplicative)
        if multiplicative > 1:
            raise ValueError(
                f"multiplicative must be in [0, 1] for ReferenceNoise (u ~ Uniform[1 - s_m, 1]"
                f" must stay non-negative), got {multiplicative}"
            )
        object.__setattr__(self, "multiplicative", multiplicative)

    @property
    def is_zero(self) -> bool:
        return self.additive == 0.0 and self.multiplicative == 0.0

    def noise_dim(self, hidden_dim: int) -> int:
        return 2 * hidden_dim

    def sample(self, shape: tuple[int, ...], *, dtype, device) -> torch.Tensor:
        """ξ = [ζ, η]: standard normal ζ and uniform η on [−√3, √3], shape (..., 2d)."""
        hidden_dim = shape[-1] // 2
        gaussian = torch.randn((*shape[:-1], hidden_dim), dtype=dtype, device=device)
        uniform = torch.rand((*shape[:-1], hidden_dim), dtype=dtype, device=device)
        return torch.cat([gaussian, (2.0 * uniform - 1.0) * math.sqrt(3.0)], dim=-1)

    def scaled(self, factor: float) -> ReferenceNoise:
        return ReferenceNoise(self.additive * factor, self.multiplicative * factor)
