"""What a CUDA graph cannot capture, found on any device (the CPU included).

A CUDA graph records the kernels of a piece of work once and replays them. Two kinds of
operation break that, and both can be seen on a CPU, where no graph exists:

- a **host synchronisation**: a value of a tensor read back to Python (``Tensor.item``,
  ``bool(t)``, ``float(t)``, ``tolist``, ``numpy``, ``cpu()``), or an operation whose
  output shape depends on tensor values (``nonzero``, boolean-mask indexing, ``unique``,
  ``masked_select``). On a GPU it waits for the device; during capture it is an error
  (``cudaErrorStreamCaptureUnsupported`` / ``...Invalidated``).
- a **random draw a graph cannot replay**: one from an explicit generator (a replay
  advances only the default CUDA generator of the capturing device, whose Philox offsets
  torch registers with every graph) or one made on another device than the work's (a CPU
  draw moved to the GPU would be frozen into the graph as a copy of fixed numbers).

:func:`record_hazards` runs a piece of work under a torch function mode and a dispatch
mode that record both, each with the line outside torch that made the call. Dispatch-level
operations are seen inside autograd's backward pass as well.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["Hazard", "record_hazards"]

_READ_BACK_METHODS = frozenset(
    {"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__"}
)
"""Tensor methods that hand a tensor's values to Python (a host synchronisation)."""

_VALUE_SHAPED_OPERATIONS = frozenset(
    {
        "_local_scalar_dense",
        "nonzero",
        "masked_select",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "is_nonzero",
        "equal",
        "bincount",
        "repeat_interleave",
    }
)
"""aten operations whose result (or its shape) is read from tensor values."""

_RANDOM_OPERATIONS = frozenset(
    {
        "bernoulli",
        "bernoulli_",
        "binomial",
        "cauchy_",
        "exponential_",
        "geometric_",
        "log_normal_",
        "multinomial",
        "native_dropout",
        "normal",
        "normal_",
        "poisson",
        "rand",
        "rand_like",
        "randint",
        "randint_like",
        "randn",
        "randn_like",
        "random_",
        "randperm",
        "uniform_",
    }
)

_TORCH = str(Path(torch.__file__).resolve().parent)


class Hazard(NamedTuple):
    """One operation a CUDA graph cannot capture: ``kind`` is ``"synchronisation"`` or
    ``"random draw"``, ``operation`` what was called and ``location`` the line that made
    the call (``file:line in function``)."""

    kind: str
    operation: str
    location: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.operation} at {self.location}"


def _location() -> str:
    """The innermost frame outside torch and this module: where the call was made."""
    this = str(Path(__file__).resolve())
    frames = traceback.extract_stack()
    outside = [f for f in frames if not f.filename.startswith((_TORCH, this))]
    chosen = (outside or frames)[-1]
    return f"{chosen.filename}:{chosen.lineno} in {chosen.name}"


def _devices_of(value: Any) -> Iterator[torch.device]:
    if isinstance(value, torch.Tensor):
        yield value.device
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _devices_of(item)


class _Recorder:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.hazards: list[Hazard] = []
        self.reading = 0  # inside a recorded read-back method: its aten call is the same one

    def add(self, kind: str, operation: str) -> None:
        self.hazards.append(Hazard(kind, operation, _location()))


class _FunctionRecorder(TorchFunctionMode):
    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _READ_BACK_METHODS:
            self.recorder.add("synchronisation", f"Tensor.{name}")
            self.recorder.reading += 1
            try:
                return func(*args, **kwargs)
            finally:
                self.recorder.reading -= 1
        if name == "to":
            destination = _destination_device(args[1:], kwargs)
            if destination is not None and destination.type != self.recorder.device.type:
                self.recorder.add("synchronisation", f"Tensor.to({destination})")
        return func(*args, **kwargs)


def _destination_device(args: tuple, kwargs: dict) -> torch.device | None:
    candidates = [kwargs.get("device"), *args]
    for candidate in candidates:
        if isinstance(candidate, (str, torch.device)):
            return torch.device(candidate)
    return None


class _DispatchRecorder(TorchDispatchMode):
    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        recorder = self.recorder
        if name in _VALUE_SHAPED_OPERATIONS and not recorder.reading:
            recorder.add("synchronisation", f"aten.{name}")
        elif name in ("index", "index_put", "index_put_") and _has_mask(args):
            recorder.add("synchronisation", f"aten.{name} with a boolean mask")
        elif name in _RANDOM_OPERATIONS:
            generator = kwargs.get("generator")
            if generator is None:
                generator = next((a for a in args if isinstance(a, torch.Generator)), None)
            if generator is not None:
                recorder.add("random draw", f"aten.{name} from an explicit generator")
            output = func(*args, **kwargs)
            if any(d.type != recorder.device.type for d in _devices_of(output)):
                recorder.add("random draw", f"aten.{name} on {next(_devices_of(output))}")
            return output
        return func(*args, **kwargs)


def _has_mask(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
        for i in (indices if isinstance(indices, (list, tuple)) else ())
    )


@contextmanager
def record_hazards(device: torch.device | str) -> Iterator[list[Hazard]]:
    """Record what inside the block a CUDA graph on ``device`` could not capture.

    Yields the list the hazards are appended to (empty when the block is capturable as
    far as these checks see: kernels that synchronise inside a library, or a draw's
    device on another machine, are for the GPU run to find).
    """
    recorder = _Recorder(torch.device(device))
    with _FunctionRecorder(recorder), _DispatchRecorder(recorder):
        yield recorder.hazards
