"""Estimated cost of trained runs, from measured seconds per training step.

:class:`Timings` measures, per shape of work, the seconds of one optimiser step and of one
forward pass per sequence on this machine with one torch thread (the way the harness
trains), and caches them in a JSON file (written atomically). A training step costs time
linear in the sequence length M, so long sequences are measured on their first
``PROBE_STEPS`` steps and scaled; everything else (batch, hidden size, objective, noise,
cell) is measured as configured.

A measurement taken while the machine was busy is too slow, one from older code may be
wrong: every entry keeps up to :data:`SAMPLES` measurements taken by different calls (the
estimate is the fastest), each with when it was taken, the load average then and the
digest of the code it timed; an entry of other code (``nrnn.store.code_digest``) or older
than :data:`MAX_AGE_DAYS` is measured again.

The step is measured where the run would train: on the device ``train.device`` resolves
to here (``"auto"``: a GPU when torch sees one), with the run's training step
(``nrnn.graphs``: replayed from a CUDA graph on CUDA unless ``train.cuda_graph = "off"``),
at the full sequence length on a GPU (a captured step is quick to measure). A GPU's
timings are kept under its name, so ``--plan`` on a GPU machine estimates GPU-hours.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..files import write_json_atomic
from .store import hash_content

PROBE_STEPS = 64
"""Sequence steps timed per training step (the time is scaled linearly to M)."""
PROBE_STEPS_EXACT = 8
"""The same for an objective whose regularizer method is cubic in the state size (the
explicit objective with the exact method, O(M d³) per sequence)."""
SAMPLES = 3
"""Measurements kept per shape, one per call of :meth:`Timings.measure` until there are
this many; the estimate is the fastest."""
MAX_AGE_DAYS = 30
"""An entry whose first measurement is older than this is measured afresh."""
FORMAT = 2


def _shape(config: RunConfig) -> dict[str, Any]:
    """Everything that sets the cost of a step, not its numbers."""
    content = config.to_dict()
    for section in ("optim",):
        content.pop(section)
    content["train"] = {
        key: value
        for key, value in content["train"].items()
        if key in ("objective", "regularizer_method", "probes", "threads", "device")
    }
    content["data"] = {
        key: content["data"][key] for key in ("name", "batch_size", "eval_batch_size")
    }
    return content


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Timings:
    """Measured seconds per training step and per forward sequence, cached in ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            content = json.loads(self.path.read_text())
        except (OSError, ValueError):
            content = {}
        fresh = isinstance(content, dict) and content.get("format") == FORMAT
        self._cache: dict[str, dict] = content.get("entries", {}) if fresh else {}
        self._measured_now: set[str] = set()
        self._code: str | None = None

    def _code_digest(self) -> str:
        if self._code is None:
            from .store import code_digest

            self._code = code_digest()
        return self._code

    def _current(self, entry: dict) -> bool:
        """Whether a cached entry timed this code, recently enough."""
        if entry.get("code") != self._code_digest() or not entry.get("samples"):
            return False
        first = datetime.datetime.fromisoformat(entry["samples"][0]["measured"])
        return _now() - first < datetime.timedelta(days=MAX_AGE_DAYS)

    def measure(self, config: RunConfig) -> dict[str, float]:
        """{"step": seconds per training step at the config's batch size and full M,
        "forward": seconds per sequence of an evaluation forward pass}: the fastest of the
        entry's measurements (one more is taken when it has fewer than :data:`SAMPLES`,
        once per instance)."""
        import torch

        content: dict[str, Any] = {
            "shape": _shape(config),
            "torch": torch.__version__,
            "machine": platform.node(),
        }
        device = _device(config)
        if device.type != "cpu":  # CPU timings keep the keys they had before GPUs counted
            content["device"] = {"name": _device_name(device), "graph": config.train.cuda_graph}
        key = hash_content(content)
        entry = self._cache.get(key)
        if entry is None or not self._current(entry):
            entry = {"host": platform.node(), "code": self._code_digest(), "samples": []}
        if len(entry["samples"]) < SAMPLES and key not in self._measured_now:
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            sample = {**_measure(config), "measured": _now().isoformat(timespec="seconds")}
            entry["samples"].append({**sample, "load": load})
            self._cache[key] = entry
            self._measured_now.add(key)
            write_json_atomic(self.path, {"format": FORMAT, "entries": self._cache})
        samples = entry["samples"]
        return {name: min(sample[name] for sample in samples) for name in ("step", "forward")}

    def summary(self) -> str:
        """One line: how many shapes are timed, when, and how many measurements each."""
        samples = [s for entry in self._cache.values() for s in entry.get("samples", [])]
        if not samples:
            return f"timings ({self.path}): none measured yet"
        dates = sorted(sample["measured"][:10] for sample in samples)
        counts = sorted(len(entry["samples"]) for entry in self._cache.values())
        loads = [sample["load"] for sample in samples if sample.get("load") is not None]
        load = f", load average {min(loads):.1f}-{max(loads):.1f} then" if loads else ""
        return (
            f"timings ({self.path}): {len(self._cache)} shapes, measured {dates[0]} to "
            f"{dates[-1]}{load}; each the fastest of {counts[0]}-{counts[-1]} measurements "
            f"(up to {SAMPLES}, one per call; taken again when the code changes or after "
            f"{MAX_AGE_DAYS} days): what an idle machine takes, a busy one takes longer"
        )

    def training_seconds(self, config: RunConfig, epochs: int) -> float:
        """Estimated seconds of ``epochs`` epochs: training steps plus per-epoch evaluation."""
        from .. import data

        measured = self.measure(config)
        info = data.info(config.data.name, recipe=config.data.recipe)
        train_size = _subset(info.size("train"), config.data.train_subset)
        eval_size = sum(
            _subset(info.size(split), config.data.eval_subset)
            for split in ("valid", "test")
            if split in info.splits
        )
        steps = math.ceil(train_size / config.data.batch_size)
        return epochs * (steps * measured["step"] + eval_size * measured["forward"])

    def task_seconds(self, config: RunConfig, task: Any) -> float:
        """Estimated seconds of a task from its ``passes(config)``: a forward pass per
        sequence at the measured rate, a forward and backward pass at the rate of a
        training step per sequence."""
        measured = self.measure(config)
        forward, backward = task.passes(config)
        return forward * measured["forward"] + backward * measured["step"] / config.data.batch_size


def _subset(size: int, subset: int) -> int:
    return min(size, subset) if subset > 0 else size


def _device(config: RunConfig) -> Any:
    """Where ``config`` would train on this machine (the CPU for a CUDA device torch does
    not see here: the estimate is then this machine's)."""
    import torch

    from ..train import resolve_device

    try:
        return resolve_device(config.train.device)
    except ValueError:
        return torch.device("cpu")


def _device_name(device: Any) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return device.type


def _measure(config: RunConfig, repeats: int = 3) -> dict[str, float]:
    """Time training steps and an evaluation forward pass of ``config``'s model on the
    device it would train on, with the training step it would use."""
    import torch

    from .. import data
    from ..objectives import OBJECTIVES
    from ..train import build_model, make_optimizer, make_step

    info = data.info(config.data.name, recipe=config.data.recipe)
    device = _device(config)
    method = OBJECTIVES.get(config.train.objective).method(config.train)
    exact = method is not None and method.cubic
    probe_steps = min(info.seq_len, PROBE_STEPS_EXACT if exact else PROBE_STEPS)
    if device.type == "cuda" and not exact:
        probe_steps = info.seq_len
    scale = info.seq_len / probe_steps
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, config.train.threads))
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)
            model = build_model(config).to(device)
            step = make_step(config, model, make_optimizer(config, model, device), device)
            batch = config.data.batch_size
            x = torch.randn(batch, probe_steps, info.input_dim, device=device)
            y = torch.randint(0, info.num_classes, (batch,), device=device)
            # the first step warms up (and, on CUDA, captures)
            seconds = [_timed(lambda: step(x, y), device) for _ in range(repeats + 1)]
            model.eval()
            eval_batch = min(config.data.eval_batch_size, 256)
            x_eval = torch.randn(eval_batch, probe_steps, info.input_dim, device=device)
            with torch.no_grad():
                forward = min(_timed(lambda: model(x_eval), device) for _ in range(2))
            forward /= eval_batch
    finally:
        torch.set_num_threads(threads)
    return {"step": min(seconds[1:]) * scale, "forward": forward * scale}


def _timed(call: Any, device: Any) -> float:
    """Seconds of ``call()``, waiting for a GPU's queued work before and after."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started
