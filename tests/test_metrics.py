"""nrnn.metrics against autograd oracles and closed forms."""

import math
from functools import partial

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nrnn import Noise, NoisyRNN, ReferenceNoise, metrics

from independent import normal_quantile

FALSE_FAILURE = 1e-4  # the one statistical test below fails by chance at most this often


def tiny_model(seed: int = 0, **kwargs) -> NoisyRNN:
    """A float64 model with 39 parameters (p = 2, d = 3, c = 3)."""
    torch.manual_seed(seed)
    options = {"dt": 0.3, "noise": Noise(0.1, 0.1)} | kwargs
    return NoisyRNN(2, 3, 3, **options).double()


def tiny_batch(seed: int = 0, batch: int = 6, steps: int = 4):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, 2, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 3, (batch,), generator=generator)
    return x, y


def autograd_hessian(model: NoisyRNN, x, y) -> torch.Tensor:
    """torch.autograd.functional.hessian of the eval-mode mean loss over the flattened
    parameters (in model.parameters() order)."""
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(vector):
        pieces, start = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            size = math.prod(shape)
            pieces[name] = vector[start : start + size].view(shape)
            start += size
        logits = torch.func.functional_call(model, pieces, (x,))
        return torch.nn.functional.cross_entropy(logits, y)

    model.eval()
    return torch.autograd.functional.hessian(loss, flat)


# ------------------------------------------------------------------------------ curvature
def test_exact_trace_matches_autograd_hessian():
    model = tiny_model()
    x, y = tiny_batch()
    reference = autograd_hessian(model, x, y)
    estimate = metrics.hessian_trace(model, x, y, method="exact")
    assert estimate.stderr == 0.0 and estimate.samples == reference.shape[0]
    assert estimate.value == pytest.approx(float(reference.trace()), rel=1e-10, abs=1e-12)
    full = metrics.hessian_matrix(model, x, y)
    torch.testing.assert_close(full, reference, rtol=1e-9, atol=1e-12)


def test_hutchinson_agrees_with_exact_trace_within_z_standard_errors():
    """The tolerance comes from the exact law of one Rademacher probe, not from the
    estimator: Var(vᵀHv) = 2 Σ_{i≠j} H_ij² for the autograd Hessian H, so the mean of 400
    probes has SE √(Var/400); z ≈ 3.89 (two-sided, CLT): false failure ≤ 1e-4."""
    model = tiny_model(1)
    x, y = tiny_batch(1)
    hessian = autograd_hessian(model, x, y)
    exact = float(hessian.trace())
    probe_variance = 2 * float((hessian**2).sum() - (hessian.diagonal() ** 2).sum())
    standard_error = math.sqrt(probe_variance / 400)
    estimate = metrics.hessian_trace(model, x, y, probes=400, seed=3)
    z = normal_quantile(FALSE_FAILURE)
    assert estimate.samples == 400
    assert abs(estimate.value - exact) <= z * standard_error
    # its reported standard error estimates the same quantity (fixed seed; the ratio is
    # 0.89 here, and a factor 1.5 is far outside the sampling spread of 400 draws)
    assert standard_error / 1.5 <= estimate.stderr <= 1.5 * standard_error


def test_hutchinson_is_reproducible_and_leaves_global_rng_alone():
    model = tiny_model()
    x, y = tiny_batch()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = metrics.hessian_trace(model, x, y, probes=5, seed=9)
    assert torch.rand(1) == before
    assert metrics.hessian_trace(model, x, y, probes=5, seed=9) == first
    assert math.isnan(metrics.hessian_trace(model, x, y, probes=1).stderr)


def test_top_eigenvalue_matches_eigvalsh_of_the_explicit_hessian():
    model = tiny_model(2)
    x, y = tiny_batch(2)
    eigenvalues = torch.linalg.eigvalsh(autograd_hessian(model, x, y))
    full = metrics.top_hessian_eigenvalue(model, x, y, iterations=100, seed=0)
    assert full.value == pytest.approx(float(eigenvalues[-1]), rel=1e-8, abs=1e-10)
    assert full.residual < 1e-7 * float(eigenvalues.abs().max())
    assert full.vector.norm() == pytest.approx(1.0)
    # a short run: a Ritz value inside the spectrum, within its residual of an eigenvalue
    short = metrics.top_hessian_eigenvalue(model, x, y, iterations=8, seed=1)
    assert short.iterations <= 8
    assert short.value <= float(eigenvalues[-1]) + 1e-10
    assert float((eigenvalues - short.value).abs().min()) <= short.residual + 1e-10


def test_curvature_is_measured_with_noise_off_and_mode_is_restored():
    model = tiny_model()
    x, y = tiny_batch()
    model.eval()
    reference = metrics.hessian_trace(model, x, y, method="exact").value
    model.train()
    assert metrics.hessian_trace(model, x, y, method="exact").value == reference
    assert model.training


def test_unused_parameters_contribute_nothing():
    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
            self.layer = torch.nn.Linear(8, 3).double()

        def forward(self, x):
            return self.layer(x.flatten(1))

    model = Linear()
    x, y = tiny_batch(batch=5)
    exact = metrics.hessian_trace(model, x, y, method="exact")
    model.unused.requires_grad_(False)
    assert exact.value == pytest.approx(metrics.hessian_trace(model, x, y, method="exact").value)
    model.unused.requires_grad_(True)
    top = metrics.top_hessian_eigenvalue(model, x, y, iterations=40)
    assert top.residual < 1e-10 and torch.all(top.vector[:2].abs() < 1e-12)


# ------------------------------------------------------------------------------- dynamics
VARIANTS = {
    "paper": {},
    "reference": {"noise": ReferenceNoise(0.1, 0.2)},
    "antisymmetric": {"antisymmetric": True},
}


def _run_from(model: NoisyRNN, x, start: int, h_start: torch.Tensor) -> torch.Tensor:
    """h_M from h_start at step ``start``, noise off, via the model's own Euler step."""
    parameters = model.cell.drift_parameters()
    drives = model.input_drive(x)
    h = h_start
    for k, terms in zip(
        range(start, x.shape[1]), model.step_terms(None, x.shape[1] - start), strict=True
    ):
        h = model.euler_step(h, drives[:, k], parameters, terms)
    return h


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_step_jacobians_and_products_match_autograd(variant):
    model = tiny_model(3, **VARIANTS[variant])
    if variant == "reference":
        with torch.no_grad():
            model.noise_parameters["step_size"].mul_(
                torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
            )
    x, _ = tiny_batch(3, batch=2, steps=5)
    model.eval()
    path = model.trajectory(x).detach()
    jacobians = metrics.step_jacobians(model, x)
    assert jacobians.shape == (2, 5, 3, 3)
    products = metrics.jacobian_products(model, x)
    assert products.norms.shape == (2, 6)
    for sample in range(2):
        xs = x[sample : sample + 1]
        for k in range(5):
            step = (
                torch.autograd.functional.jacobian(
                    partial(_run_from, model, xs[:, : k + 1], k), path[sample : sample + 1, k]
                )
                .squeeze(2)
                .squeeze(0)
            )
            torch.testing.assert_close(jacobians[sample, k], step, rtol=1e-10, atol=1e-12)
            phi = (
                torch.autograd.functional.jacobian(
                    partial(_run_from, model, xs, k), path[sample : sample + 1, k]
                )
                .squeeze(2)
                .squeeze(0)
            )
            expected = torch.linalg.matrix_norm(phi, ord=2)
            assert products.norms[sample, k] == pytest.approx(float(expected), rel=1e-10)
    assert torch.all(products.norms[:, -1] == 1.0)
    assert products.mean_full == pytest.approx(float(products.norms[:, 0].mean()))
    only_full = metrics.jacobian_products(model, x, per_step=False)
    torch.testing.assert_close(only_full.full, products.full)
    assert torch.isnan(only_full.norms[:, 1:-1]).all()


def test_input_output_jacobian_norm_matches_autograd():
    model = tiny_model(4)
    x, _ = tiny_batch(4, batch=3)
    model.eval()
    full = torch.autograd.functional.jacobian(model, x)  # (3, c, 3, M, p)
    expected = torch.stack([full[i, :, i].norm() for i in range(3)])
    torch.testing.assert_close(metrics.input_output_jacobian_norm(model, x), expected)


# -------------------------------------------------------------------------------- margins
def linear_classifier(weight: torch.Tensor, bias: torch.Tensor):
    """logits = W vec(x) + b for x (batch, M, p); weight (c, M·p)."""
    return lambda x: x.flatten(1) @ weight.T + bias


def linear_margins(weight, bias, x, y, dual_norm_order) -> torch.Tensor:
    """Exact distance to the boundary of class y's region: min_j gap_j / ‖w_y − w_j‖_*."""
    logits = x.flatten(1) @ weight.T + bias
    rows = torch.arange(len(y))
    gaps = logits[rows, y].unsqueeze(1) - logits
    differences = weight[y].unsqueeze(1) - weight.unsqueeze(0)  # (batch, c, M·p)
    ratio = gaps / torch.linalg.vector_norm(differences, ord=dual_norm_order, dim=-1)
    ratio[rows, y] = math.inf
    return ratio.min(dim=1).values


@given(seed=st.integers(0, 2**31 - 1), classes=st.integers(2, 5))
def test_margin_of_a_linear_classifier_is_exact(seed, classes):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(classes, 6, generator=generator, dtype=torch.float64)
    bias = torch.randn(classes, generator=generator, dtype=torch.float64)
    x = torch.randn(8, 3, 2, generator=generator, dtype=torch.float64)
    model = linear_classifier(weight, bias)
    y = model(x).argmax(1)  # every sample correctly classified
    expected = linear_margins(weight, bias, x, y, 2)
    found = metrics.empirical_margin(model, x, y)
    assert found.found.all() and found.correct.all()
    torch.testing.assert_close(found.margin, expected, rtol=1e-6, atol=1e-9)
    bound = metrics.jacobian_margin_bound(model, x, y)
    torch.testing.assert_close(bound.estimate, expected, rtol=1e-9, atol=1e-12)
    assert torch.all(bound.lower <= bound.estimate + 1e-12)


def test_linf_margin_of_a_linear_classifier_is_exact():
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn(3, 8, generator=generator, dtype=torch.float64)
    bias = torch.randn(3, generator=generator, dtype=torch.float64)
    x = torch.randn(10, 4, 2, generator=generator, dtype=torch.float64)
    model = linear_classifier(weight, bias)
    y = model(x).argmax(1)
    expected = linear_margins(weight, bias, x, y, 1)  # ℓ1 is dual to ℓ∞
    found = metrics.empirical_margin(model, x, y, norm=math.inf)
    torch.testing.assert_close(found.margin, expected, rtol=1e-6, atol=1e-9)
    assert torch.allclose(found.perturbation.flatten(1).abs().amax(1), found.margin)
    bound = metrics.jacobian_margin_bound(model, x, y, norm=math.inf)
    torch.testing.assert_close(bound.estimate, expected, rtol=1e-9, atol=1e-12)
    assert torch.isnan(bound.lower).all()


def test_rnn_margins_flip_the_prediction_and_misclassified_get_zero():
    model = tiny_model(6, dt=0.5)
    x, _ = tiny_batch(6, batch=12, steps=6)
    model.eval()
    with torch.no_grad():
        predictions = model(x).argmax(1)
    y = predictions.clone()
    y[:3] = (y[:3] + 1) % 3  # three misclassified samples
    result = metrics.empirical_margin(model, x, y)
    assert torch.equal(result.correct, predictions == y)
    assert torch.all(result.margin[:3] == 0) and torch.all(result.perturbation[:3] == 0)
    ok = result.found & result.correct
    assert ok.sum() >= 8
    assert torch.all(result.margin[ok] > 0)
    norms = result.perturbation[ok].flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, result.margin[ok])
    with torch.no_grad():
        attacked = model(x[ok] + result.perturbation[ok]).argmax(1)
    assert torch.all(attacked != y[ok])
    bound = metrics.jacobian_margin_bound(model, x, y)
    assert torch.all(bound.estimate[:3] == 0) and torch.all(bound.estimate[3:] > 0)
    assert torch.all(bound.lower <= bound.estimate + 1e-12)


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m, x, y: metrics.hessian_trace(m, x, y, probes=0), ValueError, "probes"),
        (lambda m, x, y: metrics.hessian_trace(m, x, y, method="lanczos"), ValueError, "method"),
        (lambda m, x, y: metrics.hessian_trace(m, x[0], y), ValueError, r"\(batch, M, p\)"),
        (lambda m, x, y: metrics.hessian_trace(m, x, y[:-1]), ValueError, "shape"),
        (lambda m, x, y: metrics.hessian_trace(m, x, y.double()), TypeError, "integer"),
        (lambda m, x, y: metrics.hessian_trace(m, x, y + 3), ValueError, "must lie in 0 .. 2"),
        (
            lambda m, x, y: metrics.top_hessian_eigenvalue(m, x, y, iterations=0),
            ValueError,
            "iterations",
        ),
        (lambda m, x, y: metrics.empirical_margin(m, x, y, norm=1), ValueError, "norm"),
        (lambda m, x, y: metrics.empirical_margin(m, x, y, overshoot=2), ValueError, "overshoot"),
        (lambda m, x, y: metrics.jacobian_products(lambda v: v, x), TypeError, "NoisyRNN"),
        (lambda m, x, y: metrics.hessian_trace(lambda v: v, x, y), TypeError, "nn.Module"),
        (lambda m, x, y: metrics.input_output_jacobian_norm(m, x * math.nan), ValueError, "NaN"),
        (lambda m, x, y: metrics.jacobian_margin_bound(m, x.numpy(), y), TypeError, "Tensor"),
    ],
)
def test_bad_inputs_get_clear_messages(call, error, message):
    model = tiny_model()
    x, y = tiny_batch()
    with pytest.raises(error, match=message):
        call(model, x, y)
