"""The noisy RNN model: shapes, dtypes, the Euler–Maruyama step's moments, bad input."""

import inspect
import math

import pytest
import torch

import nrnn.model as model_module
from nrnn import Noise, NoisyRNN, ReferenceNoise
from nrnn.cells import LipschitzOptions

from independent import mean_and_standard_error, normal_quantile

FALSE_FAILURE = 1e-5  # per statistical test


def reference_drift(model, h, x):
    """f(h, x) = A h + tanh(W h + U x + b), written out from the public parameters."""
    A, W = model.matrices()
    return h @ A.T + torch.tanh(h @ W.T + x @ model.input.weight.T + model.input.bias)


def paper_step_moments(model, h, f):
    """Mean h + dt f and covariance dt σσᵀ of one paper-form step, per sample."""
    noise, dt = model.noise, model.dt
    d = h.shape[-1]
    identity = torch.eye(d, dtype=h.dtype)
    if noise.brownian == "diagonal":
        sigma = noise.additive * identity + noise.multiplicative * torch.diag_embed(h)
    else:
        sigma = torch.cat(
            [
                noise.additive * identity.expand(h.shape[0], d, d),
                noise.multiplicative * h.unsqueeze(-1),
            ],
            dim=-1,
        )
    return h + dt * f, dt * sigma @ sigma.transpose(-1, -2)


def reference_step_moments(model, h, f):
    """Released-code step: mean h + δ(1 − s_m/2) f, covariance s_a² I + (s_m²/12) diag(δ f)²."""
    s_a, s_m = model.noise.additive, model.noise.multiplicative
    step_drift = model.step_size * f
    variance = s_a**2 + s_m**2 / 12 * step_drift**2
    return h + (1 - s_m / 2) * step_drift, torch.diag_embed(variance)


# One table drives the moment test: (noise, expected moments of one step).
STEP_CASES = [
    (Noise(additive=0.3, multiplicative=0.0), paper_step_moments),
    (Noise(additive=0.0, multiplicative=0.8), paper_step_moments),
    (Noise(additive=0.4, multiplicative=0.7, brownian="diagonal"), paper_step_moments),
    (Noise(additive=0.4, multiplicative=0.7, brownian="scalar"), paper_step_moments),
    (ReferenceNoise(additive=0.0, multiplicative=0.9), reference_step_moments),
    (ReferenceNoise(additive=0.05, multiplicative=0.6), reference_step_moments),
]


@pytest.mark.parametrize(
    "noise,moments", STEP_CASES, ids=lambda case: repr(case)[:60] if not callable(case) else ""
)
def test_one_step_mean_and_covariance(noise, moments):
    """Second step of a length-2 sequence from a fixed non-zero state h_1.

    Each mean component and covariance entry is compared with z · (empirical standard
    error), z from a Bonferroni bound over all d + d² comparisons: false failure ≤ 1e-5.
    """
    torch.manual_seed(0)
    d, samples = 4, 40_000
    model = NoisyRNN(3, d, 2, dt=0.05, noise=noise).double()
    x = torch.randn(1, 2, 3, dtype=torch.float64).expand(samples, 2, 3)
    xi = model.noise.sample((samples, 2, model.noise_dim), dtype=torch.float64, device="cpu")
    xi[:, 0] = 0.0  # deterministic first step, so h_1 is the same for every sample
    with torch.no_grad():
        path = model.trajectory(x, xi)
        h1, h2 = path[:1, 1], path[:, 2]
        expected_mean, expected_cov = moments(model, h1, reference_drift(model, h1, x[:1, 1]))
    z = normal_quantile(FALSE_FAILURE, comparisons=d + d * d)
    mean, mean_se = mean_and_standard_error(h2)
    assert torch.all((mean - expected_mean[0]).abs() <= z * mean_se), (mean, expected_mean)
    centred = h2 - expected_mean
    products = centred.unsqueeze(-1) * centred.unsqueeze(-2)
    cov, cov_se = mean_and_standard_error(products)
    assert torch.all((cov - expected_cov[0]).abs() <= z * cov_se + 1e-15), (cov, expected_cov)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "noise", [Noise(0.1, 0.1), Noise(0.1, 0.1, "scalar"), ReferenceNoise(0.1, 0.1)], ids=str
)
def test_shapes_and_dtypes(noise, dtype):
    model = NoisyRNN(3, 5, 4, noise=noise).to(dtype)
    x = torch.randn(2, 7, 3, dtype=dtype)
    assert model(x).shape == (2, 4) and model(x).dtype == dtype
    path = model.trajectory(x)
    assert path.shape == (2, 8, 5) and path.dtype == dtype
    assert torch.all(path[:, 0] == 0)
    A, W = model.matrices()
    assert A.shape == W.shape == (5, 5)
    assert model.noise_dim == {Noise(0.1, 0.1): 5, Noise(0.1, 0.1, "scalar"): 6}.get(noise, 10)


def test_lipschitz_parametrisation():
    model = NoisyRNN(2, 6, 3, beta=0.75, gamma_a=0.2, gamma_w=0.3)
    A, W = model.matrices()
    M = model.M_A.detach()
    expected = 0.25 * (M + M.T) + 0.75 * (M - M.T) - 0.2 * torch.eye(6)
    torch.testing.assert_close(A.detach(), expected)
    # β = 1: W + Wᵀ = −2γ_W I, a skew-symmetric matrix shifted by −γ_W.
    _, W1 = NoisyRNN(2, 6, 3, beta=1.0, gamma_w=0.3).matrices()
    torch.testing.assert_close((W1 + W1.T).detach(), -0.6 * torch.eye(6))


def test_the_default_cells_keywords_have_the_cells_defaults():
    """NoisyRNN takes the default cell's options as keywords; their defaults are the
    cell's own (one place, ``LipschitzOptions``), and every one reaches the cell."""
    keywords = inspect.signature(NoisyRNN.__init__).parameters
    for name, default in model_module._LIPSCHITZ_DEFAULTS.items():
        assert keywords[name].default == default, name
        assert default == getattr(LipschitzOptions(), name), name
    assert set(model_module._LIPSCHITZ_DEFAULTS) == set(keywords) & set(
        LipschitzOptions.__dataclass_fields__
    )


def test_antisymmetric_baseline_has_no_a_term():
    model = NoisyRNN(2, 6, 3, antisymmetric=True, gamma_w=0.1)
    assert model.M_A is None
    A, W = model.matrices()
    assert torch.all(A == 0)
    torch.testing.assert_close((W + W.T).detach(), -0.2 * torch.eye(6))
    x = torch.randn(4, 5, 2)
    h = model.trajectory(x)
    f = torch.tanh(h[:, 0] @ W.T + model.input(x[:, 0]))
    torch.testing.assert_close(h[:, 1], h[:, 0] + model.dt * f)


def test_evaluation_is_deterministic_and_noise_free():
    torch.manual_seed(1)
    model = NoisyRNN(3, 8, 4, noise=Noise(0.5, 0.5))
    x = torch.randn(6, 10, 3)
    model.train()
    assert not torch.equal(model(x), model(x))  # training draws noise
    model.eval()
    clean = model(x)
    assert torch.equal(clean, model(x))
    zero = torch.zeros(6, 10, model.noise_dim)
    torch.testing.assert_close(model(x, zero), clean)


def test_explicit_xi_replays_a_run_in_either_mode():
    torch.manual_seed(2)
    model = NoisyRNN(3, 8, 4, noise=Noise(0.3, 0.3, "scalar"))
    x = torch.randn(5, 9, 3)
    xi = torch.randn(5, 9, model.noise_dim)
    model.train()
    first = model(x, xi)
    model.eval()
    assert torch.equal(first, model(x, xi))


def test_forward_matches_the_last_hidden_state():
    model = NoisyRNN(3, 8, 4, noise=Noise(0.3, 0.3))
    x, xi = torch.randn(5, 9, 3), torch.randn(5, 9, 8)
    torch.testing.assert_close(model(x, xi), model.readout(model.trajectory(x, xi)[:, -1]))


def test_gradients_reach_every_parameter():
    model = NoisyRNN(3, 8, 4, noise=ReferenceNoise(0.1, 0.2))
    model(torch.randn(5, 6, 3)).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"dt": 0.0}, "dt must be a finite number > 0"),
        ({"dt": -0.1}, "dt must be a finite number > 0"),
        ({"dt": math.nan}, "dt must be a finite number > 0"),
        ({"beta": 1.5}, r"beta must be in \[0, 1\]"),
        ({"beta": -0.1}, r"beta must be in \[0, 1\]"),
        ({"gamma_a": math.inf}, "gamma_a must be a finite number"),
    ],
)
def test_bad_model_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NoisyRNN(3, 4, 2, **kwargs)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: Noise(additive=-0.1), "additive must be a finite number >= 0"),
        (lambda: Noise(multiplicative=-1.0), "multiplicative must be a finite number >= 0"),
        (lambda: Noise(brownian="full"), "brownian must be one of"),
        (lambda: ReferenceNoise(additive=-0.1), "additive must be a finite number >= 0"),
        (lambda: ReferenceNoise(multiplicative=1.5), r"multiplicative must be in \[0, 1\]"),
        (lambda: NoisyRNN(0, 4, 2), "input_dim must be an integer >= 1"),
        (lambda: NoisyRNN(3, 4, 2, noise=0.1), "noise must be nrnn.Noise"),
    ],
)
def test_bad_noise_and_sizes(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


@pytest.mark.parametrize(
    "x,xi,message",
    [
        (torch.randn(5, 3), None, r"x must have shape \(batch, M, 3\)"),
        (torch.randn(2, 5, 4), None, r"x must have shape \(batch, M, 3\)"),
        (torch.full((2, 5, 3), math.nan), None, "x contains NaN or inf"),
        (
            torch.randn(2, 5, 3),
            torch.randn(2, 5, 3),
            r"xi must have shape \(batch, M, r\) = \(2, 5, 4\)",
        ),
        (torch.randn(2, 5, 3), torch.randn(2, 4, 4), r"xi must have shape"),
    ],
)
def test_bad_forward_input(x, xi, message):
    model = NoisyRNN(3, 4, 2, noise=Noise(0.1))
    with pytest.raises(ValueError, match=message):
        model(x, xi)
