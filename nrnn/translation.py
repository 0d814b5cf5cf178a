"""The authors' released noise in the paper's SDE form, from the released step's derived
SDE equivalent (never by a convention).

The released step (``nrnn.ReleasedNoise``) is

    h' = h + (δ ⊙ u) ⊙ f(h, x) + s_a ζ,   u ~ Uniform[1 − s_m, 1] per unit, ζ ~ N(0, I),

with δ a learnable per-unit step initialised to Δt. Its first two moments per unit, at
δ = Δt (derived in ``nrnn.derivations.released_noise``; the formula sheet's "released
code" section):

    mean      h + Δt (1 − s_m/2) f                        a drift shrunk by E u
    variance  s_a² + (s_m²/12) (Δt f)²                    ``released_step_variance``

The paper's Euler–Maruyama step h' = h + Δt f + √Δt σ(h) ξ with σ(h) = σ₁ I + σ₂ diag(h)
adds the variance Δt (σ₁² + σ₂² h²). Term by term:

- the additive part maps exactly: σ₁ = s_a / √Δt (``released_additive_level``);
- the second part is proportional to the squared *drift step*, not to the squared state: no
  σ₂ reproduces it (σ₂ h would need h ∝ Δt f at every step). The matched paper-form model
  carries σ₂ = 0; what it leaves out is reported with its measured size
  (:func:`dropped_variance_share`);
- the drift shrink 1 − s_m/2 is not noise: the released model trains with a mean step
  δ (1 − s_m/2) and evaluates with δ. The paper form has no counterpart (it trains and
  evaluates with Δt), so the matched model leaves it out too.

The state-multiplicative level σ₂ = s_m / √Δt (an older convention that gave the paper's
σ₂ h the released "relative size" s_m) adds the per-step variance s_m² h², about
12 (h / (Δt f))² times the released drift-proportional variance: not the released level.

:func:`logit_noise` measures the end-to-end effect (the variance of the logits over the
training noise), which the tests compare between a released model and its matched
paper-form twin with the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from . import contract
from ._generated.released_noise import (
    released_additive_level,
    released_drift_scale,
    released_step_variance,
)
from .model import NoisyRNN, check_model
from .noise import Noise, ReleasedNoise
from .paths import simulate

__all__ = [
    "LogitNoise",
    "ReleasedTranslation",
    "dropped_variance_share",
    "logit_noise",
    "released_to_paper",
]


@dataclass(frozen=True)
class ReleasedTranslation:
    """A released setting (s_a, s_m) at step Δt and its matched paper-form noise.

    Attributes:
        additive, multiplicative: the released levels s_a, s_m.
        dt: the step Δt (the released δ's initial value).
        paper: the matched paper-form noise: ``Noise(s_a / √Δt, 0)``.
        drift_scale: E u = 1 − s_m/2, the training drift shrink the paper form leaves out.
        drift_noise_factor: s_m² / 12: the released per-step variance (s_m²/12)(δ f)² that
            has no paper-form equivalent (left out; see :func:`dropped_variance_share`).
    """

    additive: float
    multiplicative: float
    dt: float
    paper: Noise
    drift_scale: float
    drift_noise_factor: float

    @property
    def released(self) -> ReleasedNoise:
        return ReleasedNoise(self.additive, self.multiplicative)

    def as_dict(self) -> dict[str, float | str]:
        """The translation as JSON-ready numbers (what the robustness outputs record)."""
        return {
            "released_additive": self.additive,
            "released_multiplicative": self.multiplicative,
            "dt": self.dt,
            "paper_additive": self.paper.additive,
            "paper_multiplicative": self.paper.multiplicative,
            "drift_scale_left_out": self.drift_scale,
            "drift_noise_factor_left_out": self.drift_noise_factor,
            "rule": "sigma_1 = s_a / sqrt(dt) (exact); sigma_2 = 0: the released "
            "drift-proportional variance (s_m^2/12)(dt f)^2 has no sigma_2 h equivalent",
        }


def released_to_paper(additive: float, multiplicative: float, dt: float) -> ReleasedTranslation:
    """The paper-form equivalent of the released setting (s_a, s_m) at step Δt.

    Args:
        additive: s_a ≥ 0, the released additive standard deviation per step.
        multiplicative: s_m ∈ [0, 1], the width of the released step multiplier.
        dt: Δt > 0, the step (δ's initial value in the released model).
    Returns:
        the :class:`ReleasedTranslation`; its ``paper`` noise is ``Noise(s_a / √Δt, 0)``.
    """
    released = ReleasedNoise(additive, multiplicative)  # validates both levels
    dt = contract.real("dt", dt, minimum=0, strict=True)
    s_m = released.multiplicative
    return ReleasedTranslation(
        additive=released.additive,
        multiplicative=s_m,
        dt=dt,
        paper=Noise(float(released_additive_level(released.additive, dt)), 0.0),
        drift_scale=float(released_drift_scale(s_m)),
        drift_noise_factor=float(
            released_step_variance(0.0, s_m, torch.ones(1, dtype=torch.float64))[0]
        ),
    )


def _released_model(model: NoisyRNN) -> ReleasedNoise:
    noise = check_model(model).noise
    if not isinstance(noise, ReleasedNoise):
        raise TypeError(
            f"model must use the released noise form (nrnn.ReleasedNoise), got {noise!r}"
        )
    return noise


@torch.no_grad()
def dropped_variance_share(model: NoisyRNN, x: torch.Tensor) -> float:
    """How much per-step variance the matched paper form leaves out, relative to what it
    keeps: Σ (s_m²/12)(δ ⊙ f)² / Σ s_a², summed over units, steps and sequences, along the
    released model's mean training path (ξ = 0: the step δ (1 − s_m/2)).

    Args:
        model: a NoisyRNN with ``ReleasedNoise``.
        x: inputs (batch, M, p).
    Returns:
        the ratio (inf when s_a = 0 and s_m > 0; 0 when s_m = 0).
    """
    noise = _released_model(model)
    reference = model.readout.weight
    x = contract.as_model_dtype(contract.sequences(x, features=model.input_dim), reference)
    quiet = torch.zeros(*x.shape[:2], model.noise_dim, dtype=x.dtype, device=x.device)
    states = model.trajectory(x, quiet)[:, :-1]  # h_0 .. h_{M-1}: (batch, M, n)
    drives = model.input_drive(x)
    flat = model.cell.drift(  # the drift of every step, (batch · M, n)
        states.reshape(-1, states.shape[-1]),
        drives.reshape(-1, drives.shape[-1]),
        model.cell.drift_parameters(),
    )
    drifts = flat.reshape(states.shape)
    step_drift = model.noise_parameters["step_size"] * drifts
    total = released_step_variance(noise.additive, noise.multiplicative, step_drift)
    kept = noise.additive**2 * total.numel()
    dropped = float((total - noise.additive**2).sum())
    if kept == 0:
        return 0.0 if dropped == 0 else float("inf")
    return dropped / kept


class LogitNoise(NamedTuple):
    """Per sequence: the total variance of the logits over the noise, tr Cov(logits), and
    its Monte Carlo standard error; each (batch,)."""

    variance: torch.Tensor
    stderr: torch.Tensor


@torch.no_grad()
def logit_noise(
    model: NoisyRNN,
    x: torch.Tensor,
    *,
    paths: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> LogitNoise:
    """tr Cov(logits) of every sequence of ``x`` over the model's training noise.

    ``paths`` independent noise paths per sequence (the path simulator, ``nrnn.paths``);
    the standard error is that of the mean of the squared deviations from the sample
    mean, times N / (N − 1) (delta method; asymptotically normal).

    Args:
        model: any NoisyRNN (its noise is used whatever its mode).
        x: inputs (batch, M, p).
        paths: N ≥ 2 paths per sequence.
        generator: draws the noise (default: torch's global generator).
        dtype: the simulation's dtype.
    Returns:
        :class:`LogitNoise` with (batch,) tensors.
    """
    check_model(model)
    paths = contract.integer("paths", paths, minimum=2)
    x = contract.sequences(x, features=model.input_dim)
    weight, bias = model.readout.weight.to(dtype), model.readout.bias.to(dtype)
    variances, errors = [], []
    for sequence in x.to(dtype).unbind(0):
        final = simulate(model, sequence[None], paths=paths, generator=generator, dtype=dtype)
        logits = torch.nn.functional.linear(model.cell.output(final), weight, bias)  # (paths, c)
        squared = (logits - logits.mean(0)).pow(2).sum(-1) * (paths / (paths - 1))
        variances.append(squared.mean())
        errors.append(squared.std() / paths**0.5)
    return LogitNoise(torch.stack(variances), torch.stack(errors))
