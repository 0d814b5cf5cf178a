"""Pinned results of the Lipschitz model: the values themselves, and the machine they are bits of.

The cell/noise restructure (issue 11) was meant not to change a single bit of what the
default (Lipschitz) model computes: the parameters drawn at construction, forward outputs
with drawn and with given noise, trajectories, gradients, the explicit regularizer (both
methods, values and gradients), the noise Laplacian, the stability bounds and measured
exponents, the Hessian trace and whole training runs. :func:`compute` evaluates all of them
through the public API and returns ``{pin name: {part label: tensor}}`` (small tensors: 4
hidden units, 5 steps; 6 hidden units and 2 epochs for the training runs);
``tests/data/lipschitz_pins.json`` holds the values recorded with the code as it is, and
the :func:`fingerprint` of the machine and build that computed them.

Two comparisons (``tests/test_lipschitz_pins.py``):

- **bitwise**, only where :func:`fingerprint` equals the recorded one. Bits are a property
  of one machine and one build: the torch version and build configuration, the CPU's
  vendor, family, model, stepping and instruction-set flags (torch's vectorised kernels
  and MKL pick their code path from them; even the parameters drawn from a seed differ
  without AVX2), the C library, and the environment variables that force a kernel path.
  Everything runs on one intra-op thread, so reductions are ordered the same way.
- **within a tolerance**, everywhere: every part x of every pin against its recorded value
  x₀, max |x − x₀| ≤ tol · max |x₀| (the part's own scale, so that entries that cancel to
  near zero do not demand a relative accuracy that rounding cannot give), with tol from
  :func:`tolerance`: ``FLOAT64`` for float64 results, ``SEPARATION`` for Lyapunov
  exponents (two trajectories 1e-6 apart), ``FLOAT32`` for float32 results and ``TRAINING``
  for whole training runs (accuracies may also differ by one evaluated sequence). Their
  measured justification is in the docstrings of those constants.

Re-record (``python tests/lipschitz_pins.py --record``) only for a change that is *meant*
to alter results, or on another machine to have its bits pinned there (the values must then
agree with the recorded ones within the tolerances: :func:`record` refuses otherwise,
unless ``--force``). ``--fixtures`` also rewrites the legacy run and state dicts, which
stand for older code's files. History: the ``probe`` regularizer's pins (and the run trained
with it) changed on purpose for issue 13 (Rademacher probes drawn many steps at a time,
advanced with the path ξ = 0); every pin changed on purpose for the speed issue's step
fusion (``CODE_VERSION`` 3: the Euler step as three fused multiply-adds, the Lipschitz
drift's products with their sums as ``addmm``). Until issue 18 the file held sha256 digests
of the bits only, recorded on an Intel CPU; the values now in it were recorded on an AMD
EPYC (family 25, model 17) from the same code, whose digests on the recording commit
833bbdc equal those of today's code on that AMD machine.

The step Jacobians of ``nrnn.metrics`` and the linearised exponent take the Jacobian from
the cell's generated formula along the batched path and are not pinned (they equal the old
hand-typed one up to rounding). The pins run the op-by-op reference recurrence
(``recurrence="reference"``); one pin cannot: ``train/resumed-from-legacy`` resumes the
recorded checkpoint, whose configuration (hash) has no ``recurrence`` key, so it trains on
with the default, fused recurrence (the fused path's determinism and exact resumption are
tested in ``tests/test_fused.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass
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

Pin = dict[str, torch.Tensor]
"""One pinned result: part label -> tensor (a float becomes a 0-d float64 tensor)."""


# ------------------------------------------------------------------------- machine
KERNEL_ENVIRONMENT = (
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_DEBUG_CPU_TYPE",
    "DNNL_MAX_CPU_ISA",
    "ONEDNN_MAX_CPU_ISA",
)
"""Environment variables that choose torch's, MKL's or oneDNN's kernel path."""


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint() -> dict[str, str]:
    """What the bits of the pinned results depend on: the torch build, the CPU (vendor,
    family, model, stepping, name, a hash of its sorted feature flags), the C library and
    the kernel-choosing environment. Two machines with equal fingerprints compute equal bits
    (one thread); a difference in any field may change them."""
    cpu = _cpuinfo()
    flags = " ".join(sorted(cpu.get("flags", cpu.get("Features", "")).split()))
    environment = {name: os.environ[name] for name in KERNEL_ENVIRONMENT if name in os.environ}
    return {
        "torch": torch.__version__,
        "torch_build": _short_hash(torch.__config__.show()),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "libc": " ".join(platform.libc_ver()),
        "cpu_vendor": cpu.get("vendor_id", ""),
        "cpu_family": cpu.get("cpu family", ""),
        "cpu_model": cpu.get("model", ""),
        "cpu_stepping": cpu.get("stepping", ""),
        "cpu_name": cpu.get("model name", platform.processor()),
        "cpu_flags": _short_hash(flags),
        "kernel_environment": json.dumps(environment, sort_keys=True),
    }


def fingerprint_difference(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """The fields in which two fingerprints differ, as 'field: recorded -> current'."""
    return [
        f"{key}: {recorded.get(key)!r} -> {current.get(key)!r}"
        for key in sorted(set(recorded) | set(current))
        if recorded.get(key) != current.get(key)
    ]


# ----------------------------------------------------------------------- tolerances
MEASURED_ON = (
    "2 intra-op threads; ATEN_CPU_CAPABILITY=avx2; ATEN_CPU_CAPABILITY=default (no "
    "vectorisation: the parameters drawn from a seed round differently too); "
    "MKL_CBWR=COMPATIBLE; MKL_CBWR=AVX2 with ATEN avx2; ATEN default with MKL_CBWR=COMPATIBLE "
    "and DNNL_MAX_CPU_ISA=SSE41"
)
"""The other kernel paths of the same code, on the recording machine, whose deviations from
the recorded values justify the tolerances below: stand-ins for another CPU or build (the
results of another machine could not be measured; 2 threads change nothing at these sizes,
the reductions are too small to be split). ``tests/test_lipschitz_pins.py`` runs the
scalar-kernel one in every ``make test``."""
FLOAT64 = 1e-10
"""Tolerance of a float64 part, relative to the part's largest magnitude (small models'
results computed from the recorded parameters). Largest deviation over :data:`MEASURED_ON`:
1.6e-15 (the Hutchinson trace of the released-code model). 1e-10 leaves a factor 6·10⁴ for
longer reductions or other libraries and catches σ₂ changed by one part in 10⁸ or every
parameter by one part in 10⁸ (the negative controls)."""
SEPARATION = 1e-7
"""Tolerance of a Lyapunov exponent (float64, two trajectories 1e-6 apart: the separation
has a relative precision of about 1e-16 / 1e-6, and so has its log growth per step).
Largest deviation over :data:`MEASURED_ON`: 5.2e-10 (a standard error over 4 paths); 1e-7
leaves a factor 190 and catches σ₂ changed by one part in 10⁶."""
FLOAT32 = 1e-4
"""Tolerance of a result of a float32 model (unit round-off 6e-8; also the parameters drawn
from a seed, float32 draws cast for the float64 models). Largest deviation over
:data:`MEASURED_ON`: 9.7e-7 (the probe regularizer's r); 1e-4 leaves a factor 100 and
catches σ₂ changed by one part in 100 in every noise-dependent result (by 10⁻³ in all but
the stability bounds, which move by 8e-5)."""
TRAINING = 2e-4
"""Tolerance of a part of a 2-epoch training run (6 Adam steps in float32 on 96 digits,
noise from the seeded generator; parameters and per-epoch losses). Round-off differences
grow through the updates: largest deviation over :data:`MEASURED_ON`: 8.7e-7 of a part's
scale (the released-code noise run's M_W). 2e-4 leaves a factor 230 and catches an
additive or multiplicative noise level changed by 2 % (deviations 1e-3 to 4e-2), the
learning rate by 1 % (1e-2) or gradient clipping turned off (2.4e-2)."""
ACCURACY_SLACK = 1
"""Evaluated sequences by which a training run's accuracy may differ (a prediction whose
two largest logits tie to within rounding may flip)."""


@dataclass(frozen=True)
class Tolerance:
    """max |x − x₀| ≤ relative · max |x₀| + absolute for a part x against its record x₀."""

    relative: float
    absolute: float = 0.0

    def allows(self, current: torch.Tensor, recorded: torch.Tensor) -> tuple[bool, float]:
        """(within?, the deviation max |x − x₀| / max |x₀|)."""
        scale = float(recorded.abs().max()) if recorded.numel() else 0.0
        error = float((current.double() - recorded.double()).abs().max()) if current.numel() else 0
        allowed = self.relative * scale + self.absolute
        return error <= allowed, error / scale if scale else error


def kind(name: str, label: str, dtype: torch.dtype) -> str:
    """The tolerance class of part ``label`` of pin ``name``: "training", "accuracy" (of a
    training run), "separation" (a Lyapunov exponent), "float64" or "float32". Parameters
    drawn from a seed are float32 draws (also those of the float64 models, cast after
    drawing), and every result of a float32 model is as precise as float32."""
    if name.startswith("train/"):
        return "accuracy" if label.endswith("accuracy") else "training"
    if name.startswith("construct/") or name.endswith("/parameters") or "/float32/" in name:
        return "float32"
    if name.endswith("/lyapunov"):
        return "separation"
    return "float64" if dtype == torch.float64 else "float32"


TOLERANCES = {
    "float64": Tolerance(FLOAT64),
    "float32": Tolerance(FLOAT32),
    "separation": Tolerance(SEPARATION),
    "training": Tolerance(TRAINING),
    "accuracy": Tolerance(TRAINING, ACCURACY_SLACK / 50),
}
"""The tolerance of each class of :func:`kind` (50: the evaluated sequences of a run)."""


def tolerance(name: str, label: str, dtype: torch.dtype) -> Tolerance:
    """The tolerance of part ``label`` of pin ``name`` (module docstring)."""
    return TOLERANCES[kind(name, label, dtype)]


def differences(
    current: dict[str, Pin], recorded: dict[str, Pin], *, bitwise: bool = False
) -> list[str]:
    """Every part that differs from its record (bitwise: in dtype, shape or any bit;
    otherwise: beyond :func:`tolerance`), as a readable line; [] when all agree."""
    found = []
    for name in sorted(set(current) | set(recorded)):
        if name not in current or name not in recorded:
            found.append(f"{name}: {'not computed' if name not in current else 'not recorded'}")
            continue
        now, then = current[name], recorded[name]
        if now.keys() != then.keys():
            found.append(f"{name}: parts {sorted(now)} instead of {sorted(then)}")
            continue
        for label, value in now.items():
            old = then[label]
            if value.dtype != old.dtype or value.shape != old.shape:
                found.append(
                    f"{name} {label}: {value.dtype}{tuple(value.shape)} vs recorded "
                    f"{old.dtype}{tuple(old.shape)}"
                )
            elif bitwise:
                if not torch.equal(value, old):
                    found.append(f"{name} {label}: bits differ")
            else:
                within, deviation = tolerance(name, label, old.dtype).allows(value, old)
                if not within:
                    found.append(f"{name} {label}: deviation {deviation:.3g} of its scale")
    return found


def deviations(current: dict[str, Pin], recorded: dict[str, Pin]) -> dict[str, float]:
    """The largest deviation of a part from its record, relative to the part's scale, per
    tolerance class of :func:`kind`."""
    largest = dict.fromkeys(TOLERANCES, 0.0)
    for name, pin in recorded.items():
        for label, old in pin.items():
            deviation = Tolerance(0.0).allows(current[name][label], old)[1]
            group = kind(name, label, old.dtype)
            largest[group] = max(largest[group], deviation)
    return largest


# ----------------------------------------------------------------------- the file
def to_json(pins: dict[str, Pin]) -> dict:
    """Pins as JSON: every float is written exactly (float32 values widen exactly to the
    float64 that JSON's shortest round-trip notation reproduces)."""
    return {
        name: {
            label: {
                "dtype": str(value.dtype).removeprefix("torch."),
                "shape": list(value.shape),
                "values": value.detach().cpu().double().reshape(-1).tolist(),
            }
            for label, value in pin.items()
        }
        for name, pin in pins.items()
    }


def from_json(content: dict) -> dict[str, Pin]:
    return {
        name: {
            label: torch.tensor(part["values"], dtype=torch.float64)
            .to(getattr(torch, part["dtype"]))
            .reshape(part["shape"])
            for label, part in pin.items()
        }
        for name, pin in content.items()
    }


def read() -> tuple[dict[str, str], dict[str, Pin]]:
    """(the recording machine's fingerprint, the recorded pins)."""
    content = json.loads(PINS.read_text())
    return content["fingerprint"], from_json(content["pins"])


# ---------------------------------------------------------------------- computing
def parts(value, label: str = "") -> Pin:
    """Every tensor or float in ``value`` (nested lists, tuples, dicts) by its position."""
    if isinstance(value, torch.Tensor):
        return {label or "value": value.detach().cpu().clone()}
    if isinstance(value, float):
        return {label or "value": torch.tensor(value, dtype=torch.float64)}
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        raise TypeError(f"cannot pin {type(value).__name__} at {label!r}")
    found: Pin = {}
    for key, item in items:
        found.update(parts(item, f"{label}.{key}" if label else str(key)))
    return found


def parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.named_parameters())


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
    names, parameters = zip(*model.named_parameters(), strict=True)
    grads = torch.autograd.grad(value, parameters, allow_unused=True)
    return {
        name: torch.zeros_like(p) if g is None else g
        for name, p, g in zip(names, parameters, grads, strict=True)
    }


def load_parameters(model: torch.nn.Module, pin: Pin) -> None:
    """Copy recorded parameters (a ``parameters`` pin) into ``model``, in place."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.copy_(pin[name])


def model_pins(name: str, noise, dtype, recorded: dict[str, Pin] | None = None) -> dict[str, Pin]:
    """Every computation of one small model: its parameters drawn from the seed, then every
    result computed from the recorded parameters when ``recorded`` is given (the draws
    round differently on another kernel path; the results are then still compared at the
    precision of their own dtype), else from the drawn ones."""
    tag = f"{name}/{str(dtype).removeprefix('torch.')}"
    pins = {}
    model = _model(noise, dtype)
    x, y = _batch(dtype)
    xi_generator = torch.Generator().manual_seed(5)
    xi = torch.randn(*x.shape[:2], model.noise_dim, generator=xi_generator, dtype=dtype)
    pins[f"{tag}/parameters"] = parts(parameters(model))
    if recorded is not None:
        load_parameters(model, recorded[f"{tag}/parameters"])
    model.train()
    torch.manual_seed(6)
    pins[f"{tag}/forward-train"] = parts([model(x), model(x)])
    model.eval()
    pins[f"{tag}/forward-eval"] = parts(model(x))
    pins[f"{tag}/trajectory-xi"] = parts(
        {"trajectory": model.trajectory(x, xi), "final": model.final_state(x, xi)}
    )
    loss = F.cross_entropy(model(x, xi), y)
    pins[f"{tag}/gradients"] = parts({"loss": loss, "gradient": _gradients(loss, model)})

    exact = nrnn.explicit_regularizer(model, x, y)
    pins[f"{tag}/regularizer-exact"] = parts(
        {"value": list(exact), "gradient": _gradients(exact.expected_loss.sum(), model)}
    )
    probe = nrnn.explicit_regularizer(
        model, x, y, method="probe", probes=3, generator=torch.Generator().manual_seed(7)
    )
    pins[f"{tag}/regularizer-probe"] = parts(
        {"value": list(probe), "gradient": _gradients(probe.expected_loss.sum(), model)}
    )
    pins[f"{tag}/laplacian"] = parts(nrnn.noise_laplacian(model, x[:2, :3], y[:2]))

    pins[f"{tag}/contraction-rate"] = parts(stability.contraction_rate(model))
    if isinstance(noise, Noise):
        bounds = [stability.almost_sure_bound(model), stability.mean_square_bound(model)]
        bounds.append(stability.em_mean_square_bound(model))
        if noise.layout.one_common_motion:
            bounds.append(stability.em_almost_sure_bound(model, grid_points=101))
        pins[f"{tag}/bounds"] = parts(bounds)
    estimate = stability.lyapunov_exponent(model, x[:1], paths=4, seed=8, steps=6, burn_in=2)
    pins[f"{tag}/lyapunov"] = parts(
        {"samples": estimate.samples, "exponent": estimate.exponent, "stderr": estimate.stderr}
    )
    pins[f"{tag}/hessian-trace"] = parts(metrics.hessian_trace(model, x, y, probes=3, seed=1).value)
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
    config_module.from_dict(
        {"noise": {"kind": form, "additive": 0.1, "multiplicative": 0.1}}, config
    )
    config.optim.grad_clip = 1.0
    config.train.objective = objective
    config.train.regularizer_method = "probe"
    config.train.probes = 2
    config.train.epochs = epochs
    return config


TRAININGS = {
    "noise-paper": ("noise", "paper"),
    "explicit-paper": ("explicit", "paper"),
    "noise-reference": ("noise", "released"),  # the pin's name from before "released"
}


def training_pin(result) -> Pin:
    """The trained parameters and every per-epoch metric but the time."""
    history = {
        key: torch.tensor([float(m[key]) for m in result.metrics], dtype=torch.float64)
        for key in sorted(result.metrics[0])
        if key != "seconds"
    }
    return parts({"parameters": parameters(result.model), "metrics": history})


def training_pins(directory: Path, configure=lambda config: config) -> dict[str, Pin]:
    """Whole training runs (2 epochs) through nrnn.train.train (``configure`` may change
    each config: the negative controls)."""
    from nrnn.train import train

    pins = {}
    for name, (objective, form) in TRAININGS.items():
        config = configure(_train_config(objective, form, 2))
        pins[f"train/{name}"] = training_pin(train(config, directory / name, progress=False))
    return pins


def resumed_training(run_dir: Path) -> Pin:
    """Resume the recorded one-epoch run (written by today's code) to two epochs."""
    from nrnn.train import train

    config = _train_config("noise", "paper", 2, recurrence="fused")  # the legacy run's hash
    return parts(parameters(train(config, run_dir, resume=True, progress=False).model))


def legacy_state_dicts() -> dict[str, NoisyRNN]:
    """Small models whose state_dict today's code wrote, keyed by construction."""
    return {name: _model(noise, torch.float32) for name, noise in MODELS.items()} | {
        "antisymmetric": _model(Noise(0.1, 0.1), torch.float32, antisymmetric=True)
    }


def state_dict_pins() -> dict[str, Pin]:
    """The outputs of the models whose state dicts older code wrote, loaded from them."""
    x, _ = _batch(torch.float32)
    saved = torch.load(LEGACY_STATE_DICTS, weights_only=True)
    pins = {}
    for name, model in legacy_state_dicts().items():
        model.load_state_dict(saved[name])
        with torch.no_grad():
            pins[f"state-dict/{name}"] = parts(model.eval()(x))
    return pins


def compute(
    recorded: dict[str, Pin] | None = None, include_training: bool = True
) -> dict[str, Pin]:
    """Every pin, recomputed with the code as it is now (on one thread); the small models'
    results from the ``recorded`` parameters if given (:func:`model_pins`)."""
    pins = {}
    with one_thread():
        for name, kwargs in CONSTRUCTIONS.items():
            torch.manual_seed(11)
            pins[f"construct/{name}"] = parts(parameters(NoisyRNN(3, 5, 4, **kwargs)))
        for dtype in (torch.float32, torch.float64):
            for name, noise in MODELS.items():
                pins.update(model_pins(name, noise, dtype, recorded))
        pins.update(state_dict_pins())
        if include_training:
            with tempfile.TemporaryDirectory() as directory:
                pins.update(training_pins(Path(directory)))
                run_dir = Path(directory) / "resumed"
                shutil.copytree(LEGACY_RUN, run_dir)
                pins["train/resumed-from-legacy"] = resumed_training(run_dir)
    return pins


def record(fixtures: bool = False, force: bool = False) -> None:
    """Write the pins of today's code and this machine's fingerprint; with ``fixtures``
    first rewrite the legacy run and state dicts as well (they stand for files written by
    older code: only on purpose). Without ``force``, refuses values that differ from the
    recorded ones beyond the tolerances (a change of results must be meant)."""
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
    pins = compute()
    if PINS.exists() and not force:
        changed = differences(pins, read()[1])
        if changed:
            raise SystemExit(
                "results changed beyond the tolerances (use --force if that is meant):\n"
                + "\n".join(changed)
            )
    PINS.write_text(file_text(fingerprint(), pins))


def file_text(machine: dict[str, str], pins: dict[str, Pin]) -> str:
    """The pins file: JSON with one line per part, so that a change reads as a diff."""
    lines = ["{", f' "fingerprint": {json.dumps(machine, sort_keys=True)},', ' "pins": {']
    content = to_json(pins)
    for index, name in enumerate(sorted(content)):
        lines.append(f"  {json.dumps(name)}: {{")
        labels = sorted(content[name])
        for position, label in enumerate(labels):
            comma = "," if position < len(labels) - 1 else ""
            lines.append(f"   {json.dumps(label)}: {json.dumps(content[name][label])}{comma}")
        lines.append("  }," if index < len(content) - 1 else "  }")
    lines += [" }", "}", ""]
    return "\n".join(lines)


USAGE = "usage: python tests/lipschitz_pins.py --record [--fixtures] [--force]"

if __name__ == "__main__":
    options = sys.argv[1:]
    if not options or options[0] != "--record" or set(options[1:]) - {"--fixtures", "--force"}:
        raise SystemExit(USAGE)
    record(fixtures="--fixtures" in options, force="--force" in options)
