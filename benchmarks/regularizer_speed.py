"""Speed of the explicit regularizer (issue 4), each figure a ratio to a baseline timed in
the same run.

1. ``vs_training_step``: at hidden 128, batch 128 and M = 140 (ECG5000) and 784
   (pixel MNIST): ``explicit_regularizer`` with ``method="exact"`` and with
   ``method="probe"`` (K = 8), each with the backward pass of loss + (q + r)/2, against one
   noisy training step (forward + backward + Adam step, noise drawn). Aims: probe ≤ 3×,
   exact ≤ 15× the training step.
2. ``vs_oracle``: at hidden 32, M = 64: the exact regularizer's values (no backward)
   against the exact autograd oracle ``noise_laplacian(method="exact")`` (M·r
   Hessian-vector products); both give q + r. Aim: exact ≥ 20× faster. The two answers are
   compared too (a fairness check: the comparison only counts if they agree).
3. ``probe_variance``: the probe estimate's variance per unit time, for each law of the
   probes' noise (Rademacher, the default, and Gaussian): the variance of q̂ + r̂ over
   independent draws (mean over the samples of a batch) times the median time of one
   probe call with its backward pass, at the first length. Lower is better; the ratio
   Gaussian / Rademacher says how much more work Gaussian probes need for the same
   precision. (Antithetic probes ±ξ are not offered: every estimate is even in ξ, so a
   pair repeats one probe; see ``nrnn.probes``.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nrnn.model import NoisyRNN
from nrnn.noise import Noise
from nrnn.oracle import noise_laplacian
from nrnn.regularizer import explicit_regularizer
from nrnn.workflow.experiments import Experiment

from .model_speed import make_step
from .timing import aim, check_finite_timings, median, time_interleaved

NAME = "regularizer_speed"
PARTS = ("vs_training_step", "vs_oracle", "probe_variance")

PROBE_AIM = 5.0  # the speed issue's aim for K = 8 at M = 140 and 784
EXACT_AIM = 15.0  # the first regularizer issue's aim for the exact method
ORACLE_SPEEDUP_AIM = 20.0


@dataclass(frozen=True)
class RegularizerSpeedSizes:
    batch: int = 128
    hidden: int = 128
    input_dim: int = 1
    classes: int = 10
    lengths: tuple[int, ...] = (140, 784)
    probes: int = 8
    additive: float = 0.1
    multiplicative: float = 0.1
    repeats: int = 3
    warmup: int = 1
    exact_repeats: int = 1  # one exact call at d = 128, M = 784 takes minutes
    oracle_hidden: int = 32
    oracle_length: int = 64
    oracle_batch: int = 8
    oracle_repeats: int = 3
    variance_batch: int = 8
    variance_draws: int = 32
    seed: int = 0

    def to_json(self) -> dict:
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }


FULL = RegularizerSpeedSizes()
QUICK = dataclasses.replace(FULL, repeats=1, oracle_repeats=1)
SMOKE = RegularizerSpeedSizes(
    batch=4,
    hidden=8,
    classes=3,
    lengths=(6, 12),
    probes=2,
    repeats=1,
    warmup=0,
    oracle_hidden=4,
    oracle_length=5,
    oracle_batch=2,
    oracle_repeats=1,
    variance_batch=2,
    variance_draws=8,
)
# Benchmarks train nothing: medium (the pixel-MNIST profile) times the full sizes.
PROFILES = {"smoke": SMOKE, "quick": QUICK, "medium": FULL, "full": FULL}


def build_model(sizes: RegularizerSpeedSizes, hidden: int, dtype=torch.float32) -> NoisyRNN:
    torch.manual_seed(sizes.seed)
    noise = Noise(additive=sizes.additive, multiplicative=sizes.multiplicative)
    model = NoisyRNN(sizes.input_dim, hidden, sizes.classes, noise=noise)
    return model.to(dtype).train()


def random_batch(
    sizes: RegularizerSpeedSizes, batch: int, length: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(sizes.seed + length)
    x = torch.randn(batch, length, sizes.input_dim, generator=generator, dtype=dtype)
    y = torch.randint(0, sizes.classes, (batch,), generator=generator)
    return x, y


def make_regularizer_step(
    model: NoisyRNN,
    x: torch.Tensor,
    y: torch.Tensor,
    method: str,
    probes: int,
    distribution: str = "rademacher",
) -> Callable[[], None]:
    """``explicit_regularizer`` and the backward pass of mean(loss + (q + r)/2)."""
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        expansion = explicit_regularizer(
            model,
            x,
            y,
            method=method,
            probes=probes,
            generator=generator,
            probe_distribution=distribution,
        )
        expansion.expected_loss.mean().backward()

    return step


def bench_vs_training_step(sizes: RegularizerSpeedSizes) -> dict:
    """Training step and probe interleaved (``repeats``); exact interleaved with another
    training step (``exact_repeats``: its calls are long, so its spread is small)."""
    model = build_model(sizes, sizes.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    make_regularizer_step(model, *random_batch(sizes, 2, 2), "exact", sizes.probes)()  # warm up
    seconds, ratios, aims = {}, {}, []
    for length in sizes.lengths:
        x, y = random_batch(sizes, sizes.batch, length)
        # The optimiser steps change the weights between calls; harmless for timing.
        timed = time_interleaved(
            {
                "training_step": make_step(model, x, y, optimizer),
                "probe": make_regularizer_step(model, x, y, "probe", sizes.probes),
            },
            repeats=sizes.repeats,
            warmup=sizes.warmup,
        )
        exact = time_interleaved(
            {
                "training_step": make_step(model, x, y, optimizer),
                "exact": make_regularizer_step(model, x, y, "exact", sizes.probes),
            },
            repeats=sizes.exact_repeats,
            warmup=0,
        )
        timed["training_step"] += exact["training_step"]
        timed["exact"] = exact["exact"]
        check_finite_timings(timed)
        seconds[str(length)] = timed
        medians = {name: median(values) for name, values in timed.items()}
        ratios[str(length)] = {
            "exact": medians["exact"] / medians["training_step"],
            "probe": medians["probe"] / medians["training_step"],
        }
        aims.append(
            aim(
                f"probe (K={sizes.probes}) / training step at M={length} <= {PROBE_AIM:g}",
                ratios[str(length)]["probe"],
                PROBE_AIM,
                "<=",
            )
        )
        aims.append(
            aim(
                f"exact / training step at M={length} <= {EXACT_AIM:g}",
                ratios[str(length)]["exact"],
                EXACT_AIM,
                "<=",
            )
        )
    median_seconds = {
        length: {name: median(values) for name, values in timed.items()}
        for length, timed in seconds.items()
    }
    return {
        "training_step": "forward + backward + Adam step, train mode, noise drawn",
        "regularizer_step": "explicit_regularizer(...) then backward of mean(loss + (q+r)/2)",
        "dtype": "float32",
        "batch": sizes.batch,
        "hidden": sizes.hidden,
        "probes": sizes.probes,
        "lengths": list(sizes.lengths),
        "seconds": seconds,
        "median_seconds": median_seconds,
        "ratio_to_training_step": ratios,
        "aims": aims,
    }


def bench_vs_oracle(sizes: RegularizerSpeedSizes) -> dict:
    model = build_model(sizes, sizes.oracle_hidden, dtype=torch.float64)
    x, y = random_batch(sizes, sizes.oracle_batch, sizes.oracle_length, dtype=torch.float64)

    def exact():
        with torch.no_grad():
            expansion = explicit_regularizer(model, x, y)
        return expansion.q + expansion.r

    def oracle():
        return noise_laplacian(model, x, y, method="exact")

    regularizer_value, oracle_value = exact(), oracle()
    difference = float((regularizer_value - oracle_value).abs().max())
    scale = float(oracle_value.abs().max())
    timed = time_interleaved(
        {"exact": exact, "oracle": oracle}, repeats=sizes.oracle_repeats, warmup=sizes.warmup
    )
    check_finite_timings(timed)
    medians = {name: median(values) for name, values in timed.items()}
    speedup = medians["oracle"] / medians["exact"]
    return {
        "what": "values of q + r (no backward), float64",
        "hidden": sizes.oracle_hidden,
        "length": sizes.oracle_length,
        "batch": sizes.oracle_batch,
        "noise_variables_per_sequence": sizes.oracle_length * model.noise_dim,
        "fairness": {
            "max_abs_difference": difference,
            "max_abs_value": scale,
            "agrees": difference <= 1e-8 * max(scale, 1e-12),
        },
        "seconds": timed,
        "median_seconds": medians,
        "speedup_over_oracle": speedup,
        "aims": [
            aim(f"oracle / exact >= {ORACLE_SPEEDUP_AIM:g}", speedup, ORACLE_SPEEDUP_AIM, ">=")
        ],
    }


def probe_variance(model, x, y, probes: int, draws: int, distribution: str, seed: int) -> float:
    """The variance of one probe estimate q̂ + r̂ (K = ``probes``) over ``draws``
    independent draws, averaged over the samples of x (batch, M, p): one no-grad call on
    the batch repeated ``draws`` times (every row draws its own probes)."""
    batch = x.shape[0]
    with torch.no_grad():
        expansion = explicit_regularizer(
            model,
            x.repeat(draws, 1, 1),
            y.repeat(draws),
            method="probe",
            probes=probes,
            generator=torch.Generator().manual_seed(seed),
            probe_distribution=distribution,
        )
    estimates = (expansion.q + expansion.r).reshape(draws, batch).double()
    return float(estimates.var(0).mean())


def bench_probe_variance(sizes: RegularizerSpeedSizes) -> dict:
    """Variance x time of the probe estimate for each law of the probes' noise."""
    model = build_model(sizes, sizes.hidden)
    length = sizes.lengths[0]
    x, y = random_batch(sizes, sizes.batch, length)
    distributions = ("rademacher", "gaussian")
    timed = time_interleaved(
        {
            name: make_regularizer_step(model, x, y, "probe", sizes.probes, name)
            for name in distributions
        },
        repeats=sizes.repeats,
        warmup=sizes.warmup,
    )
    check_finite_timings(timed)
    medians = {name: median(values) for name, values in timed.items()}
    small_x, small_y = x[: sizes.variance_batch], y[: sizes.variance_batch]
    variances = {
        name: probe_variance(
            model, small_x, small_y, sizes.probes, sizes.variance_draws, name, sizes.seed + 7
        )
        for name in distributions
    }
    variance_times_seconds = {name: variances[name] * medians[name] for name in distributions}
    return {
        "what": "variance of q + r per sample over independent probe draws (no grad, "
        "float32, the first variance_batch samples), times the median seconds of one "
        "probe call + backward at the training batch",
        "batch": sizes.batch,
        "length": length,
        "hidden": sizes.hidden,
        "probes": sizes.probes,
        "variance_batch": sizes.variance_batch,
        "variance_draws": sizes.variance_draws,
        "seconds": timed,
        "median_seconds": medians,
        "variance": variances,
        "variance_times_seconds": variance_times_seconds,
        "gaussian_work_over_rademacher_work": variance_times_seconds["gaussian"]
        / variance_times_seconds["rademacher"],
        "aims": [],
    }


MMAP_THRESHOLD_BYTES = 1 << 20


def limit_heap_growth() -> bool:
    """Ask glibc to serve allocations of 1 MiB and more by mmap, returned on free.

    The exact method allocates and frees many (batch, d, d) temporaries per step; with
    glibc's default *dynamic* mmap threshold they land in the heap, which fragments and
    keeps growing with M (about 35 GB for d = 128, batch 128, M = 784, although the live
    memory with gradient checkpointing stays near 1.5 GB). A fixed threshold (``mallopt``,
    the same as ``MALLOC_MMAP_THRESHOLD_=1048576``) keeps the footprint at the live size.
    Returns whether the setting was applied (False off glibc).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(-3, MMAP_THRESHOLD_BYTES))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError, TypeError):
        return False


RUNNERS = {
    "vs_training_step": bench_vs_training_step,
    "vs_oracle": bench_vs_oracle,
    "probe_variance": bench_probe_variance,
}


def run(sizes: RegularizerSpeedSizes, parts: tuple[str, ...] | None = None) -> dict:
    chosen = parts or PARTS
    heap_limited = limit_heap_growth()
    return {
        "settings": sizes.to_json(),
        "mmap_threshold_set": heap_limited,
        "parts": {part: RUNNERS[part](sizes) for part in PARTS if part in chosen},
    }


def summary_rows(result: dict) -> list[tuple[str, str]]:
    rows = []
    parts = result["parts"]
    if "vs_training_step" in parts:
        body = parts["vs_training_step"]
        for length, medians in body["median_seconds"].items():
            ratio = body["ratio_to_training_step"][length]
            rows.append((f"M={length}: training step", f"{medians['training_step']:.3f} s"))
            rows.append(
                (
                    f"M={length}: exact + backward",
                    f"{medians['exact']:.3f} s ({ratio['exact']:.1f}x)",
                )
            )
            rows.append(
                (
                    f"M={length}: probe K={body['probes']} + backward",
                    f"{medians['probe']:.3f} s ({ratio['probe']:.1f}x)",
                )
            )
    if "vs_oracle" in parts:
        body = parts["vs_oracle"]
        rows.append(
            (
                f"d={body['hidden']}, M={body['length']}: exact vs autograd oracle",
                f"{body['median_seconds']['exact']:.3f} s vs "
                f"{body['median_seconds']['oracle']:.3f} s "
                f"({body['speedup_over_oracle']:.0f}x faster)",
            )
        )
    if "probe_variance" in parts:
        body = parts["probe_variance"]
        for name, value in body["variance_times_seconds"].items():
            rows.append(
                (
                    f"M={body['length']}: probe K={body['probes']} {name}: variance x time",
                    f"{body['variance'][name]:.3g} x {body['median_seconds'][name]:.3f} s "
                    f"= {value:.3g}",
                )
            )
        rows.append(
            (
                "gaussian / rademacher work for equal precision",
                f"{body['gaussian_work_over_rademacher_work']:.2f}x",
            )
        )
    return rows


EXPERIMENT = Experiment(
    name=NAME,
    title="explicit regularizer: exact and probe vs a training step; exact vs oracle; "
    "probe variance per unit time",
    profiles=PROFILES,
    run=lambda sizes, context: run(sizes, context.parts),
    parts=PARTS,
)
