"""Stability of the noisy RNN: contraction rate, Lyapunov-exponent bounds, measured exponents.

Two trajectories h, h' of one model, driven by the same inputs and the *same* noise
(common noise), differ by e = h − h'. The additive noise cancels in e; the multiplicative
noise does not. When the cell's drift splits as f(h) = L h + N(h) with N ρ-Lipschitz
(``Cell.stability_split``), eᵀ(f(h) − f(h')) ≤ κ|e|² with the one-sided Lipschitz
constant κ = λ_max(sym L) + ρ: for the Lipschitz cell L = A and ρ = sup|φ'| ‖W‖₂, so
κ = λ_max(sym A) + ‖W‖₂ for tanh. With σ₂ the multiplicative level, Itô's formula on
log|e|² gives (continuous time, paper-form noise, n entries in the state):

    almost surely   limsup (1/t) log|e_t| ≤ κ − σ₂²/2            (one scalar Brownian motion)
                    limsup (1/t) log|e_t| ≤ κ + σ₂²(1/2 − 1/n)   (one Brownian motion per unit)
    in mean square  limsup (1/2t) log E|e_t|² ≤ κ + σ₂²/2         (either)

A cell without such a split (the gated GRU-ODE cell: its gates multiply the state) has
no closed-form bound: the bound functions raise :class:`NoClosedFormBound` and say so;
the measured exponents work for every cell.

so multiplicative noise on a scalar Brownian motion can make a model with κ > 0 contract
(stochastic stabilisation), while the mean-square exponent only grows with noise.
Exponents here are all *per unit time* and of the distance itself: the mean-square one is
that of the root-mean-square distance √E|e|², i.e. half the exponent of E|e|² (for
dX = aX dt + sX dB: a.s. a − s²/2, root-mean-square a + s²/2, E X² exponent 2a + s²).

The formulas come from ``nrnn._generated.stability`` (derived with SymPy in
``derivations/stability.py``). This module adds:

- the bounds for a model (:func:`contraction_rate`, :func:`almost_sure_bound`,
  :func:`mean_square_bound`, :func:`stabilising_noise_level`);
- bounds that hold exactly for the Euler–Maruyama map the model actually runs
  (:func:`em_almost_sure_bound`, :func:`em_mean_square_bound`), which differ from the
  continuous ones by O(dt);
- Monte Carlo exponents: :func:`lyapunov_exponent` (two trajectories, renormalised
  separation) and :func:`linearised_lyapunov_exponent` (tangent dynamics, QR);
- the exact Euler–Maruyama mean-square condition of a linear system
  dX = A X dt + Σᵢ Bᵢ X dβᵢ (:func:`em_mean_square_matrix`, :func:`em_mean_square_exponent`,
  :func:`em_mean_square_stable`, :func:`linear_noise_matrices`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._pytree import tree_map

from . import contract
from ._generated import stability as _formulas
from .cells import StabilitySplit
from .cells.base import Derivatives, Point
from .model import NoisyRNN, check_model
from .montecarlo import mean_and_stderr
from .noise import Noise, StepNoise
from .paths import simulate

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = [
    "LyapunovEstimate",
    "NoClosedFormBound",
    "almost_sure_bound",
    "contraction_rate",
    "em_almost_sure_bound",
    "em_mean_square_bound",
    "em_mean_square_exponent",
    "em_mean_square_matrix",
    "em_mean_square_stable",
    "linear_noise_matrices",
    "linearised_lyapunov_exponent",
    "lyapunov_exponent",
    "mean_square_bound",
    "stabilising_noise_level",
]


# ------------------------------------------------------------------------- helpers
_SINGLE_THREAD_ELEMENTS = 1 << 16  # per-step tensor size below which one thread is used
_DIRECTION_SEED_OFFSET = 7_919  # separates the starting-direction stream from the noise stream


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


@contextlib.contextmanager
def _threads_for(elements: int) -> Iterator[None]:
    """One intra-op thread while stepping small tensors, restored afterwards.

    The per-step tensors of an exponent estimate are tiny; on a busy machine torch's
    parallel tanh/log on them can be ~100x slower than a single thread.
    """
    previous = torch.get_num_threads()
    single = elements <= _SINGLE_THREAD_ELEMENTS and previous > 1
    if single:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if single:
            torch.set_num_threads(previous)


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


# ------------------------------------------------------------ linear systems, exactly
def linear_noise_matrices(hidden_dim: int, sigma: float, brownian: str = "scalar") -> torch.Tensor:
    """The Bᵢ of dX = A X dt + Σᵢ Bᵢ X dβᵢ for the model's multiplicative noise, float64.

    ``"scalar"``: one matrix σ I, shape (1, d, d); ``"diagonal"``: σ eᵢeᵢᵀ for each unit,
    shape (d, d, d).
    """
    contract.integer("hidden_dim", hidden_dim)
    return Noise(0.0, sigma, brownian).noise_matrices(hidden_dim)


def em_mean_square_matrix(
    drift_matrix: torch.Tensor | ArrayLike, noise_matrices: torch.Tensor | ArrayLike, dt: float
) -> torch.Tensor:
    """The matrix 𝓜 with vec E[X_{k+1}X_{k+1}ᵀ] = 𝓜 vec E[X_k X_kᵀ] for the Euler–Maruyama map
    X_{k+1} = (I + dt A) X_k + √dt Σᵢ ξᵢ Bᵢ X_k of dX = A X dt + Σᵢ Bᵢ X dβᵢ.

    Args:
        drift_matrix: A, (..., d, d).
        noise_matrices: B, (..., n, d, d).
        dt: the step.
    Returns:
        𝓜 = (I + dt A)⊗(I + dt A) + dt Σᵢ Bᵢ⊗Bᵢ, (..., d², d²); it is the same matrix
        for row- and column-major vec (both factors of each product are equal).
    """
    A = torch.as_tensor(drift_matrix)
    B = torch.as_tensor(noise_matrices, dtype=A.dtype, device=A.device)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2] or B.ndim < 3 or B.shape[-2:] != A.shape[-2:]:
        raise ValueError(
            f"drift_matrix must be (..., d, d) and noise_matrices (..., n, d, d), got "
            f"{tuple(A.shape)} and {tuple(B.shape)}"
        )
    identity = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    return _formulas.em_mean_square_matrix(identity + dt * A, B, dt)


def em_mean_square_exponent(
    drift_matrix: torch.Tensor | ArrayLike, noise_matrices: torch.Tensor | ArrayLike, dt: float
) -> torch.Tensor:
    """Exact root-mean-square exponent log ρ(𝓜) / (2 dt) of the Euler–Maruyama map, (...).

    ρ is the spectral radius of :func:`em_mean_square_matrix`; E|X_K|² grows like ρ^K for a
    generic start. As dt → 0 it tends to half the spectral abscissa of A⊕A + Σ Bᵢ⊗Bᵢ
    (for Bᵢ = σ I: max Re eig(A) + σ²/2).
    """
    radius = torch.linalg.eigvals(em_mean_square_matrix(drift_matrix, noise_matrices, dt)).abs()
    return torch.log(radius.amax(-1)) / (2 * dt)


def em_mean_square_stable(
    drift_matrix: torch.Tensor | ArrayLike, noise_matrices: torch.Tensor | ArrayLike, dt: float
) -> torch.Tensor:
    """Whether the Euler–Maruyama map is mean-square stable: ρ(𝓜) < 1, bool (...)."""
    return em_mean_square_exponent(drift_matrix, noise_matrices, dt) < 0


# ------------------------------------------------------------------ measured exponents
@dataclass(frozen=True)
class LyapunovEstimate:
    """A Monte Carlo Lyapunov exponent (per unit time) and its standard error over paths.

    Attributes:
        exponent: mean over paths of the per-path exponent (the top one).
        stderr: its standard error (paths are independent).
        paths: number of independent paths.
        steps: steps over which growth was accumulated (after any burn-in).
        time: steps · dt, the time span of the estimate.
        samples: per-path exponents, (paths,) float64.
        spectrum: mean exponents, (count,), the top first (count = 1 for the two-trajectory
            estimate).
        spectrum_stderr: their standard errors, (count,).
    """

    exponent: float
    stderr: float
    paths: int
    steps: int
    time: float
    samples: torch.Tensor
    spectrum: torch.Tensor
    spectrum_stderr: torch.Tensor


def _as_float64(value: object) -> object:
    """A detached float64 copy of a tensor; numbers pass through."""
    return value.detach().double() if isinstance(value, torch.Tensor) else value


class _Run:
    """Everything one exponent estimate iterates over, prepared and validated.

    x: the inputs of the run's steps (1 or paths, ≤ burn_in + steps, p) in the model's
    dtype; drives: per-step (1 or paths, drive_dim) float64 drives; given_xi: the given
    noise (paths, burn_in + steps, r) float64 or None, and xi the same per step;
    parameters: the cell's drift parameters and noise: the noise's step parameters, float64
    and detached; start: (paths, n, directions) standard normal directions.
    """

    def __init__(
        self,
        model: NoisyRNN,
        x: torch.Tensor,
        *,
        paths: int,
        seed: int,
        steps: int | None,
        burn_in: int,
        xi: torch.Tensor | None,
        directions: int,
    ) -> None:
        self.model = check_model(model)
        self.paths = contract.integer("paths", paths, minimum=2)
        self.seed = contract.seed("seed", seed)
        self.burn_in = contract.integer("burn_in", burn_in, minimum=0)
        x = contract.sequences(x, features=model.input_dim, batch=(1, self.paths))
        x = contract.as_model_dtype(x, model.readout.weight)
        sequence_length = x.shape[1]
        if steps is None:
            steps = sequence_length - self.burn_in
            if steps < 2:
                raise ValueError(
                    f"too few steps to estimate an exponent: the sequence has {sequence_length} "
                    f"steps and burn_in={self.burn_in}, leaving {steps} (< 2); pass steps= "
                    "(the last input is held) or a longer sequence"
                )
        self.steps = contract.integer("steps", steps, minimum=2)
        total = self.total = self.burn_in + self.steps
        self.x = x[:, :total]
        with torch.no_grad():
            self.parameters = tree_map(_as_float64, model.cell.drift_parameters())
            self.noise_parameters = {
                k: v.detach().double() for k, v in model.noise_parameters.items()
            }
            drive = model.input_drive(x[:, :total]).detach().double()
        self.device = drive.device
        # Time-major (1 or paths, drive_dim) per step; steps past the sequence hold the last.
        self.drives = drive.transpose(0, 1).unbind(0)
        # Starting directions from their own stream, so the noise of a given seed is the same
        # whatever the number of directions.
        directions_generator = torch.Generator().manual_seed(self.seed + _DIRECTION_SEED_OFFSET)
        self.start = torch.randn(
            self.paths,
            model.state_dim,
            directions,
            dtype=torch.float64,
            generator=directions_generator,
        ).to(self.device)
        if xi is not None:
            shape = (self.paths, total, model.noise_dim)
            xi = contract.noise_increments(xi, shape, "(paths, burn_in + steps, r)")
            xi = xi.detach().to(self.device, torch.float64)
        self.given_xi = xi
        self.xi = None if xi is None else xi.transpose(0, 1).unbind(0)

    @contextlib.contextmanager
    def noise_generator(self) -> Iterator[None]:
        """Torch's global generator seeded with ``seed`` inside ``fork_rng``: the noise of
        the run, leaving the caller's random state untouched."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            yield

    def step_terms(self) -> Iterator[tuple[int, torch.Tensor, StepNoise]]:
        """Yield (k, drive, the noise's ``StepNoise``) for every step, float64.

        Noise not given as ``xi`` is drawn step by step (so long runs never hold the whole
        noise tensor) from torch's generator seeded with ``seed`` inside ``fork_rng``, which
        leaves the caller's random state untouched.
        """
        model = self.model
        with self.noise_generator():
            last = len(self.drives) - 1
            for k in range(self.burn_in + self.steps):
                drive = self.drives[min(k, last)].expand(self.paths, -1)
                if self.xi is not None:
                    xi = self.xi[k]
                elif model.noise.is_zero:
                    xi = None
                else:
                    xi = model.noise.sample(
                        (self.paths, model.noise_dim), dtype=torch.float64, device=self.device
                    )
                (terms,) = model.noise.step_terms(
                    None if xi is None else xi[None],
                    steps=1,
                    dt=model.dt,
                    parameters=self.noise_parameters,
                )
                yield k, drive, terms

    def time(self) -> float:
        return self.steps * self.model.dt


def _estimate(log_growth: torch.Tensor, run: _Run) -> LyapunovEstimate:
    """LyapunovEstimate from accumulated log growth (paths, count); errors if not finite."""
    if not torch.isfinite(log_growth).all():
        bad = int((~torch.isfinite(log_growth)).any(-1).sum())
        raise ValueError(
            f"the exponent could not be estimated: the accumulated log growth is not finite "
            f"on {bad} of {run.paths} paths (the hidden state overflowed, or the separation "
            "collapsed to exactly 0). Use fewer steps, a smaller dt, or a model whose hidden "
            "state stays bounded."
        )
    samples = log_growth / run.time()
    means, errors = mean_and_stderr(samples, dim=0)
    return LyapunovEstimate(
        exponent=float(means[0]),
        stderr=float(errors[0]),
        paths=run.paths,
        steps=run.steps,
        time=run.time(),
        samples=samples[:, 0].clone(),
        spectrum=means,
        spectrum_stderr=errors,
    )


def lyapunov_exponent(
    model: NoisyRNN,
    x: torch.Tensor,
    *,
    paths: int,
    seed: int,
    steps: int | None = None,
    initial_separation: float = 1e-6,
    burn_in: int = 0,
    xi: torch.Tensor | None = None,
) -> LyapunovEstimate:
    """Monte Carlo a.s. exponent (1/t) log|h_t − h'_t| of two trajectories with common noise.

    Both trajectories see the same inputs and the same noise increments; h_0 = 0 and
    h'_0 = h_0 + ``initial_separation`` · u with u a random unit vector. After every step the
    separation is measured, its log growth accumulated, and h' reset to h plus a small
    separation in the new direction (Benettin renormalisation), so the distance never
    under- or overflows however long the run. The reset separation is
    ``initial_separation`` · max(1, |h|), so that it stays resolvable in float64 when the
    hidden state itself grows. Computed in float64, without gradients; the
    model's noise is used whether the module is in training or evaluation mode. Small
    problems step with one intra-op thread (restored afterwards). Compare
    with :func:`almost_sure_bound` (continuous time) or :func:`em_almost_sure_bound`.

    Args:
        model: the NoisyRNN (any noise form).
        x: inputs (1, M, p), shared by all paths, or (paths, M, p).
        paths: independent paths (≥ 2): independent noise and starting directions.
        seed: seeds the noise and the starting directions (torch's global generator is
            left untouched).
        steps: steps over which growth is accumulated; None: M − burn_in. Inputs beyond the
            sequence hold its last value; a longer sequence is truncated.
        initial_separation: the distance kept between the trajectories (> 0), relative to
            |h| when |h| > 1.
        burn_in: steps run first (renormalising) without accumulating, so the separation
            direction settles.
        xi: optional noise increments (paths, burn_in + steps, r) to replay a run.
    Returns:
        LyapunovEstimate with the mean per-path exponent and its standard error.
    Raises:
        ValueError: bad input, fewer than 2 steps, or a non-finite result (overflow).
    """
    separation = contract.real("initial_separation", initial_separation, minimum=0, strict=True)
    run = _Run(model, x, paths=paths, seed=seed, steps=steps, burn_in=burn_in, xi=xi, directions=1)
    direction = run.start[..., 0]
    direction = direction / direction.norm(dim=-1, keepdim=True)
    h = torch.zeros(run.paths, model.state_dim, dtype=torch.float64, device=run.device)
    renormalise = _Renormalisation(separation, run.burn_in, h)
    start = torch.stack([h, h + renormalise.gap * direction])  # (2, paths, n): h then h'
    with _threads_for(2 * run.paths * model.state_dim), run.noise_generator():
        simulate(
            model,
            run.x,
            paths=run.paths,
            steps=run.total,
            xi=run.given_xi,
            scales=(1.0, 1.0),  # both trajectories see the same noise
            start=start,
            observer=renormalise,
            dtype=torch.float64,
            chunk_elements=0,  # one step per draw: tiny tensors, the seeds' numbers kept
        )
    return _estimate(renormalise.log_growth[:, None], run)


class _Renormalisation:
    """The observer of :func:`lyapunov_exponent`: after every step it measures the
    separation of the pair (2, paths, n), accumulates its log growth past the burn-in and
    resets h' to h plus a separation of ``separation`` · max(1, |h|) in the new direction."""

    def __init__(self, separation: float, burn_in: int, h: torch.Tensor) -> None:
        self.separation = separation
        self.burn_in = burn_in
        self.gap = torch.full_like(h[:, :1], separation)  # |h' − h| after a reset
        self.log_growth = torch.zeros_like(h[:, 0])

    def __call__(self, step: int, pair: torch.Tensor) -> None:
        h, difference = pair[0], pair[1] - pair[0]
        distance = difference.norm(dim=-1, keepdim=True)
        if step >= self.burn_in:
            self.log_growth += torch.log(distance[:, 0] / self.gap[:, 0])
        # Keep the gap resolvable in float64 when the state grows: separation · max(1, |h|).
        self.gap = self.separation * h.norm(dim=-1, keepdim=True).clamp(min=1.0)
        pair[1] = h + difference * (self.gap / distance)


def linearised_lyapunov_exponent(
    model: NoisyRNN,
    x: torch.Tensor,
    *,
    paths: int,
    seed: int,
    steps: int | None = None,
    count: int = 1,
    burn_in: int = 0,
    xi: torch.Tensor | None = None,
) -> LyapunovEstimate:
    """Top Lyapunov exponents of the linearised Euler–Maruyama flow along noisy paths (QR).

    Along one noisy trajectory h_k, tangent vectors evolve by the Jacobian of the whole
    step, multiplicative noise included: v_{k+1} = ∂h_{k+1}/∂h_k v_k (the Jacobian of
    ``model.euler_step``, see ``_tangent_step``). ``count`` tangent vectors are
    re-orthonormalised by QR every step and the logs of |diag R| accumulated; divided by
    the time they are the top ``count`` exponents. The top one equals
    :func:`lyapunov_exponent` in the limit of small separation; with the same ``seed`` both
    see the same noise and starting direction.

    Args: as :func:`lyapunov_exponent`, plus
        count: how many exponents (1 ≤ count ≤ d).
    Returns:
        LyapunovEstimate: ``exponent`` the top one; ``spectrum`` all ``count``.
    """
    check_model(model)
    count = contract.integer("count", count)
    if count > model.state_dim:
        raise ValueError(f"count must be <= the state size n = {model.state_dim}, got {count}")
    run = _Run(
        model, x, paths=paths, seed=seed, steps=steps, burn_in=burn_in, xi=xi, directions=count
    )
    tangents, _ = torch.linalg.qr(run.start)  # (paths, n, count), orthonormal columns
    h = torch.zeros(run.paths, model.state_dim, dtype=torch.float64, device=run.device)
    log_growth = torch.zeros_like(h[:, :count])
    derivatives = model.cell.derivatives()
    with torch.no_grad(), _threads_for(run.paths * model.state_dim * count):
        for k, drive, terms in run.step_terms():
            point = model.cell.linearisation(h, drive, run.parameters)
            tangents = _tangent_step(derivatives, point, run.parameters, tangents, terms)
            h = model.euler_step(h, drive, run.parameters, terms)
            tangents, upper = torch.linalg.qr(tangents)
            if k >= run.burn_in:
                log_growth += torch.log(torch.diagonal(upper, dim1=-2, dim2=-1).abs())
    return _estimate(log_growth, run)


def _tangent_step(
    derivatives: Derivatives,
    point: Point,
    parameters: tuple[Any, ...],
    tangents: torch.Tensor,
    terms: StepNoise,
) -> torch.Tensor:
    """The Jacobian of ``model.euler_step`` at the point applied to tangent vectors:
    V' = V + s ⊙ (F V) + m ⊙ V with F the drift's Jacobian (from the cell's derivatives) and
    s, m the step's drift step and state multiplier.

    Args:
        point: the cell's point at (h, drive), entries (paths, ·); tangents: (paths, n, k);
        terms: the noise's ``StepNoise`` of this step (float64).
    Returns:
        (paths, n, k).
    """
    rows = tangents.transpose(-1, -2)  # (paths, k, n)
    step = torch.atleast_1d(torch.as_tensor(terms.drift_step, dtype=rows.dtype, device=rows.device))
    pushed = rows + step.unsqueeze(-2) * derivatives.differential(point, parameters, rows)
    if terms.state_multiplier is not None:
        pushed = pushed + terms.state_multiplier.unsqueeze(-2) * rows
    return pushed.transpose(-1, -2)
