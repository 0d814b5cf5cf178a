"""What a noise form is: the interface :class:`NoiseForm` and the terms of one step.

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

A noise form is a frozen dataclass of its levels: it is its own options in a run config
(``[noise] kind = ...``), checked when it is made. What a form can do beyond the interface
is declared, not inferred: :attr:`NoiseForm.has_step_cotangents` (the fused recurrence's
backward pass) and :attr:`NoiseForm.parameter_names` (the learnable parameters of its step).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, NoReturn, cast

import torch
from torch import nn

from ..steps import PerUnitStep, UniformStep

__all__ = ["NoiseForm", "Parameters", "StepNoise"]

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
    parameter_names: ClassVar[tuple[str, ...]] = ()
    """The names of the learnable parameters of :meth:`parameters` (none for most forms)."""

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The names of the form's options (its dataclass fields), in order."""
        return tuple(entry.name for entry in dataclasses.fields(cast(Any, cls)))

    def options(self) -> dict[str, Any]:
        """The form's options by name (what ``[noise]`` of a run config holds)."""
        return {name: getattr(self, name) for name in self.option_names()}

    def with_levels(self, additive: float, multiplicative: float) -> NoiseForm:
        """The same form with other levels (a copy)."""
        return cast(
            NoiseForm,
            dataclasses.replace(cast(Any, self), additive=additive, multiplicative=multiplicative),
        )

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

    has_step_cotangents: ClassVar[bool] = False
    """The form implements :meth:`step_cotangents` (the fused recurrence needs it)."""

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
