"""Training-level check of claim 4 (``verification/mc_training.py``): SGD on the
noise-averaged loss follows SGD on loss + (q + r)/2 to O(ε⁴) and leaves SGD on the clean
loss at O(ε²); the Monte Carlo estimator it uses, against independent computations."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import nrnn.verification.mc_training as mc
from nrnn import Noise, NoisyRNN, noise_laplacian
from nrnn.montecarlo import mean_and_stderr
from nrnn.regularizer import Expansion

# torch.func.jvp loads torch's own forward-mode decompositions, which call torch.jit.script.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)

DTYPE = torch.float64
EPSILONS = mc.geometric((0.02, 0.16, 4))
FLOAT_FLOOR = 0.01
"""How far the local slope at the smallest ε may fall short of being the closest to the
order: the float64 rounding of distances of ≥ 1e-13 moves a local slope by ≲ 1e-3."""
FLOAT_FLOOR_DISTANCE = 1e-13
"""The smallest distance :data:`FLOAT_FLOOR` holds for; the rounding's effect on a slope
grows as 1 / distance below it (a case with lr 0.25, one update and σ√dt = 0.125 reaches
2.5e-15 at ε = 0.02, whose local slope rounding moves by 0.02)."""


def float_floor(smallest_distance: float) -> float:
    """:data:`FLOAT_FLOOR`, scaled up as 1 / distance below :data:`FLOAT_FLOOR_DISTANCE`."""
    return FLOAT_FLOOR * max(1.0, FLOAT_FLOOR_DISTANCE / smallest_distance)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: one thread is faster than two on a shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_model(hidden=2, brownian="diagonal", level=0.8, seed=0) -> NoisyRNN:
    torch.manual_seed(seed)
    noise = Noise(level, level, brownian)
    return NoisyRNN(2, hidden, 3, dt=0.5, noise=noise).to(DTYPE)


def tiny_batch(batch=2, steps=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, 2, generator=generator, dtype=DTYPE)
    return x, torch.randint(0, 3, (batch,), generator=generator)


# ------------------------------------------------------------------ the property
@st.composite
def quadrature_cases(draw):
    """Tiny cases (≤ 6 noise variables, so 4⁶ quadrature points at most) with an effective
    per-step noise σ√dt ≥ 0.125, so that the ε⁴ distances stay far above float64 rounding."""
    return mc.QuadratureTrainingCase(
        hidden=draw(st.integers(1, 2)),
        steps=draw(st.integers(1, 2)),
        brownian=draw(st.sampled_from(["diagonal", "scalar"])),
        additive=draw(st.floats(0.25, 1.0)),
        multiplicative=draw(st.one_of(st.just(0.0), st.floats(0.25, 1.0))),
        batch=draw(st.integers(1, 2)),
        updates=draw(st.integers(1, 3)),
        lr=draw(st.floats(0.05, 1.0)),
        dt=draw(st.floats(0.25, 1.0)),
        seed=draw(st.integers(0, 10_000)),
    )


@given(case=quadrature_cases())
def test_noise_training_follows_the_explicit_objective_to_fourth_order(case):
    """Exact noise average (quadrature): ‖θⁿ − θᵉ‖ = O(ε⁴) and ‖θⁿ − θᶜ‖ = Θ(ε²).

    Every local slope lies within the band of its order (the neighbouring even orders are
    2 away; odd orders vanish), and the deviation from the order is an O(ε²) correction: it
    is no larger at the smallest ε than at the largest (up to float64 rounding, larger for
    the smallest distances)."""
    result = mc.quadrature_training(case, EPSILONS)
    for key, order in (("noise_explicit", 4.0), ("noise_clean", 2.0)):
        deviation = np.abs(mc.local_slopes(EPSILONS, result[key]) - order)
        assert np.all(deviation <= mc.SLOPE_BAND), (key, deviation, result[key])
        assert deviation[0] <= deviation[-1] + float_floor(result[key][0]), (key, deviation)
    assert np.all(result["noise_explicit"] < result["noise_clean"])


def test_a_wrong_regularizer_fails_the_quadrature_check(monkeypatch):
    """q off by 1 % leaves an ε² part in θⁿ − θᵉ: the check must fail."""
    original = mc.explicit_regularizer

    def wrong(*args, **kwargs):
        result = original(*args, **kwargs)
        return Expansion(result.loss, 1.01 * result.q, result.r)

    monkeypatch.setattr(mc, "explicit_regularizer", wrong)
    check = mc.check_quadrature_training(mc.PROFILES["smoke"], log=lambda message: None)
    assert not check.passed
    assert check.measured["slope_noise_explicit"][0] < 3.5


# ---------------------------------------------------------------- the module
def test_profiles():
    assert set(mc.PROFILES) == {"smoke", "quick", "medium", "full"}
    for sizes in mc.PROFILES.values():
        assert dataclasses.is_dataclass(sizes)
        with pytest.raises(dataclasses.FrozenInstanceError):
            sizes.quadrature = ()
        assert {case.brownian for case in sizes.quadrature} <= {"diagonal", "scalar"}
        assert all(case.replicates >= 2 for case in sizes.monte_carlo)
    for name in ("quick", "medium", "full"):
        cases = mc.PROFILES[name].monte_carlo
        assert {case.brownian for case in cases} == {"diagonal", "scalar"}
        assert {case.brownian for case in mc.PROFILES[name].quadrature} == {"diagonal", "scalar"}


def test_smoke_profile_passes():
    messages = []
    checks = mc.run(mc.PROFILES["smoke"], log=messages.append)
    assert [check.name for check in checks] == ["quadrature_training", "monte_carlo_training"]
    assert messages
    for check in checks:
        assert check.passed, (check.name, check.measured, check.tolerance)
        assert check.claim == 4 and check.seeds and check.seconds > 0 and check.criterion
        assert 0 <= check.false_failure < 1e-4
        json.dumps(check.to_json(), allow_nan=False)
    quadrature, monte_carlo = checks
    assert quadrature.false_failure == 0.0
    assert set(monte_carlo.measured) == {
        "slope_noise_explicit",
        "slope_noise_clean",
        "distance_ratio_at_min_eps",
        "relative_stderr_noise_explicit",
    }
    (case,) = monte_carlo.details["cases"].values()
    assert len(case["slope_noise_explicit"]["per_run"]) == 6
    # The estimator the check relies on is the only one whose spread is below the remainder.
    spread = case["estimator"]["eps=0.05"]
    assert spread["control_variate"]["stderr_norm"] < spread["antithetic"]["stderr_norm"] / 10


# --------------------------------------------------------------- the estimator
def test_second_directional_derivatives_match_the_autograd_hessian():
    model = tiny_model(brownian="scalar")
    x, y = tiny_batch(batch=1, steps=2)
    shape = (1, 2, model.noise_dim)

    def loss(flat_xi):
        return torch.nn.functional.cross_entropy(model(x, flat_xi.view(shape)), y)

    hessian = torch.autograd.functional.hessian(loss, torch.zeros(shape, dtype=DTYPE).flatten())
    directions = torch.randn(5, *shape[1:], generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    measured = mc.second_directional_derivatives(
        model, x.expand(5, -1, -1), y.expand(5), directions
    )
    flat = directions.flatten(1)
    expected = ((flat @ hessian) * flat).sum(1)
    torch.testing.assert_close(measured, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("brownian", ["diagonal", "scalar"])
def test_laplacian_rows_match_the_reverse_mode_oracle(brownian):
    """Forward-over-forward over the coordinate directions = nrnn.noise_laplacian (reverse
    over reverse), in value and, by central differences of the oracle, in gradient."""
    model = tiny_model(hidden=3, brownian=brownian, seed=1)
    x, y = tiny_batch(batch=2, steps=3, seed=1)
    rows = mc.laplacian_rows(2, 3, model.noise_dim, 1.0)
    value, gradient = mc.weighted_value_and_gradient(model, x, y, curvature_rows=rows)
    assert value == pytest.approx(float(noise_laplacian(model, x, y).sum()), rel=1e-10)

    theta = mc.flat_parameters(model)
    direction = torch.randn(len(theta), generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    step = 1e-5
    shifted = [
        float(
            noise_laplacian(mc.load_parameters(model, theta + sign * step * direction), x, y).sum()
        )
        for sign in (1.0, -1.0)
    ]
    central = (shifted[0] - shifted[1]) / (2 * step)
    assert float(gradient @ direction) == pytest.approx(central, rel=1e-6)


def test_control_variate_leaves_only_fourth_order_per_path():
    """Per path, ½[ℓ(ξ) + ℓ(−ξ)] − ½ ξᵀHξ − ℓ(0) is O(ε⁴) (antithetic alone: O(ε²)):
    fixed paths, noise scaled by ε, log-log slopes of the largest per-path deviation."""
    base = tiny_model(brownian="diagonal", seed=4)
    x, y = tiny_batch(batch=1, steps=2, seed=4)
    xi = torch.randn(
        1, 1, 2, base.noise_dim, generator=torch.Generator().manual_seed(5), dtype=DTYPE
    )
    epsilons = np.geomspace(0.01, 0.08, 4)
    with_control, antithetic_only = [], []
    for epsilon in epsilons:
        model = mc.scaled_model(base, float(epsilon))
        clean = float(mc.clean_objective(model, x, y).detach())
        loss_rows, curvature_rows = mc.control_variate_rows(xi)
        paths_only = dataclasses.replace(
            curvature_rows, weights=curvature_rows.weights * (curvature_rows.weights < 0)
        )
        pair = mc.weighted_value_and_gradient(model, x, y, loss_rows, need_gradient=False)[0]
        corrected = mc.weighted_value_and_gradient(
            model, x, y, loss_rows, paths_only, need_gradient=False
        )[0]
        antithetic_only.append(abs(pair - clean))
        with_control.append(abs(corrected - clean))
    assert mc.log_slope(epsilons, np.array(antithetic_only)) == pytest.approx(2.0, abs=0.05)
    assert mc.log_slope(epsilons, np.array(with_control)) == pytest.approx(4.0, abs=0.05)


@pytest.mark.parametrize("level", [0.25, 0.5])
def test_control_variate_estimator_is_unbiased(level):
    """The mean of independent estimates (value and gradient) equals the quadrature value
    and gradient within t standard errors: Student t with runs − 1 degrees of freedom for a
    false-failure probability of 1e-5 over every compared number (Bonferroni).

    The quadrature (6 nodes) is exact up to O(ε¹²); its change from 5 nodes, an estimate of
    the 5-node error, must stay below 0.1 standard errors, where a bias moves the
    false-failure probability by at most a factor e^(0.1 t) ≈ 2. The lower level resolves
    errors of the ε² terms (the trace), the higher one errors of order ε⁴ (the remainder)."""
    model = tiny_model(hidden=2, brownian="scalar", level=level, seed=6)
    x, y = tiny_batch(batch=2, steps=2, seed=6)
    exact = [
        mc.weighted_value_and_gradient(model, x, y, mc.quadrature_rows(model, 2, 2, nodes))
        for nodes in (5, 6)
    ]
    runs = 40
    estimates = []
    for replicate in range(runs):
        xi = mc.path_noise(7, replicate, 0, (2, 16, 2, model.noise_dim))
        loss_rows, curvature_rows = mc.control_variate_rows(xi)
        value, gradient = mc.weighted_value_and_gradient(model, x, y, loss_rows, curvature_rows)
        estimates.append(torch.cat([torch.tensor([value], dtype=DTYPE), gradient]))
    mean, stderr = mean_and_stderr(torch.stack(estimates))
    target, previous = (
        torch.cat([torch.tensor([value], dtype=DTYPE), gradient]) for value, gradient in exact
    )
    informative = stderr > 0  # parameters the loss does not depend on have zero gradient
    assert informative.sum() > 10
    assert torch.all((target - previous).abs()[informative] < 0.1 * stderr[informative])
    comparisons = int(informative.sum())
    t = stats.t.ppf(1 - 1e-5 / (2 * comparisons), runs - 1)
    scores = ((mean - target).abs() / stderr)[informative]
    assert float(scores.max()) <= t, float(scores.max())


def test_setup_is_seeded_and_leaves_the_global_generator_alone():
    case = mc.PROFILES["smoke"].monte_carlo[0]
    state = torch.get_rng_state()
    first, batches = mc.monte_carlo_setup(case)
    assert torch.equal(torch.get_rng_state(), state)
    second, again = mc.monte_carlo_setup(case)
    assert torch.equal(mc.flat_parameters(first), mc.flat_parameters(second))
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(batches, again, strict=True)
    )
    assert len(batches) == case.updates and batches[0][0].shape[0] == case.batch


def test_path_noise_is_common_across_calls_and_independent_across_runs():
    first = mc.path_noise(3, 0, 1, (2, 3, 4))
    assert torch.equal(first, mc.path_noise(3, 0, 1, (2, 3, 4)))
    assert not torch.equal(first, mc.path_noise(3, 1, 1, (2, 3, 4)))
    assert not torch.equal(first, mc.path_noise(3, 0, 2, (2, 3, 4)))


def test_sgd_is_plain_gradient_descent():
    """On ½‖θ‖² every step multiplies θ by (1 − lr)."""
    theta0 = torch.tensor([1.0, -2.0], dtype=DTYPE)
    batches = [(None, None)] * 3
    final = mc.sgd(theta0, batches, 0.25, lambda theta, step, x, y: theta)
    torch.testing.assert_close(final, theta0 * 0.75**3)
