"""The training step (forward, backward, gradient clipping, Adam), run op by op or replayed
from a CUDA graph.

At the paper's sizes (784 recurrence steps) one training step is thousands of small
kernels; on a GPU their launches, not the arithmetic, set its time. A CUDA graph records
the kernels of a step once and replays them with one launch. ``train.cuda_graph``:

- ``"auto"`` (default): capture on CUDA, one graph per batch shape (a batch of another
  size, the last and smaller one of an epoch, runs eagerly); nothing changes on a CPU.
- ``"off"``: every step eagerly.

What capture needs, and how the step provides it:

- **No host synchronisation inside the step.** The model's checks that read values
  (finite inputs, labels in range) are skipped inside the step
  (:func:`nrnn.contract.values_checked`): the data set was checked when it was loaded. The
  loss stays on the device; the training loop reads every batch's loss back once per epoch
  (:class:`BatchLosses`) for its finite check, the epoch's objective and the progress.
- **Noise from the device's default generator.** The model draws its noise on its own
  device without an explicit generator; torch registers the default CUDA generator's
  Philox offsets with every graph, so each replay draws fresh noise: the noise the eager
  step would draw from the same generator state.
- **A capturable optimiser:** Adam with ``capturable=True`` (its step count on the
  device). Capturable Adam bakes a float learning rate into the graph, so a changed
  learning rate (a decay) captures anew.
- **Static inputs:** each batch is copied into the graph's own input tensors.

Before capture, warm-up steps run on a side stream (as torch documents: lazy
initialisations happen there, not in the graph); their effect is then undone (the
parameters, the optimiser state and the CUDA generator restored in place), so a run with
the graph computes what the eager run computes. If capture fails, the step runs eagerly
from then on and one line names the reason.

Every objective's step is captured: the noisy and clean losses on the fused or the
reference recurrence, and the explicit regularizer (exact, or probes drawn on the device
from its default generator). Evaluation and the attacks run eagerly (no_grad forward
passes whose results are read back per batch). The path simulator (``nrnn.paths``) is not
captured: it draws from the caller's generator (a CPU one in the verification, so that a
seed's numbers do not depend on the device), which a graph cannot replay, and it calls
arbitrary observers per step.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from . import contract
from .config import CUDA_GRAPH_MODES

__all__ = [
    "CUDA_GRAPH_MODES",
    "BatchLosses",
    "CapturedStep",
    "EagerStep",
    "TrainingStep",
    "captures",
    "read_back_is_free",
    "training_step",
]

WARMUP_STEPS = 3
"""Eager steps on a side stream before a capture (undone afterwards)."""

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""(x (batch, M, p), y (batch,)) -> the mean loss of the batch (0-dim, differentiable)."""


class TrainingStep(Protocol):
    """One optimiser step on a batch; returns the batch's loss (0-dim, on the device,
    detached; a captured step's is overwritten by its next call)."""

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...


def captures(mode: str, device: torch.device) -> bool:
    """Whether ``train.cuda_graph = mode`` captures the training step on ``device``: on
    CUDA with ``"auto"``."""
    contract.choice("train.cuda_graph", mode, CUDA_GRAPH_MODES)
    return mode == "auto" and device.type == "cuda"


def read_back_is_free(device: torch.device) -> bool:
    """Whether reading a value of a tensor on ``device`` back to Python costs nothing (it
    does not wait for a device: not CUDA)."""
    return device.type != "cuda"


@dataclass
class EagerStep:
    """The step op by op: ``loss_of(x, y)``, backward, clipping to ``grad_clip`` (0: none),
    ``optimizer.step()``. The loss is computed inside :func:`contract.values_checked`."""

    loss_of: LossFunction
    optimizer: torch.optim.Optimizer
    grad_clip: float = 0.0

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with contract.values_checked():
            loss = self.loss_of(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.grad_clip)
        self.optimizer.step()
        return loss.detach()


@dataclass
class _Graph:
    graph: Any  # torch.cuda.CUDAGraph
    x: torch.Tensor
    y: torch.Tensor
    loss: torch.Tensor


@dataclass
class _SavedState:
    """The parameters, the optimiser state and the CUDA generator before a warm-up, to be
    put back in place (a graph keeps the addresses of the tensors it captured)."""

    step: EagerStep
    device: torch.device
    parameters: list[torch.Tensor] = field(default_factory=list)
    optimizer: dict[int, dict[str, Any]] = field(default_factory=dict)
    generator: torch.Tensor | None = None

    @classmethod
    def of(cls, step: EagerStep, device: torch.device) -> _SavedState:
        saved = cls(step, device)
        with torch.no_grad():
            saved.parameters = [p.detach().clone() for p in step.parameters]
            for index, p in enumerate(step.parameters):
                state = step.optimizer.state.get(p)
                if state:
                    saved.optimizer[index] = {k: _copy(v) for k, v in state.items()}
        saved.generator = torch.cuda.get_rng_state(device)
        return saved

    def restore(self, *, after_failure: bool = False) -> None:
        """Everything in place; an optimiser state the warm-up created goes back to Adam's
        initial one (zero step count and moments). ``after_failure``: see
        :meth:`restore_generator`."""
        with torch.no_grad():
            for p, value in zip(self.step.parameters, self.parameters, strict=True):
                p.copy_(value)
            for index, p in enumerate(self.step.parameters):
                state = self.step.optimizer.state.get(p, {})
                before = self.optimizer.get(index)
                for key, value in state.items():
                    if not isinstance(value, torch.Tensor):
                        if before is not None:
                            state[key] = before[key]
                    elif before is None:
                        value.zero_()
                    else:
                        value.copy_(before[key])
        self.restore_generator(after_failure=after_failure)

    def restore_generator(self, *, after_failure: bool = False) -> None:
        """The CUDA generator's seed and offset as saved. ``after_failure``: first give the
        generator a fresh copy of its state: a capture that failed can leave the state
        marked as capturing, and every later draw would fail ("Offset increment outside
        graph capture")."""
        assert self.generator is not None
        if after_failure:
            generator = torch.cuda.default_generators[_index(self.device)]
            generator.graphsafe_set_state(generator.clone_state())
        torch.cuda.set_rng_state(self.generator, self.device)


def _index(device: torch.device) -> int:
    return torch.cuda.current_device() if device.index is None else device.index


def _copy(value: Any) -> Any:
    return value.detach().clone() if isinstance(value, torch.Tensor) else value


class CapturedStep:
    """The :class:`EagerStep` captured in a CUDA graph per (batch shape, learning rates),
    for batches of ``batch_size`` sequences; any other batch, and every batch after a
    failed capture, runs eagerly. ``report`` receives the one line of a fallback."""

    def __init__(
        self,
        eager: EagerStep,
        batch_size: int,
        device: torch.device,
        report: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(eager.optimizer, torch.optim.Adam) or not all(
            group.get("capturable") for group in eager.optimizer.param_groups
        ):
            raise ValueError("a captured step needs torch.optim.Adam with capturable=True")
        self.eager = eager
        self.batch_size = batch_size
        self.device = torch.device("cuda", _index(device))
        self.report = report or _to_stderr
        self.graphs: dict[tuple, _Graph] = {}
        self.captured = 0  # graphs captured so far (held or dropped)
        self.failure: str | None = None

    def _learning_rates(self) -> tuple[float, ...]:
        return tuple(float(group["lr"]) for group in self.eager.optimizer.param_groups)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.failure is not None or x.shape[0] != self.batch_size:
            return self.eager(x, y)
        rates = self._learning_rates()
        key = (tuple(x.shape), x.dtype, tuple(y.shape), y.dtype, rates)
        captured = self.graphs.get(key)
        if captured is None:
            self.graphs = {k: g for k, g in self.graphs.items() if k[-1] == rates}
            captured = self._capture(x, y)
            if captured is None:
                return self.eager(x, y)
            self.graphs[key] = captured
            self.captured += 1
        captured.x.copy_(x)
        captured.y.copy_(y)
        captured.graph.replay()
        return captured.loss

    def _capture(self, x: torch.Tensor, y: torch.Tensor) -> _Graph | None:
        saved = _SavedState.of(self.eager, self.device)
        static_x, static_y = x.clone(), y.clone()
        try:
            # The capturing device must be current: its default generator is the one a
            # graph registers. Warm-up and capture share one side stream.
            with torch.cuda.device(self.device):
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    for _ in range(WARMUP_STEPS):
                        self.eager(static_x, static_y)
                torch.cuda.current_stream().wait_stream(side)
                saved.restore()
                graph = torch.cuda.CUDAGraph()
                self.eager.optimizer.zero_grad(set_to_none=True)
                with torch.cuda.graph(graph, stream=side):
                    loss = self.eager(static_x, static_y)
                saved.restore_generator()
        except Exception as error:  # a failed capture raises RuntimeError or torch's own
            lines = str(error).strip().splitlines() or [""]
            self.failure = f"{type(error).__name__}: {lines[0]}"
            self.graphs.clear()
            torch.cuda.synchronize(self.device)
            self.eager.optimizer.zero_grad(set_to_none=True)
            saved.restore(after_failure=True)
            self.report(f"train.cuda_graph: capture failed ({self.failure}); training eagerly")
            return None
        return _Graph(graph, static_x, static_y, loss)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def training_step(
    loss_of: LossFunction,
    optimizer: torch.optim.Optimizer,
    *,
    grad_clip: float,
    capture: bool,
    batch_size: int,
    device: torch.device,
    report: Callable[[str], None] | None = None,
) -> TrainingStep:
    """The training step: a :class:`CapturedStep` when ``capture`` (see :func:`captures`),
    else an :class:`EagerStep`."""
    eager = EagerStep(loss_of, optimizer, grad_clip)
    if not capture:
        return eager
    return CapturedStep(eager, batch_size, device, report)


class BatchLosses:
    """The loss of every batch of an epoch, kept where it was computed and read back to
    Python when asked (on a GPU each read waits for the device: once per epoch, or per
    batch where that costs nothing or a caller asks for every loss)."""

    def __init__(self, batches: int) -> None:
        self.batches = batches
        self.values: torch.Tensor | None = None
        self.sizes: list[int] = []

    def add(self, loss: torch.Tensor, size: int) -> None:
        """Record the mean loss (0-dim) of a batch of ``size`` sequences (no read-back)."""
        if self.values is None:
            self.values = loss.new_empty(self.batches)
        self.values[len(self.sizes)].copy_(loss)
        self.sizes.append(size)

    def read(self) -> list[float]:
        """Every recorded loss, in order (one read-back)."""
        if self.values is None:
            return []
        return self.values[: len(self.sizes)].tolist()

    def last(self) -> float:
        """The latest loss (one read-back)."""
        assert self.values is not None, "no loss recorded"
        return float(self.values[len(self.sizes) - 1])

    def mean(self) -> float:
        """The mean loss per sequence over the batches so far: Σ loss_b · size_b / Σ size_b,
        summed in batch order in Python floats."""
        total = 0.0
        for value, size in zip(self.read(), self.sizes, strict=True):
            total += value * size
        return total / sum(self.sizes)

    def first_non_finite(self) -> tuple[int, float] | None:
        """(batch number counted from 1, its loss) of the first NaN or infinite loss."""
        for number, value in enumerate(self.read(), start=1):
            if not math.isfinite(value):
                return number, value
        return None
