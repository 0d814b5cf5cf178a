"""nrnn.stability: the contraction rate, the bounds, the measured Lyapunov exponents, bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._pytree import tree_map

from nrnn import Noise, NoisyRNN, ReferenceNoise, stability
from nrnn._generated import stability as generated
from nrnn.catalogue import MODEL_CASES, em_scalar_exponent, linear_model

from independent import mean_and_standard_error, normal_quantile

FALSE_FAILURE = 1e-4  # per statistical test


def direct_kappa(model: NoisyRNN) -> float:
    """λ_max(sym A) + ‖W‖₂ with numpy, from the public matrices."""
    A, W = (m.detach().double().numpy() for m in model.matrices())
    return float(np.linalg.eigvalsh((A + A.T) / 2).max() + np.linalg.svd(W, compute_uv=False).max())


def small_model(noise=None, seed=0, hidden_dim=4, **kwargs) -> NoisyRNN:
    torch.manual_seed(seed)
    return NoisyRNN(3, hidden_dim, 2, noise=Noise() if noise is None else noise, **kwargs)


# ----------------------------------------------------------------------- contraction rate
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"antisymmetric": True},
        {"beta": 0.0, "gamma_a": -0.3},
        {"noise": ReferenceNoise(0.1, 0.5)},
    ],
)
def test_contraction_rate_matches_direct_computation(kwargs):
    model = small_model(**kwargs)
    assert stability.contraction_rate(model).item() == pytest.approx(direct_kappa(model), abs=1e-5)


def test_contraction_rate_of_antisymmetric_baseline_is_norm_of_w():
    model = small_model(antisymmetric=True)
    _, W = model.matrices()
    assert stability.contraction_rate(model).item() == pytest.approx(
        torch.linalg.matrix_norm(W, ord=2).item(), abs=1e-6
    )


@given(
    seed=st.integers(0, 2**31 - 1),
    hidden_dim=st.integers(1, 6),
    beta=st.floats(0.0, 1.0),
    gamma_a=st.floats(-1.0, 1.0),
    gamma_w=st.floats(-1.0, 1.0),
    init_std=st.floats(0.0, 3.0),
    antisymmetric=st.booleans(),
)
def test_contraction_rate_property(
    seed, hidden_dim, beta, gamma_a, gamma_w, init_std, antisymmetric
):
    model = small_model(
        seed=seed,
        hidden_dim=hidden_dim,
        beta=beta,
        gamma_a=gamma_a,
        gamma_w=gamma_w,
        init_std=init_std,
        antisymmetric=antisymmetric,
    )
    expected = direct_kappa(model)
    assert stability.contraction_rate(model).item() == pytest.approx(expected, abs=1e-4, rel=1e-5)


def test_contraction_rate_is_differentiable():
    model = small_model().double()
    stability.contraction_rate(model).backward()
    for parameter in (model.M_A, model.M_W):
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all()
        assert parameter.grad.abs().sum() > 0
    # Matches a finite difference along a random direction.
    model.zero_grad()
    direction = torch.randn_like(model.M_W)
    kappa = stability.contraction_rate(model)
    kappa.backward()
    with torch.no_grad():
        model.M_W += 1e-6 * direction
        moved = stability.contraction_rate(model)
    slope = ((moved - kappa) / 1e-6).item()
    assert slope == pytest.approx((model.M_W.grad * direction).sum().item(), rel=1e-4, abs=1e-6)


# -------------------------------------------------------------------------------- bounds
@pytest.mark.parametrize("brownian", ["scalar", "diagonal"])
@pytest.mark.parametrize("sigma", [0.0, 0.4, 1.7])
def test_bounds_are_the_generated_formulas(brownian, sigma):
    model = small_model(Noise(0.2, sigma, brownian), hidden_dim=5)
    kappa = direct_kappa(model)
    if brownian == "scalar":
        expected = kappa - sigma**2 / 2
        assert float(generated.almost_sure_bound_scalar(kappa, sigma)) == pytest.approx(expected)
    else:
        expected = kappa + sigma**2 * (0.5 - 1 / 5)
        got = generated.almost_sure_bound_diagonal(kappa, sigma, 5)
        assert float(got) == pytest.approx(expected)
    assert stability.almost_sure_bound(model).item() == pytest.approx(expected, abs=1e-5)
    assert float(generated.mean_square_bound(kappa, sigma)) == pytest.approx(kappa + sigma**2 / 2)
    assert stability.mean_square_bound(model).item() == pytest.approx(
        kappa + sigma**2 / 2, abs=1e-5
    )


def test_bounds_without_multiplicative_noise_are_kappa():
    model = small_model(Noise(additive=0.5))
    kappa = stability.contraction_rate(model).item()
    assert stability.almost_sure_bound(model).item() == pytest.approx(kappa)
    assert stability.mean_square_bound(model).item() == pytest.approx(kappa)


def test_diagonal_bound_for_one_unit_equals_scalar_bound():
    scalar = small_model(Noise(0.0, 0.9, "scalar"), hidden_dim=1)
    diagonal = small_model(Noise(0.0, 0.9, "diagonal"), hidden_dim=1)
    assert stability.almost_sure_bound(diagonal).item() == pytest.approx(
        stability.almost_sure_bound(scalar).item()
    )


def test_stabilising_noise_level_zeroes_the_scalar_bound():
    model = small_model(gamma_a=-0.5)
    level = stability.stabilising_noise_level(model).item()
    assert level > 0
    noisy = small_model(Noise(0.0, level, "scalar"), gamma_a=-0.5)
    assert stability.almost_sure_bound(noisy).item() == pytest.approx(0.0, abs=1e-5)
    contracting = small_model(gamma_a=3.0, gamma_w=0.0, init_std=0.1)
    assert stability.contraction_rate(contracting).item() < 0
    assert stability.stabilising_noise_level(contracting).item() == 0.0


@pytest.mark.parametrize(
    "function",
    [
        stability.almost_sure_bound,
        stability.mean_square_bound,
        stability.em_almost_sure_bound,
        stability.em_mean_square_bound,
    ],
)
def test_bounds_refuse_reference_noise(function):
    with pytest.raises(NotImplementedError, match="paper"):
        function(small_model(ReferenceNoise(0.1, 0.5)))


@pytest.mark.parametrize(
    "function",
    [stability.contraction_rate, stability.almost_sure_bound, stability.lyapunov_exponent],
)
def test_functions_refuse_non_models(function):
    with pytest.raises(TypeError, match="NoisyRNN"):
        if function is stability.lyapunov_exponent:
            function(torch.nn.Linear(2, 2), torch.zeros(1, 3, 2), paths=2, seed=0)
        else:
            function(torch.nn.Linear(2, 2))


def test_em_almost_sure_bound_tends_to_the_continuous_bound():
    """The EM-map bound differs from κ − σ₂²/2 by O(dt)."""
    gaps = []
    for dt in (0.01, 0.001):
        model = small_model(Noise(0.0, 1.2, "scalar"), dt=dt).double()
        gap = stability.em_almost_sure_bound(model) - stability.almost_sure_bound(model)
        gaps.append(gap.item())
    assert abs(gaps[1]) < abs(gaps[0]) / 5
    assert abs(gaps[1]) < 0.01


def test_em_almost_sure_bound_of_a_linear_scalar_system_is_its_exact_exponent():
    """With W = 0 and d = 1 the bound is E log|1 + a dt + s√dt ξ| / dt exactly."""
    model = linear_model(np.array([[0.4]]), 1.1, "scalar", 0.01)
    assert stability.em_almost_sure_bound(model).item() == pytest.approx(
        em_scalar_exponent(0.4, 1.1, 0.01), abs=1e-6
    )


def test_em_almost_sure_bound_needs_a_scalar_brownian_motion():
    with pytest.raises(ValueError, match="scalar"):
        stability.em_almost_sure_bound(small_model(Noise(0.0, 1.0, "diagonal")))


def test_em_mean_square_bound_tends_to_the_continuous_bound():
    model = small_model(Noise(0.3, 0.8, "diagonal"), dt=1e-4).double()
    assert stability.em_mean_square_bound(model).item() == pytest.approx(
        stability.mean_square_bound(model).item(), abs=2e-3
    )


# ------------------------------------------------------------- linear systems, exactly
def test_em_mean_square_matrix_against_numpy():
    generator = np.random.default_rng(1)
    A, B, dt = generator.normal(size=(3, 3)), generator.normal(size=(2, 3, 3)), 0.05
    step = np.eye(3) + dt * A
    expected = np.kron(step, step) + dt * sum(np.kron(b, b) for b in B)
    got = stability.em_mean_square_matrix(torch.as_tensor(A), torch.as_tensor(B), dt)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
    # Its action is the second-moment step: E[(SX + √dt Σ ξᵢBᵢX)(·)ᵀ] = S P Sᵀ + dt Σ Bᵢ P Bᵢᵀ.
    P = generator.normal(size=(3, 3))
    P = P @ P.T
    stepped = step @ P @ step.T + dt * sum(b @ P @ b.T for b in B)
    np.testing.assert_allclose((got.numpy() @ P.reshape(-1)).reshape(3, 3), stepped, atol=1e-12)


def test_em_mean_square_exponent_scalar_closed_form():
    a, s, dt = -0.3, 0.9, 0.01
    exponent = stability.em_mean_square_exponent(
        torch.tensor([[a]]).double(), stability.linear_noise_matrices(1, s), dt
    )
    assert float(exponent) == pytest.approx(math.log((1 + a * dt) ** 2 + s**2 * dt) / (2 * dt))
    assert (
        bool(
            stability.em_mean_square_stable(
                torch.tensor([[a]]).double(), stability.linear_noise_matrices(1, s), dt
            )
        )
        is False
    )
    assert (
        bool(
            stability.em_mean_square_stable(
                torch.tensor([[-1.0]]).double(), stability.linear_noise_matrices(1, s), dt
            )
        )
        is True
    )


def test_em_mean_square_matrix_refuses_bad_shapes():
    with pytest.raises(ValueError, match="noise_matrices"):
        stability.em_mean_square_matrix(torch.eye(2), torch.eye(2), 0.1)
    with pytest.raises(ValueError, match="brownian"):
        stability.linear_noise_matrices(2, 1.0, "per-unit")


def test_linear_noise_matrices():
    scalar = stability.linear_noise_matrices(3, 0.5, "scalar")
    diagonal = stability.linear_noise_matrices(3, 0.5, "diagonal")
    assert scalar.shape == (1, 3, 3) and diagonal.shape == (3, 3, 3)
    torch.testing.assert_close(diagonal.sum(0), scalar[0])


# ------------------------------------------------------------------ measured exponents
def test_lyapunov_exponent_of_scalar_noise_linear_system():
    """dX = aX dt + sX dB: measured ≈ a − s²/2 within z·SE plus the O(dt) EM bias, and ≈ the
    exact EM exponent within z·SE (fixed seed; false failure ≤ 1e-4 for the pair)."""
    a, s, dt = 0.3, 1.0, 0.01
    model = linear_model(np.array([[a]]), s, "scalar", dt)
    estimate = stability.lyapunov_exponent(
        model, torch.zeros(1, 1, 1), paths=64, seed=3, steps=4000
    )
    z = normal_quantile(FALSE_FAILURE, 2)
    exact = em_scalar_exponent(a, s, dt)
    assert estimate.paths == 64 and estimate.steps == 4000
    assert estimate.time == pytest.approx(40.0)
    # the tolerance from the per-path exponents, computed here, not the estimator's own
    mean, standard_error = (float(v) for v in mean_and_standard_error(estimate.samples))
    assert estimate.exponent == pytest.approx(mean, rel=1e-12)
    assert estimate.stderr == pytest.approx(standard_error, rel=1e-9)
    assert abs(estimate.exponent - exact) <= z * standard_error
    bias = abs(exact - (a - s**2 / 2))
    assert bias < 0.01
    assert abs(estimate.exponent - (a - s**2 / 2)) <= z * standard_error + bias


def test_lyapunov_exponent_of_a_deterministic_linear_map_is_exact():
    """No noise, W = 0: the exponent is max log|1 + dt λ| / dt (normal A, no transient)."""
    A = np.array([[0.2, -1.0], [1.0, 0.2]])
    model = linear_model(A, 0.0, "scalar", 0.01)
    estimate = stability.lyapunov_exponent(model, torch.zeros(1, 1, 1), paths=4, seed=0, steps=500)
    assert estimate.exponent == pytest.approx(math.log(abs(1 + 0.01 * (0.2 + 1j))) / 0.01, abs=1e-8)


@pytest.mark.parametrize("a", [-60.0, 60.0])
def test_renormalisation_survives_strong_contraction_and_expansion(a):
    """Growth factor |1 + a dt| per step over 5 000 steps: e^(±2300) without renormalisation."""
    dt = 0.01
    model = linear_model(np.array([[a, 0.0], [0.0, a - 1.0]]), 0.5, "scalar", dt)
    estimate = stability.lyapunov_exponent(
        model, torch.zeros(1, 1, 1), paths=8, seed=1, steps=5_000
    )
    assert math.isfinite(estimate.exponent) and math.isfinite(estimate.stderr)
    assert torch.isfinite(estimate.samples).all()
    exact = max(em_scalar_exponent(a, 0.5, dt), em_scalar_exponent(a - 1.0, 0.5, dt))
    _, standard_error = mean_and_standard_error(estimate.samples)
    assert (
        abs(estimate.exponent - exact)
        <= normal_quantile(FALSE_FAILURE) * float(standard_error) + 1e-6
    )


def test_separation_stays_resolvable_when_the_state_grows():
    """The state grows by 1.2 per step to ~1e220; the exponent is still measured, and a
    state that overflows gives a clear error."""
    model = linear_model(np.array([[20.0]]), 0.0, "scalar", 0.01)
    with torch.no_grad():
        model.input.bias.fill_(1.0)  # tanh(1) drives h away from 0
    estimate = stability.lyapunov_exponent(model, torch.zeros(1, 1, 1), paths=2, seed=0, steps=2800)
    assert estimate.exponent == pytest.approx(math.log(1.2) / 0.01, abs=1e-6)
    with pytest.raises(ValueError, match="could not be estimated"):
        stability.lyapunov_exponent(model, torch.zeros(1, 1, 1), paths=2, seed=0, steps=4000)


def test_linearised_matches_two_trajectory_estimate_on_a_nonlinear_model():
    model = small_model(Noise(0.3, 0.8, "scalar"), hidden_dim=5, dt=0.05)
    x = torch.randn(6, 40, 3)
    two = stability.lyapunov_exponent(model, x, paths=6, seed=11, steps=600, burn_in=20)
    tangent = stability.linearised_lyapunov_exponent(
        model, x, paths=6, seed=11, steps=600, burn_in=20
    )
    torch.testing.assert_close(two.samples, tangent.samples, atol=1e-6, rtol=0)


def test_linearised_spectrum_of_a_linear_map():
    """Diagonal A, no noise: the exponents are log|1 + dt λᵢ| / dt, largest first (up to the
    e^{-gap t} misalignment left after the burn-in); their sum (volume growth) is exact."""
    eigenvalues, dt = [0.5, -0.2, -1.5], 0.01
    model = linear_model(np.diag(eigenvalues), 0.0, "scalar", dt)
    estimate = stability.linearised_lyapunov_exponent(
        model, torch.zeros(1, 1, 1), paths=3, seed=0, steps=1000, count=3, burn_in=1000
    )
    expected = torch.tensor(
        [math.log(1 + dt * lam) / dt for lam in eigenvalues], dtype=torch.float64
    )
    torch.testing.assert_close(estimate.spectrum, expected, atol=1e-3, rtol=0)
    assert estimate.exponent == pytest.approx(float(expected[0]), abs=1e-3)
    assert float(estimate.spectrum.sum()) == pytest.approx(float(expected.sum()), abs=1e-9)


def _sample(terms, index: int):
    """The step terms of one path (row ``index``); a float drift step is shared."""
    return type(terms)(
        *(t[index : index + 1] if isinstance(t, torch.Tensor) and t.ndim == 2 else t for t in terms)
    )


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda case: case.label)
def test_tangent_step_is_the_jacobian_of_the_euler_step(case):
    """For every cell and noise: V' = V + s ⊙ (F V) + m ⊙ V is ∂(euler_step)/∂h V."""
    model, _, _ = case.build()
    parameters = tree_map(
        lambda p: p.detach() if isinstance(p, torch.Tensor) else p, model.cell.drift_parameters()
    )
    n = model.state_dim
    h = torch.randn(3, n, dtype=torch.float64)
    drive = torch.randn(3, model.cell.drive_dim, dtype=torch.float64)
    xi = model.noise.sample((3, model.noise_dim), dtype=torch.float64, device="cpu")
    (terms,) = model.noise.step_terms(
        xi[None], steps=1, dt=model.dt, parameters=model.noise_parameters
    )
    terms = type(terms)(*(t.detach() if isinstance(t, torch.Tensor) else t for t in terms))
    tangents = torch.randn(3, n, 2, dtype=torch.float64)
    point = model.cell.linearisation(h, drive, parameters)
    got = stability.exponents._tangent_step(
        model.cell.derivatives(), point, parameters, tangents, terms
    )
    for path in range(3):

        def one_step(state, path=path):
            terms_of_path = _sample(terms, path)
            return model.euler_step(state[None], drive[path : path + 1], parameters, terms_of_path)[
                0
            ]

        jacobian = torch.autograd.functional.jacobian(one_step, h[path])
        torch.testing.assert_close(got[path], jacobian.detach() @ tangents[path])


def test_reference_noise_models_can_be_measured():
    model = small_model(ReferenceNoise(0.05, 0.6), hidden_dim=4)
    x = torch.randn(1, 50, 3)
    two = stability.lyapunov_exponent(model, x, paths=4, seed=2, steps=200)
    tangent = stability.linearised_lyapunov_exponent(model, x, paths=4, seed=2, steps=200)
    assert math.isfinite(two.exponent)
    torch.testing.assert_close(two.samples, tangent.samples, atol=1e-6, rtol=0)


def test_seed_reproduces_and_leaves_the_global_generator_alone():
    model = small_model(Noise(0.3, 0.8, "diagonal"))
    x = torch.randn(1, 30, 3)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = stability.lyapunov_exponent(model, x, paths=4, seed=5, steps=100)
    assert torch.equal(torch.random.get_rng_state(), before)
    second = stability.lyapunov_exponent(model, x, paths=4, seed=5, steps=100)
    other = stability.lyapunov_exponent(model, x, paths=4, seed=6, steps=100)
    assert torch.equal(first.samples, second.samples)
    assert not torch.equal(first.samples, other.samples)


def test_explicit_noise_replays_the_run():
    model = small_model(Noise(0.3, 0.8, "scalar"))
    x = torch.randn(4, 30, 3)
    xi = torch.randn(4, 30, model.noise_dim)
    first = stability.lyapunov_exponent(model, x, paths=4, seed=1, xi=xi)
    second = stability.lyapunov_exponent(model, x, paths=4, seed=1, xi=xi.clone())
    assert first.steps == 30
    assert torch.equal(first.samples, second.samples)


def test_inputs_are_held_beyond_the_sequence():
    model = small_model(Noise(0.3, 0.8, "scalar"))
    x = torch.randn(1, 10, 3)
    held = torch.cat([x, x[:, -1:].expand(-1, 40, -1)], dim=1)
    short = stability.lyapunov_exponent(model, x, paths=3, seed=4, steps=50)
    long = stability.lyapunov_exponent(model, held, paths=3, seed=4)
    torch.testing.assert_close(short.samples, long.samples)


# ------------------------------------------------------------------------- bad input
BAD_CALLS = [
    ({"paths": 1}, "paths"),
    ({"paths": 0}, "paths"),
    ({"steps": 1}, "steps"),
    ({"burn_in": -1}, "burn_in"),
    ({"initial_separation": 0.0}, "initial_separation"),
    ({"initial_separation": float("nan")}, "initial_separation"),
    ({"x": torch.zeros(3, 20, 3)}, "shape"),
    ({"x": torch.zeros(1, 20, 2)}, "shape"),
    ({"x": torch.zeros(20, 3)}, "shape"),
    ({"x": torch.full((1, 20, 3), float("nan"))}, "NaN"),
    ({"x": torch.zeros(1, 1, 3)}, "too few steps"),
    ({"x": torch.zeros(1, 20, 3), "burn_in": 19}, "too few steps"),
    ({"xi": torch.zeros(4, 19, 5)}, "xi"),
    ({"xi": torch.full((4, 20, 5), float("inf"))}, "xi"),
]


ESTIMATOR_CASES = [
    (estimator, override, message)
    for estimator in (stability.lyapunov_exponent, stability.linearised_lyapunov_exponent)
    for override, message in BAD_CALLS
    # The tangent estimator has no separation.
    if not (
        estimator is stability.linearised_lyapunov_exponent and "initial_separation" in override
    )
]


@pytest.mark.parametrize(
    "estimator,override,message",
    ESTIMATOR_CASES,
    ids=[f"{e.__name__}-{next(iter(o))}-{i}" for i, (e, o, _) in enumerate(ESTIMATOR_CASES)],
)
def test_bad_input_is_refused_with_a_clear_message(estimator, override, message):
    model = small_model(Noise(0.3, 0.8, "scalar"))  # d = 4, r = 5
    arguments = {"x": torch.zeros(1, 20, 3), "paths": 4, "seed": 0}
    arguments.update(override)
    x = arguments.pop("x")
    with pytest.raises(ValueError, match=message):
        estimator(model, x, **arguments)


def test_linearised_count_must_fit_the_hidden_size():
    model = small_model()
    with pytest.raises(ValueError, match="count"):
        stability.linearised_lyapunov_exponent(
            model, torch.zeros(1, 20, 3), paths=2, seed=0, count=5
        )


@pytest.mark.parametrize(
    "override,message",
    [({"x": np.zeros((1, 20, 3))}, "x"), ({"paths": 2.0}, "paths"), ({"seed": 1.5}, "seed")],
)
def test_wrong_types_are_refused(override, message):
    arguments = {"x": torch.zeros(1, 20, 3), "paths": 4, "seed": 0} | override
    with pytest.raises(TypeError, match=message):
        stability.lyapunov_exponent(small_model(), arguments.pop("x"), **arguments)
