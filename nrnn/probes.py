"""The ``probe`` method of the explicit regularizer: K random linear-response paths
advanced with the path ξ = 0, step by step.

Along the path h̄_k with every noise variable at 0 (the model's own ``euler_step``), K
paths per sample follow the linear response

    y_0 = 0,  y_{k+1} = J_k y_k + √Δt Σ_k ξ_k,   ξ_k with mean 0 and identity covariance,

and the mean correction is driven by their covariance Ĉ_k = (1/K) Σ y yᵀ:
m_{k+1} = J_k m_k + ½ s ⊙ v(Ĉ_k). Every term of q̂ and r̂ is linear in the Ĉ_k, and ξ_k is
independent of y_k, so both are unbiased for any such law of ξ; each probe's contribution
is a quadratic form ξᵀBξ in all its noise variables, and for those the variance is
2(‖B‖²_F − Σ B_jj²) with ±1 (Rademacher) entries against 2‖B‖²_F with Gaussian ones, so
Rademacher probes (the default) are never worse, and nine times cheaper to draw.
(Antithetic pairs ±ξ are no use here: y is linear in ξ, so y yᵀ and every estimate is
even in ξ and a pair repeats one probe.)

The work per step, for a generated cell: the cell's ``probe_terms`` on the (batch, K, n)
rows (F y and the curvature: one (batch·K, n) × (n, n) product per matrix of the cell),
the drift step J y = y + s ⊙ F y and the noise in fused multiply-adds, the mean's
(batch, n) rows, and the point of the path (``cell.linearisation`` on this step's state)
— all on per-step tensors that stay in cache, never on whole-sequence ones.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple

import torch

from . import draws
from .noise import StepNoise
from .steps import PerUnitStep, UniformStep

if TYPE_CHECKING:
    from .model import NoisyRNN

__all__ = [
    "ProbeMoments",
    "add_noise_rows",
    "noise_free_terms",
    "probe_moments",
    "zero_noise_is_evaluation",
]


class ProbeMoments(NamedTuple):
    """What the probe recursion returns: the logits V h̄_M + c (batch, c) of the path with
    ξ = 0, the estimated mean correction m̂_M (batch, n) and the K linear-response paths
    Y_M (batch, K, n)."""

    logits: torch.Tensor
    mean: torch.Tensor
    paths: torch.Tensor


def _same_step(first: UniformStep | PerUnitStep, second: UniformStep | PerUnitStep) -> bool:
    """Two drift steps that are the same numbers (the same float, or the same tensor)."""
    if type(first) is not type(second):
        return False
    if isinstance(first.value, torch.Tensor):
        return first.value is second.value
    return first.value == second.value


def zero_noise_is_evaluation(model: NoisyRNN) -> bool:
    """Whether the step with every noise variable at 0 is the noise's evaluation step (the
    paper's noise: h + Δt f; not the released code's mean step δ(1 − s_m/2) ⊙ f), so the
    path ξ = 0 can run without the arithmetic on ξ = 0."""
    noise, parameters = model.noise, model.noise_parameters
    return _same_step(
        noise.mean_step(model.dt, parameters), noise.evaluation_step(model.dt, parameters)
    )


def noise_free_terms(model: NoisyRNN, x: torch.Tensor) -> list[StepNoise]:
    """The noise's step terms of the path with ξ = 0, one per step of x (batch, M, p)."""
    steps = x.shape[1]
    if zero_noise_is_evaluation(model):
        return model.step_terms(None, steps)
    return model.step_terms(x.new_zeros(steps, x.shape[0], model.noise_dim), steps)


def add_noise_rows(
    rows: torch.Tensor, scaled_gains: torch.Tensor, unit_noise: torch.Tensor
) -> torch.Tensor:
    """rows + √Δt Σ_k ξ for the probes, without forming Σ_k: Σ acts unit by unit, so with
    the gains g = √Δt ``unit_gains`` (batch, 1, n, j) and the noise arranged per unit
    (batch, K, n, j) (``unit_noise``) it is rows + Σ_c g[..., c] ⊙ ξ[..., c]; one fused
    multiply-add per column. rows: (batch, K, n)."""
    for column in range(scaled_gains.shape[-1]):
        rows = torch.addcmul(rows, scaled_gains[..., column], unit_noise[..., column])
    return rows


def probe_noise(
    model: NoisyRNN,
    x: torch.Tensor,
    probes: int,
    distribution: str,
    generator: torch.Generator | None,
) -> Iterator[torch.Tensor]:
    """The probes' noise variables, one (batch, K, r) tensor per step, drawn for many steps
    at a time on the generator's device (``nrnn.draws``)."""
    batch, steps, _ = x.shape

    def sample(shape: tuple[int, ...]) -> torch.Tensor:
        return draws.standard(
            distribution, shape, generator=generator, dtype=x.dtype, device=x.device
        )

    return draws.step_draws(sample, (batch, probes, model.noise_dim), steps)


def probe_moments(
    model: NoisyRNN,
    x: torch.Tensor,
    probes: int,
    *,
    generator: torch.Generator | None = None,
    distribution: str = "rademacher",
    derivatives: str = "formulas",
    noise_variables: Iterable[torch.Tensor] | None = None,
) -> ProbeMoments:
    """The path ξ = 0, m̂_M and the K probe paths of x (batch, M, p) in one loop over the
    steps (see the module docstring); differentiable in every parameter.

    ``noise_variables``: the probes' noise, an iterable of M tensors (batch, K, r), instead
    of drawing it from ``generator`` with ``distribution`` (replay)."""
    cell, noise = model.cell, model.noise
    batch, _, _ = x.shape
    n = model.state_dim
    parameters = cell.drift_parameters()
    routes = cell.derivatives(derivatives)
    step = noise.mean_step(model.dt, model.noise_parameters)
    root_dt = math.sqrt(model.dt)
    drives = model.input_drive(x).transpose(0, 1).unbind(0)
    state = x.new_zeros(batch, n)
    mean = x.new_zeros(batch, n)
    paths = x.new_zeros(batch, probes, n)
    if noise_variables is None:
        noise_variables = probe_noise(model, x, probes, distribution, generator)
    for index, (drive, terms, xi) in enumerate(
        zip(drives, noise_free_terms(model, x), noise_variables, strict=True)
    ):
        point = cell.linearisation(state, drive, parameters)
        diffusion_point = noise.diffusion_points(
            state, functools.partial(cell.drift, state, drive, parameters), model.noise_parameters
        )
        gain = root_dt * noise.unit_gains(diffusion_point, model.dt)[:, None]  # (batch, 1, n, j)
        if index > 0:  # y_0 = 0 and m_1 = 0: nothing to propagate before the first noise
            # J y = y + s ⊙ F y and the curvature v of the probe covariance, without J or C.
            differential, curvature = routes.probe_terms(point, parameters, paths)
            mean_differential = routes.differential(point, parameters, mean)
            mean = step.probe_mean_step(mean, mean_differential, curvature)
            paths = step.advance(paths, differential)
        paths = add_noise_rows(paths, gain, noise.unit_noise(xi, n))
        state = model.euler_step(state, drive, parameters, terms)
    return ProbeMoments(model.logits(state), mean, paths)
