"""Digests of the Lipschitz model's results, recorded with the code of commit c3afeea.

The cell/noise restructure (issue 11) must not change a single bit of what the default
(Lipschitz) model computes: the parameters drawn at construction, forward outputs with
drawn and with given noise, trajectories, gradients, the explicit regularizer (both
methods, values and gradients), the noise Laplacian, the stability bounds and measured
exponents, the Hessian trace and whole training runs. (The step Jacobians of
``nrnn.metrics`` and the linearised exponent now take the Jacobian from the cell's
generated formula along the batched path: equal to the old hand-typed one up to rounding,
1.5e-8 in float32 and 2e-16 in float64, so they are not pinned bitwise.) :func:`compute`
evaluates all of them through the public API and returns
``{name: sha256 of the result's bytes}``; ``tests/data/lipschitz_pins.json`` holds the
values recorded before the restructure (``python tests/lipschitz_pins.py --record``
rewrites it: only do that for a change that is *meant* to alter results; ``--fixtures``
also rewrites the legacy run and state dicts, which stand for older code's files). The
pins of the ``probe`` regularizer (and of the run trained with it) were re-recorded on
purpose for issue 13 (Rademacher probes drawn many steps at a time, advanced with the
path ξ = 0), and later every pin (see the end of this docstring).

Bits depend on the torch build and the CPU's vector instructions, so the recorded file
names both; ``tests/test_lipschitz_pins.py`` skips on another build or CPU capability.
Everything runs on one intra-op thread (reductions are then ordered the same way).

Since issue 13 the model's default recurrence is the fused one (``nrnn.fused``): same
states bit for bit, gradients equal up to rounding. The pins run the op-by-op reference
path (``recurrence="reference"``), which is the code the digests were recorded with, so
they still say that not a bit of it changed. One pin cannot: ``train/resumed-from-legacy``
resumes the recorded checkpoint, whose configuration (hash) has no ``recurrence`` key, so
it trains on with the default, fused recurrence; its digest was re-recorded when the fused
default came (the fused path's own determinism and exact resumption are tested in
``tests/test_fused.py``).

Every pin was re-recorded on purpose for the speed issue's step fusion (``CODE_VERSION``
3): the Euler step h + s ⊙ f + h ⊙ m + a is three fused multiply-adds
(``nrnn.noise.StepNoise.advance``) and the Lipschitz drift's products with their sums are
``addmm`` calls, which round differently from the separate products and sums before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

import nrnn
from nrnn import Noise, NoisyRNN, ReferenceNoise, metrics, stability
from nrnn import config as config_module

DATA = Path(__file__).parent / "data"
PINS = DATA / "lipschitz_pins.json"
LEGACY_RUN = DATA / "legacy_run"
LEGACY_STATE_DICTS = DATA / "legacy_state_dicts.pt"


def environment() -> dict:
    """What the recorded bits depend on."""
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def digest(*values) -> str:
    """sha256 over tensors (dtype, shape and bytes), floats (hex) and nested lists/tuples."""
    hasher = hashlib.sha256()

    def add(value):
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            hasher.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            hasher.update(tensor.numpy().tobytes())
        elif isinstance(value, float):
            hasher.update(value.hex().encode())
        elif isinstance(value, (list, tuple)):
            for item in value:
                add(item)
        elif isinstance(value, dict):
            for key in sorted(value):
                hasher.update(str(key).encode())
                add(value[key])
        else:
            hasher.update(repr(value).encode())

    for value in values:
        add(value)
    return hasher.hexdigest()


@contextlib.contextmanager
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


CONSTRUCTIONS = {
    "default": {},
    "scalar": {"noise": Noise(0.1, 0.2, "scalar")},
    "reference": {"noise": ReferenceNoise(0.1, 0.3)},
    "antisymmetric": {"antisymmetric": True, "gamma_w": 0.01},
    "released-init": {"init_std": 0.1, "init_divisor": "hidden"},
    "shifted": {"beta": 0.3, "gamma_a": 0.2, "gamma_w": -0.1, "dt": 0.05},
}

MODELS = {
    "diagonal": Noise(0.3, 0.4, "diagonal"),
    "scalar": Noise(0.2, 0.5, "scalar"),
    "reference": ReferenceNoise(0.1, 0.4),
    "quiet": Noise(),
}


def _model(noise, dtype, seed=3, **kwargs) -> NoisyRNN:
    torch.manual_seed(seed)
    model = NoisyRNN(2, 4, 3, dt=0.2, noise=noise, recurrence="reference", **kwargs).to(dtype)
    step_size = getattr(model, "step_size", None)  # the released-code noise's δ
    if step_size is not None:
        with torch.no_grad():
            step_size.mul_(0.5 + torch.rand(4, dtype=dtype))
    return model


def _batch(dtype, seed=4, batch=3, steps=5):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, 2, generator=generator, dtype=dtype)
    y = torch.randint(0, 3, (batch,), generator=generator)
    return x, y


def _gradients(value, model):
    parameters = list(model.parameters())
    grads = torch.autograd.grad(value, parameters, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(parameters, grads, strict=True)]


def model_pins(name: str, noise, dtype) -> dict[str, str]:
    """Every computation of one small model."""
    tag = f"{name}/{str(dtype).removeprefix('torch.')}"
    pins = {}
    model = _model(noise, dtype)
    x, y = _batch(dtype)
    xi_generator = torch.Generator().manual_seed(5)
    xi = torch.randn(*x.shape[:2], model.noise_dim, generator=xi_generator, dtype=dtype)
    pins[f"{tag}/parameters"] = digest(list(model.parameters()))
    model.train()
    torch.manual_seed(6)
    pins[f"{tag}/forward-train"] = digest(model(x), model(x))
    model.eval()
    pins[f"{tag}/forward-eval"] = digest(model(x))
    pins[f"{tag}/trajectory-xi"] = digest(model.trajectory(x, xi), model.final_state(x, xi))
    loss = F.cross_entropy(model(x, xi), y)
    pins[f"{tag}/gradients"] = digest(loss, _gradients(loss, model))

    exact = nrnn.explicit_regularizer(model, x, y)
    pins[f"{tag}/regularizer-exact"] = digest(
        list(exact), _gradients(exact.expected_loss.sum(), model)
    )
    probe = nrnn.explicit_regularizer(
        model, x, y, method="probe", probes=3, generator=torch.Generator().manual_seed(7)
    )
    pins[f"{tag}/regularizer-probe"] = digest(
        list(probe), _gradients(probe.expected_loss.sum(), model)
    )
    pins[f"{tag}/laplacian"] = digest(nrnn.noise_laplacian(model, x[:2, :3], y[:2]))

    pins[f"{tag}/contraction-rate"] = digest(stability.contraction_rate(model))
    if isinstance(noise, Noise):
        bounds = [stability.almost_sure_bound(model), stability.mean_square_bound(model)]
        bounds.append(stability.em_mean_square_bound(model))
        if noise.brownian == "scalar":
            bounds.append(stability.em_almost_sure_bound(model, grid_points=101))
        pins[f"{tag}/bounds"] = digest(bounds)
    estimate = stability.lyapunov_exponent(model, x[:1], paths=4, seed=8, steps=6, burn_in=2)
    pins[f"{tag}/lyapunov"] = digest(estimate.samples, estimate.exponent, estimate.stderr)
    pins[f"{tag}/hessian-trace"] = digest(
        metrics.hessian_trace(model, x, y, probes=3, seed=1).value
    )
    return pins


def _train_config(
    objective: str, form: str, epochs: int, recurrence: str = "reference"
) -> config_module.RunConfig:
    config = config_module.default_config("digits")
    config.model.recurrence = recurrence
    config.data.train_subset = 96
    config.data.eval_subset = 50
    config.data.batch_size = 32
    config.model.hidden_dim = 6
    config.noise.form = form
    config.noise.additive = config.noise.multiplicative = 0.1
    config.optim.grad_clip = 1.0
    config.train.objective = objective
    config.train.regularizer_method = "probe"
    config.train.probes = 2
    config.train.epochs = epochs
    return config


TRAININGS = {
    "noise-paper": ("noise", "paper"),
    "explicit-paper": ("explicit", "paper"),
    "noise-reference": ("noise", "reference"),
}


def training_pins(directory: Path) -> dict[str, str]:
    """Whole training runs (2 epochs) through nrnn.train.train."""
    from nrnn.train import train

    pins = {}
    for name, (objective, form) in TRAININGS.items():
        result = train(_train_config(objective, form, 2), directory / name, progress=False)
        numbers = [
            [float(v) for k, v in sorted(m.items()) if k != "seconds"] for m in result.metrics
        ]
        pins[f"train/{name}"] = digest(list(result.model.parameters()), numbers)
    return pins


def resumed_training(run_dir: Path) -> str:
    """Resume the recorded one-epoch run (written by today's code) to two epochs."""
    from nrnn.train import train

    config = _train_config("noise", "paper", 2, recurrence="fused")  # the legacy run's hash
    result = train(config, run_dir, resume=True, progress=False)
    return digest(list(result.model.parameters()))


def legacy_state_dicts() -> dict[str, tuple[dict, NoisyRNN]]:
    """Small models whose state_dict today's code wrote, keyed by construction."""
    return {name: _model(noise, torch.float32) for name, noise in MODELS.items()} | {
        "antisymmetric": _model(Noise(0.1, 0.1), torch.float32, antisymmetric=True)
    }


def state_dict_pins(models: dict) -> dict[str, str]:
    x, _ = _batch(torch.float32)
    pins = {}
    for name, model in models.items():
        with torch.no_grad():
            pins[f"state-dict/{name}"] = digest(model.eval()(x))
    return pins


def compute(include_training: bool = True) -> dict[str, str]:
    """Every pin, recomputed with the code as it is now."""
    pins = {}
    with one_thread():
        for name, kwargs in CONSTRUCTIONS.items():
            torch.manual_seed(11)
            pins[f"construct/{name}"] = digest(list(NoisyRNN(3, 5, 4, **kwargs).parameters()))
        for dtype in (torch.float32, torch.float64):
            for name, noise in MODELS.items():
                pins.update(model_pins(name, noise, dtype))
        pins.update(state_dict_pins(legacy_state_dicts()))
        if include_training:
            with tempfile.TemporaryDirectory() as directory:
                pins.update(training_pins(Path(directory)))
                run_dir = Path(directory) / "resumed"
                shutil.copytree(LEGACY_RUN, run_dir)
                pins["train/resumed-from-legacy"] = resumed_training(run_dir)
    return pins


def record(fixtures: bool = False) -> None:
    """Write the pins of today's code; with ``fixtures`` first rewrite the legacy run and
    state dicts as well (they stand for files written by older code: only on purpose)."""
    from nrnn.train import train

    if fixtures:
        DATA.mkdir(exist_ok=True)
        with one_thread():
            if LEGACY_RUN.exists():
                shutil.rmtree(LEGACY_RUN)
            train(_train_config("noise", "paper", 1, "fused"), LEGACY_RUN, progress=False)
            (LEGACY_RUN / "events.jsonl").unlink()
            models = legacy_state_dicts()
            torch.save({name: m.state_dict() for name, m in models.items()}, LEGACY_STATE_DICTS)
    PINS.write_text(
        json.dumps({"environment": environment(), "pins": compute()}, indent=1, sort_keys=True)
        + "\n"
    )


USAGE = "usage: python tests/lipschitz_pins.py --record [--fixtures]"

if __name__ == "__main__":
    if sys.argv[1:] not in (["--record"], ["--record", "--fixtures"]):
        raise SystemExit(USAGE)
    record(fixtures="--fixtures" in sys.argv)
