"""Every public function that takes a seed: the same seed gives the same result, and a
different seed a different one (a seed argument that is ignored fails here). Training with
another ``train.seed`` is tested in ``tests/test_train.py``, the Monte Carlo training noise
(``path_noise``) in ``tests/test_mc_training.py``."""

from __future__ import annotations

import pytest
import torch

import nrnn.verification.expansion as expansion
from nrnn import Noise, NoisyRNN, catalogue, explicit_regularizer, metrics, perturb, stability
from nrnn.train import fixed_subset_indices
from nrnn.verification import trained

DTYPE = torch.float64


def noisy_model() -> NoisyRNN:
    torch.manual_seed(0)
    return NoisyRNN(2, 4, 3, dt=0.2, noise=Noise(0.3, 0.4, "scalar")).to(DTYPE)


def batch(size: int = 6, steps: int = 5):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(size, steps, 2, generator=generator, dtype=DTYPE)
    return x, torch.randint(0, 3, (size,), generator=generator)


def as_tensor(value) -> torch.Tensor:
    """One flat float64 tensor of a result (a tensor, a number, an estimate, a tuple)."""
    if isinstance(value, torch.Tensor):
        return value.detach().double().reshape(-1)
    if isinstance(value, (int, float)):
        return torch.tensor([float(value)], dtype=DTYPE)
    if isinstance(value, dict):
        return torch.cat([as_tensor(value[key]) for key in sorted(value)])
    if isinstance(value, (list, tuple)):
        return torch.cat([as_tensor(item) for item in value])
    if isinstance(value, stability.LyapunovEstimate):
        return value.samples.reshape(-1)
    if isinstance(value, (metrics.TraceEstimate, metrics.EigenEstimate)):
        return as_tensor(value.value)
    raise TypeError(type(value).__name__)


def lyapunov(seed):
    x, _ = batch(1)
    return stability.lyapunov_exponent(noisy_model(), x, paths=3, seed=seed, steps=8)


def linearised_lyapunov(seed):
    x, _ = batch(1)
    return stability.linearised_lyapunov_exponent(noisy_model(), x, paths=3, seed=seed, steps=8)


def hessian_trace(seed):
    x, y = batch()
    return metrics.hessian_trace(noisy_model(), x, y, probes=2, seed=seed)


def top_eigenvalue(seed):
    x, y = batch()
    return metrics.top_hessian_eigenvalue(noisy_model(), x, y, iterations=2, seed=seed)


def white_noise(seed):
    return perturb.white_noise(batch()[0], 0.3, seed)


def multiplicative_noise(seed):
    return perturb.multiplicative_noise(batch()[0], 0.3, seed)


def salt_and_pepper(seed):
    return perturb.salt_and_pepper(batch()[0], 0.3, seed=seed)


def pgd(seed):
    x, y = batch()
    return perturb.pgd(noisy_model(), x, y, 0.3, steps=2, seed=seed)


def evaluate_under(seed):
    x, y = batch(40)
    dataset = torch.utils.data.TensorDataset(x, y)
    return perturb.evaluate_under(noisy_model(), dataset, "white", [0.5, 1.0, 2.0], seed=seed)


def subset(seed):
    return fixed_subset_indices(1000, 10, seed)


def probe_regularizer(seed):
    x, y = batch()
    generator = torch.Generator().manual_seed(seed)
    return explicit_regularizer(noisy_model(), x, y, method="probe", probes=2, generator=generator)


def small_model(seed):
    return list(catalogue.small_model("cornn", "released", seed=seed).parameters())


def random_batch(seed):
    return catalogue.random_batch(seed, 3, 4, 2, 3)


def gaussian_model(seed):
    return list(catalogue.gaussian_model(seed=seed).parameters())


def random_model(seed):
    return list(catalogue.random_model(seed, 3, Noise(), 0.1).parameters())


def random_inputs(seed):
    return catalogue.random_inputs(seed, 2, 3)


def richardson(seed):
    model = noisy_model()
    x, y = batch(1)
    return expansion.richardson_estimates(model, x, y, paths=8, seed=seed, epsilon=0.1)


def data_lyapunov(seed):
    x, _ = batch(3, steps=12)
    return trained.data_lyapunov_exponent(noisy_model(), x, seed)


def measured(seed):
    x, y = batch()
    task = trained.MeasureTask(
        hessian_samples=6, hessian_probes=2, lanczos_iterations=2, eval_samples=6
    )
    result = trained.measure(noisy_model(), (x, y), (x, y), task, seed)
    return {key: result[key] for key in ("hessian_trace", "top_eigenvalue", "lyapunov")}


SEEDED = [
    lyapunov,
    linearised_lyapunov,
    hessian_trace,
    top_eigenvalue,
    white_noise,
    multiplicative_noise,
    salt_and_pepper,
    pgd,
    evaluate_under,
    subset,
    probe_regularizer,
    small_model,
    random_batch,
    gaussian_model,
    random_model,
    random_inputs,
    richardson,
    data_lyapunov,
    measured,
]


@pytest.mark.parametrize("function", SEEDED, ids=lambda f: f.__name__)
def test_the_seed_decides_the_result(function):
    first, again, other = (as_tensor(function(seed)) for seed in (3, 3, 4))
    assert torch.equal(first, again), "the same seed must give the same result"
    assert not torch.equal(first, other), "another seed must give another result"
