"""Shared helpers for benchmarks: interleaved timing, aims, environment."""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from importlib import metadata

import torch


def time_interleaved(
    calls: Mapping[str, Callable[[], object]], *, repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Wall-clock seconds of each call, ``repeats`` times, after ``warmup`` untimed rounds.

    The calls alternate (a, b, a, b, ...) so that a slow spell of a shared machine hits
    every variant alike and the ratios between them stay fair.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        for call in calls.values():
            call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - start)
    return seconds


@contextlib.contextmanager
def threads(count: int):
    """``torch.set_num_threads(count)`` inside the block, restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


MatmulPlan = list[tuple[int, tuple[int, ...], tuple[int, ...]]]
"""Per step: (count, shape of a, shape of b) of the products ``torch.matmul(a, b)``."""


def matmul_loop(plan: MatmulPlan, steps: int, dtype=torch.float32) -> Callable[[], None]:
    """The arithmetic reference of a loop of ``steps`` steps: only its matrix products, one
    ``torch.matmul`` loop over preallocated operands and outputs (``out=``), nothing else.
    Its time, next to the real loop's, says how far that loop is from the time its
    products alone take."""
    generator = torch.Generator().manual_seed(0)
    operands = [
        (
            count,
            torch.randn(a, generator=generator, dtype=dtype),
            torch.randn(b, generator=generator, dtype=dtype),
        )
        for count, a, b in plan
    ]
    outputs = [torch.matmul(a, b) for _, a, b in operands]

    def run() -> None:
        for _ in range(steps):
            for (count, a, b), out in zip(operands, outputs, strict=True):
                for _ in range(count):
                    torch.matmul(a, b, out=out)

    return run


def matmul_flops(plan: MatmulPlan, steps: int) -> float:
    """Floating-point operations (2 per multiply-add) of a plan over ``steps`` steps."""
    total = 0
    for count, a, b in plan:
        batch = math.prod(a[:-2]) if len(a) > 2 else 1
        total += count * batch * 2 * a[-2] * a[-1] * b[-1]
    return float(total * steps)


def median(values: list[float]) -> float:
    """The median of raw timings."""
    return float(statistics.median(values))


def aim(description: str, value: float, bound: float, comparison: str) -> dict:
    """One aim as recorded in the JSON: ``value <= bound`` or ``value >= bound``."""
    if comparison == "<=":
        met = value <= bound
    elif comparison == ">=":
        met = value >= bound
    else:
        raise ValueError(f"comparison must be '<=' or '>=', got {comparison!r}")
    return {
        "description": description,
        "value": float(value),
        "comparison": comparison,
        "bound": float(bound),
        "met": bool(met),
    }


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """Where and when a benchmark ran: versions, threads, CPUs, platform, load."""
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "torchsde_version": _package_version("torchsde"),
        "numpy_version": _package_version("numpy"),
        "python_version": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "cpus_available": len(affinity) if affinity is not None else None,
        "load_average_1_5_15min": list(load) if load is not None else None,
    }


def check_finite_timings(seconds: dict[str, list[float]]) -> None:
    """Refuse to record a timing that is not a positive finite number."""
    for name, values in seconds.items():
        for value in values:
            if not (math.isfinite(value) and value > 0):
                raise RuntimeError(f"timing {name!r} is not a positive finite number: {value}")
