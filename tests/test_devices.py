"""Device handling: training, the regularizer, metrics and attacks keep tensors and
generators on the run's device. The device path runs on the CPU everywhere (an explicit
``device`` argument and ``train.device``); on a machine with CUDA the same computations run
on the GPU and agree with the CPU, elsewhere those tests skip with the reason."""

import dataclasses

import pytest
import torch

import nrnn
from nrnn import metrics, perturb, quadrature
from nrnn.config import default_config
from nrnn.train import resolve_device, train

CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device on this machine (CPU-only torch build)"
)


def tiny_config(device: str):
    config = default_config("digits-rows")
    config.model.hidden_dim = 8
    config.noise = dataclasses.replace(config.noise, additive=0.1, multiplicative=0.1)
    config.data.train_subset = 256
    config.data.eval_subset = 64
    config.train.epochs = 1
    config.train.device = device
    return config


def model_and_batch(device: torch.device):
    torch.manual_seed(0)
    model = nrnn.NoisyRNN(8, 6, 10, dt=0.2, noise=nrnn.Noise(0.1, 0.1, "scalar"), init_std=0.5).to(
        device
    )
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(5, 8, 8, generator=generator).to(device)
    y = torch.randint(0, 10, (5,), generator=generator).to(device)
    return model, x, y


def everything(device: torch.device) -> dict[str, torch.Tensor]:
    """Every device-sensitive computation of the package on one small model, as CPU tensors."""
    model, x, y = model_and_batch(device)
    model.eval()
    exact = nrnn.explicit_regularizer(model, x, y, method="exact")
    probe = nrnn.explicit_regularizer(model, x, y, method="probe", probes=4)
    results = {
        "logits": model(x),
        "exact": exact.q + exact.r,
        "trace": torch.tensor(metrics.hessian_trace(model, x, y, probes=4, seed=0).value),
        "products": torch.tensor(metrics.jacobian_products(model, x).mean_full),
        "top_eigenvalue": torch.tensor(
            metrics.top_hessian_eigenvalue(model, x, y, iterations=4, seed=0).value
        ),
        "quadrature": quadrature.expected_loss(
            model,
            x[:1, :1],
            y[:1],
            quadrature.noise_rule(model, steps=1, nodes=2, dtype=torch.float32),
            0.1,
        ),
        "white": perturb.white_noise(x, 0.1, seed=0),
        "pgd": perturb.pgd(model, x, y, 0.2, norm="l2", steps=3, seed=0),
    }
    assert torch.isfinite(probe.q + probe.r).all()
    for name, value in results.items():
        assert value.device.type == device.type or value.ndim == 0, name
    return {name: value.detach().cpu().double() for name, value in results.items()}


def test_the_device_path_runs_on_the_cpu(tmp_path):
    result = train(tiny_config("cpu"), tmp_path, progress=False)
    assert next(result.model.parameters()).device.type == "cpu"
    assert resolve_device("cpu") == torch.device("cpu")
    everything(torch.device("cpu"))


@CUDA
def test_training_on_auto_uses_the_gpu(tmp_path):
    result = train(tiny_config("auto"), tmp_path, progress=False)
    assert next(result.model.parameters()).device.type == "cuda"
    assert torch.isfinite(torch.tensor(result.metrics[-1]["test_loss"]))


@CUDA
def test_gpu_and_cpu_agree():
    on_cpu, on_gpu = everything(torch.device("cpu")), everything(torch.device("cuda"))
    for name in on_cpu:
        torch.testing.assert_close(on_gpu[name], on_cpu[name], rtol=1e-3, atol=1e-4, msg=name)
