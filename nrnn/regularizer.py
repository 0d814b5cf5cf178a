"""The explicit regularizer of the noisy RNN: E ℓ ≈ loss + (q + r)/2.

Along the path h̄_k with every noise variable ξ set to 0, with J_k the Jacobian of one step,
v_k = E ∇²f[δ, δ] the curvature of the cell's drift (δ ~ (0, C_k)) and Σ_k the noise's
diffusion along the path, the generated recursions (``nrnn._generated.expansion``, derived
in ``derivations/``) are

    C_0 = 0,  C_{k+1} = J_k C_k J_kᵀ + Δt Σ_k Σ_kᵀ            (covariance of the linear response)
    m_0 = 0,  m_{k+1} = J_k m_k + ½ s ⊙ v_k                   (mean correction; s the drift step)
    q = Q = 2 ∇ℓᵀ m_M,   r = R = tr(∇²ℓ C_M)

and E ℓ(h_M) = ℓ(h̄_M) + (q + r)/2 + O(ε⁴) when all noise is scaled by ε. For the
cross-entropy ∇ℓ = Vᵀ(p − e_y) and ∇²ℓ = Vᵀ(diag p − ppᵀ)V; the code works with the c
logits instead of the n state entries: Q = 2 (p − e_y)ᵀ (V m_M) and R = tr((diag p − ppᵀ)
V C_M Vᵀ), the same numbers at a c-dimensional cost (V reads the cell's output entries).

The cell supplies F = ∂f/∂h and v (its generated formulas, or torch.func for a cell
without them: ``derivatives="autodiff"`` forces that route); the noise supplies the drift
step s (Δt, or the released code's per-unit δ(1 − s_m/2) on its mean path) and Σ. With
``ReleasedNoise`` the path with ξ = [ζ, η] = 0 is the *mean path*
h̄_{k+1} = h̄_k + δ(1 − s_m/2) ⊙ f(h̄_k), so ``loss`` is the loss along it (not along the
evaluation path h + δ ⊙ f), and Δt Σ_k Σ_kᵀ = s_a² I + (s_m²/12) diag(δ ⊙ f)².

Two methods:

- ``exact`` propagates C: O(M n³) per sequence (batched matrix products). Long, wide
  problems are run in segments that are recomputed in the backward pass (gradient
  checkpointing), so memory stays O(√M · batch · n²) instead of O(M · batch · n²).
- ``probe`` propagates K random linear-response paths y_{k+1} = J_k y_k + √Δt Σ_k ξ_k
  (ξ_k with mean 0 and identity covariance: Rademacher by default, or standard normal)
  and uses C ≈ (1/K) Σ y yᵀ in v and in R: O(M n² K). Because v and R are linear in C and
  every ξ_k is independent of y_k, q and r are unbiased, and so are their parameter
  gradients (the ξ_k do not depend on the parameters). The K paths advance together with
  the path ξ = 0 in one loop, folded into the batch (``nrnn.probes``); J and Σ are
  applied without forming them (the cell's ``probe_terms`` and the noise's
  ``unit_gains``; the tests check both against the generated dense matrices, and the
  batched recursion against K dense single-probe recursions).

``nrnn.noise_laplacian`` (``nrnn.oracle``) is the independent autograd oracle: q + r equals
the Laplacian of the loss in ξ at ξ = 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from . import contract, draws
from ._generated.cross_entropy import cross_entropy_grad, cross_entropy_hessian
from ._generated.expansion import covariance_step, q_term, r_term
from .cells import DERIVATIVE_ROUTES
from .cells.base import Derivatives, Point
from .model import NoisyRNN, check_batch
from .noise import NoiseForm
from .probes import ProbeMoments, probe_moments, zero_noise_is_evaluation
from .registry import Registry
from .steps import PerUnitStep, UniformStep

__all__ = [
    "METHODS",
    "DeterministicPath",
    "Expansion",
    "RegularizerMethod",
    "deterministic_path",
    "exact_moments",
    "explicit_regularizer",
    "probe_expansion",
]

CHECKPOINT_BYTES = 256 * 2**20
"""``exact`` recomputes segments in the backward pass when the tensors it keeps for the
backward pass (about ``SAVED_PER_STEP`` (batch, n, n) tensors per step) would take more
memory than this."""
SAVED_PER_STEP = 7


class Expansion(NamedTuple):
    """The small-noise expansion of the expected loss, each entry (batch,).

    ``loss`` is ℓ(h̄_M) on the path with ξ = 0, ``q`` = Q = 2∇ℓᵀm_M and ``r`` = R =
    tr(∇²ℓ C_M); E ℓ ≈ loss + (q + r)/2.
    """

    loss: torch.Tensor
    q: torch.Tensor
    r: torch.Tensor

    @property
    def regularizer(self) -> torch.Tensor:
        """(q + r)/2, (batch,)."""
        return 0.5 * (self.q + self.r)

    @property
    def expected_loss(self) -> torch.Tensor:
        """loss + (q + r)/2, (batch,): the second-order approximation of E ℓ."""
        return self.loss + self.regularizer


# ------------------------------------------------------------------ the deterministic path
@dataclass(frozen=True)
class DeterministicPath:
    """What the recursions need from the path with ξ = 0 of a batch (M steps).

    Per-step entries are time-major (iterate them; never index a whole sequence inside
    the loop).

    Attributes:
        logits: V h̄_M + c, (batch, c).
        points: M points (dicts of (batch, ·) tensors, see ``nrnn.cells.base``).
        diffusion_points: M × (batch, n): where the noise's diffusion is evaluated.
        parameters: the cell's drift parameters.
        derivatives: the cell's derivatives (generated formulas or torch.func).
        step: the drift step on this path (``nrnn.steps``).
        noise: the model's noise; dt: the model's Δt.
    """

    logits: torch.Tensor
    points: tuple[Point, ...]
    diffusion_points: tuple[torch.Tensor, ...]
    parameters: tuple[Any, ...]
    derivatives: Derivatives
    step: UniformStep | PerUnitStep
    noise: NoiseForm
    dt: float

    def diffusion(self, point: torch.Tensor) -> torch.Tensor:
        """Σ_k (batch, n, r) at a diffusion point (batch, n)."""
        return self.noise.diffusion(point, self.dt)


def _time_major(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tensor.transpose(0, 1).unbind(0)


def noise_free_states(model: NoisyRNN, x: torch.Tensor) -> torch.Tensor:
    """The states (batch, M+1, n) of the path with every noise variable at zero, through
    the model's own step.

    When the noise's step at ξ = 0 is its evaluation step (the paper's noise: h + Δt f),
    the model runs in evaluation mode without noise variables: the same numbers without
    the arithmetic on ξ = 0 (a third of the path's cost). Otherwise (the released code's
    mean step δ(1 − s_m/2) ≠ δ) it runs with ξ = 0."""
    if not zero_noise_is_evaluation(model):
        return model.trajectory(x, x.new_zeros(*x.shape[:2], model.noise_dim))
    training = model.training
    model.train(False)
    try:
        return model.trajectory(x)
    finally:
        model.train(training)


def deterministic_path(
    model: NoisyRNN, x: torch.Tensor, derivatives: str = "formulas"
) -> DeterministicPath:
    """The path with every noise variable at zero, through the model's own step."""
    states = noise_free_states(model, x)  # (batch, M+1, n)
    cell = model.cell
    parameters = cell.drift_parameters()
    drives = model.input_drive(x)
    previous = states[:, :-1]
    # The order of these operations is that of the tensors' first use; it fixes the order
    # in which autograd sums the gradient contributions (kept, so results stay bitwise).
    linearisation = cell.linearisation(previous, drives, parameters)
    diffusion_points = model.noise.diffusion_points(
        previous, lambda: cell.drift(previous, drives, parameters), model.noise_parameters
    )
    step = model.noise.mean_step(model.dt, model.noise_parameters)
    logits = model.logits(states[:, -1])
    per_step = {name: _time_major(value) for name, value in linearisation.items()}
    return DeterministicPath(
        logits=logits,
        points=tuple(
            dict(zip(per_step, values, strict=True))
            for values in zip(*per_step.values(), strict=True)
        ),
        diffusion_points=_time_major(diffusion_points),
        parameters=parameters,
        derivatives=cell.derivatives(derivatives),
        step=step,
        noise=model.noise,
        dt=model.dt,
    )


# ------------------------------------------------------------------------- exact
def _exact_segment(
    path: DeterministicPath,
    covariance: torch.Tensor,
    mean: torch.Tensor,
    points: Sequence[Point],
    diffusion_points: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advance (C, m) over the steps of one segment."""
    derivatives, parameters = path.derivatives, path.parameters
    jacobian_at = path.step.jacobians(derivatives, parameters)
    for point, diffusion_point in zip(points, diffusion_points, strict=True):
        jacobian = jacobian_at(point)
        curvature = derivatives.curvature(point, parameters, covariance)
        mean = path.step.mean_step(mean, jacobian, curvature)
        covariance = covariance_step(covariance, jacobian, path.diffusion(diffusion_point), path.dt)
    return covariance, mean


def exact_moments(path: DeterministicPath) -> tuple[torch.Tensor, torch.Tensor]:
    """(m_M (batch, n), C_M (batch, n, n)) from the generated recursions."""
    batch, n = path.diffusion_points[0].shape
    steps = len(path.points)
    covariance = path.logits.new_zeros(batch, n, n)
    mean = path.logits.new_zeros(batch, n)
    needs_grad = torch.is_grad_enabled() and path.logits.requires_grad
    stored = SAVED_PER_STEP * steps * batch * n * n * covariance.element_size()
    segment = math.ceil(math.sqrt(steps)) if needs_grad and stored > CHECKPOINT_BYTES else steps
    for start in range(0, steps, segment):
        points = path.points[start : start + segment]
        diffusion_points = path.diffusion_points[start : start + segment]
        if segment < steps:
            covariance, mean = checkpoint(
                _exact_segment,
                path,
                covariance,
                mean,
                points,
                diffusion_points,
                use_reentrant=False,
                preserve_rng_state=False,  # the segment draws nothing (and capture forbids it)
            )
        else:
            covariance, mean = _exact_segment(path, covariance, mean, points, diffusion_points)
    return mean, covariance


# --------------------------------------------------------------------------- public
def explicit_regularizer(
    model: NoisyRNN,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: str = "exact",
    probes: int = 8,
    generator: torch.Generator | None = None,
    derivatives: str = "formulas",
    probe_distribution: str = "rademacher",
) -> Expansion:
    """The expansion E ℓ ≈ loss + (q + r)/2 of the model's noise, per sample.

    Args:
        model: the noisy RNN, any cell; its noise (``Noise`` in either Brownian mode, or
            ``ReleasedNoise``) sets the regularizer. Its train/eval mode does not matter.
        x: inputs (batch, M, p).
        y: class indices (batch,).
        method: ``"exact"`` (covariance recursion, O(M n³)) or ``"probe"`` (``probes``
            random linear-response paths, O(M n² K), unbiased for q and r).
        probes: K, for ``"probe"``.
        generator: the torch generator of the probes (default: the global one of the
            model's device); they are drawn on the generator's device and moved.
        derivatives: ``"formulas"`` (the cell's generated code; torch.func for a cell
            without it) or ``"autodiff"`` (torch.func for any cell).
        probe_distribution: the law of the probes' noise variables, ``"rademacher"``
            (±1, default) or ``"gaussian"``; both have identity covariance, so both are
            unbiased (see the module docstring).

    Returns:
        ``Expansion(loss, q, r)``, each (batch,), differentiable with respect to every
        parameter. For ``ReleasedNoise``, ``loss`` is along the mean path (see the module
        docstring). A model without noise gives q = r = 0.
    """
    entry = METHODS.get(contract.choice("method", method, METHODS.names()))
    contract.choice("derivatives", derivatives, DERIVATIVE_ROUTES)
    contract.choice("probe_distribution", probe_distribution, draws.DISTRIBUTIONS)
    x, y = check_batch(model, x, y, probes=probes)
    if model.noise.is_zero:
        loss = F.cross_entropy(
            model.logits(noise_free_states(model, x)[:, -1]), y, reduction="none"
        )
        zero = torch.zeros_like(loss)
        return Expansion(loss, zero, zero)
    settings = MethodSettings(probes, generator, derivatives, probe_distribution)
    return entry.expansion(model, x, y, settings)


class MethodSettings(NamedTuple):
    """The arguments of :func:`explicit_regularizer` a method may use."""

    probes: int
    generator: torch.Generator | None
    derivatives: str
    probe_distribution: str


def _exact_expansion(
    model: NoisyRNN, x: torch.Tensor, y: torch.Tensor, settings: MethodSettings
) -> Expansion:
    path = deterministic_path(model, x, settings.derivatives)
    loss = F.cross_entropy(path.logits, y, reduction="none")
    mean, covariance = exact_moments(path)
    readout = model.readout.weight  # V, (c, output_dim)
    logit_covariance = readout @ model.cell.output_covariance(covariance) @ readout.T
    return _expansion(model, y, path.logits, loss, mean, logit_covariance)


def _probe_expansion(
    model: NoisyRNN, x: torch.Tensor, y: torch.Tensor, settings: MethodSettings
) -> Expansion:
    moments = probe_moments(
        model,
        x,
        settings.probes,
        generator=settings.generator,
        distribution=settings.probe_distribution,
        derivatives=settings.derivatives,
    )
    return probe_expansion(model, y, moments)


@dataclass(frozen=True)
class RegularizerMethod:
    """A way to compute the expansion (``explicit_regularizer(method=name)``).

    Attributes:
        name: the method's name (``train.regularizer_method`` of a run config).
        expansion: ``expansion(model, x, y, settings)`` -> :class:`Expansion`.
        relative_cost: the cost of a training step with it relative to a noisy step, from
            the state size n (for the harness's schedule and the cost estimates).
        cubic: its cost grows as n³ per step (the harness then times fewer steps).
    """

    name: str
    expansion: Callable[[NoisyRNN, torch.Tensor, torch.Tensor, MethodSettings], Expansion]
    relative_cost: Callable[[int], float]
    cubic: bool = False


METHODS: Registry[RegularizerMethod] = Registry("regularizer method")
"""The methods by name: ``exact`` (covariance recursion, O(M n³)) and ``probe`` (random
linear-response paths, O(M n² K))."""
METHODS.register(RegularizerMethod("exact", _exact_expansion, lambda n: float(n), cubic=True))
METHODS.register(RegularizerMethod("probe", _probe_expansion, lambda n: 10.0))


def probe_expansion(model: NoisyRNN, y: torch.Tensor, moments: ProbeMoments) -> Expansion:
    """``Expansion(loss, q̂, r̂)`` from the probe recursion's output (``nrnn.probes``):
    r̂ with the logit covariance (1/K) Σ (V y)(V y)ᵀ of the K paths; y (batch,)."""
    logits, mean, paths = moments
    logit_paths = model.cell.output(paths) @ model.readout.weight.T  # (batch, K, c)
    logit_covariance = logit_paths.transpose(1, 2) @ logit_paths / paths.shape[1]
    loss = F.cross_entropy(logits, y, reduction="none")
    return _expansion(model, y, logits, loss, mean, logit_covariance)


def _expansion(
    model: NoisyRNN,
    y: torch.Tensor,
    logits: torch.Tensor,
    loss: torch.Tensor,
    mean: torch.Tensor,
    logit_covariance: torch.Tensor,
) -> Expansion:
    """Q = 2 ∇ℓᵀ m and R = tr(∇²ℓ C) in the logits, from m (batch, n) and V C Vᵀ."""
    # e_y by a scatter: F.one_hot checks the labels' range by reading them back on a CPU
    onehot = torch.zeros_like(logits).scatter_(1, y[:, None], 1.0)
    readout = model.readout.weight
    # Argument order as written: it is the order of first use (see deterministic_path).
    q = q_term(cross_entropy_grad(logits, onehot), model.cell.output(mean) @ readout.T)
    r = r_term(cross_entropy_hessian(logits), logit_covariance)
    return Expansion(loss, q, r)
