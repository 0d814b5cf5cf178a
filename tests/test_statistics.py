"""Every statistical formula behind a verdict, pinned against ``tests/independent.py`` on
fixed inputs: the Monte Carlo standard error and Bonferroni z, the paired t test of
``verification/trained.py`` (t, one-sided p, 95 % interval, sign test, d_z, power), the
Student threshold and slope summaries of ``verification/mc_training.py``, the log-log
slopes and the Richardson combination of ``verification/expansion.py``, the Lyapunov
exponent's standard error and the robustness table's intervals."""

import math

import numpy as np
import pytest
import torch

import nrnn.figures.robustness_summary as robustness_summary
import nrnn.verification.expansion as expansion
import nrnn.verification.mc_training as mc
from nrnn import Noise, NoisyRNN, stability
from nrnn.montecarlo import mean_and_stderr, z_threshold
from nrnn.verification import trained

import independent

PAIRS = [
    # (baseline, treated): a clear decrease, a clear increase, mixed signs with a tie,
    # two pairs, and ten pairs like the quick profile's seeds
    ([3.0, 2.5, 4.0, 3.2, 2.9], [2.1, 2.6, 3.1, 2.0, 2.5]),
    ([1.0, 1.5, 0.7, 2.2], [1.4, 2.1, 0.9, 2.9]),
    ([0.3, 0.1, 0.4, 0.1, 0.5, 0.9], [0.2, 0.1, 0.6, 0.0, 0.5, 0.7]),
    ([5.0, 7.0], [4.0, 6.5]),
    (
        [0.91, 0.88, 0.93, 0.87, 0.90, 0.92, 0.89, 0.94, 0.86, 0.90],
        [0.93, 0.90, 0.92, 0.91, 0.93, 0.95, 0.88, 0.96, 0.90, 0.91],
    ),
]


@pytest.mark.parametrize("false_failure, comparisons", [(0.05, 1), (1e-3, 7), (1e-5, 40)])
def test_z_threshold_is_the_independent_bonferroni_quantile(false_failure, comparisons):
    expected = independent.normal_quantile(false_failure, comparisons)
    assert z_threshold(false_failure, comparisons) == pytest.approx(expected, rel=1e-12)


def test_standard_error_divides_the_sample_variance_by_n_minus_one():
    samples = torch.randn(7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean, stderr = mean_and_stderr(samples)
    expected_mean, expected_stderr = independent.mean_and_standard_error(samples)
    torch.testing.assert_close(mean, expected_mean, rtol=1e-14, atol=0)
    torch.testing.assert_close(stderr, expected_stderr, rtol=1e-12, atol=0)


@pytest.mark.parametrize("baseline, treated", PAIRS)
@pytest.mark.parametrize("claimed", ["less", "greater"])
def test_paired_test_matches_the_independent_computation(baseline, treated, claimed):
    result = trained.paired_test(baseline, treated, claimed)
    expected = independent.paired_t_test(baseline, treated, claimed)
    assert result["n"] == len(baseline)
    assert result["mean_difference"] == pytest.approx(expected["mean"], rel=1e-12, abs=1e-15)
    assert result["se_difference"] == pytest.approx(expected["se"], rel=1e-12)
    assert result["t"] == pytest.approx(expected["t"], rel=1e-10)
    assert result["p_t_one_sided"] == pytest.approx(expected["p_one_sided"], rel=1e-9, abs=1e-14)
    assert result["ci95_difference"] == pytest.approx(list(expected["ci95"]), rel=1e-9)
    assert result["cohen_dz"] == pytest.approx(expected["d_z"], rel=1e-10)
    assert result["p_sign_one_sided"] == pytest.approx(
        independent.sign_test(baseline, treated, claimed), rel=1e-12
    )
    assert result["baseline_mean"] == pytest.approx(sum(baseline) / len(baseline), rel=1e-14)
    assert result["treated_mean"] == pytest.approx(sum(treated) / len(treated), rel=1e-14)


@pytest.mark.parametrize("pairs", [3, 5, 10, 20])
@pytest.mark.parametrize("effect", [0.5, 1.0, 2.0])
def test_power_of_the_paired_t_test_uses_the_noncentrality_d_sqrt_n(pairs, effect):
    """Noncentrality d_z·√n (not d_z·n): 10 pairs at d_z = 1 have power 0.898, so the stated
    P(false fail) of the quick profile is 0.10."""
    expected = independent.paired_t_power(pairs, effect, trained.ALPHA)
    assert trained.t_test_power(pairs, effect) == pytest.approx(expected, abs=1e-6)


def test_the_quick_profile_states_a_false_failure_probability_of_one_in_ten():
    seeds = len(trained.QUICK.seeds)
    power = independent.paired_t_power(seeds, trained.REFERENCE_EFFECT, trained.ALPHA)
    assert 1 - trained.t_test_power(seeds, trained.REFERENCE_EFFECT) == pytest.approx(
        1 - power, abs=1e-6
    )
    assert 0.09 < 1 - power < 0.11


@pytest.mark.parametrize("runs, comparisons", [(5, 4), (6, 2), (8, 4)])
def test_student_threshold_of_the_slope_check(runs, comparisons):
    expected = independent.student_t_quantile(1 - mc.FALSE_FAILURE / (2 * comparisons), runs - 1)
    assert mc.student_t_threshold(mc.FALSE_FAILURE, comparisons, runs) == pytest.approx(
        expected, rel=1e-8
    )


def test_slope_summary_is_mean_and_standard_error_over_runs():
    slopes = np.array([3.9, 4.3, 4.1, 3.7, 4.25])
    summary = mc.slope_summary(slopes, 4.0, t=6.0)
    se = independent.sample_sd(slopes.tolist()) / math.sqrt(5)
    assert summary["mean"] == pytest.approx(float(slopes.mean()), rel=1e-14)
    assert summary["stderr"] == pytest.approx(se, rel=1e-12)
    assert summary["allowance"] == pytest.approx(mc.SLOPE_BAND + 6.0 * se, rel=1e-12)


def test_slope_summary_passes_exactly_within_band_plus_t_standard_errors():
    """Runs whose mean sits 0.6 from the order with SE 0.05: inside band + t·SE for t = 3
    (0.65; band − t·SE would be 0.35), outside for t = 1 (0.55), on either side."""
    slopes = 4.6 + 0.05 * math.sqrt(4) * np.array([-1.0, 1.0, -1.0, 1.0]) / math.sqrt(4 / 3)
    assert mc.slope_summary(slopes, 4.0, t=1.0)["stderr"] == pytest.approx(0.05)
    assert mc.slope_summary(slopes, 4.0, t=3.0)["passed"]
    assert not mc.slope_summary(slopes, 4.0, t=1.0)["passed"]
    assert not mc.slope_summary(slopes - 1.2, 4.0, t=1.0)["passed"]  # below the order


def test_log_log_slopes_are_least_squares_fits():
    epsilons = np.geomspace(0.05, 0.2, 4)
    distances = np.array([2.0e-6, 3.3e-5, 5.1e-4, 7.7e-3])
    expected = independent.log_log_slope(epsilons.tolist(), distances.tolist())
    assert mc.log_slope(epsilons, distances) == pytest.approx(expected, rel=1e-12)
    assert expansion.log_slope(epsilons, -distances) == pytest.approx(expected, rel=1e-12)
    per_run = mc.replicate_slopes(epsilons, np.stack([distances, 2 * distances**2]))
    assert per_run == pytest.approx([expected, 2 * expected], rel=1e-12)
    local = mc.local_slopes(epsilons, distances)
    for i, value in enumerate(local):
        pair = independent.log_log_slope(
            epsilons[i : i + 2].tolist(), distances[i : i + 2].tolist()
        )
        assert value == pytest.approx(pair, rel=1e-12)


def test_richardson_combination_removes_the_fourth_order_term():
    """Per-path losses ℓ(±ε) = ℓ0 + a ε² ± b ε³ + c ε⁴ and ℓ(±2ε) likewise: the combination
    (4 D(ε)/ε² − D(2ε)/(2ε)²)/3 of the antithetic excess D is exactly a."""
    clean, a, b, c, epsilon = 0.7, 1.3, -0.4, 2.1, 0.1
    loss = [
        clean + a * e**2 + b * e**3 + c * e**4
        for e in (epsilon, -epsilon, 2 * epsilon, -2 * epsilon)
    ]
    losses = torch.tensor(loss, dtype=torch.float64)[:, None]
    result = expansion.richardson_coefficients(
        losses, torch.tensor(clean, dtype=torch.float64), epsilon
    )
    assert float(result) == pytest.approx(a, rel=1e-10)


def test_quadrature_coefficient_is_the_constant_of_the_even_fit():
    """E ℓ_ε − ℓ = a2 ε² + a4 ε⁴ + a6 ε⁶ exactly: the fit returns a2."""
    epsilons = expansion.geometric((0.004, 0.04, 8))
    series = {"excess": 0.37 * epsilons**2 - 1.9 * epsilons**4 + 5.0 * epsilons**6}
    assert expansion.quadrature_epsilon2_coefficient(series, epsilons) == pytest.approx(
        0.37, rel=1e-9
    )


def test_lyapunov_exponent_is_the_mean_over_paths_with_its_standard_error():
    torch.manual_seed(0)
    model = NoisyRNN(2, 3, 2, dt=0.1, noise=Noise(0.2, 0.5, "scalar")).double()
    x = torch.randn(1, 6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    estimate = stability.lyapunov_exponent(model, x, paths=9, seed=3, steps=20)
    mean, stderr = independent.mean_and_standard_error(estimate.samples)
    assert estimate.exponent == pytest.approx(float(mean), rel=1e-14)
    assert estimate.stderr == pytest.approx(float(stderr), rel=1e-12)


def test_robustness_intervals_are_paired_t_intervals():
    """Claim 9's contrasts: the clean difference and the mean accuracy-drop difference,
    paired by seed (listed in another order), with their t intervals."""

    def entry(name, seeds, clean, white):
        return {
            "name": name,
            "seeds": seeds,
            "clean": {"per_seed": clean},
            "perturbations": {"white": {"levels": [0.1], "per_seed": [[w] for w in white]}},
        }

    baseline = entry("lipschitz", [0, 1, 2], [0.8, 0.7, 0.9], [0.5, 0.45, 0.6])
    other = entry("noisy", [2, 0, 1], [0.95, 0.82, 0.71], [0.7, 0.6, 0.5])
    found = robustness_summary.contrast(other, baseline, "lipschitz")
    assert found["seeds"] == [2, 0, 1]
    clean = independent.paired_t_test([0.9, 0.8, 0.7], [0.95, 0.82, 0.71], "greater")
    assert found["clean"]["per_seed"] == pytest.approx([0.05, 0.02, 0.01])
    assert found["clean"]["ci95"] == pytest.approx(list(clean["ci95"]), rel=1e-9)
    # drops (perturbed - clean) per seed 2, 0, 1: baseline -0.3, -0.3, -0.25; noisy
    # -0.25, -0.22, -0.21
    drops = independent.paired_t_test([-0.3, -0.3, -0.25], [-0.25, -0.22, -0.21], "greater")
    mean_drop = found["perturbations"]["white"]["mean_drop"]
    assert mean_drop["mean_difference"] == pytest.approx(drops["mean"])
    assert mean_drop["ci95"] == pytest.approx(list(drops["ci95"]), rel=1e-9)
    spread = robustness_summary.stats([0.8, 0.7, 0.9])
    assert spread["std"] == pytest.approx(independent.sample_sd([0.8, 0.7, 0.9]), rel=1e-12)
