"""Monte Carlo paths of the noisy RNN: ``nrnn.paths.simulate`` against ``torchsde`` and
against the arithmetic that no simulator can avoid.

Each part simulates many paths of one model (final states, no gradients) with

- ``simulator``: ``nrnn.paths.simulate(model, x, paths=P, generator=g)`` (the model's own
  Euler–Maruyama step, in place, noise drawn in chunks);
- ``torchsde``: ``torchsde.sdeint(method="euler")`` on an Itô SDE with the same drift and
  diagonal diffusion (``torchsde_reference.NoisyRNNSDE``), its default Brownian motion (a
  ``BrownianInterval`` without Lévy area);

and, timed in the same interleaved run, the two halves of the arithmetic limit:

- ``draws``: the P·M·n Gaussian numbers alone, drawn as the simulator draws them;
- ``matmuls``: the matrix products alone, the two (P, n) × (n, n) products (A h, W h) of
  every step in one ``torch.matmul`` loop (``timing.matmul_loop``).

Their sum is the arithmetic limit; every time is also stated as the fraction of it that
is arithmetic (limit / time). Before timing, a fairness check compares the two
simulators' final states (per-unit mean and standard deviation within z standard
errors), so both simulate the same SDE. Aim: the simulator ≥ 3× faster than torchsde at
every thread count, for the paper-sized case (10,000 paths, hidden 16, 50 steps) and a
larger one. When torchsde is not installed, that comparison is skipped with a message
(in the JSON and on stderr) and the rest runs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nrnn.draws import CHUNK_ELEMENTS, step_draws
from nrnn.model import NoisyRNN
from nrnn.noise import Noise
from nrnn.paths import simulate
from nrnn.workflow.experiments import Experiment

from .timing import (
    aim,
    check_finite_timings,
    matmul_flops,
    matmul_loop,
    median,
    threads,
    time_interleaved,
)
from .torchsde_reference import compare_final_states, simulate_with_torchsde

NAME = "monte_carlo_speed"
SPEEDUP_AIM = 3.0


@dataclass(frozen=True)
class PathCase:
    """One Monte Carlo problem: P paths of a hidden-n model over M steps."""

    paths: int
    hidden: int
    steps: int


@dataclass(frozen=True)
class MonteCarloSpeedSizes:
    """The cases (part name -> case), thread counts, model and repeat counts."""

    cases: tuple[tuple[str, PathCase], ...] = (
        ("vs_torchsde", PathCase(paths=10_000, hidden=16, steps=50)),
        ("vs_torchsde_larger", PathCase(paths=20_000, hidden=64, steps=100)),
    )
    threads: tuple[int, ...] = (1, 2)
    input_dim: int = 1
    classes: int = 10
    # A power of two: the solver's accumulated times are then exact, so torchsde takes
    # exactly the model's steps (no extra tiny step from rounding).
    dt: float = 0.0625
    # Large enough that the fairness check sees both diffusion terms.
    additive: float = 0.5
    multiplicative: float = 0.5
    repeats: int = 7
    warmup: int = 1
    seed: int = 0
    # Two-sided z threshold of the fairness check, per compared statistic.
    fairness_z: float = 4.5

    def to_json(self) -> dict:
        return {
            "cases": {name: dataclasses.asdict(case) for name, case in self.cases},
            **{
                key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()
                if key != "cases"
            },
        }

    def case(self, part: str) -> PathCase:
        return dict(self.cases)[part]


FULL = MonteCarloSpeedSizes()
# The default profile: the paper-sized case and a larger one of a few seconds on an idle
# two-core machine (the full larger case takes minutes there).
QUICK = dataclasses.replace(
    FULL,
    cases=(FULL.cases[0], ("vs_torchsde_larger", PathCase(paths=20_000, hidden=32, steps=50))),
    repeats=3,
)
SMOKE = dataclasses.replace(
    FULL,
    cases=(
        ("vs_torchsde", PathCase(paths=2_000, hidden=4, steps=10)),
        ("vs_torchsde_larger", PathCase(paths=1_000, hidden=6, steps=12)),
    ),
    repeats=1,
)
# Benchmarks train nothing: medium (the pixel-MNIST profile) times the full sizes.
PROFILES = {"smoke": SMOKE, "quick": QUICK, "medium": FULL, "full": FULL}
PARTS = tuple(name for name, _ in FULL.cases)


# --------------------------------------------------------------------------- models
def build_model(sizes: MonteCarloSpeedSizes, case: PathCase) -> NoisyRNN:
    """The seeded float32 Lipschitz model of a case (its noise diagonal, paper form)."""
    torch.manual_seed(sizes.seed)
    noise = Noise(additive=sizes.additive, multiplicative=sizes.multiplicative)
    return NoisyRNN(sizes.input_dim, case.hidden, sizes.classes, dt=sizes.dt, noise=noise)


def shared_input(sizes: MonteCarloSpeedSizes, case: PathCase) -> torch.Tensor:
    """One random input sequence shared by every path: (1, steps, p)."""
    generator = torch.Generator().manual_seed(sizes.seed + 1)
    return torch.randn(1, case.steps, sizes.input_dim, generator=generator)


def simulate_paths(model: NoisyRNN, x: torch.Tensor, paths: int, generator) -> torch.Tensor:
    """Final states (paths, d) from ``nrnn.paths.simulate``; x (1, steps, p)."""
    return simulate(model, x, paths=paths, generator=generator)


def torchsde_missing() -> str | None:
    """Why the torchsde comparison cannot run (None when torchsde is installed)."""
    if importlib.util.find_spec("torchsde") is None:
        return "torchsde is not installed: the comparison with torchsde was skipped"
    return None


# ------------------------------------------------------------ the arithmetic limit
def draw_loop(case: PathCase, generator) -> Callable[[], None]:
    """The case's Gaussian numbers alone, in the simulator's chunks (time-major)."""

    def sample(shape):
        return torch.randn(shape, generator=generator)

    def run() -> None:
        for _ in step_draws(
            sample, (case.paths, case.hidden), case.steps, chunk_elements=CHUNK_ELEMENTS
        ):
            pass

    return run


def matmul_plan(case: PathCase):
    """The products of one Euler step of the Lipschitz cell: A h and W h, (P, n) × (n, n)."""
    return [(2, (case.paths, case.hidden), (case.hidden, case.hidden))]


# ------------------------------------------------------------------------- parts
def _timed(sizes: MonteCarloSpeedSizes, case: PathCase, model, x, count: int) -> dict:
    """Interleaved timings of the calls at ``count`` threads, their medians and the
    ratios (without torchsde's when it is not installed)."""
    generator = torch.Generator().manual_seed(sizes.seed + 5)
    entropies = iter(range(sizes.seed + 10, 2**31 - 1))
    calls: dict[str, Callable[[], object]] = {
        "simulator": lambda: simulate_paths(model, x, case.paths, generator),
        "draws": draw_loop(case, generator),
        "matmuls": matmul_loop(matmul_plan(case), case.steps),
    }
    with_torchsde = torchsde_missing() is None
    if with_torchsde:
        calls["torchsde"] = lambda: simulate_with_torchsde(
            model, x, next(entropies), paths=case.paths
        )
    with threads(count):
        seconds = time_interleaved(calls, repeats=sizes.repeats, warmup=sizes.warmup)
    check_finite_timings(seconds)
    medians = {name: median(values) for name, values in seconds.items()}
    limit = medians["draws"] + medians["matmuls"]
    fraction = {
        name: limit / medians[name] for name in ("simulator", "torchsde") if name in medians
    }
    timed: dict[str, object] = {
        "threads": count,
        "seconds": seconds,
        "median_seconds": medians,
        "arithmetic_limit_seconds": limit,
        "fraction_of_arithmetic_limit": fraction,
    }
    if with_torchsde:
        timed["speedup_over_torchsde"] = medians["torchsde"] / medians["simulator"]
        timed["speedup_over_torchsde_at_the_limit"] = medians["torchsde"] / limit
    return timed


def bench_case(sizes: MonteCarloSpeedSizes, part: str) -> dict:
    """Fairness check, then interleaved timings at every thread count, with the aims.
    Without torchsde: the simulator against the arithmetic limit only, and a message."""
    case = sizes.case(part)
    model = build_model(sizes, case)
    x = shared_input(sizes, case)
    missing = torchsde_missing()
    comparison: dict = {}
    if missing is None:
        ours = simulate_paths(model, x, case.paths, torch.Generator().manual_seed(sizes.seed + 2))
        theirs, solver_steps = simulate_with_torchsde(
            model, x, entropy=sizes.seed + 3, paths=case.paths
        )
        fairness = compare_final_states(
            ours, theirs, sizes.fairness_z, names=("simulator", "torchsde")
        )
        fairness["torchsde_solver_steps"] = solver_steps
        fairness["model_steps"] = case.steps
        comparison["fairness"] = fairness
    else:
        print(f"{NAME}.{part}: {missing}", file=sys.stderr)
        comparison["torchsde_skipped"] = missing
    by_threads = {str(count): _timed(sizes, case, model, x, count) for count in sizes.threads}
    plan = matmul_plan(case)
    return {
        "what": "simulate paths, no grad; both return the final state",
        "simulator_call": "nrnn.paths.simulate(model, x, paths=P, generator=g)",
        "torchsde_call": "torchsde.sdeint(sde, h0, [0, M dt], bm=BrownianInterval, "
        "method='euler', dt=model.dt); noise_type='diagonal', sde_type='ito'",
        "arithmetic_limit": "draws (the P·M·n Gaussians alone, drawn as the simulator draws "
        "them) + matmuls (the 2 products (P, n)x(n, n) of every step, one torch.matmul loop)",
        **dataclasses.asdict(case),
        "dt": sizes.dt,
        "noise": {"additive": sizes.additive, "multiplicative": sizes.multiplicative},
        "gaussians": case.paths * case.steps * case.hidden,
        "matmul_flops": matmul_flops(plan, case.steps),
        **comparison,
        "threads": by_threads,
        "aims": [
            aim(
                f"simulator >= {SPEEDUP_AIM:g}x faster than torchsde ({case.paths} paths, "
                f"hidden {case.hidden}, {case.steps} steps, {count} thread(s))",
                timed["speedup_over_torchsde"],
                SPEEDUP_AIM,
                ">=",
            )
            for count, timed in by_threads.items()
            if "speedup_over_torchsde" in timed
        ],
    }


def run(sizes: MonteCarloSpeedSizes = FULL, parts: tuple[str, ...] | None = None) -> dict:
    """Run the chosen parts (all by default); returns ``{"settings", "parts"}``."""
    chosen = PARTS if parts is None else tuple(parts)
    unknown = [part for part in chosen if part not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {unknown} of {NAME}; choose from {list(PARTS)}")
    return {
        "settings": sizes.to_json(),
        "parts": {part: bench_case(sizes, part) for part in PARTS if part in chosen},
    }


def _seconds(value: float) -> str:
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def summary_rows(result: dict) -> list[tuple[str, str]]:
    """Readable (quantity, value) rows of a ``run`` result for the table."""
    rows: list[tuple[str, str]] = []
    for part in result["parts"].values():
        label = f"{part['paths']} paths, n={part['hidden']}, M={part['steps']}"
        for count, timed in part["threads"].items():
            medians = timed["median_seconds"]
            fraction = timed["fraction_of_arithmetic_limit"]
            if "speedup_over_torchsde" in timed:
                rows.append(
                    (
                        f"{label}, {count} thr: simulator / torchsde",
                        f"{_seconds(medians['simulator'])} / {_seconds(medians['torchsde'])} "
                        f"= {timed['speedup_over_torchsde']:.2f}x faster",
                    )
                )
            rows.append(
                (
                    f"{label}, {count} thr: draws + matmuls (limit)",
                    f"{_seconds(medians['draws'])} + {_seconds(medians['matmuls'])}; "
                    f"simulator {_seconds(medians['simulator'])}, at "
                    + ", ".join(f"{name} {value:.0%}" for name, value in fraction.items())
                    + " of the limit",
                )
            )
        if "fairness" in part:
            fairness = part["fairness"]
            largest_z = max(fairness["max_abs_z_mean"], fairness["max_abs_z_std"])
            rows.append(
                (
                    f"{label}: same final mean/std (max |z|)",
                    f"{fairness['agrees']} ({largest_z:.2f} <= {fairness['z_threshold']})",
                )
            )
        else:
            rows.append((f"{label}: torchsde", part["torchsde_skipped"]))
    return rows


EXPERIMENT = Experiment(
    name=NAME,
    title="Monte Carlo paths: nrnn.paths.simulate vs torchsde vs the arithmetic limit",
    profiles=PROFILES,
    run=lambda sizes, context: run(sizes, context.parts),
    parts=PARTS,
)
