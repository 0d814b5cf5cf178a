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

Monte Carlo paths (no gradients) against ``torchsde`` are timed in ``monte_carlo_speed``.

Every part returns a JSON-ready dict with the raw timings, medians, ratios and aims.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from nrnn.model import NoisyRNN
from nrnn.noise import Noise
from nrnn.workflow.experiments import Experiment

from .timing import aim, check_finite_timings, median, time_interleaved

NAME = "model_speed"
PARTS = ("sequence_scaling", "vs_torch_rnn", "training_step")

LINEAR_SLACK = 1.3  # allowed excess over exactly linear growth in sequence length
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
    warmup: int = 1
    seed: int = 0

    def to_json(self) -> dict:
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(self).items()
        }


FULL = ModelSpeedSizes()
QUICK = dataclasses.replace(FULL, step_repeats=2)
SMOKE = ModelSpeedSizes(
    batch=8,
    hidden=8,
    classes=3,
    short_length=4,
    long_length=16,
    step_repeats=1,
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


# ------------------------------------------------------------------- entry point
PART_FUNCTIONS: dict[str, Callable[[ModelSpeedSizes], dict]] = {
    "sequence_scaling": bench_sequence_scaling,
    "vs_torch_rnn": bench_vs_torch_rnn,
    "training_step": bench_training_step,
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
    return rows


EXPERIMENT = Experiment(
    name=NAME,
    title="noisy RNN: linear scaling in M, vs torch.nn.RNN, training step",
    profiles=PROFILES,
    run=lambda sizes, context: run(sizes, context.parts),
    parts=PARTS,
)
