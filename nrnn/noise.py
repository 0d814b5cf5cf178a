"""Noise forms: the paper's SDE noise and the authors' released-code noise.

A noise object owns everything about the noise, so that the model, the regularizer, the
stability tools and the verification never ask which form they hold:

- its diffusion σ and how many noise variables r one step draws (``noise_dim``), how to
  draw them (``sample``) and their laws (``families``, for exact quadrature);
- how one Euler step uses them (``step_terms``): every form is
  h_{k+1} = h_k + s_k ⊙ f(h_k, x_k) + a_k + h_k ⊙ m_k (a :class:`StepNoise` per step);
- the learnable parameters the step needs (``parameters``; the released code's δ);
- the linearisation the explicit regularizer uses: the drift step on the path with every
  noise variable at 0 (``mean_step``) and the SDE-equivalent diffusion along it
  (``diffusion_points``, ``diffusion``, ``unit_gains``, ``unit_noise``);
- the stability bounds that follow from Itô's formula (``almost_sure_bound``, ...).

Every noise variable has mean 0 and variance 1, so an explicit ``xi`` of shape
(batch, M, r) replays any run and the expansion in ``nrnn.regularizer`` sees the noise
through its covariance alone. The state has n = ``state_dim`` entries (the cell's state;
the hidden size for the Lipschitz cell).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, NoReturn

import torch
from torch import nn

from . import contract
from ._generated import stability as _bounds
from ._generated.expansion import diffusion_diagonal, diffusion_scalar
from ._generated.noise_adjoint import (
    noise_cotangent_diagonal,
    noise_cotangent_reference,
    noise_cotangent_scalar,
    step_size_cotangent,
)
from ._generated.reference_noise import reference_diffusion, reference_drift_scale
from .steps import PerUnitStep, UniformStep

__all__ = ["BROWNIAN_MODES", "Noise", "NoiseForm", "ReferenceNoise", "StepNoise"]

BROWNIAN_MODES = ("diagonal", "scalar")

Parameters = Mapping[str, torch.Tensor] | nn.ParameterDict
"""The learnable parameters of a noise form's step, by name (the model's ``noise_parameters``)."""


class StepNoise(NamedTuple):
    """What one Euler step adds: h' = h + drift_step ⊙ f + additive + h ⊙ state_multiplier.

    ``drift_step``: a float (Δt) or a tensor broadcasting against (batch, n);
    ``additive``: (batch, n) or None; ``state_multiplier``: (batch, n), (batch, 1) or None.
    """

    drift_step: float | torch.Tensor
    additive: torch.Tensor | None
    state_multiplier: torch.Tensor | None

    def advance(
        self, state: torch.Tensor, drift: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """h' = h + s ⊙ f + h ⊙ m + a from the state h and the drift f, each (batch, n).

        Three fused multiply-adds, the last two in place on the fresh h + s ⊙ f (none of
        them saves its output for autograd); ``out``: write h' there (it may be ``drift``'s
        own tensor, of the state's shape; no autograd)."""
        step = self.drift_step
        if isinstance(step, torch.Tensor):
            following = torch.addcmul(state, step, drift, out=out)
        else:
            following = torch.add(state, drift, alpha=step, out=out)
        if self.state_multiplier is not None:
            following.addcmul_(state, self.state_multiplier)
        return following if self.additive is None else following.add_(self.additive)


class NoiseForm(ABC):
    """The interface every noise form implements (see the module docstring)."""

    additive: float
    multiplicative: float

    @property
    def is_zero(self) -> bool:
        """Both levels are 0: the model is deterministic even in training mode."""
        return self.additive == 0.0 and self.multiplicative == 0.0

    @abstractmethod
    def noise_dim(self, state_dim: int) -> int:
        """r, the noise variables drawn per step for a state of ``state_dim`` entries."""

    @abstractmethod
    def families(self, state_dim: int) -> tuple[str, ...]:
        """The law of each of the r noise variables: ``"normal"`` (N(0, 1)) or
        ``"uniform"`` (uniform on [−√3, √3])."""

    @abstractmethod
    def sample(
        self,
        shape: Sequence[int],
        *,
        dtype: torch.dtype,
        device: torch.device | str,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Noise variables of ``shape`` (..., r) from ``generator`` (default: torch's)."""

    def parameters(self, state_dim: int, dt: float) -> dict[str, torch.Tensor]:
        """Initial values of the learnable parameters the step needs (name -> tensor)."""
        return {}

    @abstractmethod
    def step_terms(
        self,
        xi: torch.Tensor | None,
        *,
        steps: int,
        dt: float,
        parameters: Parameters,
    ) -> list[StepNoise]:
        """The terms of ``steps`` Euler steps from time-major noise ``xi`` (M, batch, r), or
        for noise-free steps (``xi`` None)."""

    @abstractmethod
    def mean_step(self, dt: float, parameters: Parameters) -> UniformStep | PerUnitStep:
        """The drift step on the path with every noise variable at 0."""

    @abstractmethod
    def evaluation_step(self, dt: float, parameters: Parameters) -> UniformStep | PerUnitStep:
        """The drift step with the noise off (evaluation mode)."""

    @abstractmethod
    def diffusion_points(
        self,
        states: torch.Tensor,
        drifts: Callable[[], torch.Tensor],
        parameters: Parameters,
    ) -> torch.Tensor:
        """Where the diffusion is evaluated along the path: (batch, M, n) from the states
        h̄_k (batch, M, n) and (on demand) the drifts f(h̄_k, x_k)."""

    @abstractmethod
    def diffusion(self, points: torch.Tensor, dt: float) -> torch.Tensor:
        """Σ (..., n, r), with Δt Σ Σᵀ the covariance one step adds, at ``points`` (..., n)."""

    def unit_gains(self, points: torch.Tensor, dt: float) -> torch.Tensor:
        """Each unit's row of Σ on its non-zero columns, (..., n, j): σ acts unit by unit,
        so the diffusion of a one-unit state gives it."""
        return self.diffusion(points[..., None], dt)[..., 0, :]

    @abstractmethod
    def unit_noise(self, xi: torch.Tensor, state_dim: int) -> torch.Tensor:
        """The noise variables (..., r) arranged as the columns of ``unit_gains``:
        (..., n, j), so that Σ ξ = (gains * unit_noise).sum(-1)."""

    # ------------------------------------------------------------ fused recurrence
    needs_drift: bool = False
    """Whether :meth:`step_cotangents` uses the drift of the step (kept by the forward)."""

    @property
    def has_step_cotangents(self) -> bool:
        """The form implements :meth:`step_cotangents` (the fused recurrence needs it)."""
        return type(self).step_cotangents is not NoiseForm.step_cotangents

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
        """What one step h' = h + s ⊙ f + a + h ⊙ m contributes to the gradients of its noise
        variables and of the noise's parameters, from the cotangent λ (batch, n) of h'.

        Args:
            state, drift: h and f(h, c) of the step (batch, n); ``drift`` None unless
                :attr:`needs_drift`.
            xi: the step's noise variables (batch, r), or None for a noise-free step.
            wanted: the names to compute: ``"xi"`` and the names of :meth:`parameters`.
        Returns:
            name -> gradient: ``"xi"`` (batch, r); a parameter's summed over the batch.
        """
        raise NotImplementedError(f"{type(self).__name__} has no derived step cotangents")

    # ------------------------------------------------------------------- stability
    def _paper_only(self, what: str) -> NoReturn:
        raise NotImplementedError(
            f"{what} is stated for the paper's noise (nrnn.Noise): with {type(self).__name__} "
            "the step does not act on h − h' as σ₂ (h − h') dβ and the bound does not apply. "
            "Measure the exponent with nrnn.stability.lyapunov_exponent instead."
        )

    def almost_sure_bound(self, kappa: torch.Tensor, state_dim: int) -> torch.Tensor:
        """The a.s. exponent bound of two trajectories with common noise, from κ."""
        self._paper_only("almost_sure_bound")

    def mean_square_bound(self, kappa: torch.Tensor) -> torch.Tensor:
        """The root-mean-square exponent bound κ + σ₂²/2."""
        self._paper_only("mean_square_bound")

    def multiplicative_level(self, what: str) -> float:
        """σ₂ of a multiplicative part σ₂ h dβ (bounds of the Euler–Maruyama map)."""
        self._paper_only(what)

    def common_multiplicative_level(self, state_dim: int, what: str) -> float:
        """σ₂ when every unit sees the same Brownian motion (σ₂ h dβ with one scalar β)."""
        self._paper_only(what)


@dataclass(frozen=True)
class Noise(NoiseForm):
    """The paper's noise: h_{k+1} = h_k + Δt f(h_k, x_k) + √Δt σ(h_k) ξ_k.

    Args:
        additive: σ₁ ≥ 0, the additive level.
        multiplicative: σ₂ ≥ 0, the multiplicative level.
        brownian: ``"diagonal"``: σ(h) = σ₁ I + σ₂ diag(h) with one Brownian motion per
            unit (r = n); ``"scalar"``: σ₁ I on n Brownian motions plus σ₂ h on one extra
            scalar Brownian motion (r = n + 1).
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
    def _scalar(self) -> bool:
        return self.brownian == "scalar"

    def noise_dim(self, state_dim: int) -> int:
        return state_dim + 1 if self._scalar else state_dim

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
        n = xi.shape[-1] - 1 if self._scalar else xi.shape[-1]
        root_dt = math.sqrt(dt)
        multiplied = xi[..., n:] if self._scalar else xi
        additive = (root_dt * self.additive * xi[..., :n]).unbind(0)
        multiplier = (root_dt * self.multiplicative * multiplied).unbind(0)
        return [StepNoise(dt, a, m) for a, m in zip(additive, multiplier, strict=True)]

    def mean_step(self, dt: float, parameters: Parameters) -> UniformStep:
        return UniformStep(dt)

    def evaluation_step(self, dt: float, parameters: Parameters) -> UniformStep:
        return UniformStep(dt)

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
        generated = noise_cotangent_scalar if self._scalar else noise_cotangent_diagonal
        return {"xi": generated(cotangent, state, self.additive, self.multiplicative, dt)}

    def diffusion_points(
        self,
        states: torch.Tensor,
        drifts: Callable[[], torch.Tensor],
        parameters: Parameters,
    ) -> torch.Tensor:
        return states

    def diffusion(self, points: torch.Tensor, dt: float) -> torch.Tensor:
        generated = diffusion_scalar if self._scalar else diffusion_diagonal
        return generated(points, self.additive, self.multiplicative)

    def unit_noise(self, xi: torch.Tensor, state_dim: int) -> torch.Tensor:
        if not self._scalar:
            return xi[..., None]
        additive = xi[..., :state_dim]
        return torch.stack([additive, xi[..., state_dim:].expand_as(additive)], dim=-1)

    def noise_matrices(self, state_dim: int) -> torch.Tensor:
        """The Bᵢ of the multiplicative part Σᵢ Bᵢ h dβᵢ, float64: σ₂ I (1, n, n) for a
        scalar Brownian motion, σ₂ eᵢeᵢᵀ (n, n, n) for one per unit."""
        identity = torch.eye(state_dim, dtype=torch.float64)
        if self._scalar:
            return self.multiplicative * identity[None]
        return self.multiplicative * torch.diag_embed(identity)

    def almost_sure_bound(self, kappa: torch.Tensor, state_dim: int) -> torch.Tensor:
        """κ − σ₂²/2 (scalar Brownian motion); κ + σ₂²(1/2 − 1/n) (one per unit, weaker)."""
        sigma = torch.as_tensor(self.multiplicative, dtype=kappa.dtype, device=kappa.device)
        if self._scalar:
            return _bounds.almost_sure_bound_scalar(kappa, sigma)
        return _bounds.almost_sure_bound_diagonal(kappa, sigma, state_dim)

    def mean_square_bound(self, kappa: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(self.multiplicative, dtype=kappa.dtype, device=kappa.device)
        return _bounds.mean_square_bound(kappa, sigma)

    def multiplicative_level(self, what: str) -> float:
        return self.multiplicative

    def common_multiplicative_level(self, state_dim: int, what: str) -> float:
        if not self._scalar and state_dim > 1:
            raise ValueError(
                f"{what} needs the multiplicative noise on one scalar Brownian motion "
                "(Noise(brownian='scalar')) or a one-unit state; for per-unit noise use "
                "almost_sure_bound"
            )
        return self.multiplicative


@dataclass(frozen=True)
class ReferenceNoise(NoiseForm):
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
            found["xi"] = noise_cotangent_reference(
                cotangent, drift, step_size, self.additive, self.multiplicative
            )
        return found

    def mean_step(self, dt: float, parameters: Parameters) -> PerUnitStep:
        """δ (1 − s_m/2): the mean path shrinks the drift by E u."""
        return PerUnitStep(parameters["step_size"] * reference_drift_scale(self.multiplicative))

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
        return reference_diffusion(points, self.additive, self.multiplicative, dt)

    def unit_noise(self, xi: torch.Tensor, state_dim: int) -> torch.Tensor:
        return xi.unflatten(-1, (2, state_dim)).transpose(-1, -2)
