"""The explicit regularizer: agreement with the autograd oracle, unbiased probes, the
expansion's remainder, an exactly Gaussian case, gradients and input validation.

Random small models are drawn by hypothesis (float64): hidden size, length, β, γ, Δt,
σ₁, σ₂, both Brownian modes and ``ReferenceNoise`` (with a non-uniform learnable step δ),
and the antisymmetric baseline. Statistical tests state their false-failure probability.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import nrnn.draws as draws_module
import nrnn.probes as probes
import nrnn.regularizer as regularizer
from nrnn import Noise, NoisyRNN, ReferenceNoise, quadrature
from nrnn.catalogue import MODEL_CASES, gaussian_model
from nrnn.oracle import hutchinson_samples, noise_laplacian
from nrnn.regularizer import (
    Expansion,
    deterministic_path,
    exact_moments,
    explicit_regularizer,
)

from independent import mean_and_standard_error, normal_quantile

DTYPE = torch.float64
FALSE_FAILURE = 1e-4  # per statistical test
NOISE_FORMS = ("diagonal", "scalar", "reference")


def build_model(
    *,
    hidden,
    steps,
    form,
    dt=0.3,
    beta=0.75,
    gamma_a=0.01,
    gamma_w=0.01,
    additive=0.4,
    multiplicative=0.6,
    antisymmetric=False,
    seed=0,
    batch=3,
    inputs=2,
    classes=3,
):
    """(model, x, y): a seeded float64 model and a random batch."""
    torch.manual_seed(seed)
    if form == "reference":
        noise = ReferenceNoise(additive=additive, multiplicative=min(multiplicative, 1.0))
    else:
        noise = Noise(additive=additive, multiplicative=multiplicative, brownian=form)
    model = NoisyRNN(
        inputs,
        hidden,
        classes,
        dt=dt,
        beta=beta,
        gamma_a=gamma_a,
        gamma_w=gamma_w,
        noise=noise,
        antisymmetric=antisymmetric,
    ).to(DTYPE)
    step_size = model.noise_parameters.get("step_size")
    if step_size is not None:  # a non-uniform learnable step δ
        with torch.no_grad():
            step_size.mul_(0.5 + torch.rand(hidden, dtype=DTYPE))
    x = torch.randn(batch, steps, inputs, dtype=DTYPE)
    y = torch.randint(0, classes, (batch,))
    return model, x, y


random_models = st.fixed_dictionaries(
    {
        "hidden": st.integers(1, 4),
        "steps": st.integers(1, 5),
        "form": st.sampled_from(NOISE_FORMS),
        "dt": st.floats(0.01, 0.5),
        "beta": st.floats(0.0, 1.0),
        "gamma_a": st.floats(-0.5, 0.5),
        "gamma_w": st.floats(-0.5, 0.5),
        "additive": st.floats(0.0, 1.0),
        "multiplicative": st.floats(0.0, 1.0),
        "antisymmetric": st.booleans(),
        "seed": st.integers(0, 2**16),
    }
)


# ------------------------------------------------------------------- the oracle
@given(random_models)
def test_exact_regularizer_equals_the_noise_laplacian(spec):
    """q + r = Δ_ξ ℓ at ξ = 0 (autograd through the model), to 1e-8 relative."""
    model, x, y = build_model(**spec)
    expansion = explicit_regularizer(model, x, y)
    laplacian = noise_laplacian(model, x, y)
    total = (expansion.q + expansion.r).detach()
    scale = laplacian.abs().max().item() + 1e-12
    torch.testing.assert_close(total, laplacian, rtol=1e-8, atol=1e-8 * scale)
    path = deterministic_path(model, x)
    torch.testing.assert_close(expansion.loss, F.cross_entropy(path.logits, y, reduction="none"))


def test_loss_is_on_the_noise_free_path_and_reference_uses_the_mean_path():
    model, x, y = build_model(hidden=3, steps=4, form="diagonal")
    model.eval()
    torch.testing.assert_close(
        explicit_regularizer(model, x, y).loss, F.cross_entropy(model(x), y, reduction="none")
    )
    reference, x, y = build_model(hidden=3, steps=4, form="reference", multiplicative=0.5)
    zero = torch.zeros(*x.shape[:2], reference.noise_dim, dtype=DTYPE)
    torch.testing.assert_close(
        explicit_regularizer(reference, x, y).loss,
        F.cross_entropy(reference(x, zero), y, reduction="none"),
    )


@pytest.mark.parametrize("form", NOISE_FORMS)
def test_hutchinson_laplacian_is_unbiased(form):
    """Mean of ξᵀ∇²ℓ ξ over Rademacher probes within z·SE of the exact Laplacian
    (false failure ≤ 1e-4 over the batch)."""
    model, x, y = build_model(hidden=3, steps=4, form=form)
    generator = torch.Generator().manual_seed(1)
    samples = hutchinson_samples(model, x, y, probes=4000, generator=generator, chunk=1000)
    mean, stderr = mean_and_standard_error(samples)
    z = normal_quantile(FALSE_FAILURE, len(y))
    exact = noise_laplacian(model, x, y)
    assert ((mean - exact).abs() <= z * stderr + 1e-12).all()
    averaged = noise_laplacian(
        model, x, y, method="hutchinson", probes=64, generator=torch.Generator().manual_seed(1)
    )
    assert averaged.shape == (len(y),)


# ---------------------------------------------------------------------- probes
@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
@pytest.mark.parametrize("form", NOISE_FORMS)
def test_probe_estimator_is_unbiased(form, distribution):
    """Mean of 400 independent probe estimates (K = 4) within z·SE of the exact q and r
    (the covariance recursion, independent code), for every sample: Bonferroni over
    2 × batch comparisons, false failure ≤ 1e-4.

    The 400 estimates come from one call on the batch repeated 400 times (every row draws
    its own probes)."""
    model, x, y = build_model(hidden=4, steps=6, form=form, seed=3)
    draws, batch = 400, len(y)
    exact = explicit_regularizer(model, x, y)
    with torch.no_grad():
        estimate = explicit_regularizer(
            model,
            x.repeat(draws, 1, 1),
            y.repeat(draws),
            method="probe",
            probes=4,
            generator=torch.Generator().manual_seed(123),
            probe_distribution=distribution,
        )
    samples = torch.stack([estimate.q, estimate.r], -1).reshape(draws, batch, 2)
    mean, stderr = mean_and_standard_error(samples)
    target = torch.stack([exact.q, exact.r], -1).detach()
    z = normal_quantile(FALSE_FAILURE, target.numel())
    assert ((mean - target).abs() <= z * stderr).all(), (mean, target, stderr)
    assert (stderr > 0).all()  # the estimator is not trivially exact: its spread is real


def _flat_gradient(value, model):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, list(model.parameters()))])


@pytest.fixture
def one_thread():
    """Tiny tensors: one intra-op thread (several spin-wait on a shared machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("form", NOISE_FORMS)
def test_probe_gradient_is_unbiased(form, one_thread):
    """The gradient of Σ (q̂ + r̂) over the batch in every parameter: the mean of 30
    independent group estimates (each over 32 copies of the batch, K = 2 Rademacher probes)
    within t·SE of the exact method's gradient for every component (t: Student, 29 degrees
    of freedom, two-sided, Bonferroni over the parameters; false failure ≤ 1e-4)."""
    model, x, y = build_model(hidden=3, steps=5, form=form, seed=5)
    exact = explicit_regularizer(model, x, y)
    target = _flat_gradient((exact.q + exact.r).sum(), model)
    copies, groups = 32, 30
    generator = torch.Generator().manual_seed(11)
    estimates = []
    for _ in range(groups):
        probe = explicit_regularizer(
            model,
            x.repeat(copies, 1, 1),
            y.repeat(copies),
            method="probe",
            probes=2,
            generator=generator,
        )
        estimates.append(_flat_gradient((probe.q + probe.r).sum() / copies, model))
    mean, stderr = mean_and_standard_error(torch.stack(estimates))
    t = stats.t.ppf(1 - FALSE_FAILURE / (2 * target.numel()), groups - 1)
    assert ((mean - target).abs() <= t * stderr + 1e-12).all(), (mean - target) / stderr
    assert (stderr > 0).sum() > target.numel() // 2


def test_probe_estimates_are_even_in_the_probe_noise():
    """y is linear in ξ, so every estimate is even in ξ: −ξ gives the same q̂ and r̂
    (antithetic pairs would repeat a probe), and a replay gives the draw's numbers."""
    model, x, y = build_model(hidden=3, steps=5, form="scalar", seed=6)
    shape = (x.shape[1], x.shape[0], 3, model.noise_dim)
    xi = torch.randn(shape, dtype=DTYPE, generator=torch.Generator().manual_seed(2))

    def run(noise):
        moments = probes.probe_moments(model, x, 3, noise_variables=noise.unbind(0))
        return regularizer.probe_expansion(model, y, moments)

    plus, minus = run(xi), run(-xi)
    torch.testing.assert_close(plus.q, minus.q, rtol=0, atol=0)
    torch.testing.assert_close(plus.r, minus.r, rtol=0, atol=0)
    drawn = explicit_regularizer(
        model, x, y, method="probe", probes=3, generator=torch.Generator().manual_seed(4)
    )
    replayed = run(
        probes.draws.rademacher(shape, generator=torch.Generator().manual_seed(4), dtype=DTYPE)
    )
    torch.testing.assert_close(torch.stack(list(drawn)), torch.stack(list(replayed)))


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine (CPU-only torch build)"
)
@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_probes_drawn_by_a_cpu_generator_for_a_cuda_model_match_the_cpu(distribution):
    """The probes are drawn on the generator's device and moved: a CPU generator works for
    a CUDA model and gives the CPU run's numbers."""
    model, x, y = build_model(hidden=3, steps=4, form="scalar")

    def run(device):
        expansion = explicit_regularizer(
            model.to(device),
            x.to(device),
            y.to(device),
            method="probe",
            probes=3,
            generator=torch.Generator().manual_seed(1),
            probe_distribution=distribution,
        )
        return torch.stack(list(expansion)).detach().cpu()

    torch.testing.assert_close(run("cuda"), run("cpu"))


def one_probe_at_a_time(model, x, y, noise_variables):
    """(q̂, r̂) (batch,) of K probes computed one probe at a time with dense matrices.

    The reference for the batched recursion: for every probe k alone, the path
    y_{j+1} = J_j y_j + √Δt Σ_j ξ_j^k with the dense J_j (the generated step Jacobian) and
    Σ_j (the noise's diffusion), its own mean correction m^k driven by the rank-one
    covariance y yᵀ through the exact method's curvature and mean step, and its own
    q^k = 2 (p − e_y)ᵀ V m^k and r^k = (V y)ᵀ (diag p − p pᵀ)(V y) written out here. The
    batched estimate is their average (m, v and r are linear in the covariances).

    noise_variables: (M, batch, K, r), the probes' noise of every step."""
    path = deterministic_path(model, x)
    derivatives, parameters, step = path.derivatives, path.parameters, path.step
    jacobian_at = step.jacobians(derivatives, parameters)
    readout = model.readout.weight  # (c, output_dim)
    probabilities = torch.softmax(path.logits, -1)  # (batch, c)
    residual = probabilities - F.one_hot(y, model.num_classes).to(DTYPE)
    hessian = torch.diag_embed(probabilities) - probabilities[:, :, None] * probabilities[:, None]
    batch, n = x.shape[0], model.state_dim
    q_per_probe, r_per_probe = [], []
    for k in range(noise_variables.shape[2]):
        rows = x.new_zeros(batch, n)
        mean = x.new_zeros(batch, n)
        for point, diffusion_point, xi in zip(
            path.points, path.diffusion_points, noise_variables[:, :, k], strict=True
        ):
            jacobian = jacobian_at(point)
            covariance = rows[:, :, None] * rows[:, None, :]
            mean = step.mean_step(
                mean, jacobian, derivatives.curvature(point, parameters, covariance)
            )
            sigma = path.diffusion(diffusion_point)  # (batch, n, r)
            rows = (jacobian @ rows[:, :, None] + math.sqrt(model.dt) * sigma @ xi[:, :, None])[
                ..., 0
            ]
        logit_mean = model.cell.output(mean) @ readout.T
        logit_row = model.cell.output(rows) @ readout.T
        q_per_probe.append(2 * (residual * logit_mean).sum(-1))
        r_per_probe.append((logit_row[:, None, :] @ hessian @ logit_row[:, :, None])[:, 0, 0])
    return torch.stack(q_per_probe).mean(0), torch.stack(r_per_probe).mean(0)


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda case: case.label)
def test_batched_probes_equal_one_probe_at_a_time(case):
    """The K probes advanced together (folded into the batch, matrices never formed) give
    the numbers of K dense single-probe recursions averaged, with the same drawn noise, to
    float64 round-off, for every cell and noise; also through ``explicit_regularizer``
    replaying the draws of a seed."""
    model, x, y = case.build()
    probe_count, seed = 3, 9
    shape = (x.shape[1], x.shape[0], probe_count, model.noise_dim)
    for distribution in draws_module.DISTRIBUTIONS:
        noise_variables = draws_module.standard(
            distribution, shape, generator=torch.Generator().manual_seed(seed), dtype=DTYPE
        )
        expected_q, expected_r = one_probe_at_a_time(model, x, y, noise_variables)
        batched = explicit_regularizer(
            model,
            x,
            y,
            method="probe",
            probes=probe_count,
            generator=torch.Generator().manual_seed(seed),
            probe_distribution=distribution,
        )
        torch.testing.assert_close(batched.q, expected_q, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(batched.r, expected_r, rtol=1e-10, atol=1e-12)
        assert batched.r.abs().max() > 0  # the noise reaches the logits: a real comparison


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda case: case.label)
def test_probe_steps_match_the_generated_dense_forms(case):
    """The probe method applies J_k, Σ_k and the curvature without forming matrices; for
    every cell and noise they must agree with the dense J_k (generated step Jacobian),
    Σ_k (generated diffusion) and v = E ∇²f[δ, δ] of the probe covariance."""
    model, x, _ = case.build()
    path = deterministic_path(model, x)
    point, derivatives, parameters = path.points[1], path.derivatives, path.parameters
    n = model.state_dim
    rows = torch.randn(x.shape[0], 5, n, dtype=DTYPE)
    jacobian = path.step.jacobians(derivatives, parameters)(point)
    differential, curvature = derivatives.probe_terms(point, parameters, rows)
    torch.testing.assert_close(
        path.step.advance(rows, differential), rows @ jacobian.transpose(-1, -2)
    )
    covariance = rows.transpose(1, 2) @ rows / rows.shape[1]
    torch.testing.assert_close(curvature, derivatives.curvature(point, parameters, covariance))

    xi = torch.randn(x.shape[0], 5, model.noise_dim, dtype=DTYPE)
    gains = model.noise.unit_gains(path.diffusion_points[1], model.dt)[:, None]
    sigma = path.diffusion(path.diffusion_points[1])
    torch.testing.assert_close(
        probes.add_noise_rows(rows, math.sqrt(model.dt) * gains, model.noise.unit_noise(xi, n)),
        rows + math.sqrt(model.dt) * xi @ sigma.transpose(-1, -2),
    )


# ------------------------------------------------------------------ the expansion
@given(
    st.fixed_dictionaries(
        {
            "hidden": st.integers(1, 2),
            "steps": st.integers(1, 2),
            "form": st.sampled_from(NOISE_FORMS),
            "dt": st.floats(0.05, 0.5),
            "additive": st.floats(0.1, 0.8),
            "multiplicative": st.floats(0.0, 0.8),
            "seed": st.integers(0, 2**16),
        }
    )
)
def test_quadrature_remainder_over_eps4_is_bounded(spec):
    """ρ(ε) = (E ℓ_ε − ℓ − ε²(q + r)/2)/ε⁴ (exact Gauss quadrature) converges as ε -> 0:
    successive differences shrink (≈ 16× over two halvings if the next term is ε⁶; an ε³
    term would make ρ blow up instead)."""
    model, x, y = build_model(batch=1, **spec)
    rule = quadrature.noise_rule(model, spec["steps"], nodes=3)  # exact to degree 5: the ε⁴ term
    with torch.no_grad():
        expansion = explicit_regularizer(model, x, y)
        loss, half = expansion.loss.item(), expansion.regularizer.item()
        epsilons = [0.2 / 2**j for j in range(4)]
        ratios = [
            (quadrature.expected_loss(model, x, y, rule, e).item() - loss - e**2 * half) / e**4
            for e in epsilons
        ]
    floor = 1e-13 * (1 + abs(loss)) / epsilons[-1] ** 4  # rounding of E ℓ_ε
    assert abs(ratios[2] - ratios[3]) <= 0.5 * abs(ratios[0] - ratios[1]) + floor, ratios
    bound = 2 * abs(ratios[-1]) + 4 * abs(ratios[0] - ratios[1]) + floor
    assert max(abs(r) for r in ratios) <= bound


def test_linear_drift_with_additive_noise_is_exactly_gaussian():
    """With W = 0 the drift A h + tanh(U x + b) is linear in h, so with additive noise h_M
    is exactly Gaussian with mean h̄_M and covariance C_M, and for the quadratic loss
    L(h) = ½ (h − a)ᵀ Q (h − a): E L = L(h̄_M) + ½ tr(Q C_M) at every noise level, not
    only to second order. Gauss–Hermite with 2 nodes is exact for quadratics, so the two
    sides agree to machine precision; the mean correction m_M vanishes (tanh'' W C Wᵀ = 0)."""
    model = gaussian_model(hidden=2, level=0.7)
    x = torch.randn(1, 3, 2, dtype=DTYPE, generator=torch.Generator().manual_seed(3))
    path = deterministic_path(model, x)
    mean, covariance = exact_moments(path)
    generator = torch.Generator().manual_seed(0)
    target = torch.randn(2, dtype=DTYPE, generator=generator)
    factor = torch.randn(2, 2, dtype=DTYPE, generator=generator)
    weight = factor @ factor.T + torch.eye(2, dtype=DTYPE)

    def quadratic(h):
        centred = h - target
        return 0.5 * ((centred @ weight) * centred).sum(-1)

    points, weights = quadrature.noise_rule(model, 3, nodes=2)
    h_bar = model.final_state(x, torch.zeros_like(points[:1]))
    for epsilon in (0.5, 1.0, 3.0):
        states = model.final_state(x.expand(len(points), -1, -1), epsilon * points)
        expected = (weights * quadratic(states)).sum()
        predicted = quadratic(h_bar)[0] + 0.5 * epsilon**2 * torch.trace(weight @ covariance[0])
        torch.testing.assert_close(expected, predicted, rtol=1e-13, atol=0)
    assert mean.abs().max().item() == 0.0


# -------------------------------------------------------------- gradients, shapes
@pytest.mark.parametrize("method", ["exact", "probe"])
@pytest.mark.parametrize("form", NOISE_FORMS)
def test_differentiable_in_every_parameter(method, form):
    model, x, y = build_model(hidden=3, steps=4, form=form)
    expansion = explicit_regularizer(
        model, x, y, method=method, probes=3, generator=torch.Generator().manual_seed(0)
    )
    assert isinstance(expansion, Expansion)
    assert all(t.shape == (3,) for t in expansion)
    expansion.expected_loss.sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_exact_gradient_matches_finite_differences():
    model, x, y = build_model(hidden=3, steps=4, form="reference", seed=9)
    parameters = list(model.parameters())

    def value():
        return explicit_regularizer(model, x, y).regularizer.sum()

    gradient = torch.cat([g.reshape(-1) for g in torch.autograd.grad(value(), parameters)])
    direction = torch.randn(
        gradient.numel(), dtype=DTYPE, generator=torch.Generator().manual_seed(2)
    )
    flat = torch.nn.utils.parameters_to_vector(parameters).detach()
    values = []
    with torch.no_grad():
        for sign in (1, -1):
            torch.nn.utils.vector_to_parameters(flat + sign * 1e-6 * direction, parameters)
            values.append(value())
        torch.nn.utils.vector_to_parameters(flat, parameters)
    finite = (values[0] - values[1]) / 2e-6
    torch.testing.assert_close(finite, direction @ gradient, rtol=1e-6, atol=1e-9)


def test_checkpointed_segments_give_the_same_values_and_gradients(monkeypatch):
    model, x, y = build_model(hidden=3, steps=9, form="scalar")

    def run():
        model.zero_grad()
        expansion = explicit_regularizer(model, x, y)
        expansion.expected_loss.sum().backward()
        return torch.stack(expansion).detach(), [p.grad.clone() for p in model.parameters()]

    plain_values, plain_grads = run()
    monkeypatch.setattr(regularizer, "CHECKPOINT_BYTES", 0)
    values, grads = run()
    torch.testing.assert_close(values, plain_values)
    for grad, plain in zip(grads, plain_grads, strict=True):
        torch.testing.assert_close(grad, plain)


@pytest.mark.parametrize("method", ["exact", "probe"])
def test_no_noise_gives_zero(method):
    model, x, y = build_model(hidden=3, steps=4, form="diagonal", additive=0.0, multiplicative=0.0)
    expansion = explicit_regularizer(model, x, y, method=method)
    assert expansion.q.abs().max() == 0 and expansion.r.abs().max() == 0
    assert noise_laplacian(model, x, y).abs().max() == 0


def test_float32_model_and_train_mode():
    model, x, y = build_model(hidden=3, steps=4, form="diagonal")
    model = model.float().train()
    with pytest.warns(UserWarning, match="torch.float64 but the model computes in torch.float32"):
        expansion = explicit_regularizer(model, x.double(), y)  # x is cast, and it says so
    assert expansion.q.dtype == torch.float32
    assert model.training


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(x=torch.zeros(2, 3)), ValueError, "shape"),
        (dict(x=torch.zeros(2, 3, 5)), ValueError, "shape"),
        (dict(x=[[0.0]]), TypeError, "torch.Tensor"),
        (dict(x=torch.full((2, 3, 2), float("nan"))), ValueError, "NaN"),
        (dict(y=torch.tensor([0, 3])), ValueError, "0 .. 2"),
        (dict(y=torch.tensor([0, -1])), ValueError, "0 .. 2"),
        (dict(y=torch.tensor([0.0, 1.0])), TypeError, "integer"),
        (dict(y=torch.tensor([0, 1, 2])), ValueError, r"\(batch,\)"),
        (dict(method="adjoint"), ValueError, "method"),
        (dict(probes=0), ValueError, "probes"),
        (dict(probes=2.5), TypeError, "probes"),
        (dict(model=torch.nn.Linear(2, 2)), TypeError, "NoisyRNN"),
    ],
)
def test_bad_inputs_are_rejected(kwargs, error, message):
    model, x, y = build_model(hidden=3, steps=3, form="diagonal", batch=2)
    arguments = dict(model=model, x=x, y=y, method="exact", probes=8) | kwargs
    with pytest.raises(error, match=message):
        explicit_regularizer(
            arguments.pop("model"), arguments.pop("x"), arguments.pop("y"), **arguments
        )


def test_bad_laplacian_arguments():
    model, x, y = build_model(hidden=2, steps=2, form="diagonal", batch=2)
    with pytest.raises(ValueError, match="method"):
        noise_laplacian(model, x, y, method="probe")
    with pytest.raises(ValueError, match="probes"):
        noise_laplacian(model, x, y, method="hutchinson", probes=0)


def test_explicit_objective_trains():
    """``objective_loss(..., "explicit")`` = mean(loss + (q + r)/2) with the noise off,
    and a few optimiser steps on it lower it."""
    from nrnn.train import objective_loss

    model, x, y = build_model(hidden=4, steps=5, form="diagonal", batch=16, seed=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    first = objective_loss(model, x, y, "explicit")
    expansion = explicit_regularizer(model, x, y)
    torch.testing.assert_close(first, expansion.expected_loss.mean())
    assert not model.training  # the noise is off
    for _ in range(20):
        optimizer.zero_grad()
        objective_loss(model, x, y, "explicit").backward()
        optimizer.step()
    assert objective_loss(model, x, y, "explicit").item() < first.item()
