"""Estimators that measure a model with its noise off, tested on noisy models (in training
mode, where the model draws noise): each must give what it gives for the same model with
its noise levels set to 0, for every noise form (a version that measures with the noise on,
or with the released-code form's mean step instead of its evaluation step, fails)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from nrnn import Noise, NoisyRNN, ReferenceNoise, explicit_regularizer, metrics, perturb, stability
from nrnn.train import evaluate
from nrnn.verification import trained

DTYPE = torch.float64
NOISES = {
    "diagonal": Noise(0.4, 0.5, "diagonal"),
    "scalar": Noise(0.4, 0.5, "scalar"),
    "reference": ReferenceNoise(0.3, 0.6),
}


def models(form: str) -> tuple[NoisyRNN, NoisyRNN]:
    """(the noisy model in training mode, the same model with noise levels 0)."""
    torch.manual_seed(0)
    noisy = NoisyRNN(2, 4, 3, dt=0.2, noise=NOISES[form]).to(DTYPE)
    step_size = noisy.noise_parameters.get("step_size")
    if step_size is not None:  # a non-uniform learned step δ
        with torch.no_grad():
            step_size.mul_(torch.linspace(0.5, 1.5, len(step_size), dtype=DTYPE))
    quiet = trained.without_noise(noisy)
    assert quiet.noise.is_zero and not noisy.noise.is_zero
    return noisy.train(), quiet.eval()


def batch(size: int = 5, steps: int = 6):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(size, steps, 2, generator=generator, dtype=DTYPE)
    return x, torch.randint(0, 3, (size,), generator=generator)


def flat(value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().double().reshape(-1)
    if isinstance(value, (int, float)):
        return torch.tensor([float(value)], dtype=DTYPE)
    if isinstance(value, dict):
        return torch.cat([flat(value[key]) for key in sorted(value)])
    if isinstance(value, (list, tuple)):
        return torch.cat([flat(item) for item in value])
    if isinstance(value, (metrics.TraceEstimate, metrics.EigenEstimate)):
        return flat(value.value)
    if isinstance(value, metrics.JacobianProducts):
        return flat(value.norms)
    if isinstance(value, metrics.MarginResult):
        return flat([value.margin, value.correct.double()])
    if isinstance(value, metrics.MarginBound):
        return flat(value.estimate)
    raise TypeError(type(value).__name__)


def lyapunov_along_data(model, x, y):
    return trained.data_lyapunov_exponent(model, x, seed=2)


def every_measurement(model, x, y):
    task = trained.MeasureTask(
        hessian_samples=5, hessian_probes=2, lanczos_iterations=2, eval_samples=5
    )
    result = trained.measure(model, (x, y), (x, y), task, seed=2)
    return {key: value for key, value in result.items() if not math.isnan(value)}


ESTIMATORS = {
    "data_lyapunov_exponent": lyapunov_along_data,
    "trained.measure": every_measurement,
    "mean_loss": metrics.mean_loss,
    "hessian_trace": lambda m, x, y: metrics.hessian_trace(m, x, y, probes=2, seed=3),
    "top_hessian_eigenvalue": lambda m, x, y: metrics.top_hessian_eigenvalue(
        m, x, y, iterations=3, seed=3
    ),
    "jacobian_products": lambda m, x, y: metrics.jacobian_products(m, x),
    "step_jacobians": lambda m, x, y: metrics.step_jacobians(m, x),
    "input_output_jacobian_norm": lambda m, x, y: metrics.input_output_jacobian_norm(m, x),
    "empirical_margin": lambda m, x, y: metrics.empirical_margin(m, x, y, iterations=5),
    "jacobian_margin_bound": metrics.jacobian_margin_bound,
    "evaluate": lambda m, x, y: evaluate(m, torch.utils.data.TensorDataset(x, y), 2),
    "fgsm": lambda m, x, y: perturb.fgsm(m, x, y, 0.2),
    "pgd": lambda m, x, y: perturb.pgd(m, x, y, 0.2, steps=2, seed=4),
    "regularizer_path": lambda m, x, y: explicit_regularizer(m, x, y).loss,
}
MEAN_PATH = {("regularizer_path", "reference")}
"""The explicit regularizer expands around the path of ξ = 0: noise off for the paper forms,
the mean step (1 − s_m/2)δ for the released-code form, by design (``docs/formulas.md``)."""


@pytest.mark.parametrize(
    "name, form",
    [(name, form) for name in ESTIMATORS for form in NOISES if (name, form) not in MEAN_PATH],
)
def test_the_estimator_measures_with_the_noise_off(name, form):
    noisy, quiet = models(form)
    x, y = batch()
    estimator = ESTIMATORS[name]
    measured = flat(estimator(noisy, x, y))
    torch.testing.assert_close(measured, flat(estimator(quiet, x, y)), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("form", NOISES)
def test_the_noise_would_change_what_they_measure(form):
    """The control: the same measurements with the noise on differ (so the test above can
    tell): the loss with drawn noise, and the exponent along data with the noise drawn."""
    noisy, quiet = models(form)
    x, y = batch()
    torch.manual_seed(5)
    assert not torch.equal(F.cross_entropy(noisy(x), y), metrics.mean_loss(quiet, x, y))
    noisy_exponent = stability.lyapunov_exponent(noisy, x, paths=len(x), seed=2).exponent
    assert noisy_exponent != lyapunov_along_data(quiet, x, y)


def test_without_noise_keeps_the_form_and_refuses_an_unknown_one():
    noisy, quiet = models("reference")
    assert isinstance(quiet.noise, ReferenceNoise) and quiet is not noisy
    assert torch.equal(quiet.noise_parameters["step_size"], noisy.noise_parameters["step_size"])

    @dataclasses.dataclass(frozen=True)
    class Other(Noise):
        pass

    torch.manual_seed(0)
    other = NoisyRNN(2, 3, 2, noise=Other(0.1, 0.1))
    assert trained.without_noise(other).noise.is_zero  # a subclass of Noise is fine
    other.noise = object()
    with pytest.raises(TypeError, match="cannot turn off the noise"):
        trained.without_noise(other)
