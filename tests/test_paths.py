"""The Monte Carlo path simulator (``nrnn.paths.simulate``): bitwise the model's own Euler
step for every cell and noise form, copies with scaled noise, observers, starts, held
inputs, the drawing order, the law of the final state in the exact Gaussian case, and
argument checks."""

from __future__ import annotations

import math

import pytest
import torch

from nrnn.catalogue import MODEL_CASES, gaussian_model
from nrnn.montecarlo import z_threshold
from nrnn.paths import simulate
from nrnn.regularizer import deterministic_path, exact_moments

FALSE_FAILURE = 1e-4  # per statistical test


def _noise(model, x, seed=3):
    generator = torch.Generator().manual_seed(seed)
    shape = (x.shape[0], x.shape[1], model.noise_dim)
    return model.noise.sample(shape, dtype=x.dtype, device="cpu", generator=generator)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda case: case.label)
def test_replay_is_bitwise_the_models_final_state(case, dtype):
    model, x, _ = case.build(dtype)
    xi = _noise(model, x)
    with torch.no_grad():
        expected = model.final_state(x, xi)
    assert torch.equal(simulate(model, x, xi=xi), expected)


@pytest.mark.parametrize("case", MODEL_CASES[:3], ids=lambda case: case.label)
def test_copies_run_the_same_noise_scaled(case):
    model, x, _ = case.build()
    xi = _noise(model, x)
    finals = simulate(model, x, xi=xi, scales=(0.5, -1.0, 2.0))
    assert finals.shape == (3, x.shape[0], model.state_dim)
    with torch.no_grad():
        for copy, scale in zip(finals, (0.5, -1.0, 2.0), strict=True):
            torch.testing.assert_close(copy, model.final_state(x, scale * xi), rtol=0, atol=1e-14)


def test_the_observer_sees_every_state_and_may_change_it():
    model, x, _ = MODEL_CASES[1].build()
    xi = _noise(model, x)
    seen = []
    simulate(model, x, xi=xi, observer=lambda step, states: seen.append((step, states.clone())))
    with torch.no_grad():
        trajectory = model.trajectory(x, xi)
    assert [step for step, _ in seen] == list(range(x.shape[1]))
    for step, states in seen:
        assert torch.equal(states[0], trajectory[:, step + 1])

    def reset(step, states):
        states.zero_()

    zeroed = simulate(model, x, xi=xi, observer=reset)
    assert zeroed.abs().max() == 0


def test_a_start_continues_a_run_exactly():
    model, x, _ = MODEL_CASES[2].build()
    xi = _noise(model, x)
    half = simulate(model, x[:, :2], xi=xi[:, :2])
    rest = simulate(model, x[:, 2:], xi=xi[:, 2:], start=half)
    assert torch.equal(rest, simulate(model, x, xi=xi))


def test_steps_past_the_sequence_hold_its_last_input():
    model, x, _ = MODEL_CASES[0].build()
    held = torch.cat([x, x[:, -1:].expand(-1, 3, -1)], dim=1)
    xi = _noise(model, held)
    assert torch.equal(simulate(model, x, steps=held.shape[1], xi=xi), simulate(model, held, xi=xi))


def test_shared_input_runs_many_paths_and_a_seed_repeats():
    model, x, _ = MODEL_CASES[0].build()

    def run(seed):
        generator = torch.Generator().manual_seed(seed)
        return simulate(model, x[:1], paths=7, generator=generator)

    assert run(1).shape == (7, model.state_dim)
    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))


@pytest.mark.parametrize("case", MODEL_CASES[:3], ids=lambda case: case.label)
def test_drawing_order_is_time_major_chunks(case):
    """chunk_elements=0 draws (1, paths, r) every step, a large chunk (M, paths, r) at once:
    each equals a replay of that noise."""
    model, x, _ = case.build()
    paths, steps, width = x.shape[0], x.shape[1], model.noise_dim
    generator = torch.Generator().manual_seed(9)
    per_step = torch.cat(
        [
            model.noise.sample((1, paths, width), dtype=x.dtype, device="cpu", generator=generator)
            for _ in range(steps)
        ]
    )
    once = model.noise.sample(
        (steps, paths, width),
        dtype=x.dtype,
        device="cpu",
        generator=torch.Generator().manual_seed(9),
    )
    for chunk, noise in ((0, per_step), (1 << 20, once)):
        drawn = simulate(model, x, generator=torch.Generator().manual_seed(9), chunk_elements=chunk)
        assert torch.equal(drawn, simulate(model, x, xi=noise.transpose(0, 1)))


def test_final_state_of_the_exact_gaussian_case_has_the_exact_law():
    """W = 0 and additive noise: h_M ~ N(h̄_M, C_M) exactly, C_M from the covariance
    recursion (independent code). Sample means, variances and the covariance of 40,000
    paths within z standard errors of the Gaussian law's own (SE of a mean √(C_ii/n), of a
    variance C_ii √(2/(n−1)), of a covariance √((C_11 C_22 + C_12²)/(n−1))): 5 comparisons,
    Bonferroni, false failure ≤ 1e-4. Antithetic copies average to h̄_M exactly."""
    model = gaussian_model(hidden=2, level=0.7)
    x = torch.randn(1, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, covariance = exact_moments(deterministic_path(model, x))
        mean = model.final_state(x, torch.zeros(1, 4, model.noise_dim, dtype=torch.float64))[0]
    covariance = covariance[0]
    n = 40_000
    finals = simulate(model, x, paths=n, generator=torch.Generator().manual_seed(4))
    centred = finals - finals.mean(0)
    sample_covariance = centred.T @ centred / (n - 1)
    z = z_threshold(FALSE_FAILURE, 5)
    variances = covariance.diagonal()
    assert ((finals.mean(0) - mean).abs() <= z * (variances / n).sqrt()).all()
    assert (
        (sample_covariance.diagonal() - variances).abs() <= z * variances * math.sqrt(2 / (n - 1))
    ).all()
    cross_se = math.sqrt((variances.prod() + covariance[0, 1] ** 2) / (n - 1))
    assert abs(float(sample_covariance[0, 1] - covariance[0, 1])) <= z * cross_se

    pairs = simulate(model, x, paths=50, generator=torch.Generator().manual_seed(5), scales=(1, -1))
    torch.testing.assert_close(pairs.mean(0), mean.expand(50, -1), rtol=0, atol=1e-12)


def test_a_noise_free_model_draws_nothing():
    model, x, _ = MODEL_CASES[0].build()
    model.noise = type(model.noise)()
    state = torch.random.get_rng_state()
    with torch.no_grad():
        expected = model.final_state(x)
    assert torch.equal(simulate(model, x), expected)
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(paths=5), ValueError, "batch 1 or paths"),
        (dict(xi=torch.zeros(3, 2, 3)), ValueError, "xi must have shape"),
        (dict(scales=()), ValueError, "scales"),
        (dict(scales=(float("nan"),)), ValueError, "scale"),
        (dict(chunk_elements=-1), ValueError, "chunk_elements"),
        (dict(steps=0), ValueError, "steps"),
        (dict(paths=2.5), TypeError, "paths"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    model, x, _ = MODEL_CASES[0].build()
    with pytest.raises(error, match=match):
        simulate(model, x, **kwargs)
