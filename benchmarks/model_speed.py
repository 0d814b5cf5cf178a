"""Speed of the noisy RNN (issue 2): three timed comparisons, each against a baseline
measured in the same run.

1. ``sequence_scaling``: one noisy training step (forward + backward + Adam step, train
   mode, ``Noise(0.1, 0.1)``) at a short and a long sequence length. The time must grow
   linearly: aim time(long) / time(short) ≤ 1.3 × long / short (15.9 for 784 / 64).
2. ``vs_torch_rnn``: the noisy RNN's forward + backward against ``torch.nn.RNN`` (tanh,
   batch first, same sizes) followed by a linear readout, at both lengths. Reported only.
3. ``training_step`` (issue 13): one noisy training step (forward + backward, train mode,
   noise drawn) of the fused recurrence (the default), of the op-by-op reference
   recurrence, of ``torch.nn.RNN`` and of a loop of the matrix products alone that the
   Lipschitz cell's step needs (the arithmetic limit), at both lengths and at each thread
   count of ``threads``. Aims: fused ≤ 1.5× nn.RNN at the short length and ≤ 1.0× at the
   long one; fused within 3× of its matrix products.
4. ``monte_carlo_paths``: many paths of the noisy RNN SDE, simulated by the model
   (``model.train(); model.final_state(x)`` under ``torch.no_grad()``) against
   ``torchsde.sdeint(method="euler")`` on an SDE with the same drift and diagonal
   diffusion. The final states' mean and standard deviation must agree within Monte Carlo
   error (so the comparison is fair); aim: the model at least 3× faster.

Every part returns a JSON-ready dict with the raw timings, medians, ratios and aims.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from nrnn.experiments import Experiment
from nrnn.model import NoisyRNN
from nrnn.noise import Noise

from .timing import aim, check_finite_timings, median, time_interleaved

NAME = "model_speed"
PARTS = ("sequence_scaling", "vs_torch_rnn", "training_step", "monte_carlo_paths")

LINEAR_SLACK = 1.3  # allowed excess over exactly linear growth in sequence length
MONTE_CARLO_SPEEDUP_AIM = 3.0
TORCH_RNN_AIMS = {"short": 1.5, "long": 1.0}  # fused step / nn.RNN step, at most
MATMUL_LIMIT_AIM = 3.0  # fused step / its matrix products alone, at most


@dataclass(frozen=True)
class ModelSpeedSizes:
    """Problem sizes and repeat counts; the profiles below are the usual choices."""

    batch: int = 128
    hidden: int = 128
    input_dim: int = 1
    classes: int = 10
    short_length: int = 64
    long_length: int = 784
    train_additive: float = 0.1
    train_multiplicative: float = 0.1
    step_repeats: int = 5
    threads: tuple[int, ...] = (1, 2)  # intra-op thread counts of the training_step part
    mc_paths: int = 10_000
    mc_hidden: int = 16
    mc_steps: int = 50
    # A power of two: the solver's accumulated times are then exact, so torchsde takes
    # exactly mc_steps steps (no extra tiny step from rounding).
    mc_dt: float = 0.0625
    # Larger than the training noise so the fairness check sees both diffusion terms.
    mc_additive: float = 0.5
    mc_multiplicative: float = 0.5
    mc_repeats: int = 7
    warmup: int = 1
    seed: int = 0
    # Two-sided z threshold of the fairness check, per compared statistic.
    fairness_z: float = 4.5

    def to_json(self) -> dict:
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }


FULL = ModelSpeedSizes()
QUICK = dataclasses.replace(FULL, step_repeats=2, mc_repeats=3)
SMOKE = ModelSpeedSizes(
    batch=8,
    hidden=8,
    classes=3,
    short_length=4,
    long_length=16,
    step_repeats=1,
    mc_paths=2_000,
    mc_hidden=4,
    mc_steps=10,
    mc_repeats=1,
    warmup=1,
    threads=(1,),
)
# Benchmarks train nothing: medium (the pixel-MNIST profile) times the full sizes.
PROFILES = {"smoke": SMOKE, "quick": QUICK, "medium": FULL, "full": FULL}


# --------------------------------------------------------------------------- models
def build_noisy_rnn(sizes: ModelSpeedSizes) -> NoisyRNN:
    """The noisy RNN of the training-step parts, seeded, in training mode."""
    torch.manual_seed(sizes.seed)
    noise = Noise(additive=sizes.train_additive, multiplicative=sizes.train_multiplicative)
    model = NoisyRNN(sizes.input_dim, sizes.hidden, sizes.classes, noise=noise)
    return model.train()


class TorchRNNClassifier(nn.Module):
    """Baseline: ``torch.nn.RNN`` (tanh, batch first) and a linear readout of h_M."""

    def __init__(self, input_dim: int, hidden_dim: int, num_classes: int) -> None:
        super().__init__()
        self.rnn = nn.RNN(input_dim, hidden_dim, nonlinearity="tanh", batch_first=True)
        self.readout = nn.Linear(hidden_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, last_hidden = self.rnn(x)
        return self.readout(last_hidden[-1])


def build_reference_rnn(sizes: ModelSpeedSizes) -> NoisyRNN:
    """The same noisy RNN (same seed, same weights) on the op-by-op reference recurrence."""
    model = build_noisy_rnn(sizes)
    model.recurrence = "reference"
    return model


def build_torch_rnn(sizes: ModelSpeedSizes) -> TorchRNNClassifier:
    torch.manual_seed(sizes.seed)
    return TorchRNNClassifier(sizes.input_dim, sizes.hidden, sizes.classes).train()


def classification_batch(sizes: ModelSpeedSizes, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs (batch, length, p) and labels (batch,), seeded by length."""
    generator = torch.Generator().manual_seed(sizes.seed + length)
    x = torch.randn(sizes.batch, length, sizes.input_dim, generator=generator)
    y = torch.randint(0, sizes.classes, (sizes.batch,), generator=generator)
    return x, y


def make_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer | None = None,
) -> Callable[[], None]:
    """One forward + backward (+ optimizer step when given) on a fixed batch."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if optimizer is not None:
            optimizer.step()

    return step


def _lengths(sizes: ModelSpeedSizes) -> tuple[int, int]:
    if not 0 < sizes.short_length < sizes.long_length:
        raise ValueError(
            f"need 0 < short_length < long_length, got {sizes.short_length}, {sizes.long_length}"
        )
    return sizes.short_length, sizes.long_length


# --------------------------------------------------------------- part 1: scaling
def bench_sequence_scaling(sizes: ModelSpeedSizes) -> dict:
    """Noisy training step at the short and long length; ratio and the linearity aim."""
    short, long = _lengths(sizes)
    model = build_noisy_rnn(sizes)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    calls = {
        str(length): make_step(model, *classification_batch(sizes, length), optimizer)
        for length in (short, long)
    }
    seconds = time_interleaved(calls, repeats=sizes.step_repeats, warmup=sizes.warmup)
    check_finite_timings(seconds)
    medians = {name: median(values) for name, values in seconds.items()}
    ratio = medians[str(long)] / medians[str(short)]
    bound = LINEAR_SLACK * long / short
    return {
        "step": "forward + backward + Adam step, train mode, noise drawn",
        "noise": {"additive": sizes.train_additive, "multiplicative": sizes.train_multiplicative},
        "batch": sizes.batch,
        "hidden": sizes.hidden,
        "input_dim": sizes.input_dim,
        "classes": sizes.classes,
        "lengths": [short, long],
        "seconds": seconds,
        "median_seconds": medians,
        "ratio_long_to_short": ratio,
        "linear_ratio": long / short,
        "aims": [
            aim(
                f"time(M={long}) / time(M={short}) <= {LINEAR_SLACK} x {long}/{short}"
                f" = {bound:.1f}",
                ratio,
                bound,
                "<=",
            )
        ],
    }


# ----------------------------------------------------------- part 2: nn.RNN
def bench_vs_torch_rnn(sizes: ModelSpeedSizes) -> dict:
    """Noisy RNN forward + backward against ``torch.nn.RNN`` + readout at both lengths."""
    noisy = build_noisy_rnn(sizes)
    baseline = build_torch_rnn(sizes)
    seconds: dict[str, dict[str, list[float]]] = {"noisy_rnn": {}, "torch_rnn": {}}
    for length in _lengths(sizes):
        x, y = classification_batch(sizes, length)
        timed = time_interleaved(
            {"noisy_rnn": make_step(noisy, x, y), "torch_rnn": make_step(baseline, x, y)},
            repeats=sizes.step_repeats,
            warmup=sizes.warmup,
        )
        check_finite_timings(timed)
        for model_name, values in timed.items():
            seconds[model_name][str(length)] = values
    medians = {
        model_name: {length: median(values) for length, values in per_length.items()}
        for model_name, per_length in seconds.items()
    }
    ratios = {
        length: medians["noisy_rnn"][length] / medians["torch_rnn"][length]
        for length in medians["noisy_rnn"]
    }
    return {
        "step": "forward + backward (no optimizer step); noisy RNN in train mode, noise drawn",
        "baseline": "torch.nn.RNN(nonlinearity='tanh', batch_first=True) + nn.Linear readout",
        "batch": sizes.batch,
        "hidden": sizes.hidden,
        "lengths": list(_lengths(sizes)),
        "seconds": seconds,
        "median_seconds": medians,
        "ratio_noisy_to_torch_rnn": ratios,
        "aims": [],
    }


# ------------------------------------------------- part 3: training step (issue 13)
def recurrent_matrices(model: NoisyRNN) -> list[torch.Tensor]:
    """The cell's square (n, n) matrices of the drift (the Lipschitz cell: A and W)."""
    n = model.cell.state_dim
    return [
        value.detach()
        for value in model.cell.drift_parameters()
        if isinstance(value, torch.Tensor) and value.shape == (n, n)
    ]


def make_matmul_only_step(matrices: list[torch.Tensor], batch: int, length: int):
    """The matrix products of one training step and nothing else, for each (n, n) matrix
    and each of ``length`` steps: forward rows @ Mᵀ, backward cotangent rows @ M and the
    gradient rowsᵀ @ rows (batch, n) -> (n, n); one ``torch.matmul`` each into a kept
    buffer (no allocation, no elementwise work): the arithmetic limit of the step."""
    n = matrices[0].shape[0]
    generator = torch.Generator().manual_seed(length)
    rows = torch.randn(batch, n, generator=generator, dtype=matrices[0].dtype)
    row_buffer, matrix_buffer = torch.empty_like(rows), torch.empty_like(matrices[0])
    transposed = [matrix.T for matrix in matrices]
    rows_transposed = rows.T

    def step() -> None:
        with torch.no_grad():
            for _ in range(length):  # forward
                for matrix_transposed in transposed:
                    torch.matmul(rows, matrix_transposed, out=row_buffer)
            for _ in range(length):  # backward
                for matrix in matrices:
                    torch.matmul(rows, matrix, out=row_buffer)
                    torch.matmul(rows_transposed, rows, out=matrix_buffer)

    return step


def bench_training_step(sizes: ModelSpeedSizes) -> dict:
    """Fused vs reference vs ``torch.nn.RNN`` vs matrix products alone: forward + backward of
    one training step at both lengths and every thread count; medians and ratios."""
    variants = ("fused", "reference", "torch_rnn", "matmul_only")
    fused_model, reference_model = build_noisy_rnn(sizes), build_reference_rnn(sizes)
    baseline = build_torch_rnn(sizes)
    matrices = recurrent_matrices(fused_model)
    before = torch.get_num_threads()
    seconds: dict[str, dict[str, dict[str, list[float]]]] = {}
    try:
        for threads in sizes.threads:
            torch.set_num_threads(threads)
            per_length: dict[str, dict[str, list[float]]] = {}
            for length in _lengths(sizes):
                x, y = classification_batch(sizes, length)
                calls = {
                    "fused": make_step(fused_model, x, y),
                    "reference": make_step(reference_model, x, y),
                    "torch_rnn": make_step(baseline, x, y),
                    "matmul_only": make_matmul_only_step(matrices, sizes.batch, length),
                }
                timed = time_interleaved(calls, repeats=sizes.step_repeats, warmup=sizes.warmup)
                check_finite_timings(timed)
                per_length[str(length)] = timed
            seconds[str(threads)] = per_length
    finally:
        torch.set_num_threads(before)
    medians = {
        thread_count: {
            length: {name: median(timed[name]) for name in variants}
            for length, timed in timed_by_length.items()
        }
        for thread_count, timed_by_length in seconds.items()
    }
    ratio_pairs = {
        "fused_to_torch_rnn": ("fused", "torch_rnn"),
        "fused_to_matmul_only": ("fused", "matmul_only"),
        "fused_to_reference": ("fused", "reference"),
        "reference_to_torch_rnn": ("reference", "torch_rnn"),
        "torch_rnn_to_matmul_only": ("torch_rnn", "matmul_only"),
    }
    ratios = {
        thread_count: {
            length: {key: times[a] / times[b] for key, (a, b) in ratio_pairs.items()}
            for length, times in medians_by_length.items()
        }
        for thread_count, medians_by_length in medians.items()
    }
    short, long = (str(m) for m in _lengths(sizes))
    aims = []
    for thread_count, ratios_by_length in ratios.items():
        for label, length_key in (("short", short), ("long", long)):
            bound = TORCH_RNN_AIMS[label]
            value = ratios_by_length[length_key]["fused_to_torch_rnn"]
            aims.append(
                aim(
                    f"fused / nn.RNN at M={length_key}, {thread_count} thread(s) <= {bound:g}",
                    value,
                    bound,
                    "<=",
                )
            )
        for length_key in (short, long):
            value = ratios_by_length[length_key]["fused_to_matmul_only"]
            aims.append(
                aim(
                    f"fused / matrix products alone at M={length_key}, {thread_count} thread(s)"
                    f" <= {MATMUL_LIMIT_AIM:g}",
                    value,
                    MATMUL_LIMIT_AIM,
                    "<=",
                )
            )
    return {
        "step": "forward + backward (no optimizer step); noisy RNNs in train mode, noise drawn",
        "noise": {"additive": sizes.train_additive, "multiplicative": sizes.train_multiplicative},
        "variants": {
            "fused": "NoisyRNN, recurrence='fused' (the default)",
            "reference": "NoisyRNN, recurrence='reference' (op by op with autograd)",
            "torch_rnn": "torch.nn.RNN(nonlinearity='tanh', batch_first=True) + nn.Linear",
            "matmul_only": f"{3 * len(matrices)} torch.matmul per step ({len(matrices)} "
            "matrices: forward, backward cotangent, gradient), into kept buffers",
        },
        "batch": sizes.batch,
        "hidden": sizes.hidden,
        "lengths": list(_lengths(sizes)),
        "threads": list(sizes.threads),
        "seconds": seconds,
        "median_seconds": medians,
        "ratios": ratios,
        "aims": aims,
    }


# ----------------------------------------------------- part 4: Monte Carlo paths
class NoisyRNNSDE(nn.Module):
    """The noisy RNN as an Itô SDE for torchsde, with diagonal noise.

    drift f(t, h) = A h + tanh(W h + U x_k + b), diffusion σ(h) = σ₁ + σ₂ h (elementwise),
    where the input is piecewise constant: x_k is used on [k dt, (k+1) dt).
    ``drives`` holds U x_k + b for every step k, each (paths, d).
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, A, W, drives, dt: float, additive: float, multiplicative: float):
        super().__init__()
        self.A_T = A.T.contiguous()
        self.W_T = W.T.contiguous()
        self.drives = tuple(drives)
        self.dt = dt
        self.additive = additive
        self.multiplicative = multiplicative
        self.drift_calls = 0

    def step_index(self, t: torch.Tensor) -> int:
        """k with t ≈ k dt, rounded (the solver's times carry rounding error)."""
        index = int(float(t) / self.dt + 0.5)
        return min(index, len(self.drives) - 1)

    def f(self, t, h):
        self.drift_calls += 1
        drive = self.drives[self.step_index(t)]
        return h @ self.A_T + torch.tanh(h @ self.W_T + drive)

    def g(self, t, h):
        return self.additive + self.multiplicative * h


def build_monte_carlo_model(sizes: ModelSpeedSizes) -> NoisyRNN:
    torch.manual_seed(sizes.seed)
    noise = Noise(additive=sizes.mc_additive, multiplicative=sizes.mc_multiplicative)
    model = NoisyRNN(sizes.input_dim, sizes.mc_hidden, sizes.classes, dt=sizes.mc_dt, noise=noise)
    return model.train()


def monte_carlo_input(sizes: ModelSpeedSizes) -> torch.Tensor:
    """One random input sequence shared by every path: (paths, steps, p)."""
    generator = torch.Generator().manual_seed(sizes.seed + 1)
    sequence = torch.randn(1, sizes.mc_steps, sizes.input_dim, generator=generator)
    return sequence.expand(sizes.mc_paths, -1, -1).contiguous()


def simulate_with_model(model: NoisyRNN, x: torch.Tensor) -> torch.Tensor:
    """Final states (paths, d) from the model's own Euler–Maruyama loop, noise on."""
    model.train()
    with torch.no_grad():
        return model.final_state(x)


def build_sde(model: NoisyRNN, x: torch.Tensor) -> NoisyRNNSDE:
    """The model's SDE with its matrices and the drives U x_k + b of ``x``."""
    with torch.no_grad():
        A, W = model.matrices()
        drives = model.input_drive(x).transpose(0, 1).unbind(0)
    return NoisyRNNSDE(A, W, drives, model.dt, model.noise.additive, model.noise.multiplicative)


def simulate_with_torchsde(
    model: NoisyRNN, x: torch.Tensor, entropy: int, paths: int | None = None
) -> tuple[torch.Tensor, int]:
    """Final states (paths, d) from ``torchsde.sdeint(method="euler", dt=model.dt)``.

    x is (paths, steps, p), or (1, steps, p) shared by ``paths`` paths. The Brownian
    motion is the one ``sdeint`` would build by default (a ``BrownianInterval`` without
    Lévy area), given a seed so the run is reproducible. Returns the final states and the
    number of solver steps taken (drift evaluations minus the one ``sdeint`` makes to
    check shapes).
    """
    import torchsde

    steps = x.shape[1]
    paths = x.shape[0] if paths is None else paths
    sde = build_sde(model, x)
    h0 = x.new_zeros(paths, model.hidden_dim)
    ts = torch.tensor([0.0, steps * model.dt], dtype=h0.dtype)
    bm = torchsde.BrownianInterval(
        t0=ts[0],
        t1=ts[-1],
        size=h0.shape,
        dtype=h0.dtype,
        levy_area_approximation="none",
        entropy=entropy,
    )
    with torch.no_grad():
        ys = torchsde.sdeint(sde, h0, ts, bm=bm, method="euler", dt=model.dt)
    return ys[-1], sde.drift_calls - 1


def _std_error_of_std(samples: torch.Tensor) -> torch.Tensor:
    """Standard error of the sample standard deviation, per column, from the 4th moment."""
    n = samples.shape[0]
    centred = samples - samples.mean(0)
    variance = centred.pow(2).mean(0)
    fourth = centred.pow(4).mean(0)
    variance_of_variance = (fourth - variance.pow(2)) / n
    return (variance_of_variance / (4 * variance)).sqrt()


def compare_final_states(
    a: torch.Tensor,
    b: torch.Tensor,
    z_threshold: float,
    names: tuple[str, str] = ("noisy_rnn", "torchsde"),
) -> dict:
    """Per-unit means and standard deviations of two independent samples (paths, d).

    Each difference is divided by its standard error; the samples agree when every |z| is
    at most ``z_threshold``. Under equal distributions the chance of a false failure is at
    most 2 d P(|Z| > z) (Bonferroni, normal approximation), recorded alongside. ``names``
    label a and b in the result.
    """
    a, b = a.double(), b.double()
    n_a, n_b = a.shape[0], b.shape[0]
    mean_a, mean_b = a.mean(0), b.mean(0)
    std_a, std_b = a.std(0), b.std(0)
    z_mean = (mean_a - mean_b) / (std_a.pow(2) / n_a + std_b.pow(2) / n_b).sqrt()
    z_std = (std_a - std_b) / (_std_error_of_std(a).pow(2) + _std_error_of_std(b).pow(2)).sqrt()
    compared = 2 * a.shape[1]
    false_failure = min(1.0, compared * math.erfc(z_threshold / math.sqrt(2)))
    max_z_mean = float(z_mean.abs().max())
    max_z_std = float(z_std.abs().max())
    return {
        "statistic": "final state h_M, per hidden unit",
        "mean": dict(zip(names, (mean_a.tolist(), mean_b.tolist()), strict=True)),
        "std": dict(zip(names, (std_a.tolist(), std_b.tolist()), strict=True)),
        "max_abs_z_mean": max_z_mean,
        "max_abs_z_std": max_z_std,
        "z_threshold": z_threshold,
        "false_failure_probability_at_most": false_failure,
        "agrees": bool(max_z_mean <= z_threshold and max_z_std <= z_threshold),
    }


def bench_monte_carlo_paths(sizes: ModelSpeedSizes) -> dict:
    """Model paths vs torchsde paths: a fairness check, then interleaved timings."""
    model = build_monte_carlo_model(sizes)
    x = monte_carlo_input(sizes)

    torch.manual_seed(sizes.seed + 2)
    model_final = simulate_with_model(model, x)
    sde_final, solver_steps = simulate_with_torchsde(model, x, entropy=sizes.seed + 3)
    fairness = compare_final_states(model_final, sde_final, sizes.fairness_z)
    fairness["torchsde_solver_steps"] = solver_steps
    fairness["model_steps"] = sizes.mc_steps

    entropies = iter(range(sizes.seed + 10, 2**31 - 1))
    seconds = time_interleaved(
        {
            "noisy_rnn": lambda: simulate_with_model(model, x),
            "torchsde": lambda: simulate_with_torchsde(model, x, next(entropies)),
        },
        repeats=sizes.mc_repeats,
        warmup=sizes.warmup,
    )
    check_finite_timings(seconds)
    medians = {name: median(values) for name, values in seconds.items()}
    speedup = medians["torchsde"] / medians["noisy_rnn"]
    return {
        "what": "simulate paths, no grad; both return the final state",
        "noisy_rnn_call": "model.train(); torch.no_grad(); model.final_state(x)",
        "torchsde_call": "torchsde.sdeint(sde, h0, [0, M dt], bm=BrownianInterval, "
        "method='euler', dt=model.dt); noise_type='diagonal', sde_type='ito'",
        "paths": sizes.mc_paths,
        "hidden": sizes.mc_hidden,
        "steps": sizes.mc_steps,
        "dt": sizes.mc_dt,
        "noise": {"additive": sizes.mc_additive, "multiplicative": sizes.mc_multiplicative},
        "fairness": fairness,
        "seconds": seconds,
        "median_seconds": medians,
        "speedup_over_torchsde": speedup,
        "aims": [
            aim(
                f"noisy RNN paths >= {MONTE_CARLO_SPEEDUP_AIM:g}x faster than torchsde",
                speedup,
                MONTE_CARLO_SPEEDUP_AIM,
                ">=",
            ),
        ],
    }


# ------------------------------------------------------------------- entry point
PART_FUNCTIONS: dict[str, Callable[[ModelSpeedSizes], dict]] = {
    "sequence_scaling": bench_sequence_scaling,
    "vs_torch_rnn": bench_vs_torch_rnn,
    "training_step": bench_training_step,
    "monte_carlo_paths": bench_monte_carlo_paths,
}


def run(sizes: ModelSpeedSizes = FULL, parts: tuple[str, ...] | None = None) -> dict:
    """Run the chosen parts (all by default); returns ``{"settings", "parts"}``."""
    chosen = PARTS if parts is None else tuple(parts)
    unknown = [part for part in chosen if part not in PART_FUNCTIONS]
    if unknown:
        raise ValueError(f"unknown part(s) {unknown} of {NAME}; choose from {list(PARTS)}")
    return {
        "settings": sizes.to_json(),
        "parts": {part: PART_FUNCTIONS[part](sizes) for part in chosen},
    }


def _seconds(value: float) -> str:
    return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"


def summary_rows(result: dict) -> list[tuple[str, str]]:
    """Readable (quantity, value) rows of a ``run`` result for the table."""
    rows: list[tuple[str, str]] = []
    parts = result["parts"]
    if "sequence_scaling" in parts:
        part = parts["sequence_scaling"]
        for length, value in part["median_seconds"].items():
            rows.append((f"noisy train step, M={length}", _seconds(value)))
        rows.append(("ratio long/short", f"{part['ratio_long_to_short']:.2f}"))
    if "vs_torch_rnn" in parts:
        part = parts["vs_torch_rnn"]
        for length, ratio in part["ratio_noisy_to_torch_rnn"].items():
            noisy = part["median_seconds"]["noisy_rnn"][length]
            baseline = part["median_seconds"]["torch_rnn"][length]
            rows.append(
                (
                    f"fwd+bwd M={length}: noisy / nn.RNN",
                    f"{_seconds(noisy)} / {_seconds(baseline)} = {ratio:.2f}x",
                )
            )
    if "training_step" in parts:
        part = parts["training_step"]
        for threads, per_length in part["ratios"].items():
            for length, ratios in per_length.items():
                fused = part["median_seconds"][threads][length]["fused"]
                rows.append(
                    (
                        f"train step M={length}, {threads} thread(s): fused",
                        f"{_seconds(fused)}; {ratios['fused_to_torch_rnn']:.2f}x nn.RNN, "
                        f"{ratios['fused_to_matmul_only']:.2f}x matmul-only, "
                        f"{ratios['fused_to_reference']:.2f}x reference",
                    )
                )
    if "monte_carlo_paths" in parts:
        part = parts["monte_carlo_paths"]
        medians = part["median_seconds"]
        rows.append((f"{part['paths']} paths: noisy RNN", _seconds(medians["noisy_rnn"])))
        rows.append((f"{part['paths']} paths: torchsde", _seconds(medians["torchsde"])))
        rows.append(("speedup over torchsde", f"{part['speedup_over_torchsde']:.2f}x"))
        fairness = part["fairness"]
        largest_z = max(fairness["max_abs_z_mean"], fairness["max_abs_z_std"])
        rows.append(
            (
                "same final mean/std (max |z|)",
                f"{fairness['agrees']} ({largest_z:.2f} <= {fairness['z_threshold']})",
            )
        )
    return rows


EXPERIMENT = Experiment(
    name=NAME,
    title="noisy RNN: linear scaling in M, vs torch.nn.RNN, training step, MC vs torchsde",
    profiles=PROFILES,
    run=lambda sizes, context: run(sizes, context.parts),
    parts=PARTS,
)
