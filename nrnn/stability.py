"""Stability of the noisy RNN: contraction rate, Lyapunov-exponent bounds, measured exponents.

Two trajectories h, h' of one model, driven by the same inputs and the *same* noise
(common noise), differ by e = h − h'. The additive noise cancels in e; the multiplicative
noise does not. With κ = λ_max(sym A) + ‖W‖₂ (tanh is 1-Lipschitz) and σ₂ the
multiplicative level, Itô's formula on log|e|² gives (continuous time, paper-form noise):

    almost surely   limsup (1/t) log|e_t| ≤ κ − σ₂²/2            (one scalar Brownian motion)
                    limsup (1/t) log|e_t| ≤ κ + σ₂²(1/2 − 1/d)   (one Brownian motion per unit)
    in mean square  limsup (1/2t) log E|e_t|² ≤ κ + σ₂²/2         (either)

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
from dataclasses import dataclass

import torch

from ._generated import stability as _formulas
from ._generated.activation import tanh_prime
from .model import NoisyRNN
from .montecarlo import mean_and_stderr
from .noise import Noise, ReferenceNoise

__all__ = [
    "LyapunovEstimate",
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


# ------------------------------------------------------------------------- validation
_SINGLE_THREAD_ELEMENTS = 1 << 16  # per-step tensor size below which one thread is used
_DIRECTION_SEED_OFFSET = 7_919  # separates the starting-direction stream from the noise stream


def _check_model(model) -> NoisyRNN:
    if not isinstance(model, NoisyRNN):
        raise TypeError(f"model must be an nrnn.NoisyRNN, got {type(model).__name__}")
    return model


def _paper_noise(model: NoisyRNN, what: str) -> Noise:
    """The model's noise, or a clear error for the released-code form."""
    _check_model(model)
    if isinstance(model.noise, ReferenceNoise):
        raise NotImplementedError(
            f"{what} is stated for the paper's noise (nrnn.Noise): with nrnn.ReferenceNoise the "
            "released-code step multiplies the drift by a random step size, so the noise does "
            "not act on h − h' as σ₂ (h − h') dβ and the bound does not apply. Measure the "
            "exponent with lyapunov_exponent instead."
        )
    return model.noise


def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


@contextlib.contextmanager
def _threads_for(elements: int):
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


def _as_tensor(value, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device)


# ---------------------------------------------------------------------- model bounds
def contraction_rate(model: NoisyRNN) -> torch.Tensor:
    """κ = λ_max((A + Aᵀ)/2) + ‖W‖₂, a 0-dim tensor, differentiable in the parameters.

    Deterministically, two trajectories with the same input satisfy
    |h_t − h'_t| ≤ e^{κt} |h_0 − h'_0|. For the antisymmetric baseline A = 0 (there is
    no A h term), so κ = ‖W‖₂. For ``ReferenceNoise`` models κ is that of the drift.
    """
    A, W = _check_model(model).matrices()
    symmetric = 0.5 * (A + A.transpose(-1, -2))
    top_eigenvalue = torch.linalg.eigvalsh(symmetric)[..., -1]
    spectral_norm = torch.linalg.matrix_norm(W, ord=2)
    return _formulas.contraction_rate(top_eigenvalue, spectral_norm)


def almost_sure_bound(model: NoisyRNN) -> torch.Tensor:
    """Upper bound on the a.s. exponent limsup (1/t) log|h_t − h'_t| (common noise), 0-dim.

    - ``Noise(brownian="scalar")``: κ − σ₂²/2. Noise can make it negative when κ > 0.
    - ``Noise(brownian="diagonal")``: κ + σ₂²(1/2 − 1/d), the weaker bound: independent
      Brownian motions per unit only guarantee Σᵢ uᵢ⁴ ≥ 1/d for the unit direction u of
      h − h', so for d > 2 the bound *grows* with σ₂ (d = 1 gives κ − σ₂²/2, d = 2 gives κ).

    Additive noise cancels in h − h', so a model without multiplicative noise (σ₂ = 0)
    gets the deterministic bound κ. Continuous time: the Euler–Maruyama map with step dt
    differs by O(dt) (see :func:`em_almost_sure_bound`).

    Raises:
        NotImplementedError: for ``ReferenceNoise`` (the bound is stated for the paper form).
    """
    noise = _paper_noise(model, "almost_sure_bound")
    kappa = contraction_rate(model)
    sigma = _as_tensor(noise.multiplicative, kappa)
    if noise.brownian == "scalar":
        return _formulas.almost_sure_bound_scalar(kappa, sigma)
    return _formulas.almost_sure_bound_diagonal(kappa, sigma, model.hidden_dim)


def mean_square_bound(model: NoisyRNN) -> torch.Tensor:
    """Upper bound κ + σ₂²/2 on the root-mean-square exponent limsup (1/2t) log E|h_t − h'_t|².

    The same for both Brownian modes (the Itô term of |e|² is σ₂²|e|² either way); noise
    never lowers it. The exponent of E|e|² itself is twice this. σ₂ = 0 gives κ.

    Raises:
        NotImplementedError: for ``ReferenceNoise``.
    """
    noise = _paper_noise(model, "mean_square_bound")
    kappa = contraction_rate(model)
    return _formulas.mean_square_bound(kappa, _as_tensor(noise.multiplicative, kappa))


def stabilising_noise_level(model: NoisyRNN) -> torch.Tensor:
    """The smallest σ₂ on a scalar Brownian motion at which the a.s. bound is ≤ 0: √(2 max(κ, 0)).

    It depends on A and W only (not on the model's current noise). With one Brownian
    motion per unit and d > 2 no noise level lowers the bound (see :func:`almost_sure_bound`).
    """
    _check_model(model)
    kappa = contraction_rate(model)
    return torch.sqrt(2.0 * torch.clamp(kappa, min=0.0))


# --------------------------------------------------- bounds for the Euler–Maruyama map
def _em_norms(model: NoisyRNN, shifts: torch.Tensor):
    """‖c I + dt A‖₂ for every c in ``shifts`` (n,) -> (n,), and dt ‖W‖₂ (0-dim)."""
    A, W = model.matrices()
    identity = torch.eye(model.hidden_dim, dtype=A.dtype, device=A.device)
    shifts = shifts.to(A)
    stepped = shifts[:, None, None] * identity + model.dt * A
    return torch.linalg.matrix_norm(stepped, ord=2), model.dt * torch.linalg.matrix_norm(W, ord=2)


def em_almost_sure_bound(model: NoisyRNN, *, grid_points: int = 4001) -> torch.Tensor:
    """A.s. exponent bound for the Euler–Maruyama map itself (scalar Brownian motion), 0-dim.

    With common noise, e_{k+1} = (c_k I + dt A) e_k + dt (tanh(z_k) − tanh(z'_k)) with
    c_k = 1 + σ₂ √dt ξ_k, so |e_{k+1}| ≤ (‖c_k I + dt A‖₂ + dt ‖W‖₂) |e_k| and, by the law of
    large numbers, a.s.

        limsup (1/(K dt)) log|e_K| ≤ E_ξ log(‖(1 + σ₂√dt ξ) I + dt A‖₂ + dt ‖W‖₂) / dt,

    computed by the trapezoidal rule on ``grid_points`` nodes over ξ ∈ [−12, 12] (accurate
    while σ₂√dt is small: the integrand dips where c ≈ 0, at ξ ≈ −1/(σ₂√dt)). It tends to
    κ − σ₂²/2 as dt → 0 and is typically below it by ≈ dt(3σ₂⁴/4 − κσ₂² + κ²/2).
    A numerical bound of this module, not a generated formula.

    Raises:
        ValueError: for one Brownian motion per unit with d > 1 (no useful discrete bound
            of this form: use :func:`almost_sure_bound`).
        NotImplementedError: for ``ReferenceNoise``.
    """
    noise = _paper_noise(model, "em_almost_sure_bound")
    if noise.brownian == "diagonal" and model.hidden_dim > 1:
        raise ValueError(
            "em_almost_sure_bound needs the multiplicative noise on one scalar Brownian "
            "motion (Noise(brownian='scalar')) or hidden_dim == 1; for per-unit noise use "
            "almost_sure_bound"
        )
    _check_positive_int("grid_points", grid_points, minimum=3)
    xi = torch.linspace(-12.0, 12.0, grid_points, dtype=torch.float64)
    density = torch.exp(-0.5 * xi**2) / math.sqrt(2 * math.pi)
    shifts = 1.0 + noise.multiplicative * math.sqrt(model.dt) * xi
    step_norms, w_term = _em_norms(model, shifts)
    integrand = torch.log(step_norms + w_term) * density.to(step_norms)
    return torch.trapezoid(integrand, xi.to(step_norms)) / model.dt


def em_mean_square_bound(model: NoisyRNN) -> torch.Tensor:
    """Root-mean-square exponent bound for the Euler–Maruyama map (either Brownian mode), 0-dim.

    E|e_{k+1}|² = |(I + dt A) e_k + dt Δtanh|² + σ₂² dt |e_k|² in expectation over ξ_k, so
    (1/2K dt) log E|e_K|² ≤ log((‖I + dt A‖₂ + dt ‖W‖₂)² + σ₂² dt) / (2 dt), which tends to
    κ + σ₂²/2 as dt → 0. A numerical bound of this module, not a generated formula.
    """
    noise = _paper_noise(model, "em_mean_square_bound")
    step_norm, w_term = _em_norms(model, torch.ones(1))
    growth = (step_norm[0] + w_term) ** 2 + noise.multiplicative**2 * model.dt
    return torch.log(growth) / (2 * model.dt)


# ------------------------------------------------------------ linear systems, exactly
def linear_noise_matrices(hidden_dim: int, sigma: float, brownian: str = "scalar") -> torch.Tensor:
    """The Bᵢ of dX = A X dt + Σᵢ Bᵢ X dβᵢ for the model's multiplicative noise, float64.

    ``"scalar"``: one matrix σ I, shape (1, d, d); ``"diagonal"``: σ eᵢeᵢᵀ for each unit,
    shape (d, d, d).
    """
    _check_positive_int("hidden_dim", hidden_dim)
    identity = torch.eye(hidden_dim, dtype=torch.float64)
    if brownian == "scalar":
        return sigma * identity[None]
    if brownian == "diagonal":
        return sigma * torch.diag_embed(identity)
    raise ValueError(f"brownian must be 'scalar' or 'diagonal', got {brownian!r}")


def em_mean_square_matrix(drift_matrix, noise_matrices, dt: float) -> torch.Tensor:
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
    B = torch.as_tensor(noise_matrices, dtype=A.dtype)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2] or B.ndim < 3 or B.shape[-2:] != A.shape[-2:]:
        raise ValueError(
            f"drift_matrix must be (..., d, d) and noise_matrices (..., n, d, d), got "
            f"{tuple(A.shape)} and {tuple(B.shape)}"
        )
    identity = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    return _formulas.em_mean_square_matrix(identity + dt * A, B, dt)


def em_mean_square_exponent(drift_matrix, noise_matrices, dt: float) -> torch.Tensor:
    """Exact root-mean-square exponent log ρ(𝓜) / (2 dt) of the Euler–Maruyama map, (...).

    ρ is the spectral radius of :func:`em_mean_square_matrix`; E|X_K|² grows like ρ^K for a
    generic start. As dt → 0 it tends to half the spectral abscissa of A⊕A + Σ Bᵢ⊗Bᵢ
    (for Bᵢ = σ I: max Re eig(A) + σ²/2).
    """
    radius = torch.linalg.eigvals(em_mean_square_matrix(drift_matrix, noise_matrices, dt)).abs()
    return torch.log(radius.amax(-1)) / (2 * dt)


def em_mean_square_stable(drift_matrix, noise_matrices, dt: float) -> torch.Tensor:
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


class _Run:
    """Everything one exponent estimate iterates over, prepared and validated.

    drives: per-step (1 or paths, d) float64 tensors U x_k + b; xi: per-step (paths, r) given
    noise or None; A, W: float64; start: (paths, d, directions) standard normal directions.
    """

    def __init__(self, model, x, *, paths, seed, steps, burn_in, xi, directions):
        self.model = _check_model(model)
        self.paths = _check_positive_int("paths", paths, minimum=2)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.burn_in = _check_positive_int("burn_in", burn_in, minimum=0)
        x = self._check_input(x)
        sequence_length = x.shape[1]
        if steps is None:
            steps = sequence_length - self.burn_in
            if steps < 2:
                raise ValueError(
                    f"too few steps to estimate an exponent: the sequence has {sequence_length} "
                    f"steps and burn_in={self.burn_in}, leaving {steps} (< 2); pass steps= "
                    "(the last input is held) or a longer sequence"
                )
        self.steps = _check_positive_int("steps", steps, minimum=2)
        total = self.burn_in + self.steps
        with torch.no_grad():
            A, W = model.matrices()
            self.A, self.W = A.detach().double(), W.detach().double()
            drive = model.input_drive(x[:, :total]).detach().double()
        self.device = self.A.device
        # Time-major (1 or paths, d) per step; steps past the sequence hold its last input.
        self.drives = drive.transpose(0, 1).unbind(0)
        # Starting directions from their own stream, so the noise of a given seed is the same
        # whatever the number of directions.
        directions_generator = torch.Generator().manual_seed(seed + _DIRECTION_SEED_OFFSET)
        self.start = torch.randn(
            self.paths,
            model.hidden_dim,
            directions,
            dtype=torch.float64,
            generator=directions_generator,
        ).to(self.device)
        self.seed = seed
        self.xi = self._check_noise(xi, total)

    def _check_input(self, x):
        model = self.model
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 3 or x.shape[0] not in (1, self.paths) or x.shape[2] != model.input_dim:
            raise ValueError(
                f"x must have shape (1, M, {model.input_dim}) or (paths, M, {model.input_dim}) "
                f"= ({self.paths}, M, {model.input_dim}), got {tuple(x.shape)}"
            )
        if x.shape[1] < 1:
            raise ValueError("x must have at least one time step")
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf")
        return x.to(dtype=model.M_W.dtype, device=model.M_W.device)

    def _check_noise(self, xi, total):
        shape = (self.paths, total, self.model.noise_dim)
        if xi is None:
            return None
        if not isinstance(xi, torch.Tensor) or tuple(xi.shape) != shape:
            got = tuple(xi.shape) if isinstance(xi, torch.Tensor) else type(xi).__name__
            raise ValueError(f"xi must have shape (paths, burn_in + steps, r) = {shape}, got {got}")
        if not torch.isfinite(xi).all():
            raise ValueError("xi contains NaN or inf")
        return xi.detach().to(self.device, torch.float64).transpose(0, 1).unbind(0)

    def step_terms(self):
        """Yield (k, drive, additive, multiplier) for every step, float64.

        Noise not given as ``xi`` is drawn step by step (so long runs never hold the whole
        noise tensor) from torch's generator seeded with ``seed`` inside ``fork_rng``, which
        leaves the caller's random state untouched.
        """
        model = self.model
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
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
                additive, multiplier = model.noise_terms(xi)
                yield k, drive, additive, multiplier

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
    if (
        isinstance(initial_separation, bool)
        or not isinstance(initial_separation, (int, float))
        or not math.isfinite(initial_separation)
        or initial_separation <= 0
    ):
        raise ValueError(
            f"initial_separation must be a finite number > 0, got {initial_separation!r}"
        )
    run = _Run(model, x, paths=paths, seed=seed, steps=steps, burn_in=burn_in, xi=xi, directions=1)
    separation = float(initial_separation)
    direction = run.start[..., 0]
    direction = direction / direction.norm(dim=-1, keepdim=True)
    h = torch.zeros(run.paths, model.hidden_dim, dtype=torch.float64, device=run.device)
    gap = torch.full_like(h[:, :1], separation)  # |h' − h| after a reset
    pair = torch.cat([h, h + gap * direction])  # (2 paths, d): h then h'
    log_growth = torch.zeros_like(h[:, 0])
    with torch.no_grad(), _threads_for(2 * run.paths * model.hidden_dim):
        for k, drive, additive, multiplier in run.step_terms():
            pair = model.euler_step(
                pair, _twice(drive), run.A, run.W, _twice(additive), _twice(multiplier)
            )
            h, difference = pair[: run.paths], pair[run.paths :] - pair[: run.paths]
            distance = difference.norm(dim=-1, keepdim=True)
            if k >= run.burn_in:
                log_growth += torch.log(distance[:, 0] / gap[:, 0])
            # Keep the gap resolvable in float64 when the state grows: separation · max(1, |h|).
            gap = separation * h.norm(dim=-1, keepdim=True).clamp(min=1.0)
            pair = torch.cat([h, h + difference * (gap / distance)])
    return _estimate(log_growth[:, None], run)


def _twice(tensor):
    """The same per-path tensor for both trajectories of a pair: (paths, n) -> (2 paths, n)."""
    return None if tensor is None else torch.cat([tensor, tensor])


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
    count = _check_positive_int("count", count)
    if count > model.hidden_dim:
        raise ValueError(f"count must be <= hidden_dim = {model.hidden_dim}, got {count}")
    run = _Run(
        model, x, paths=paths, seed=seed, steps=steps, burn_in=burn_in, xi=xi, directions=count
    )
    tangents, _ = torch.linalg.qr(run.start)  # (paths, d, count), orthonormal columns
    h = torch.zeros(run.paths, model.hidden_dim, dtype=torch.float64, device=run.device)
    log_growth = torch.zeros_like(h[:, :count])
    with torch.no_grad(), _threads_for(run.paths * model.hidden_dim * count):
        for k, drive, additive, multiplier in run.step_terms():
            tangents = _tangent_step(model, h, tangents, drive, run.A, run.W, multiplier)
            h = model.euler_step(h, drive, run.A, run.W, additive, multiplier)
            tangents, upper = torch.linalg.qr(tangents)
            if k >= run.burn_in:
                log_growth += torch.log(torch.diagonal(upper, dim1=-2, dim2=-1).abs())
    return _estimate(log_growth, run)


def _tangent_step(model: NoisyRNN, h, tangents, drive, A, W, multiplier):
    """The Jacobian of ``model.euler_step`` at h applied to tangent vectors.

    Paper form: V' = V + dt (A V + s ⊙ (W V)) + m ⊙ V; released-code form:
    V' = V + (δ ⊙ u) ⊙ (A V + s ⊙ (W V)); s = tanh'(W h + U x + b), m and u the step's
    multiplier (A = 0 for the antisymmetric baseline).

    Args:
        h: (paths, d); tangents: (paths, d, n); drive: (paths, d); multiplier: (paths, d),
            (paths, 1) or None.
    Returns:
        (paths, d, n).
    """
    slope = tanh_prime(h @ W.T + drive)
    drift_tangent = A @ tangents + slope.unsqueeze(-1) * (W @ tangents)
    if model.is_reference:
        step = model.step_size.detach().double()
        if multiplier is not None:
            step = step * multiplier
        return tangents + step.unsqueeze(-1) * drift_tangent
    pushed = tangents + model.dt * drift_tangent
    if multiplier is not None:
        pushed = pushed + multiplier.unsqueeze(-1) * tangents
    return pushed
