"""The argument contract: one place that checks what the public functions are given.

Every check raises with the same message wherever it is used, naming the argument and
what was expected:

- a wrong Python or tensor type (a list for a tensor, a float for a count, float labels)
  raises ``TypeError``;
- a value of the right type that is out of range, of the wrong shape or not finite raises
  ``ValueError``.

The vocabulary is fixed here too: norms are ``"l2"`` and ``"linf"`` (:data:`NORMS`; the
numbers 2 and ``math.inf`` are accepted as their spellings), sequences are
(batch, M, p) floating-point tensors, noise increments (batch, M, r), labels (batch,)
integer class indices.

Inputs are cast to the model's dtype and device. A cast that loses precision (float64
inputs to a float32 model) is not silent: it warns once per call site, naming both dtypes.

Checks that read tensor values (finite entries, labels in range) wait for the values on a
GPU; inside :func:`values_checked` they are skipped, for a caller that checked the values
once beforehand (the training step, which a CUDA graph captures: ``nrnn.graphs``).
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = [
    "NORMS",
    "as_model_dtype",
    "choice",
    "function",
    "generator",
    "integer",
    "labels",
    "instance",
    "module",
    "noise_increments",
    "norm",
    "real",
    "seed",
    "sequences",
    "values_checked",
]

T = TypeVar("T")

NORMS = ("l2", "linf")
"""Perturbation norms over a whole sequence: Euclidean (``"l2"``) and largest entry
(``"linf"``)."""

_NORM_SPELLINGS = {"l2": "l2", "linf": "linf", 2: "l2", math.inf: "linf"}  # 2.0 == 2


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ------------------------------------------------------------------------- numbers
def integer(name: str, value: Any, *, minimum: int = 1) -> int:
    """An ``int`` (not a bool) at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def real(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
) -> float:
    """A finite real number (not a bool) in the stated range, as a float.

    ``minimum``/``maximum`` are inclusive bounds; ``strict`` makes the lower bound
    exclusive (``> minimum``).
    """
    if not _is_number(value):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    low_ok = minimum is None or (value > minimum if strict else value >= minimum)
    high_ok = maximum is None or value <= maximum
    if math.isfinite(value) and low_ok and high_ok:
        return value
    if minimum is not None and maximum is not None:
        expected = f"in [{minimum:g}, {maximum:g}]"
    elif minimum is not None:
        expected = f"a finite number {'>' if strict else '>='} {minimum:g}"
    elif maximum is not None:
        expected = f"a finite number <= {maximum:g}"
    else:
        expected = "a finite number"
    raise ValueError(f"{name} must be {expected}, got {value}")


def choice(name: str, value: T, choices: Sequence[T]) -> T:
    """One of ``choices``."""
    if value not in tuple(choices):
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def norm(value: str | float) -> str:
    """``"l2"`` or ``"linf"`` (also spelled 2 and ``math.inf``)."""
    key = value if isinstance(value, str) or _is_number(value) else None
    if key not in _NORM_SPELLINGS:
        raise ValueError(f"norm must be one of {NORMS} (or 2, math.inf), got {value!r}")
    return _NORM_SPELLINGS[key]


def seed(name: str, value: int) -> int:
    """A non-negative integer seed."""
    return integer(name, value, minimum=0)


def generator(value: int | torch.Generator) -> torch.Generator:
    """A CPU generator: an int seed (>= 0) or a CPU ``torch.Generator`` passed through."""
    if isinstance(value, torch.Generator):
        if value.device.type != "cpu":
            raise ValueError(f"seed must be a CPU torch.Generator, got one on {value.device}")
        return value
    return torch.Generator().manual_seed(seed("seed", value))


# ------------------------------------------------------------------------- models
def instance(name: str, value: T, kind: type, description: str) -> T:
    """An instance of ``kind`` (``description`` names it in the message)."""
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be {description}, got {type(value).__name__}")
    return value


def function(name: str, value: object) -> Callable[..., Any]:
    """Something callable: a model (``nn.Module``) or a plain function."""
    if not callable(value):
        raise TypeError(f"{name} must be callable (an nn.Module or a function), got {value!r}")
    return value


def module(model: object) -> nn.Module:
    """A ``torch.nn.Module`` (measurements that need its parameters or its mode)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


# ------------------------------------------------------------------------- tensors
def _tensor(name: str, value: object, shape: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape {shape}, got {type(value).__name__}"
        )
    return value


_VALUES_CHECKED: ContextVar[bool] = ContextVar("nrnn_values_checked", default=False)


@contextmanager
def values_checked() -> Iterator[None]:
    """Inside, the checks that read tensor values (finite entries, labels in range) are
    skipped: the caller checked those values once beforehand. Reading a value of a GPU
    tensor waits for the GPU (a host synchronisation, which a CUDA graph cannot capture).
    Types, shapes and dtypes are still checked (they read no tensor data)."""
    token = _VALUES_CHECKED.set(True)
    try:
        yield
    finally:
        _VALUES_CHECKED.reset(token)


def _finite(name: str, value: torch.Tensor) -> torch.Tensor:
    if _VALUES_CHECKED.get():
        return value
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return value


def sequences(
    x: torch.Tensor, *, features: int | None = None, batch: Sequence[int] = (), name: str = "x"
) -> torch.Tensor:
    """Input sequences: a finite floating-point tensor (batch, M, p), batch, M >= 1.

    ``features`` fixes p; ``batch`` lists the allowed batch sizes (any when empty).
    """
    p = "p" if features is None else str(features)
    expected = f"(batch, M, {p})"
    x = _tensor(name, x, expected)
    batch_ok = x.ndim == 3 and (x.shape[0] in batch if batch else x.shape[0] >= 1)
    if not (batch_ok and x.shape[1] >= 1 and (features is None or x.shape[2] == features)):
        allowed = f" with batch in {tuple(batch)}" if batch else " with batch"
        raise ValueError(
            f"{name} must have shape {expected}{allowed}, M >= 1, got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    return _finite(name, x)


def noise_increments(
    xi: torch.Tensor, shape: tuple[int, ...], meaning: str = "(batch, M, r)"
) -> torch.Tensor:
    """Noise variables of exactly ``shape`` (described as ``meaning``), finite, floating."""
    xi = _tensor("xi", xi, meaning)
    if tuple(xi.shape) != tuple(shape):
        raise ValueError(f"xi must have shape {meaning} = {tuple(shape)}, got {tuple(xi.shape)}")
    if not xi.is_floating_point():
        raise TypeError(f"xi must be a floating-point tensor, got dtype {xi.dtype}")
    return _finite("xi", xi)


def labels(y: torch.Tensor, batch: int, classes: int | None = None) -> torch.Tensor:
    """Class indices (batch,) of an integer dtype, in 0 .. classes − 1; returned as int64."""
    y = _tensor("y", y, "(batch,) of class indices")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer (int64) class indices, got dtype {y.dtype}")
    if tuple(y.shape) != (batch,):
        raise ValueError(f"y must have shape (batch,) = ({batch},), got {tuple(y.shape)}")
    if classes is not None and y.numel() and not _VALUES_CHECKED.get():
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= classes:
            raise ValueError(
                f"y must lie in 0 .. {classes - 1} (class indices), got values in {low} .. {high}"
            )
    return y.long()


def as_model_dtype(value: torch.Tensor, reference: torch.Tensor, name: str = "x") -> torch.Tensor:
    """``value`` in ``reference``'s dtype and device; warns when the cast loses precision."""
    if (
        value.is_floating_point()
        and reference.is_floating_point()
        and torch.finfo(value.dtype).bits > torch.finfo(reference.dtype).bits
    ):
        warnings.warn(
            f"{name} has dtype {value.dtype} but the model computes in {reference.dtype}: "
            f"{name} is cast to {reference.dtype} (convert the model with .to({value.dtype}) "
            "to compute in the input's precision)",
            stacklevel=_caller_level(),
        )
    return value.to(dtype=reference.dtype, device=reference.device)


_INTERNAL = (str(Path(__file__).resolve().parent), str(Path(torch.__file__).resolve().parent))


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside nrnn and torch (the user's call site),
    counted from the function that calls ``warnings.warn``."""
    frame: FrameType | None = sys._getframe(2)
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    return level
