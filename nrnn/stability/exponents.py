"""Monte Carlo Lyapunov exponents (per unit time) of a model along noisy paths: two
trajectories with common noise, renormalised every step (:func:`lyapunov_exponent`), and
the tangent dynamics re-orthonormalised by QR (:func:`linearised_lyapunov_exponent`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._pytree import tree_map

from .. import contract
from ..cells.base import Derivatives, Point
from ..model import NoisyRNN, check_model
from ..montecarlo import mean_and_stderr
from ..noise import StepNoise
from ..paths import simulate

_SINGLE_THREAD_ELEMENTS = 1 << 16  # per-step tensor size below which one thread is used
_DIRECTION_SEED_OFFSET = 7_919  # separates the starting-direction stream from the noise stream


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
