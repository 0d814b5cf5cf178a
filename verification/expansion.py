"""Claims 1–4 of docs/design.md: the small-noise expansion of the expected loss, for every
built-in cell (the Lipschitz, coRNN and GRU-ODE cells of ``nrnn.catalogue``) and every noise
form, reported per cell (``by_cell`` in each check's measured numbers).

With every noise variable scaled by ε (ξ -> εξ in ``model(x, ξ)``), the expansion says

    E ℓ_ε = ℓ + ε² (q + r)/2 + O(ε⁴),

with q, r from ``nrnn.explicit_regularizer`` at ε = 1. The checks:

1. ``quadrature_coefficient`` (claim 1): E ℓ_ε exactly by tensor Gauss quadrature over every
   noise variable (Gauss–Hermite; Gauss–Legendre for the uniform η of ``ReleasedNoise``),
   d ≤ 3, M ≤ 3. A polynomial fit in ε² of (E ℓ_ε − ℓ)/ε² over small ε gives the ε²
   coefficient, which must equal (q + r)/2 to floating-point precision.
2. ``quadrature_remainder_order`` (claim 2): the remainder E ℓ_ε − ℓ − ε²(q + r)/2 keeps its
   sign and its log-log slope over more than a decade of ε lies in [3.5, 4.5] (ε⁴, not the
   paper's ε³).
3. ``quadrature_odd_orders`` (claim 2): a fit of E ℓ_ε − ℓ with all powers ε¹..ε⁵ has
   vanishing ε¹ and ε³ coefficients.
4. ``monte_carlo_coefficient`` (claim 1): real sequences (digits, ECG5000), hidden 16–128.
   Paths ξ are shared by every ε (common random numbers) and used with −ξ (antithetic), so
   D(ε) = ½[ℓ(εξ) + ℓ(−εξ)] − ℓ has no odd orders (the four copies of a path run together
   in ``nrnn.paths.simulate``, noise drawn time-major in chunks); the Richardson combination
   (4 D(ε)/ε² − D(2ε)/(2ε)²)/3 removes the ε⁴ term and estimates the ε² coefficient per path.
   Its mean must match (q + r)/2 within z standard errors.
5. ``time_step_convergence`` (claim 3): fixed T = MΔt, input held piecewise constant,
   Δt halved repeatedly; q and r converge to the continuous-time values (the generated
   ``covariance_rhs`` / ``mean_rhs`` ODEs integrated by RK4 on a much finer grid) with a
   fitted order in [0.8, 1.2].
6. ``gradient_quadrature_order`` (claim 4): ∇θ E ℓ_ε (quadrature) − ∇θ[ℓ + ε²(q + r)/2]
   shrinks with log-log slope in [3.5, 4.5].
7. ``gradient_monte_carlo`` (claim 4): on a real sequence, the Richardson ε² coefficient of
   the directional derivative of E ℓ_ε (per path, central differences in θ, CRN +
   antithetic) matches the directional derivative of (q + r)/2 within z standard errors.

Every statistical check uses a Bonferroni z for a stated false-failure probability and
fixed seeds; the quadrature checks are deterministic (false-failure probability 0).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nrnn import data, quadrature
from nrnn._generated.cross_entropy import cross_entropy_grad, cross_entropy_hessian
from nrnn._generated.expansion import covariance_rhs, mean_rhs, q_term, r_term
from nrnn.catalogue import NOISE_FORMS, cell_name, random_batch, small_model
from nrnn.cells import CELLS
from nrnn.model import NoisyRNN
from nrnn.montecarlo import mean_and_stderr, z_threshold
from nrnn.paths import simulate
from nrnn.regularizer import explicit_regularizer
from nrnn.workflow.experiments import Experiment

from .core import Check, geometric, log_slope, timed, within

DTYPE = torch.float64
FALSE_FAILURE = 1e-5  # per statistical check (Bonferroni within the check)
SLOPE_RANGE = (3.5, 4.5)
ORDER_RANGE = (0.8, 1.2)
COEFFICIENT_RTOL = 1e-6  # quadrature ε² coefficient vs (q + r)/2
ODD_RTOL = 1e-5  # odd-order contributions relative to the ε² term (floating-point floor ~1e-7)


# --------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class QuadratureCase:
    """A tiny model whose expected loss is computed by tensor quadrature."""

    hidden: int
    steps: int
    noise: str  # a variant of nrnn.catalogue.NOISE_FORMS: "diagonal", "scalar", "released"
    nodes: int  # quadrature nodes per noise variable
    seed: int
    cell: object = "lipschitz"  # a name in nrnn.catalogue.CELLS, or a cell class

    @property
    def cell_name(self) -> str:
        return cell_name(self.cell)

    @property
    def label(self) -> str:
        return f"{self.cell_name},d={self.hidden},M={self.steps},{self.noise}"


@dataclass(frozen=True)
class MonteCarloCase:
    """A model on real sequences whose expected loss is estimated by Monte Carlo."""

    dataset: str
    hidden: int
    noise: str
    sequences: int
    seed: int
    cell: object = "lipschitz"

    @property
    def cell_name(self) -> str:
        return cell_name(self.cell)

    @property
    def label(self) -> str:
        return f"{self.cell_name},{self.dataset},d={self.hidden},{self.noise}"


@dataclass(frozen=True)
class ExpansionSizes:
    quadrature: tuple[QuadratureCase, ...]
    quadrature_level: float = 0.6  # σ₁ = σ₂ (paper) or s_a, s_m (reference) at ε = 1
    quadrature_dt: float = 0.5
    coefficient_epsilons: tuple[float, float, int] = (0.004, 0.04, 8)  # geometric grid
    remainder_epsilons: tuple[float, float, int] = (0.01, 0.2, 9)
    monte_carlo: tuple[MonteCarloCase, ...] = ()
    monte_carlo_paths: int = 4000  # antithetic pairs per sequence
    monte_carlo_epsilon: float = 0.25  # ε and 2ε times the model's noise level
    monte_carlo_level: float = 0.1
    convergence_cells: tuple = ("lipschitz",)  # names in nrnn.catalogue.CELLS or cell classes
    convergence_hidden: int = 4
    convergence_base_steps: int = 4  # input values held piecewise constant over T
    convergence_total_time: float = 2.0
    convergence_halvings: int = 9  # Δt = T / (base · 2^j), j = 0 .. halvings
    convergence_fit_last: int = 4  # fit the order on the finest refinements
    convergence_rk4_steps: int = 256  # RK4 steps per input value for the continuous reference
    convergence_level: float = 0.5
    gradient_cases: tuple[QuadratureCase, ...] = ()
    gradient_epsilons: tuple[float, float, int] = (0.02, 0.25, 7)
    gradient_monte_carlo: MonteCarloCase | None = None
    gradient_paths: int = 4000
    gradient_epsilon: float = 0.1  # the gradient's Richardson bias is larger than the value's
    gradient_directions: int = 3
    gradient_fd_step: float = 1e-5


NEW_CELL_QUADRATURE = (
    QuadratureCase(hidden=1, steps=2, noise="diagonal", nodes=5, seed=51, cell="cornn"),
    QuadratureCase(hidden=1, steps=2, noise="scalar", nodes=5, seed=52, cell="cornn"),
    QuadratureCase(hidden=1, steps=2, noise="released", nodes=4, seed=53, cell="cornn"),
    QuadratureCase(hidden=2, steps=2, noise="diagonal", nodes=5, seed=61, cell="gru"),
    QuadratureCase(hidden=2, steps=2, noise="scalar", nodes=5, seed=62, cell="gru"),
    QuadratureCase(hidden=2, steps=2, noise="released", nodes=4, seed=63, cell="gru"),
    QuadratureCase(hidden=2, steps=2, noise="scalar", nodes=5, seed=71, cell="lipschitz-arctan"),
)
"""The coRNN (state 2d), GRU-ODE and arctan Lipschitz cells with every noise form."""

QUICK = ExpansionSizes(
    quadrature=(
        QuadratureCase(hidden=2, steps=3, noise="diagonal", nodes=5, seed=1),
        QuadratureCase(hidden=2, steps=2, noise="scalar", nodes=5, seed=2),
        QuadratureCase(hidden=3, steps=2, noise="diagonal", nodes=5, seed=3),
        QuadratureCase(hidden=2, steps=2, noise="released", nodes=4, seed=4),
    )
    + NEW_CELL_QUADRATURE,
    monte_carlo=(
        MonteCarloCase(dataset="digits", hidden=16, noise="diagonal", sequences=3, seed=11),
        MonteCarloCase(dataset="ecg5000", hidden=128, noise="scalar", sequences=2, seed=12),
        MonteCarloCase(dataset="digits", hidden=64, noise="released", sequences=2, seed=13),
        MonteCarloCase("digits", 16, "diagonal", sequences=2, seed=17, cell="cornn"),
        MonteCarloCase("ecg5000", 16, "released", sequences=1, seed=18, cell="cornn"),
        MonteCarloCase("digits", 32, "scalar", sequences=2, seed=19, cell="gru"),
        MonteCarloCase("ecg5000", 16, "released", sequences=1, seed=20, cell="gru"),
    ),
    convergence_cells=("lipschitz", "cornn", "gru"),
    gradient_cases=(
        QuadratureCase(hidden=2, steps=2, noise="diagonal", nodes=5, seed=21),
        QuadratureCase(hidden=1, steps=2, noise="scalar", nodes=5, seed=23, cell="cornn"),
        QuadratureCase(hidden=2, steps=2, noise="diagonal", nodes=5, seed=24, cell="gru"),
    ),
    gradient_monte_carlo=MonteCarloCase(
        dataset="digits", hidden=16, noise="diagonal", sequences=1, seed=31
    ),
)
FULL = dataclasses.replace(
    QUICK,
    quadrature=QUICK.quadrature
    + (
        QuadratureCase(hidden=3, steps=3, noise="diagonal", nodes=5, seed=5),
        QuadratureCase(hidden=3, steps=3, noise="scalar", nodes=3, seed=6),
        QuadratureCase(hidden=3, steps=2, noise="released", nodes=3, seed=7),
        QuadratureCase(hidden=2, steps=2, noise="diagonal", nodes=4, seed=54, cell="cornn"),
        QuadratureCase(hidden=3, steps=2, noise="scalar", nodes=4, seed=64, cell="gru"),
    ),
    monte_carlo=(
        MonteCarloCase(dataset="digits", hidden=16, noise="diagonal", sequences=4, seed=11),
        MonteCarloCase(dataset="ecg5000", hidden=128, noise="scalar", sequences=4, seed=12),
        MonteCarloCase(dataset="digits", hidden=64, noise="released", sequences=4, seed=13),
        MonteCarloCase(dataset="digits", hidden=128, noise="scalar", sequences=4, seed=14),
        MonteCarloCase(dataset="ecg5000", hidden=32, noise="diagonal", sequences=4, seed=15),
        MonteCarloCase(dataset="ecg5000", hidden=64, noise="released", sequences=4, seed=16),
        MonteCarloCase("digits", 64, "scalar", sequences=4, seed=17, cell="cornn"),
        MonteCarloCase("ecg5000", 32, "diagonal", sequences=4, seed=18, cell="cornn"),
        MonteCarloCase("digits", 64, "diagonal", sequences=4, seed=19, cell="gru"),
        MonteCarloCase("ecg5000", 32, "released", sequences=4, seed=20, cell="gru"),
    ),
    monte_carlo_paths=20000,
    convergence_halvings=10,
    convergence_fit_last=5,
    gradient_cases=QUICK.gradient_cases
    + (QuadratureCase(hidden=2, steps=2, noise="scalar", nodes=5, seed=22),),
    gradient_paths=10000,
)
# Tiny: one 2-unit quadrature case, one small Monte Carlo case, a coarse Δt sweep (tests).
SMOKE = dataclasses.replace(
    QUICK,
    quadrature=(QuadratureCase(hidden=2, steps=2, noise="diagonal", nodes=5, seed=1),),
    monte_carlo=(
        MonteCarloCase(dataset="digits", hidden=8, noise="diagonal", sequences=2, seed=11),
    ),
    monte_carlo_paths=300,
    convergence_halvings=2,
    convergence_fit_last=2,
    convergence_rk4_steps=8,
    gradient_cases=(),
    gradient_monte_carlo=None,
)
# The expansion trains nothing: medium (the pixel-MNIST profile) runs the quick checks.
PROFILES = {"smoke": SMOKE, "quick": QUICK, "medium": QUICK, "full": FULL}


# ------------------------------------------------------------------------ helpers
def make_model(input_dim, hidden, classes, *, cell, noise_form, level, dt, seed) -> NoisyRNN:
    """A seeded float64 model of the catalogue (released-code noise: a non-uniform δ)."""
    model = small_model(
        cell,
        noise_form,
        hidden=hidden,
        inputs=input_dim,
        classes=classes,
        dt=dt,
        level=level,
        seed=seed,
    )
    return model.eval()


def regularizer_value(model, x, y) -> float:
    expansion = explicit_regularizer(model, x, y)
    return float(expansion.regularizer.sum())


# ----------------------------------------------------------------------- quadrature
def quadrature_model(case: QuadratureCase, level: float, dt: float):
    """(model, x (1, M, 2), y (1,)) of a quadrature case, seeded."""
    model = make_model(
        2, case.hidden, 3, cell=case.cell, noise_form=case.noise, level=level, dt=dt, seed=case.seed
    )
    x, y = random_batch(case.seed + 1000, 1, case.steps, 2, 3)
    return model, x, y


@functools.lru_cache(maxsize=32)
def _quadrature_series(case: QuadratureCase, level: float, dt: float, epsilons: tuple) -> dict:
    model, x, y = quadrature_model(case, level, dt)
    rule = quadrature.noise_rule(model, case.steps, case.nodes)
    with torch.no_grad():
        loss = float(F.cross_entropy(model(x, torch.zeros_like(rule[0][:1])), y))
        excess = np.array(
            [float(quadrature.expected_loss(model, x, y, rule, e)) - loss for e in epsilons]
        )
        half_qr = regularizer_value(model, x, y)
    return {"loss": loss, "half_q_plus_r": half_qr, "excess": excess, "points": len(rule[1])}


def quadrature_series(case: QuadratureCase, sizes: ExpansionSizes, epsilons) -> dict:
    """ℓ, (q + r)/2 and E ℓ_ε − ℓ on a grid of ε for one quadrature case (cached)."""
    return _quadrature_series(
        case, sizes.quadrature_level, sizes.quadrature_dt, tuple(float(e) for e in epsilons)
    )


def by_cell(cases, values) -> dict:
    """[min, max] of ``values`` (one per case, in order) for every cell, by cell name."""
    result: dict = {}
    for case, value in zip(cases, values, strict=True):
        low, high = result.get(case.cell_name, (value, value))
        result[case.cell_name] = [float(f"{min(low, value):.4g}"), float(f"{max(high, value):.4g}")]
    return result


def quadrature_epsilon2_coefficient(series: dict, epsilons: np.ndarray) -> float:
    """The ε² coefficient a2 of E ℓ_ε − ℓ from the quadrature series on ``epsilons``:
    (E ℓ_ε − ℓ)/ε² = a2 + a4 ε² + a6 ε⁴ + a8 ε⁶ + ..., least squares in u = (ε/ε_max)²."""
    u = (epsilons / epsilons.max()) ** 2
    return float(np.polynomial.polynomial.polyfit(u, series["excess"] / epsilons**2, 3)[0])


def check_quadrature_coefficient(sizes: ExpansionSizes) -> Check:
    epsilons = geometric(sizes.coefficient_epsilons)
    cases, worst, errors = {}, 0.0, []
    for case in sizes.quadrature:
        series = quadrature_series(case, sizes, epsilons)
        a2, target = quadrature_epsilon2_coefficient(series, epsilons), series["half_q_plus_r"]
        relative = abs(a2 - target) / abs(target)
        worst = max(worst, relative)
        errors.append(relative)
        cases[case.label] = {
            "epsilon2_coefficient": a2,
            "half_q_plus_r": target,
            "relative_error": relative,
            "quadrature_points": series["points"],
        }
    return Check(
        claim=1,
        name="quadrature_coefficient",
        measured={
            "max_relative_error": worst,
            "cases": len(cases),
            "by_cell": by_cell(sizes.quadrature, errors),
        },
        criterion="tensor Gauss quadrature of E l_eps over every noise variable; the eps^2 "
        "coefficient of a polynomial fit in eps^2 of (E l_eps - l)/eps^2 equals "
        "(q + r)/2 of explicit_regularizer(method='exact') to relative error <= tol",
        tolerance={"relative": COEFFICIENT_RTOL},
        passed=worst <= COEFFICIENT_RTOL,
        false_failure=0.0,
        seeds=[c.seed for c in sizes.quadrature],
        details={"epsilons": epsilons.tolist(), "cases": cases},
    )


PROBE_DRAWS = 400  # independent probe estimates per quadrature case
PROBES = 4  # K linear-response paths per estimate, as a cheap training step would use


def check_probe_coefficient(sizes: ExpansionSizes) -> Check:
    """The probe estimator that training uses (``method="probe"``) against the same exact
    ε² coefficient: the mean of independent probe estimates of (q + r)/2 is within z
    standard errors (from the draws) of the quadrature's a2, plus the quadrature's own
    relative tolerance."""
    epsilons = geometric(sizes.coefficient_epsilons)
    z = z_threshold(FALSE_FAILURE, len(sizes.quadrature))
    cases, scores, verdicts = {}, [], []
    for index, case in enumerate(sizes.quadrature):
        a2 = quadrature_epsilon2_coefficient(quadrature_series(case, sizes, epsilons), epsilons)
        model, x, y = quadrature_model(case, sizes.quadrature_level, sizes.quadrature_dt)
        with torch.no_grad():
            estimate = explicit_regularizer(
                model,
                x.repeat(PROBE_DRAWS, 1, 1),
                y.repeat(PROBE_DRAWS),
                method="probe",
                probes=PROBES,
                generator=torch.Generator().manual_seed(case.seed + 7000 + index),
            )
        mean, stderr = (float(v) for v in mean_and_stderr(estimate.regularizer))
        allowance = COEFFICIENT_RTOL * abs(a2)
        verdicts.append(within(mean, a2, stderr, z, allowance))
        scores.append(abs(mean - a2) / (z * stderr + allowance))
        cases[case.label] = {
            "epsilon2_coefficient": a2,
            "probe_mean": mean,
            "probe_stderr": stderr,
            "z": (mean - a2) / stderr if stderr > 0 else 0.0,
        }
    worst = max(scores)
    return Check(
        claim=1,
        name="probe_coefficient",
        measured={
            "max_error_over_tolerance": worst,
            "max_abs_z": max(abs(c["z"]) for c in cases.values()),
            "cases": len(cases),
            "by_cell": by_cell(sizes.quadrature, scores),
        },
        criterion=f"mean of {PROBE_DRAWS} explicit_regularizer(method='probe', "
        f"probes={PROBES}) estimates of (q + r)/2 within z * SE (+ relative tol) of the "
        "quadrature eps^2 coefficient, z Bonferroni over the cases",
        tolerance={"z": z, "relative": COEFFICIENT_RTOL},
        passed=all(verdicts),
        false_failure=FALSE_FAILURE,
        seeds=[c.seed for c in sizes.quadrature],
        details={"draws": PROBE_DRAWS, "probes": PROBES, "cases": cases},
    )


def check_quadrature_remainder(sizes: ExpansionSizes) -> Check:
    epsilons = geometric(sizes.remainder_epsilons)
    cases, slopes, same_sign = {}, [], True
    for case in sizes.quadrature:
        series = quadrature_series(case, sizes, epsilons)
        remainder = series["excess"] - epsilons**2 * series["half_q_plus_r"]
        slope = log_slope(epsilons, remainder)
        one_sign = bool(np.all(remainder > 0) or np.all(remainder < 0))
        slopes.append(slope)
        same_sign &= one_sign
        cases[case.label] = {
            "slope": slope,
            "one_sign": one_sign,
            "remainder": remainder.tolist(),
            "remainder_over_eps4": (remainder / epsilons**4).tolist(),
        }
    low, high = SLOPE_RANGE
    passed = same_sign and all(low <= s <= high for s in slopes)
    return Check(
        claim=2,
        name="quadrature_remainder_order",
        measured={
            "slope_min": min(slopes),
            "slope_max": max(slopes),
            "by_cell": by_cell(sizes.quadrature, slopes),
        },
        criterion="remainder E l_eps - l - eps^2 (q + r)/2 (quadrature) keeps its sign and its "
        f"log-log slope over eps in [{epsilons[0]:g}, {epsilons[-1]:g}] lies in "
        f"[{low}, {high}] (order eps^4)",
        tolerance={"slope_range": list(SLOPE_RANGE)},
        passed=passed,
        false_failure=0.0,
        seeds=[c.seed for c in sizes.quadrature],
        details={
            "epsilons": epsilons.tolist(),
            "decades": math.log10(epsilons[-1] / epsilons[0]),
            "cases": cases,
        },
    )


def check_quadrature_odd_orders(sizes: ExpansionSizes) -> Check:
    epsilons = geometric(sizes.coefficient_epsilons)
    u = epsilons / epsilons.max()
    cases, worst, odds = {}, 0.0, []
    for case in sizes.quadrature:
        series = quadrature_series(case, sizes, epsilons)
        # E l_eps - l = sum_{j=1..5} b_j u^j; odd b_j must vanish next to the u^2 term.
        fit = np.polynomial.polynomial.polyfit(u, series["excess"], list(range(1, 6)))
        odd = max(abs(fit[1]), abs(fit[3]), abs(fit[5])) / abs(fit[2])
        worst = max(worst, odd)
        odds.append(odd)
        cases[case.label] = {"coefficients_u1_to_u5": fit[1:].tolist(), "odd_relative": odd}
    return Check(
        claim=2,
        name="quadrature_odd_orders",
        measured={"max_odd_over_eps2": worst, "by_cell": by_cell(sizes.quadrature, odds)},
        criterion="fit of E l_eps - l (quadrature) with powers eps^1..eps^5 on eps in "
        f"[{epsilons[0]:g}, {epsilons[-1]:g}] (scaled to [.., 1]): every odd coefficient "
        "is at most tol times the eps^2 coefficient",
        tolerance={"relative": ODD_RTOL},
        passed=worst <= ODD_RTOL,
        false_failure=0.0,
        seeds=[c.seed for c in sizes.quadrature],
        details={"cases": cases},
    )


# ---------------------------------------------------------------------- Monte Carlo
def real_sequences(case: MonteCarloCase):
    """``case.sequences`` test sequences of the dataset (seeded choice), float64."""
    inputs, labels = data.load(case.dataset, "test").tensors
    generator = torch.Generator().manual_seed(case.seed)
    index = torch.randperm(len(labels), generator=generator)[: case.sequences]
    return inputs[index].to(DTYPE), labels[index]


def real_model(case: MonteCarloCase, level: float):
    x, y = real_sequences(case)
    info = data.info(case.dataset)
    dt = 0.1 if info.seq_len <= 64 else 0.05
    model = make_model(
        info.input_dim,
        case.hidden,
        info.num_classes,
        cell=case.cell,
        noise_form=case.noise,
        level=level,
        dt=dt,
        seed=case.seed,
    )
    return model, x, y


PATH_CHUNK = 2000  # paths simulated together (memory: 4 copies × chunk × n numbers)


def richardson_coefficients(losses: torch.Tensor, clean: torch.Tensor, epsilon: float):
    """Per-path estimates of the ε² coefficient from the losses (4, paths) of the copies
    driven by εξ, −εξ, 2εξ, −2εξ and the clean loss ℓ(0): with the antithetic excess
    D(ε) = ½[ℓ(εξ) + ℓ(−εξ)] − ℓ(0), (4 D(ε)/ε² − D(2ε)/(2ε)²)/3 (paths,)."""
    first = (0.5 * (losses[0] + losses[1]) - clean) / epsilon**2
    second = (0.5 * (losses[2] + losses[3]) - clean) / (2 * epsilon) ** 2
    return (4 * first - second) / 3


def richardson_estimates(model, x, y, *, paths: int, seed: int, epsilon: float):
    """Per-path Richardson ε² coefficients (paths,) for one sequence x (1, M, p), y (1,).

    Every path runs as four copies driven by ξ scaled by ε, −ε, 2ε and −2ε (the same ξ:
    antithetic pairs and common random numbers across ε) with ``nrnn.paths.simulate``;
    chunks of ``PATH_CHUNK`` paths draw their noise from the generator seeded with
    seed + 1000003 · chunk, time-major, so every call with the same seed (a shifted model
    in ``gradient_monte_carlo``) sees the same noise."""
    clean = F.cross_entropy(model(x, x.new_zeros(*x.shape[:2], model.noise_dim)), y)
    estimates = []
    for index, start in enumerate(range(0, paths, PATH_CHUNK)):
        count = min(PATH_CHUNK, paths - start)
        generator = torch.Generator().manual_seed(seed + 1_000_003 * index)
        scales = (epsilon, -epsilon, 2 * epsilon, -2 * epsilon)
        finals = simulate(model, x, paths=count, generator=generator, scales=scales)
        logits = model.logits(finals).flatten(0, 1)  # (4 · count, c)
        losses = F.cross_entropy(logits, y.expand(len(logits)), reduction="none")
        estimates.append(richardson_coefficients(losses.view(4, count), clean, epsilon))
    return torch.cat(estimates)


def check_monte_carlo_coefficient(sizes: ExpansionSizes) -> Check:
    comparisons = sum(case.sequences for case in sizes.monte_carlo)
    z = z_threshold(FALSE_FAILURE, comparisons)
    cases, worst, seeds, scores, verdicts = {}, 0.0, [], [], []
    for case in sizes.monte_carlo:
        model, x, y = real_model(case, sizes.monte_carlo_level)
        with torch.no_grad():
            target = explicit_regularizer(model, x, y).regularizer
            rows = []
            for i in range(len(y)):
                seed = case.seed * 1000 + i
                seeds.append(seed)
                estimate = richardson_estimates(
                    model,
                    x[i : i + 1],
                    y[i : i + 1],
                    paths=sizes.monte_carlo_paths,
                    seed=seed,
                    epsilon=sizes.monte_carlo_epsilon,
                )
                mean, stderr = mean_and_stderr(estimate)
                score = abs(float(mean) - float(target[i])) / float(stderr)
                worst = max(worst, score)
                verdicts.append(within(float(mean), float(target[i]), float(stderr), z))
                rows.append(
                    {
                        "estimate": float(mean),
                        "stderr": float(stderr),
                        "half_q_plus_r": float(target[i]),
                        "z": score,
                        "relative_stderr": float(stderr / target[i].abs()),
                    }
                )
        cases[case.label] = {"steps": x.shape[1], "dt": model.dt, "sequences": rows}
        scores.append(max(row["z"] for row in rows))
    return Check(
        claim=1,
        name="monte_carlo_coefficient",
        measured={
            "max_z": worst,
            "sequences": comparisons,
            "by_cell": by_cell(sizes.monte_carlo, scores),
        },
        criterion="real sequences, hidden 16-128: Richardson eps^2 coefficient of "
        "E l_eps (antithetic pairs, common random numbers across eps, "
        f"eps = {sizes.monte_carlo_epsilon:g} and twice that, noise level "
        f"{sizes.monte_carlo_level:g}) is within z standard errors of (q + r)/2",
        tolerance={"z": z},
        passed=all(verdicts),
        false_failure=FALSE_FAILURE,
        seeds=seeds,
        details={"paths_per_sequence": sizes.monte_carlo_paths, "cases": cases},
    )


# ------------------------------------------------------------ Δt -> 0 convergence
def refined_model(model: NoisyRNN, dt: float) -> NoisyRNN:
    refined = copy.deepcopy(model)
    refined.dt = dt
    return refined


def continuous_moments(model: NoisyRNN, x: torch.Tensor, total_time: float, substeps: int):
    """(h(T), m(T), C(T)) of dh = f dt, dC = (F C + C Fᵀ + Σ Σᵀ) dt, dm = (F m + v/2) dt
    with x (batch, steps, p) held piecewise constant: RK4 with ``substeps`` per input step,
    right-hand sides from the generated ``covariance_rhs`` and ``mean_rhs`` with the cell's
    F and v (its generated formulas) and the noise's diffusion."""
    cell, noise = model.cell, model.noise
    parameters = cell.drift_parameters()
    derivatives = cell.derivatives()
    drives = model.input_drive(x).transpose(0, 1).unbind(0)
    batch, n = x.shape[0], model.state_dim
    state = (x.new_zeros(batch, n), x.new_zeros(batch, n), x.new_zeros(batch, n, n))
    h_step = total_time / (len(drives) * substeps)

    def rhs(state, drive):
        h, mean, covariance = state
        point = cell.linearisation(h, drive, parameters)
        jacobian = derivatives.drift_jacobian(point, parameters)
        drift = cell.drift(h, drive, parameters)
        points = noise.diffusion_points(h, lambda: drift, model.noise_parameters)
        curvature = derivatives.curvature(point, parameters, covariance)
        return (
            drift,
            mean_rhs(mean, jacobian, curvature),
            covariance_rhs(covariance, jacobian, noise.diffusion(points, model.dt)),
        )

    def shifted(state, slope, factor):
        return tuple(s + factor * k for s, k in zip(state, slope, strict=True))

    for drive in drives:
        for _ in range(substeps):
            k1 = rhs(state, drive)
            k2 = rhs(shifted(state, k1, h_step / 2), drive)
            k3 = rhs(shifted(state, k2, h_step / 2), drive)
            k4 = rhs(shifted(state, k3, h_step), drive)
            state = tuple(
                s + h_step / 6 * (a + 2 * b + 2 * c + e)
                for s, a, b, c, e in zip(state, k1, k2, k3, k4, strict=True)
            )
    return state


def continuous_q_r(model, x, y, total_time, substeps) -> tuple[np.ndarray, np.ndarray]:
    h, mean, covariance = continuous_moments(model, x, total_time, substeps)
    logits = model.logits(h)
    readout = model.readout.weight
    onehot = F.one_hot(y, model.num_classes).to(DTYPE)
    q = q_term(cross_entropy_grad(logits, onehot), model.cell.output(mean) @ readout.T)
    logit_covariance = readout @ model.cell.output_covariance(covariance) @ readout.T
    r = r_term(cross_entropy_hessian(logits), logit_covariance)
    return q.numpy(), r.numpy()


def check_time_step_convergence(sizes: ExpansionSizes) -> Check:
    base, total = sizes.convergence_base_steps, sizes.convergence_total_time
    cases, orders, seeds, reference_ok = {}, [], [], True
    per_cell: dict[str, list[float]] = {}
    runs = [
        (cell, form, 41 + index + 100 * cell_index)
        for cell_index, cell in enumerate(sizes.convergence_cells)
        for index, form in enumerate(("diagonal", "scalar"))
    ]
    for cell, form, seed in runs:
        seeds.append(seed)
        model = make_model(
            2,
            sizes.convergence_hidden,
            3,
            cell=cell,
            noise_form=form,
            level=sizes.convergence_level,
            dt=total / base,
            seed=seed,
        )
        x, y = random_batch(seed + 1000, 3, base, 2, 3)
        case_orders = []
        repeats = [2**j for j in range(sizes.convergence_halvings + 1)]
        dts = np.array([total / (base * repeat) for repeat in repeats])
        with torch.no_grad():
            discrete = [
                explicit_regularizer(
                    refined_model(model, dt), x.repeat_interleave(repeat, dim=1), y
                )
                for dt, repeat in zip(dts, repeats, strict=True)
            ]
            fine = continuous_q_r(model, x, y, total, sizes.convergence_rk4_steps)
            coarse = continuous_q_r(model, x, y, total, sizes.convergence_rk4_steps // 2)
        result = {"dt": dts.tolist()}
        last = sizes.convergence_fit_last
        for index, name in enumerate(("q", "r")):
            values = np.array([getattr(expansion, name).numpy() for expansion in discrete])
            errors = np.abs(values - fine[index])  # (refinements, batch)
            # RK4 error estimate of the reference (halving its step changes it by ~15/16 of it).
            reference_error = float(np.abs(fine[index] - coarse[index]).max())
            reference_ok &= reference_error <= 0.01 * float(errors[-1].min())
            fitted = [log_slope(dts[-last:], errors[-last:, i]) for i in range(errors.shape[1])]
            orders += fitted
            case_orders += fitted
            result[name] = {
                "continuous": fine[index].tolist(),
                "errors": errors.tolist(),
                "orders": fitted,
                "reference_error_estimate": reference_error,
            }
        name = cell_name(cell)
        cases[f"{name},{form}"] = result
        low_high = per_cell.get(name, [math.inf, -math.inf])
        per_cell[name] = [
            float(f"{min(low_high[0], *case_orders):.4g}"),
            float(f"{max(low_high[1], *case_orders):.4g}"),
        ]
    low, high = ORDER_RANGE
    passed = reference_ok and all(low <= order <= high for order in orders)
    return Check(
        claim=3,
        name="time_step_convergence",
        measured={"order_min": min(orders), "order_max": max(orders), "by_cell": per_cell},
        criterion=f"T = M dt = {total:g} fixed, input held piecewise constant, dt halved "
        f"{sizes.convergence_halvings} times: |q(dt) - q_cont| and |r(dt) - r_cont| have "
        f"log-log slope in [{low}, {high}] over the {sizes.convergence_fit_last} "
        "finest dt (3 sequences x 2 Brownian modes x every cell); q_cont, r_cont from the "
        "generated "
        "ODEs by RK4, "
        "whose own error (from halving its step) is below 1% of the finest error",
        tolerance={"order_range": list(ORDER_RANGE)},
        passed=passed,
        false_failure=0.0,
        seeds=seeds,
        details={
            "hidden": sizes.convergence_hidden,
            "rk4_steps_per_input": sizes.convergence_rk4_steps,
            "cases": cases,
        },
    )


# ------------------------------------------------------------------------ gradients
def flat_gradient(value: torch.Tensor, model: NoisyRNN) -> torch.Tensor:
    parameters = [p for p in model.parameters()]
    grads = torch.autograd.grad(value, parameters, allow_unused=True, retain_graph=True)
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, parameters, strict=True)
        ]
    )


def check_gradient_quadrature(sizes: ExpansionSizes) -> Check:
    epsilons = geometric(sizes.gradient_epsilons)
    cases, slopes = {}, []
    for case in sizes.gradient_cases:
        model, x, y = quadrature_model(case, sizes.quadrature_level, sizes.quadrature_dt)
        rule = quadrature.noise_rule(model, case.steps, case.nodes)
        expansion = explicit_regularizer(model, x, y)
        loss_gradient = flat_gradient(expansion.loss.sum(), model)
        regularizer_gradient = flat_gradient(expansion.regularizer.sum(), model)
        norms = []
        for epsilon in epsilons:
            expected = flat_gradient(quadrature.expected_loss(model, x, y, rule, epsilon), model)
            predicted = loss_gradient + epsilon**2 * regularizer_gradient
            norms.append(float((expected - predicted).norm()))
        differences = np.array(norms)
        slope = log_slope(epsilons, differences)
        slopes.append(slope)
        cases[case.label] = {
            "slope": slope,
            "difference_norms": differences.tolist(),
            "regularizer_gradient_norm": float(regularizer_gradient.norm()),
        }
    low, high = SLOPE_RANGE
    return Check(
        claim=4,
        name="gradient_quadrature_order",
        measured={
            "slope_min": min(slopes),
            "slope_max": max(slopes),
            "by_cell": by_cell(sizes.gradient_cases, slopes),
        },
        criterion="|grad E l_eps (quadrature) - grad[l + eps^2 (q + r)/2]| over all parameters "
        f"has log-log slope in [{low}, {high}] for eps in "
        f"[{epsilons[0]:g}, {epsilons[-1]:g}]",
        tolerance={"slope_range": list(SLOPE_RANGE)},
        passed=all(low <= s <= high for s in slopes),
        false_failure=0.0,
        seeds=[c.seed for c in sizes.gradient_cases],
        details={"epsilons": epsilons.tolist(), "cases": cases},
    )


def _directional_derivative(model, direction, step, function):
    """Central difference of ``function(model)`` along a unit parameter direction."""
    values = []
    for sign in (1.0, -1.0):
        shifted = copy.deepcopy(model)
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(
                torch.nn.utils.parameters_to_vector(model.parameters()) + sign * step * direction,
                shifted.parameters(),
            )
        values.append(function(shifted))
    return (values[0] - values[1]) / (2 * step)


def check_gradient_monte_carlo(sizes: ExpansionSizes) -> Check:
    case = sizes.gradient_monte_carlo
    assert case is not None, "run() adds this check only with a gradient_monte_carlo case"
    model, x, y = real_model(case, sizes.monte_carlo_level)
    x, y = x[:1], y[:1]
    target = flat_gradient(explicit_regularizer(model, x, y).regularizer.sum(), model)
    # The regularizer's own gradient direction carries the most signal; the others are random.
    generator = torch.Generator().manual_seed(case.seed + 7)
    directions = [target / target.norm()] + [
        torch.randn(target.numel(), generator=generator, dtype=DTYPE)
        for _ in range(sizes.gradient_directions - 1)
    ]
    z = z_threshold(FALSE_FAILURE, len(directions))
    rows, worst, verdicts = [], 0.0, []
    with torch.no_grad():
        for direction in directions:
            direction = direction / direction.norm()
            per_path = _directional_derivative(
                model,
                direction,
                sizes.gradient_fd_step,
                lambda m: richardson_estimates(
                    m,
                    x,
                    y,
                    paths=sizes.gradient_paths,
                    seed=case.seed * 1000,
                    epsilon=sizes.gradient_epsilon,
                ),
            )
            mean, stderr = mean_and_stderr(per_path)
            expected = float(direction @ target)
            score = abs(float(mean) - expected) / float(stderr)
            worst = max(worst, score)
            verdicts.append(within(float(mean), expected, float(stderr), z))
            rows.append(
                {
                    "estimate": float(mean),
                    "stderr": float(stderr),
                    "directional_derivative_of_half_q_plus_r": expected,
                    "z": score,
                }
            )
    return Check(
        claim=4,
        name="gradient_monte_carlo",
        measured={
            "max_z": worst,
            "along_gradient": rows[0]["estimate"]
            / rows[0]["directional_derivative_of_half_q_plus_r"],
        },
        criterion=f"{case.label}, one real sequence: along the unit direction of "
        "grad (q + r)/2 and random unit directions in parameter space, the Richardson "
        "eps^2 coefficient of the directional derivative of E l_eps (per path: central "
        f"differences in theta, CRN + antithetic, eps = {sizes.gradient_epsilon:g} and "
        "twice that) is within z standard errors of the directional derivative of "
        "(q + r)/2 (along_gradient: their ratio)",
        tolerance={"z": z},
        passed=all(verdicts),
        false_failure=FALSE_FAILURE,
        seeds=[case.seed, case.seed * 1000, case.seed + 7],
        details={
            "paths": sizes.gradient_paths,
            "steps": x.shape[1],
            "fd_step": sizes.gradient_fd_step,
            "directions": rows,
        },
    )


# ------------------------------------------------------------------ your own cell
def cell_sizes(cell, *, hidden: int = 2, steps: int = 2, seed: int = 0) -> ExpansionSizes:
    """Tiny sizes that verify one cell without data: exact quadrature with each noise form
    (claims 1 and 2), Δt -> 0 with both Brownian modes (claim 3) and the gradient's
    remainder order (claim 4). ``cell``: a name in ``nrnn.catalogue.CELLS`` or a cell class
    (hidden size -> cell). The noise forms: every variant of ``nrnn.catalogue.NOISE_FORMS``."""
    forms = tuple(NOISE_FORMS)
    return ExpansionSizes(
        quadrature=tuple(
            QuadratureCase(hidden, steps, form, nodes=4, seed=seed + index, cell=cell)
            for index, form in enumerate(forms)
        ),
        convergence_cells=(cell,),
        convergence_hidden=hidden,
        convergence_halvings=7,
        convergence_rk4_steps=64,
        gradient_cases=(
            QuadratureCase(hidden, steps, "diagonal", nodes=4, seed=seed + 9, cell=cell),
        ),
    )


def with_registered(sizes: ExpansionSizes) -> ExpansionSizes:
    """``sizes`` with the tiny cases of :func:`cell_sizes` for every registered cell
    (``nrnn.cells.CELLS``) that no quadrature case of the quick profile names, and a
    quadrature case of the Lipschitz cell for every noise variant
    (``nrnn.catalogue.NOISE_FORMS``) that none of them uses: a cell or noise form registered
    after the built-in ones is verified in every profile."""
    named = {case.cell_name for case in QUICK.quadrature}
    added = [
        cell_sizes(next(iter(kind.catalogue())))
        for kind in CELLS.entries()
        if not named & set(kind.catalogue())
    ]
    used = {case.noise for case in QUICK.quadrature}
    forms = [
        QuadratureCase(2, 2, form, nodes=4, seed=90 + index)
        for index, form in enumerate(NOISE_FORMS)
        if form not in used
    ]
    if not added and not forms:
        return sizes
    return dataclasses.replace(
        sizes,
        quadrature=sizes.quadrature + tuple(forms) + sum((a.quadrature for a in added), ()),
        convergence_cells=sizes.convergence_cells
        + tuple(cell for a in added for cell in a.convergence_cells),
        gradient_cases=sizes.gradient_cases + sum((a.gradient_cases for a in added), ()),
    )


def verify_cell(cell, **options) -> list[Check]:
    """The expansion checks (claims 1-4) of one cell at the tiny sizes of
    :func:`cell_sizes`: every check must pass for the cell's formulas to be trusted."""
    return run(cell_sizes(cell, **options))


# --------------------------------------------------------------------------- module
def check_sizes(sizes: ExpansionSizes) -> None:
    """Refuse, before any work, a quadrature case too big for the tensor rule
    (``nrnn.quadrature.MAX_POINTS``) or, for the probe check, a model with one state
    entry: there every probe estimate is the exact value times a function of the probes
    alone, so the check's statistic would not depend on the cell."""
    for case in (*sizes.quadrature, *sizes.gradient_cases):
        model, _, _ = quadrature_model(case, sizes.quadrature_level, sizes.quadrature_dt)
        try:
            quadrature.rule_size(model, case.steps, case.nodes)
        except ValueError as error:
            raise ValueError(f"quadrature case {case.label}: {error}") from None
        if case in sizes.quadrature and model.state_dim < 2:
            raise ValueError(
                f"quadrature case {case.label}: one state entry, where the probe check's "
                "statistic does not depend on the cell; use a hidden size with at least two "
                "state entries"
            )


def run(sizes: ExpansionSizes) -> list[Check]:
    check_sizes(sizes)
    checks = [
        check_quadrature_coefficient,
        check_probe_coefficient,
        check_quadrature_remainder,
        check_quadrature_odd_orders,
    ]
    if sizes.monte_carlo:
        checks.append(check_monte_carlo_coefficient)
    checks.append(check_time_step_convergence)
    if sizes.gradient_cases:
        checks.append(check_gradient_quadrature)
    if sizes.gradient_monte_carlo is not None:
        checks.append(check_gradient_monte_carlo)
    return [timed(check, sizes) for check in checks]


EXPERIMENT = Experiment(
    name="expansion",
    title="small-noise expansion of the expected loss (claims 1-4)",
    claims=(1, 2, 3, 4),
    profiles=PROFILES,
    run=lambda sizes, context: run(with_registered(sizes)),
)
