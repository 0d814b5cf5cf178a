"""The released noise in the paper's form (``nrnn.translation``): the derived levels, the
size of what the translation leaves out, and the end-to-end check that a released model and
its matched paper-form twin (same weights) put the same noise on the logits — with the old
convention σ₂ = s_m/√Δt and an unscaled σ₁ = s_a as negative controls that must fail it."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import nrnn
from nrnn.translation import dropped_variance_share, logit_noise, released_to_paper

from independent import normal_quantile

EXAMPLES = 6
FALSE_FAILURE = 1e-4
"""Probability that the Monte Carlo check fails although the noise matches, over all
examples together (Bonferroni over the examples)."""
Z = normal_quantile(FALSE_FAILURE, comparisons=EXAMPLES)


def test_the_derived_levels():
    for s_a, s_m, dt in ((0.02, 0.02, 0.01), (0.05, 0.02, 0.2), (0.1, 0.5, 1.0), (0.0, 0.0, 0.3)):
        translation = released_to_paper(s_a, s_m, dt)
        assert translation.paper.additive == pytest.approx(s_a / math.sqrt(dt), rel=1e-15)
        assert translation.paper.multiplicative == 0.0
        assert translation.drift_scale == pytest.approx(1 - s_m / 2, abs=0, rel=1e-15)
        assert translation.drift_noise_factor == pytest.approx(s_m**2 / 12, rel=1e-15)
        assert translation.released == nrnn.ReferenceNoise(s_a, s_m)
        record = translation.as_dict()
        assert record["paper_additive"] == translation.paper.additive
        assert record["paper_multiplicative"] == 0.0


@pytest.mark.parametrize(
    "arguments, message",
    [
        ((-0.1, 0.0, 0.1), "additive"),
        ((0.1, 1.5, 0.1), "multiplicative"),
        ((0.1, 0.1, 0.0), "dt"),
        ((0.1, 0.1, -1.0), "dt"),
        ((0.1, 0.1, math.nan), "dt"),
    ],
)
def test_bad_settings_are_refused_with_their_name(arguments, message):
    with pytest.raises(ValueError, match=message):
        released_to_paper(*arguments)


def _pair(seed, hidden, dt, s_a, s_m, init_std, mean_step=True):
    """A released-form model and its matched paper-form twin with the same weights
    (float64). With ``mean_step`` the released δ is Δt/(1 − s_m/2), so that its mean
    training step is Δt, the paper form's: the two then differ in the noise alone."""
    torch.manual_seed(seed)
    translation = released_to_paper(s_a, s_m, dt)
    released = nrnn.NoisyRNN(2, hidden, 3, dt=dt, noise=translation.released, init_std=init_std)
    paper = nrnn.NoisyRNN(2, hidden, 3, dt=dt, noise=translation.paper, init_std=init_std)
    weights = {k: v for k, v in released.state_dict().items() if "step_size" not in k}
    paper.load_state_dict(weights)
    if mean_step:
        with torch.no_grad():
            released.step_size.fill_(dt / translation.drift_scale)
    return released.double(), paper.double(), weights


def _agree(first, second) -> tuple[bool, float]:
    """|difference of the summed logit-noise estimates| ≤ Z · its standard error."""
    difference = float(first.variance.sum() - second.variance.sum())
    error = float((first.stderr.pow(2).sum() + second.stderr.pow(2).sum()).sqrt())
    return abs(difference) <= Z * error, difference / error


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(
    seed=st.integers(0, 2**16),
    hidden=st.integers(2, 6),
    steps=st.integers(5, 30),
    dt=st.sampled_from([0.01, 0.05, 0.1, 0.2]),
    s_a=st.floats(0.02, 0.1),
    s_m=st.floats(0.0, 0.05),
    init_std=st.floats(0.1, 1.0),
)
def test_the_matched_model_puts_the_released_noise_on_the_logits(
    seed, hidden, steps, dt, s_a, s_m, init_std
):
    """Drawn models and inputs: the logit noise tr Cov(logits) of the matched paper-form
    model equals the released model's within Monte Carlo error, where the variance the
    translation leaves out is below a thousandth of what it keeps; an unscaled σ₁ = s_a
    (negative control) fails the same check."""
    released, paper, weights = _pair(seed, hidden, dt, s_a, s_m, init_std)
    x = torch.randn(2, steps, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    share = dropped_variance_share(released, x)
    assume(share < 1e-3)
    paths = 6000

    def measure(model, offset):
        generator = torch.Generator().manual_seed(seed + offset)
        return logit_noise(model, x, paths=paths, generator=generator)

    target = measure(released, 1)
    matched, z = _agree(measure(paper, 2), target)
    assert matched, f"z = {z:.2f} (share left out {share:.1e})"
    unscaled = nrnn.NoisyRNN(2, hidden, 3, dt=dt, noise=nrnn.Noise(s_a, 0.0)).double()
    unscaled.load_state_dict({k: v.double() for k, v in weights.items()})
    assert not _agree(measure(unscaled, 3), target)[0]


def test_the_old_convention_fails_the_same_check():
    """σ₂ = s_m/√Δt on top of σ₁ (the rule the robustness runs used before): at the
    released levels and Δt = 0.2 its logit noise is several times the released model's."""
    s_a, s_m, dt = 0.02, 0.02, 0.2
    released, paper, weights = _pair(5, 8, dt, s_a, s_m, 0.5)
    convention = nrnn.NoisyRNN(
        2, 8, 3, dt=dt, noise=nrnn.Noise(s_a / math.sqrt(dt), s_m / math.sqrt(dt)), init_std=0.5
    )
    convention.load_state_dict(weights)
    x = torch.randn(2, 40, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    estimates = [
        logit_noise(model, x, paths=4000, generator=torch.Generator().manual_seed(i))
        for i, model in enumerate((released, paper, convention.double()))
    ]
    assert _agree(estimates[1], estimates[0])[0]
    assert not _agree(estimates[2], estimates[0])[0]


def test_the_share_left_out_by_hand():
    """One unit, one step from h₀ = 0: f = tanh(U x + b) exactly, δ = Δt, so the share is
    (s_m²/12)(Δt f)² / s_a²."""
    s_a, s_m, dt = 0.03, 0.4, 0.5
    model = nrnn.NoisyRNN(1, 1, 2, dt=dt, noise=nrnn.ReferenceNoise(s_a, s_m)).double()
    with torch.no_grad():
        model.input.weight.fill_(0.7)
        model.input.bias.fill_(-0.2)
    x = torch.full((1, 1, 1), 1.5, dtype=torch.float64)
    drift = math.tanh(0.7 * 1.5 - 0.2)
    expected = (s_m**2 / 12) * (dt * drift) ** 2 / s_a**2
    assert dropped_variance_share(model, x) == pytest.approx(expected, rel=1e-12)
    quiet = nrnn.NoisyRNN(1, 1, 2, dt=dt, noise=nrnn.ReferenceNoise(0.0, s_m)).double()
    assert dropped_variance_share(quiet, x) == math.inf
    silent = nrnn.NoisyRNN(1, 1, 2, noise=nrnn.ReferenceNoise()).double()
    assert dropped_variance_share(silent, x) == 0.0
    with pytest.raises(TypeError, match="released noise form"):
        dropped_variance_share(nrnn.NoisyRNN(1, 1, 2, noise=nrnn.Noise(0.1)), x)


def test_logit_noise_of_a_linear_readout_of_gaussian_noise():
    """A model whose drift is zero (all weights 0): h_M = √Δt σ₁ Σ ξ_k, so tr Cov(logits) =
    M Δt σ₁² ‖V‖_F² exactly; the estimate is within 4.4 standard errors (P(false fail)
    1e-5) and its standard error is within 10 % of the exact one, √(Var|e|²/N) for
    Gaussian logits e."""
    dt, sigma, steps, paths = 0.1, 0.7, 12, 20_000
    model = nrnn.NoisyRNN(1, 3, 2, dt=dt, noise=nrnn.Noise(sigma)).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.readout.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 3.0]]))
    x = torch.zeros(1, steps, 1, dtype=torch.float64)
    estimate = logit_noise(model, x, paths=paths, generator=torch.Generator().manual_seed(3))
    covariance = steps * dt * sigma**2 * model.readout.weight @ model.readout.weight.T
    covariance = covariance.detach()
    exact = float(covariance.trace())
    exact_se = math.sqrt(2 * float((covariance @ covariance).trace()) / paths)
    assert abs(float(estimate.variance[0]) - exact) <= 4.42 * exact_se
    assert float(estimate.stderr[0]) == pytest.approx(exact_se, rel=0.1)
    with pytest.raises(ValueError, match="paths"):
        logit_noise(model, x, paths=1)
