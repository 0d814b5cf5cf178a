"""Lyapunov-exponent bounds of a model whose drift splits as f = L h + N(h): the
contraction rate κ, the continuous-time a.s. and mean-square bounds and the noise level that
stabilises, and the bounds that hold exactly for the Euler–Maruyama map (see
:mod:`nrnn.stability` for the derivation)."""

from __future__ import annotations

import math

import torch

from .. import contract
from .._generated import stability as _formulas
from ..cells import StabilitySplit
from ..model import NoisyRNN, check_model


class NoClosedFormBound(NotImplementedError):
    """The model's cell has no derived one-sided Lipschitz constant (no closed-form bound)."""


def _split(model: NoisyRNN) -> StabilitySplit:
    """The cell's f = L h + N(h) split, or a clear error for a cell without one."""
    check_model(model)
    split = model.cell.stability_split(model.cell.drift_parameters())
    if split is None:
        raise NoClosedFormBound(
            f"no closed-form bound is available for the {model.cell.name} cell: its drift "
            "does not split as L h + N(h) with N Lipschitz (no one-sided Lipschitz constant "
            "is derived). Measure the exponent with lyapunov_exponent instead."
        )
    return split


# ---------------------------------------------------------------------- model bounds
def contraction_rate(model: NoisyRNN) -> torch.Tensor:
    """κ = λ_max((L + Lᵀ)/2) + ρ, a 0-dim tensor, differentiable in the parameters.

    For the Lipschitz cell κ = λ_max(sym A) + sup|φ'| ‖W‖₂ (A = 0 for the antisymmetric
    baseline). Deterministically, two trajectories with the same input satisfy
    |h_t − h'_t| ≤ e^{κt} |h_0 − h'_0|. For ``ReleasedNoise`` models κ is that of the drift.

    Raises:
        NoClosedFormBound: for a cell without a one-sided Lipschitz constant.
    """
    split = _split(model)
    linear = split.linear
    symmetric = 0.5 * (linear + linear.transpose(-1, -2))
    top_eigenvalue = torch.linalg.eigvalsh(symmetric)[..., -1]
    return _formulas.contraction_rate(top_eigenvalue, split.nonlinear_lipschitz)


def almost_sure_bound(model: NoisyRNN) -> torch.Tensor:
    """Upper bound on the a.s. exponent limsup (1/t) log|h_t − h'_t| (common noise), 0-dim.

    - ``Noise(brownian="scalar")``: κ − σ₂²/2. Noise can make it negative when κ > 0.
    - ``Noise(brownian="diagonal")``: κ + σ₂²(1/2 − 1/n), the weaker bound: independent
      Brownian motions per unit only guarantee Σᵢ uᵢ⁴ ≥ 1/n for the unit direction u of
      h − h', so for n > 2 the bound *grows* with σ₂ (n = 1 gives κ − σ₂²/2, n = 2 gives κ).

    Additive noise cancels in h − h', so a model without multiplicative noise (σ₂ = 0)
    gets the deterministic bound κ. Continuous time: the Euler–Maruyama map with step dt
    differs by O(dt) (see :func:`em_almost_sure_bound`).

    Raises:
        NotImplementedError: for ``ReleasedNoise`` (the bound is stated for the paper form).
        NoClosedFormBound: for a cell without a one-sided Lipschitz constant.
    """
    kappa = contraction_rate(model)
    return model.noise.almost_sure_bound(kappa, model.state_dim)


def mean_square_bound(model: NoisyRNN) -> torch.Tensor:
    """Upper bound κ + σ₂²/2 on the root-mean-square exponent limsup (1/2t) log E|h_t − h'_t|².

    The same for both Brownian modes (the Itô term of |e|² is σ₂²|e|² either way); noise
    never lowers it. The exponent of E|e|² itself is twice this. σ₂ = 0 gives κ.

    Raises:
        NotImplementedError: for ``ReleasedNoise``.
        NoClosedFormBound: for a cell without a one-sided Lipschitz constant.
    """
    kappa = contraction_rate(model)
    return model.noise.mean_square_bound(kappa)


def stabilising_noise_level(model: NoisyRNN) -> torch.Tensor:
    """The smallest σ₂ on a scalar Brownian motion at which the a.s. bound is ≤ 0: √(2 max(κ, 0)).

    It depends on the drift only (not on the model's current noise). With one Brownian
    motion per unit and n > 2 no noise level lowers the bound (see :func:`almost_sure_bound`).
    """
    kappa = contraction_rate(model)
    return torch.sqrt(2.0 * torch.clamp(kappa, min=0.0))


# --------------------------------------------------- bounds for the Euler–Maruyama map
def _em_norms(model: NoisyRNN, shifts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """‖c I + dt L‖₂ for every c in ``shifts`` (k,) -> (k,), and dt ρ (0-dim)."""
    split = _split(model)
    L = split.linear
    identity = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device)
    shifts = shifts.to(L)
    stepped = shifts[:, None, None] * identity + model.dt * L
    return torch.linalg.matrix_norm(stepped, ord=2), model.dt * split.nonlinear_lipschitz


def em_almost_sure_bound(model: NoisyRNN, *, grid_points: int = 4001) -> torch.Tensor:
    """A.s. exponent bound for the Euler–Maruyama map itself (scalar Brownian motion), 0-dim.

    With common noise, e_{k+1} = (c_k I + dt L) e_k + dt (N(h_k) − N(h'_k)) with
    c_k = 1 + σ₂ √dt ξ_k, so |e_{k+1}| ≤ (‖c_k I + dt L‖₂ + dt ρ) |e_k| and, by the law of
    large numbers, a.s. (L = A, ρ = ‖W‖₂ for the tanh Lipschitz cell)

        limsup (1/(K dt)) log|e_K| ≤ E_ξ log(‖(1 + σ₂√dt ξ) I + dt L‖₂ + dt ρ) / dt,

    computed by the trapezoidal rule on ``grid_points`` nodes over ξ ∈ [−12, 12] (accurate
    while σ₂√dt is small: the integrand dips where c ≈ 0, at ξ ≈ −1/(σ₂√dt)). It tends to
    κ − σ₂²/2 as dt → 0 and is typically below it by ≈ dt(3σ₂⁴/4 − κσ₂² + κ²/2).
    A numerical bound of this module, not a generated formula.

    Raises:
        ValueError: for one Brownian motion per unit with n > 1 (no useful discrete bound
            of this form: use :func:`almost_sure_bound`).
        NotImplementedError: for ``ReleasedNoise``.
        NoClosedFormBound: for a cell without a one-sided Lipschitz constant.
    """
    check_model(model)
    sigma = model.noise.common_multiplicative_level(model.state_dim, "em_almost_sure_bound")
    contract.integer("grid_points", grid_points, minimum=3)
    xi = torch.linspace(-12.0, 12.0, grid_points, dtype=torch.float64)
    density = torch.exp(-0.5 * xi**2) / math.sqrt(2 * math.pi)
    shifts = 1.0 + sigma * math.sqrt(model.dt) * xi
    step_norms, w_term = _em_norms(model, shifts)
    integrand = torch.log(step_norms + w_term) * density.to(step_norms)
    return torch.trapezoid(integrand, xi.to(step_norms)) / model.dt


def em_mean_square_bound(model: NoisyRNN) -> torch.Tensor:
    """Root-mean-square exponent bound for the Euler–Maruyama map (either Brownian mode), 0-dim.

    E|e_{k+1}|² = |(I + dt L) e_k + dt ΔN|² + σ₂² dt |e_k|² in expectation over ξ_k, so
    (1/2K dt) log E|e_K|² ≤ log((‖I + dt L‖₂ + dt ρ)² + σ₂² dt) / (2 dt), which tends to
    κ + σ₂²/2 as dt → 0. A numerical bound of this module, not a generated formula.
    """
    check_model(model)
    sigma = model.noise.multiplicative_level("em_mean_square_bound")
    step_norm, w_term = _em_norms(model, torch.ones(1))
    growth = (step_norm[0] + w_term) ** 2 + sigma**2 * model.dt
    return torch.log(growth) / (2 * model.dt)
