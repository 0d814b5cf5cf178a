"""Monte Carlo paths of the noisy RNN without gradients: the final state, or whatever
statistics the caller gathers along the way.

:func:`simulate` runs the model's own Euler step h' = h + s ⊙ f(h, c) + h ⊙ m + a (the
cell's drift, the noise's step terms) for many paths at once and keeps only the current
state. It is the arithmetic a Monte Carlo estimate cannot avoid, and little more:

- the noise of many steps is drawn in one call (``nrnn.draws.step_draws``, about
  ``chunk_elements`` numbers at a time, time-major) and never held for the whole path;
- the step is updated in place on the drift's fresh tensor: no path is kept, no
  temporaries beyond the drift's own;
- a given ``xi`` (paths, M, r) replays a run exactly, and the result is then bitwise the
  model's (``model.final_state(x, xi)`` or the end of ``model.trajectory``);
- ``scales`` runs copies of every path whose noise is the same ξ times a factor: common
  random numbers (two trajectories with the same noise: scales (1, 1)), antithetic pairs
  (ε, −ε), several noise levels at once (ε, 2ε, ...);
- ``observer(step, states)`` is called after every step with the states
  (copies, paths, n): it gathers statistics along the path and may change the states in
  place (a renormalised separation, for example).

Everything runs under ``torch.no_grad()`` with detached parameters in ``dtype`` (the
model's by default). The model's noise is used whether it is in training or evaluation
mode.

Drawing order: with a ``generator`` (default: torch's global one) the noise of a path
batch is drawn as (T, paths, r) blocks of T consecutive steps, so the numbers a seed
gives depend on T only through ``chunk_elements``; ``chunk_elements=0`` draws one step
per call (the order of a loop calling ``noise.sample((paths, r))`` every step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils._pytree import tree_map

from . import contract
from .cells import Cell
from .draws import CHUNK_ELEMENTS, Device, on_generator_device, step_draws
from .model import NoisyRNN, check_model
from .noise import StepNoise

__all__ = ["Observer", "simulate"]

Observer = Callable[[int, torch.Tensor], None]
"""``observer(step, states)``: called after step ``step`` (0-based) with the states
(copies, paths, n); it may update them in place."""


def _detached(dtype: torch.dtype) -> Callable[[object], object]:
    """A leaf converter: tensors detached in ``dtype``, anything else unchanged."""

    def convert(value: object) -> object:
        return value.detach().to(dtype) if isinstance(value, torch.Tensor) else value

    return convert


def _drives(model: NoisyRNN, x: torch.Tensor, steps: int, dtype: torch.dtype) -> list[torch.Tensor]:
    """The drives U x_k + b of ``steps`` steps, each (batch of x, drive_dim); steps past
    the sequence hold its last drive."""
    drives = model.input_drive(x).detach().to(dtype).transpose(0, 1).unbind(0)
    last = len(drives) - 1
    return [drives[min(k, last)] for k in range(steps)]


def _noise_stream(
    model: NoisyRNN,
    *,
    paths: int,
    steps: int,
    xi: torch.Tensor | None,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: Device,
    chunk_elements: int,
) -> Iterator[torch.Tensor | None]:
    """Per-step noise variables (paths, r) (or None for a noise-free model)."""
    if xi is not None:
        return iter(xi.detach().to(device=device, dtype=dtype).transpose(0, 1).unbind(0))
    if model.noise.is_zero:
        return iter([None] * steps)

    def sample(shape: tuple[int, ...]) -> torch.Tensor:
        return on_generator_device(
            lambda where: model.noise.sample(shape, dtype=dtype, device=where, generator=generator),
            generator,
            device,
        )

    return step_draws(sample, (paths, model.noise_dim), steps, chunk_elements=chunk_elements)


def _scaled(xi: torch.Tensor | None, scales: torch.Tensor | None) -> torch.Tensor | None:
    """ξ (paths, r) -> (copies, paths, r) times each copy's scale, or (1, paths, r) shared
    by every copy (no scales, or all of them 1)."""
    if xi is None:
        return None
    return xi[None] if scales is None else scales[:, None, None] * xi


def euler_step_(
    cell: Cell[Any],
    state: torch.Tensor,
    drive: torch.Tensor,
    parameters: tuple[Any, ...],
    terms: StepNoise,
) -> torch.Tensor:
    """One Euler step h + s ⊙ f(h, c) + h ⊙ m + a, bitwise ``NoisyRNN.euler_step``: the
    same ``StepNoise.advance``, written in place into the drift's own tensor.

    Args:
        state: (..., n); drive: broadcasting against it; terms: the noise's step terms.
    Returns:
        the next state, a new tensor of the state's shape (``state`` is not changed).
    """
    following = cell.drift(state, drive, parameters)
    if following.shape != state.shape or _shares_memory(following, state):
        following = following.expand_as(state).clone()
    return terms.advance(state, following, out=following)


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def simulate(
    model: NoisyRNN,
    x: torch.Tensor,
    *,
    paths: int | None = None,
    steps: int | None = None,
    generator: torch.Generator | None = None,
    xi: torch.Tensor | None = None,
    scales: Sequence[float] | None = None,
    start: torch.Tensor | None = None,
    observer: Observer | None = None,
    dtype: torch.dtype | None = None,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> torch.Tensor:
    """Simulate noisy paths of ``model`` and return their final states (no gradients).

    Args:
        model: an ``nrnn.NoisyRNN`` (any cell, any noise form).
        x: inputs (1, M, p), shared by every path, or (paths, M, p).
        paths: the number of independent paths (default: x's or xi's batch).
        steps: Euler steps (default M); steps past the sequence hold its last input.
        generator: draws the noise (default: torch's global generator); noise of T steps
            is drawn per call as (T, paths, r) (see the module docstring).
        xi: given noise variables (paths, steps, r) instead of drawing them (replay).
        scales: copies of every path driven by the same ξ times each factor; None: one
            copy with ξ itself.
        start: initial states broadcasting to (copies, paths, n) (default h₀ = 0).
        observer: ``observer(step, states)`` after every step (see :data:`Observer`).
        dtype: the arithmetic's dtype (default: the model's).
        chunk_elements: noise numbers drawn per call (0: one step per call).
    Returns:
        the final states, (paths, n) without ``scales``, (copies, paths, n) with them.
    """
    check_model(model)
    reference = model.readout.weight
    dtype = reference.dtype if dtype is None else dtype
    x = contract.as_model_dtype(contract.sequences(x, features=model.input_dim), reference)
    paths = contract.integer(
        "paths", (x if xi is None else xi).shape[0] if paths is None else paths
    )
    if x.shape[0] not in (1, paths):
        raise ValueError(f"x must have batch 1 or paths = {paths}, got {x.shape[0]}")
    steps = x.shape[1] if steps is None else contract.integer("steps", steps)
    contract.integer("chunk_elements", chunk_elements, minimum=0)
    if xi is not None:
        xi = contract.noise_increments(xi, (paths, steps, model.noise_dim), "(paths, steps, r)")
    factors = _factors(scales, dtype, reference.device)
    shape = (1 if scales is None else len(scales), paths, model.state_dim)
    with torch.no_grad():
        state = _start(start, shape, dtype, reference.device)
        stream = _noise_stream(
            model,
            paths=paths,
            steps=steps,
            xi=xi,
            generator=generator,
            dtype=dtype,
            device=reference.device,
            chunk_elements=chunk_elements,
        )
        state = _run(model, state, _drives(model, x, steps, dtype), stream, factors, observer)
    return state if scales is not None else state[0]


def _factors(
    scales: Sequence[float] | None, dtype: torch.dtype, device: Device
) -> torch.Tensor | None:
    """The copies' noise factors (copies,), or None when no copy scales its noise."""
    if scales is None:
        return None
    factors = torch.tensor([contract.real("scale", s) for s in scales], dtype=dtype)
    if not len(factors):
        raise ValueError("scales must hold at least one factor")
    return None if bool((factors == 1).all()) else factors.to(device)


def _start(
    start: torch.Tensor | None, shape: tuple[int, ...], dtype: torch.dtype, device: Device
) -> torch.Tensor:
    """h₀ of every copy and path, (copies, paths, n): zeros, or ``start`` broadcast."""
    state = torch.zeros(shape, dtype=dtype, device=device)
    if start is None:
        return state
    start = contract.instance("start", start, torch.Tensor, "a torch.Tensor")
    try:
        torch.broadcast_shapes(start.shape, shape)
    except RuntimeError:
        raise ValueError(
            f"start must broadcast to (copies, paths, n) = {shape}, got {tuple(start.shape)}"
        ) from None
    return state + start.detach().to(device=device, dtype=dtype)


def _run(
    model: NoisyRNN,
    state: torch.Tensor,
    drives: Iterable[torch.Tensor],
    stream: Iterable[torch.Tensor | None],
    factors: torch.Tensor | None,
    observer: Observer | None,
) -> torch.Tensor:
    """The Euler loop: every step's noise terms from its (scaled) noise variables, the step
    in place, then the observer."""
    cell, noise = model.cell, model.noise
    dtype = state.dtype
    parameters = tree_map(_detached(dtype), cell.drift_parameters())
    noise_parameters = {k: v.detach().to(dtype) for k, v in model.noise_parameters.items()}
    for step, (drive, noise_variables) in enumerate(zip(drives, stream, strict=True)):
        scaled = _scaled(noise_variables, factors)
        (terms,) = noise.step_terms(
            None if scaled is None else scaled[None],
            steps=1,
            dt=model.dt,
            parameters=noise_parameters,
        )
        state = euler_step_(cell, state, drive, parameters, terms)
        if observer is not None:
            observer(step, state)
    return state
