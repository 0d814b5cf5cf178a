"""The torchsde side of the Monte Carlo benchmark (``monte_carlo_speed``).

- The noisy RNN written as a torchsde SDE: :class:`NoisyRNNSDE` (Itô, diagonal noise, the
  model's drift and diffusion), :func:`build_sde` from a model and its input, and
  :func:`simulate_with_torchsde`, the final states of many paths by
  ``torchsde.sdeint(method="euler")`` with its default Brownian motion.
- The fairness comparison of two samples of final states: :func:`compare_final_states`
  (per-unit mean and standard deviation within z standard errors), so that a timing of
  two simulators compares simulations of the same SDE.

torchsde is imported only when :func:`simulate_with_torchsde` runs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nrnn.model import NoisyRNN


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
    names: tuple[str, str] = ("simulator", "torchsde"),
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
