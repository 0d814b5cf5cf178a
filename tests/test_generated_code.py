"""Generated torch and numpy code: agreement with each other and with direct torch computations.

Inputs are drawn by hypothesis: batch shapes (none, one or two axes), hidden sizes, dtypes
float32 / float64, and scalars given as Python floats or per-batch tensors.
"""

import importlib
import inspect
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nrnn._generated.numpy.activation as np_activation
import nrnn._generated.numpy.cross_entropy as np_cross_entropy
import nrnn._generated.numpy.expansion as np_expansion
import nrnn._generated.numpy.released_noise as np_released
import nrnn._generated.numpy.stability as np_stability
from nrnn._generated import (
    activation,
    cell_lipschitz,
    cross_entropy,
    expansion,
    released_noise,
    stability,
)
from nrnn.catalogue import CELLS, CoRNNCell

TWINS = {
    activation: np_activation,
    expansion: np_expansion,
    stability: np_stability,
    cross_entropy: np_cross_entropy,
    released_noise: np_released,
}
ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "arctan": torch.atan}


@dataclass
class Case:
    batch: tuple
    d: int
    dtype: torch.dtype
    rng: np.random.Generator
    tensor_scalars: bool

    @property
    def numpy_dtype(self):
        return np.float32 if self.dtype == torch.float32 else np.float64

    @property
    def tolerance(self):
        return (
            dict(rtol=2e-4, atol=2e-5)
            if self.dtype == torch.float32
            else dict(rtol=1e-9, atol=1e-11)
        )

    def array(self, *shape, scale=1.0):
        return scale * self.rng.standard_normal(self.batch + shape)

    def positive(self, low=0.05, high=1.0):
        """A scalar level: a Python float, or a per-batch tensor if ``tensor_scalars``."""
        if self.tensor_scalars and self.batch:
            return self.rng.uniform(low, high, self.batch)
        return float(self.rng.uniform(low, high))

    def torch(self, value):
        if isinstance(value, np.ndarray):
            return torch.as_tensor(value, dtype=self.dtype)
        return value

    def numpy(self, value):
        if isinstance(value, np.ndarray):
            return value.astype(self.numpy_dtype)
        return value


@st.composite
def cases(draw, max_d=4):
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    return Case(
        batch=batch,
        d=draw(st.integers(1, max_d)),
        dtype=draw(st.sampled_from([torch.float32, torch.float64])),
        rng=np.random.default_rng(draw(st.integers(0, 2**32 - 1))),
        tensor_scalars=draw(st.booleans()),
    )


def both(case: Case, module, name: str, *args):
    """Call the torch function and its numpy twin; check they agree; return the torch result."""
    torch_result = getattr(module, name)(*[case.torch(a) for a in args])
    numpy_result = getattr(TWINS[module], name)(*[case.numpy(a) for a in args])
    torch_array = (
        torch_result.detach().numpy()
        if isinstance(torch_result, torch.Tensor)
        else np.asarray(torch_result)
    )
    assert torch_array.shape == np.shape(numpy_result)
    np.testing.assert_allclose(torch_array, numpy_result, **case.tolerance)
    if isinstance(torch_result, torch.Tensor):
        assert torch_result.dtype == case.dtype
    return torch_result


def close(case: Case, actual, expected):
    actual = (
        actual.detach().double()
        if isinstance(actual, torch.Tensor)
        else torch.as_tensor(actual, dtype=torch.float64)
    )
    expected = (
        expected.detach().double()
        if isinstance(expected, torch.Tensor)
        else torch.as_tensor(expected, dtype=torch.float64)
    )
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, **case.tolerance)


def lifted(value, trailing):
    """A scalar level as a float64 tensor broadcasting against ``trailing`` axes."""
    value = torch.as_tensor(value, dtype=torch.float64)
    return value.reshape(value.shape + (1,) * trailing)


def f64(value):
    return torch.as_tensor(value, dtype=torch.float64)


def column_major(matrix: torch.Tensor) -> torch.Tensor:
    """vec(M): the columns of a (d, d) matrix stacked into (d²,)."""
    return matrix.T.reshape(-1)


@settings(deadline=None)
@given(cases(), st.sampled_from(sorted(ACTIVATIONS)))
def test_activation_derivatives_match_autograd(case, name):
    z = case.array(case.d, scale=2.0)
    first = both(case, activation, f"{name}_prime", z)
    second = both(case, activation, f"{name}_second", z)
    variable = f64(z).requires_grad_(True)
    value = ACTIVATIONS[name](variable).sum()
    (gradient,) = torch.autograd.grad(value, variable, create_graph=True)
    (curvature,) = torch.autograd.grad(gradient.sum(), variable)
    close(case, first, gradient)
    close(case, second, curvature)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_lipschitz_constants_are_the_largest_slopes(name):
    grid = torch.linspace(-20, 20, 400_001, dtype=torch.float64)
    largest = float(getattr(activation, f"{name}_prime")(grid).abs().max())
    assert getattr(activation, f"{name}_lipschitz")() == pytest.approx(largest, rel=1e-9)


NUMPY_ACTIVATIONS = {
    torch.tanh: np.tanh,
    torch.atan: np.arctan,
    torch.sigmoid: lambda z: 1 / (1 + np.exp(-z)),
}


def _numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().numpy()
    return NUMPY_ACTIVATIONS.get(value, value)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_cell_formulas_match_autograd_and_their_numpy_twins(name):
    """Every generated function of a cell, at a random point: the drift equals the cell's
    torch drift; F, v, ∇f[y], ∇²f[y, y] equal autograd of it; the numpy twin agrees."""
    torch.manual_seed(7)
    cell = CELLS[name](3).double()
    formulas = cell.formulas
    twin = importlib.import_module(f"nrnn._generated.numpy.{formulas.__name__.split('.')[-1]}")
    parameters = cell.drift_parameters()
    state = torch.randn(2, cell.state_dim, dtype=torch.float64)
    drive = torch.randn(2, cell.drive_dim, dtype=torch.float64)
    direction = torch.randn(2, cell.state_dim, dtype=torch.float64)
    factor = torch.randn(2, cell.state_dim, cell.state_dim, dtype=torch.float64)
    covariance = factor @ factor.transpose(-1, -2)
    point = cell.linearisation(state, drive, parameters)
    arguments = cell.formula_arguments(point, parameters) | {
        "direction": direction,
        "covariance": covariance,
        "dt": 0.3,
    }

    def call(module, function):
        names = inspect.signature(getattr(module, function)).parameters
        picked = {k: arguments[k] for k in names}
        if module is twin:
            picked = {k: _numpy(v) for k, v in picked.items()}
        return getattr(module, function)(**picked)

    def drift(h, c):
        return cell.drift(h, c, parameters)

    jacobian = torch.func.vmap(torch.func.jacrev(drift))(state, drive)
    hessian = torch.func.vmap(torch.func.hessian(drift))(state, drive)
    identity = torch.eye(cell.state_dim, dtype=torch.float64)
    expected = {
        "drift": drift(state, drive),
        "drift_jacobian": jacobian,
        "step_jacobian": identity + 0.3 * jacobian,
        "curvature": torch.einsum("bijk,bjk->bi", hessian, covariance),
        "drift_differential": torch.einsum("bij,bj->bi", jacobian, direction),
        "drift_second_differential": torch.einsum("bijk,bj,bk->bi", hessian, direction, direction),
    }
    for function, value in expected.items():
        generated = call(formulas, function)
        torch.testing.assert_close(generated, value, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(
            call(twin, function), value.detach().numpy(), rtol=1e-10, atol=1e-12
        )


def test_oscillator_linear_rate_is_the_top_eigenvalue_of_sym_l():
    cell = CoRNNCell(2, gamma=2.7, epsilon=4.7).double()
    linear = cell.stability_split(cell.drift_parameters()).linear
    top = torch.linalg.eigvalsh(0.5 * (linear + linear.T))[-1]
    assert stability.oscillator_linear_rate(2.7, 4.7) == pytest.approx(float(top), abs=1e-12)


@settings(deadline=None)
@given(cases())
def test_diffusion_matrices(case):
    d = case.d
    h = case.array(d)
    sigma_add, sigma_mult = case.positive(), case.positive()
    diagonal = both(case, expansion, "diffusion_diagonal", h, sigma_add, sigma_mult)
    scalar = both(case, expansion, "diffusion_scalar", h, sigma_add, sigma_mult)
    identity = torch.eye(d, dtype=torch.float64)
    close(
        case,
        diagonal,
        lifted(sigma_add, 2) * identity + lifted(sigma_mult, 2) * torch.diag_embed(f64(h)),
    )
    expected = torch.cat(
        [
            (lifted(sigma_add, 2) * identity).expand(case.batch + (d, d)),
            (lifted(sigma_mult, 1) * f64(h))[..., None],
        ],
        dim=-1,
    )
    close(case, scalar, expected)


@settings(deadline=None)
@given(cases(), st.integers(1, 5))
def test_covariance_and_mean_steps(case, noise_dimension):
    d = case.d
    covariance = case.array(d, d)
    covariance = covariance @ np.swapaxes(covariance, -1, -2)
    jacobian = case.array(d, d)
    diffusion = case.array(d, noise_dimension)
    mean = case.array(d)
    dt = case.positive(0.01, 0.5)
    step = both(case, expansion, "covariance_step", covariance, jacobian, diffusion, dt)
    J, C, S = f64(jacobian), f64(covariance), f64(diffusion)
    close(
        case,
        step,
        torch.einsum("...ij,...jk,...lk->...il", J, C, J) + lifted(dt, 2) * S @ S.transpose(-1, -2),
    )
    curvature = case.array(d)
    new_mean = both(case, expansion, "mean_step", mean, jacobian, curvature, dt)
    close(
        case,
        new_mean,
        torch.einsum("...ij,...j->...i", J, f64(mean)) + lifted(dt, 1) / 2 * f64(curvature),
    )


@settings(deadline=None)
@given(cases(), st.integers(1, 5))
def test_continuous_time_right_hand_sides(case, noise_dimension):
    d = case.d
    covariance, drift_jacobian = case.array(d, d), case.array(d, d)
    diffusion, mean, contraction = case.array(d, noise_dimension), case.array(d), case.array(d)
    rhs = both(case, expansion, "covariance_rhs", covariance, drift_jacobian, diffusion)
    F, C, S = f64(drift_jacobian), f64(covariance), f64(diffusion)
    close(case, rhs, F @ C + C @ F.transpose(-1, -2) + S @ S.transpose(-1, -2))
    mean_rhs = both(case, expansion, "mean_rhs", mean, drift_jacobian, contraction)
    close(case, mean_rhs, torch.einsum("...ij,...j->...i", F, f64(mean)) + f64(contraction) / 2)


@settings(deadline=None)
@given(cases())
def test_q_and_r_terms(case):
    d = case.d
    gradient, mean = case.array(d), case.array(d)
    hessian, covariance = case.array(d, d), case.array(d, d)
    q = both(case, expansion, "q_term", gradient, mean)
    r = both(case, expansion, "r_term", hessian, covariance)
    close(case, q, 2 * (f64(gradient) * f64(mean)).sum(-1))
    close(case, r, torch.diagonal(f64(hessian) @ f64(covariance), dim1=-2, dim2=-1).sum(-1))


@settings(deadline=None)
@given(cases(max_d=5), st.integers(1, 4))
def test_cross_entropy_and_readout_match_autograd(case, hidden):
    classes = case.d + 1
    logits = case.array(classes, scale=3.0)
    labels = case.rng.integers(0, classes, case.batch)
    onehot = np.eye(classes)[labels]
    grad = both(case, cross_entropy, "cross_entropy_grad", logits, onehot)
    hessian = both(case, cross_entropy, "cross_entropy_hessian", logits)
    readout = case.array(classes, hidden)
    h = case.array(hidden)
    hidden_logits = np.einsum("...ij,...j->...i", readout, h)
    hidden_grad = cross_entropy.cross_entropy_grad(f64(hidden_logits), f64(onehot)).numpy()
    hidden_hessian = cross_entropy.cross_entropy_hessian(f64(hidden_logits)).numpy()
    pulled_grad = both(case, cross_entropy, "readout_grad", readout, hidden_grad)
    pulled_hessian = both(case, cross_entropy, "readout_hessian", readout, hidden_hessian)
    for index in np.ndindex(*case.batch):
        x = f64(logits[index]).requires_grad_(True)
        label = torch.as_tensor([int(labels[index])])

        def loss(logits, label=label):
            return torch.nn.functional.cross_entropy(logits[None], label)

        (expected_grad,) = torch.autograd.grad(loss(x), x)
        close(case, grad[index], expected_grad)
        close(case, hessian[index], torch.autograd.functional.hessian(loss, x.detach()))
        V = f64(readout[index])

        def hidden_loss(state, loss=loss, V=V):
            return loss(V @ state)

        state = f64(h[index])
        close(case, pulled_grad[index], torch.autograd.functional.jacobian(hidden_loss, state))
        close(case, pulled_hessian[index], torch.autograd.functional.hessian(hidden_loss, state))


@settings(deadline=None)
@given(cases(max_d=3), st.integers(1, 3))
def test_em_mean_square_matrix(case, noises):
    d = case.d
    step_matrix = case.array(d, d)
    noise_matrices = case.array(noises, d, d)
    dt = case.positive(0.01, 0.5)
    operator = both(case, stability, "em_mean_square_matrix", step_matrix, noise_matrices, dt)
    assert operator.shape == case.batch + (d * d, d * d)
    S, B = f64(step_matrix), f64(noise_matrices)
    for index in np.ndindex(*case.batch):
        dt_i = float(np.broadcast_to(dt, case.batch)[index]) if case.batch else float(dt)
        expected = torch.kron(S[index], S[index]) + dt_i * sum(torch.kron(b, b) for b in B[index])
        close(case, operator[index], expected)
        # Action on vec(P), column-major: the second-moment recursion of Euler--Maruyama.
        P = f64(case.array(d, d)[index] if case.batch else case.array(d, d))
        new = S[index] @ P @ S[index].T + dt_i * sum(b @ P @ b.T for b in B[index])
        close(case, operator[index].double() @ column_major(P), column_major(new))


@settings(deadline=None)
@given(cases())
def test_stability_scalars(case):
    eig, norm, sigma = case.positive(-1.0, 1.0), case.positive(0.0, 2.0), case.positive(0.0, 1.5)
    kappa = both(case, stability, "contraction_rate", eig, norm)
    close(case, kappa, f64(eig) + f64(norm))
    kappa_value = np.asarray(eig) + np.asarray(norm)
    kappa_value = float(kappa_value) if kappa_value.ndim == 0 else kappa_value
    scalar = both(case, stability, "almost_sure_bound_scalar", kappa_value, sigma)
    diagonal = both(case, stability, "almost_sure_bound_diagonal", kappa_value, sigma, case.d)
    square = both(case, stability, "mean_square_bound", kappa_value, sigma)
    # Independent oracle: the Itô generator by autograd for dh = κ h dt + noise, with the
    # multiplicative noise on one Brownian motion (σ h dB) or on one per unit (σ diag(h) dW).
    d, rng = case.d, np.random.default_rng(0)
    for index in np.ndindex(*case.batch):
        k = float(np.broadcast_to(kappa_value, case.batch)[index])
        s = float(np.broadcast_to(sigma, case.batch)[index])
        h = f64(rng.standard_normal(d))
        ones = torch.ones(d, dtype=torch.float64)

        def drift(state, k=k):
            return k * state

        def scalar_noise(state, s=s):
            return s * state[:, None]

        def diagonal_noise(state, s=s):
            return s * torch.diag(state)

        log_rate = ito_generator(half_log_square_norm, drift, scalar_noise, h)
        close(case, at(scalar, case.batch, index), log_rate)
        # the diagonal bound is the sup over directions, attained where all |h_i| are equal
        worst = ito_generator(half_log_square_norm, drift, diagonal_noise, ones)
        close(case, at(diagonal, case.batch, index), worst)
        below = ito_generator(half_log_square_norm, drift, diagonal_noise, h)
        assert float(below) <= float(worst) + 1e-12
        for noise in (scalar_noise, diagonal_noise):
            square_rate = ito_generator(square_norm, drift, noise, h) / (2 * square_norm(h))
            close(case, at(square, case.batch, index), square_rate)


def at(result, batch: tuple, index: tuple) -> torch.Tensor:
    """Entry ``index`` of a result that is a float or a tensor broadcasting to ``batch``,
    in float64."""
    return torch.as_tensor(result, dtype=torch.float64).expand(batch)[index]


def half_log_square_norm(state: torch.Tensor) -> torch.Tensor:
    """½ log|h|²: its Itô drift is the almost-sure growth rate of |h|."""
    return 0.5 * torch.log(state @ state)


def square_norm(state: torch.Tensor) -> torch.Tensor:
    return state @ state


def ito_generator(function, drift, diffusion, state: torch.Tensor) -> torch.Tensor:
    """(L g)(h) = ∇g(h)·f(h) + ½ tr(B(h)ᵀ ∇²g(h) B(h)) for dh = f(h) dt + B(h) dW, by
    autograd; state (d,), B(h) (d, r)."""
    gradient = torch.func.grad(function)(state)
    hessian = torch.func.hessian(function)(state)
    noise = diffusion(state)
    return gradient @ drift(state) + 0.5 * torch.trace(noise.T @ hessian @ noise)


@settings(deadline=None)
@given(cases())
def test_reference_noise_mapping(case):
    d = case.d
    sigma_add, sigma_mult, dt = case.positive(), case.positive(), case.positive(0.01, 0.5)
    step_drift = case.array(d, scale=0.1)
    close(
        case,
        both(case, released_noise, "released_drift_scale", sigma_mult),
        1 - f64(sigma_mult) / 2,
    )
    close(
        case,
        both(case, released_noise, "released_additive_level", sigma_add, dt),
        f64(sigma_add) / f64(dt) ** 0.5,
    )
    variance = both(
        case, released_noise, "released_step_variance", sigma_add, sigma_mult, step_drift
    )
    expected_variance = (
        lifted(sigma_add, 1) ** 2 + lifted(sigma_mult, 1) ** 2 / 12 * f64(step_drift) ** 2
    )
    close(case, variance, expected_variance)
    diffusion = both(
        case, released_noise, "released_diffusion", step_drift, sigma_add, sigma_mult, dt
    )
    assert diffusion.shape == case.batch + (d, 2 * d)
    sigma = diffusion.double()
    close(
        case, lifted(dt, 2) * sigma @ sigma.transpose(-1, -2), torch.diag_embed(expected_variance)
    )


@pytest.mark.parametrize("form", ["diagonal", "scalar"])
@pytest.mark.parametrize("d, steps", [(1, 3), (2, 2), (3, 4)])
def test_regularizer_equals_noise_laplacian(form, d, steps):
    """Q + R from the generated recursions equals the Laplacian of the loss in the noise at 0.

    E l(h_M) = l + (eps^2 / 2) Laplacian_xi l(0) + O(eps^4) for standard normal xi, so the
    autograd Laplacian is an independent oracle for Q + R (float64, small sizes).
    """
    torch.manual_seed(d * 10 + steps)
    dt, sigma_add, sigma_mult, classes = 0.3, 0.4, 0.7, 3
    a = 0.5 * torch.randn(d, d, dtype=torch.float64)
    w = torch.randn(d, d, dtype=torch.float64)
    drive = torch.randn(steps, d, dtype=torch.float64)
    readout = torch.randn(classes, d, dtype=torch.float64)
    label = torch.tensor([1])
    r = d if form == "diagonal" else d + 1
    diffusion = getattr(expansion, f"diffusion_{form}")

    def loss_of_noise(xi):
        h = torch.zeros(d, dtype=torch.float64)
        for k in range(steps):
            noise = diffusion(h, sigma_add, sigma_mult) @ xi[k]
            h = h + dt * (a @ h + torch.tanh(w @ h + drive[k])) + dt**0.5 * noise
        return torch.nn.functional.cross_entropy((readout @ h)[None], label)

    zero = torch.zeros(steps, r, dtype=torch.float64)
    laplacian = torch.autograd.functional.hessian(
        lambda x: loss_of_noise(x.reshape(steps, r)), zero.reshape(-1)
    ).trace()

    h = torch.zeros(d, dtype=torch.float64)
    covariance = torch.zeros(d, d, dtype=torch.float64)
    mean = torch.zeros(d, dtype=torch.float64)
    for k in range(steps):
        z = w @ h + drive[k]
        slope, second = activation.tanh_prime(z), activation.tanh_second(z)
        jacobian = cell_lipschitz.step_jacobian(a, w, slope, dt)
        contraction = cell_lipschitz.curvature(w, second, covariance)
        covariance_next = expansion.covariance_step(
            covariance, jacobian, diffusion(h, sigma_add, sigma_mult), dt
        )
        mean = expansion.mean_step(mean, jacobian, contraction, dt)
        covariance = covariance_next
        h = h + dt * (a @ h + torch.tanh(z))
    logits = readout @ h
    onehot = torch.nn.functional.one_hot(label[0], classes).double()
    loss_grad = cross_entropy.readout_grad(
        readout, cross_entropy.cross_entropy_grad(logits, onehot)
    )
    loss_hessian = cross_entropy.readout_hessian(
        readout, cross_entropy.cross_entropy_hessian(logits)
    )
    total = expansion.q_term(loss_grad, mean) + expansion.r_term(loss_hessian, covariance)
    torch.testing.assert_close(total, laplacian, rtol=1e-9, atol=1e-12)
