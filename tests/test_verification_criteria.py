"""Every pass/fail criterion of the verification layer shown to fail: the shared comparisons
of ``verification/core.py`` at their boundaries, and each check of claim 5
(``verification/stability.py``), of the training-level claim 4 (``mc_training.py``) and of
claims 6–8 (``trained.py``) on a known-bad input, next to the same check passing on the
correct one at the same sizes. (The expansion checks' controls are in
``tests/test_verification_expansion.py``.)

The statistical checks run with fixed seeds, so their verdicts here are deterministic; the
sizes below leave the passing checks far from their thresholds (|diff|/SE ≤ 1.8 against
z ≥ 3.4) and the failing ones far beyond them."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest

import nrnn.stability
import nrnn.verification.mc_training as mc
import nrnn.verification.stability as claim5
from nrnn import catalogue
from nrnn.experiments import PROFILES, Experiment
from nrnn.regularizer import Expansion
from nrnn.verification import core, trained
from nrnn.verification.core import clearly_above, clearly_below, not_above, within

import independent

pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)

SIZES = claim5.Sizes(
    burn_in_time=1.0,
    linear_paths=32,
    linear_time=20.0,
    moment_paths=4000,
    rnn_paths=16,
    rnn_time=5.0,
    rnn_models=1,
    hidden_dim=4,
)
"""Claim 5 at about 6 s for every check: enough paths that each passes with margin and each
known-bad input fails."""


# ---------------------------------------------------------------------- the comparisons
def test_within_is_two_sided_with_z_standard_errors_and_an_allowance():
    assert within(1.29, 1.0, 0.1, 3.0) and within(0.71, 1.0, 0.1, 3.0)
    assert not within(1.31, 1.0, 0.1, 3.0) and not within(0.69, 1.0, 0.1, 3.0)
    assert within(1.35, 1.0, 0.1, 3.0, allowance=0.06)
    assert not within(1.35, 1.0, 0.1, 3.0, allowance=0.04)


def test_a_bound_holds_unless_the_estimate_is_significantly_above_it():
    assert not_above(0.29, 0.0, 0.1, 3.0)  # above the bound, but within 3 SE
    assert not not_above(0.31, 0.0, 0.1, 3.0)
    assert not_above(-5.0, 0.0, 0.1, 3.0)


def test_significance_in_either_direction_needs_z_standard_errors():
    assert clearly_below(-0.31, 0.0, 0.1, 3.0) and not clearly_below(-0.29, 0.0, 0.1, 3.0)
    assert clearly_above(0.31, 0.0, 0.1, 3.0) and not clearly_above(0.29, 0.0, 0.1, 3.0)
    assert not clearly_below(0.31, 0.0, 0.1, 3.0) and not clearly_above(-0.31, 0.0, 0.1, 3.0)


# ------------------------------------------------------------------------- claim 5
@pytest.fixture(scope="module")
def passing():
    """Every claim-5 check on correct code at SIZES (each must pass)."""
    matrix = claim5.check_matrix_scalar_noise(SIZES)
    bound = claim5.check_rnn_bound(SIZES)
    return {
        "scalar_closed_form": claim5.check_scalar_closed_form(SIZES),
        "matrix_scalar_noise": matrix,
        "mean_square_opposite": claim5.check_mean_square_opposite(
            SIZES, copy.deepcopy(matrix.details["cases"])
        ),
        "em_second_moments": claim5.check_em_second_moments(SIZES),
        "per_unit_linear": claim5.check_per_unit_linear(SIZES, matrix.details["cases"][0]),
        "rnn_bound": bound,
        "rnn_pathwise_bound": claim5.check_rnn_pathwise(SIZES, bound.details["cases"]),
        "rnn_stabilisation": claim5.check_rnn_stabilisation(SIZES),
        "cell_bounds": claim5.check_cells(SIZES),
    }


def test_every_claim5_check_passes_on_the_correct_code(passing):
    assert set(passing) == {check.name for check in claim5.run(claim5.SMOKE)}
    for name, check in passing.items():
        assert check.passed, (name, check.measured, check.tolerance)


@pytest.mark.parametrize(
    "name, comparisons",
    [
        ("scalar_closed_form", len(catalogue.SCALAR_CASES)),
        ("matrix_scalar_noise", 8),  # 2 systems x (noisy, deterministic) x (match, sign)
        ("em_second_moments", len(catalogue.second_moment_systems())),
        ("per_unit_linear", 2),
        ("rnn_bound", len(claim5.RNN_NOISES)),
        ("rnn_stabilisation", 2),
        ("cell_bounds", 4),  # the Lipschitz and coRNN cells at two levels
    ],
)
def test_claim5_z_is_the_bonferroni_quantile_over_its_comparisons(passing, name, comparisons):
    expected = independent.normal_quantile(claim5.FALSE_FAILURE, comparisons)
    assert passing[name].tolerance["z"] == pytest.approx(expected, rel=1e-3)
    assert passing[name].false_failure == claim5.FALSE_FAILURE


def scaled_sigma(function, factor):
    """``function`` with its noise-level argument (after the first) multiplied by factor."""
    return lambda first, sigma, *rest, **options: function(first, factor * sigma, *rest, **options)


def test_an_exponent_formula_with_sigma_squared_instead_of_half_fails(monkeypatch):
    """The exact EM exponent evaluated at √2 s (a − s² instead of a − s²/2) must fail the
    closed-form checks of the scalar and the matrix systems."""
    monkeypatch.setattr(
        claim5, "em_scalar_exponent", scaled_sigma(catalogue.em_scalar_exponent, math.sqrt(2))
    )
    monkeypatch.setattr(
        claim5, "em_linear_exponent", scaled_sigma(catalogue.em_linear_exponent, math.sqrt(2))
    )
    assert not claim5.check_scalar_closed_form(SIZES).passed
    assert not claim5.check_matrix_scalar_noise(SIZES).passed


def test_a_simulated_system_with_the_wrong_noise_level_fails(monkeypatch):
    """The measured model's noise 1.3 times the level its exact exponent assumes."""
    monkeypatch.setattr(claim5, "linear_model", scaled_sigma(catalogue.linear_model, 1.3))
    assert not claim5.check_scalar_closed_form(SIZES).passed


def test_noise_too_weak_to_stabilise_fails_the_stabilisation_criterion(monkeypatch):
    """Both systems at a third of their noise level: measured and exact exponents still agree,
    but the noisy exponent is no longer significantly negative."""
    for name in ("ROTATION", "NON_NORMAL"):
        system = getattr(catalogue, name)
        monkeypatch.setattr(claim5, name, dataclasses.replace(system, sigma=system.sigma / 3))
    check = claim5.check_matrix_scalar_noise(SIZES)
    assert not check.passed
    assert max(case["measured"] for case in check.details["cases"]) > 0


def test_a_mean_square_exponent_that_does_not_rise_with_noise_fails(passing):
    for key, change in (("em_rms", -10.0), ("em_exact", +10.0)):
        cases = copy.deepcopy(passing["matrix_scalar_noise"].details["cases"])
        cases[0][key] += change
        assert not claim5.check_mean_square_opposite(SIZES, cases).passed, key


def test_a_wrong_second_moment_operator_fails(monkeypatch):
    original = nrnn.stability.em_mean_square_matrix
    monkeypatch.setattr(
        nrnn.stability,
        "em_mean_square_matrix",
        lambda drift, noise, dt: original(drift, 1.1 * noise, dt),
    )
    assert not claim5.check_em_second_moments(SIZES).passed


def test_per_unit_noise_stabilising_as_much_as_scalar_noise_fails(passing, monkeypatch):
    scalar_case = dict(passing["matrix_scalar_noise"].details["cases"][0], em_exact=1.0)
    assert not claim5.check_per_unit_linear(SIZES, scalar_case).passed
    original = nrnn.stability.almost_sure_bound
    monkeypatch.setattr(nrnn.stability, "almost_sure_bound", lambda model: original(model) - 2.0)
    scalar_case = passing["matrix_scalar_noise"].details["cases"][0]
    check = claim5.check_per_unit_linear(SIZES, scalar_case)
    assert not check.passed and not check.details["below_bound"]


def test_a_bound_below_the_measured_exponents_fails(monkeypatch):
    for name in ("almost_sure_bound", "em_almost_sure_bound"):
        original = getattr(nrnn.stability, name)
        monkeypatch.setattr(nrnn.stability, name, lambda model, f=original: f(model) - 3.0)
    assert not claim5.check_rnn_bound(SIZES).passed
    cells = claim5.check_cells(SIZES)
    assert not cells.passed
    verdicts = {(c["cell"], c["passed"]) for c in cells.details["cases"]}
    assert ("gru", True) in verdicts  # no closed-form bound: only asked to be finite


def test_a_pathwise_bound_below_a_path_fails(monkeypatch):
    """The per-path bounds lie 1.1 or more above the paths here; moved down by 2 they fall
    below some path, which the deterministic check must report."""
    original = claim5.pathwise_bound
    monkeypatch.setattr(claim5, "pathwise_bound", lambda *a, **k: original(*a, **k) - 2.0)
    check = claim5.check_rnn_pathwise(SIZES, claim5.rnn_cases(SIZES))
    assert not check.passed and max(check.details["excess"]) > 0


def test_noise_below_the_stabilising_level_fails_the_rnn_stabilisation(monkeypatch):
    original = nrnn.stability.stabilising_noise_level
    monkeypatch.setattr(
        nrnn.stability, "stabilising_noise_level", lambda model: 0.2 * original(model)
    )
    assert not claim5.check_rnn_stabilisation(SIZES).passed


# ---------------------------------------------------------------- claim 4, training
def test_a_doubled_regularizer_fails_the_monte_carlo_training_check(monkeypatch):
    """q + r instead of (q + r)/2: θⁿ − θᵉ keeps an ε² part, its slope falls to 2."""
    original = mc.explicit_regularizer

    def doubled(*args, **kwargs):
        result = original(*args, **kwargs)
        return Expansion(result.loss, 2 * result.q, 2 * result.r)

    monkeypatch.setattr(mc, "explicit_regularizer", doubled)
    check = mc.check_monte_carlo_training(mc.PROFILES["smoke"], log=lambda message: None)
    assert not check.passed
    assert check.measured["slope_noise_explicit"][0] < 3.0


def test_a_clean_path_that_is_not_clean_fails_the_quadrature_training_check(monkeypatch):
    """'Clean' SGD on the explicit objective: |θⁿ − θᶜ| is O(ε⁴), not Θ(ε²)."""
    monkeypatch.setattr(mc, "clean_objective", mc.explicit_objective)
    check = mc.check_quadrature_training(mc.PROFILES["smoke"], log=lambda message: None)
    assert not check.passed
    assert check.measured["slope_noise_clean"][1] < 1.5


# --------------------------------------------------------------------- claims 6-8
SEEDS = list(range(10))
NOISE = [0.011, -0.004, 0.007, 0.002, -0.009, 0.005, -0.001, 0.008, -0.006, 0.003]
"""Seed-to-seed scatter added to a synthetic metric (mean 0.0016, sd 0.0066)."""


METRIC_KEYS = {m.key for m in trained.METRICS} | {k for m in trained.METRICS for k in m.secondary}


def synthetic_results(shift: float) -> dict:
    """Measurements of clean and noise models over SEEDS: every metric of the noise model is
    the clean one plus ``shift`` plus NOISE."""
    results = {}
    for seed, scatter in zip(SEEDS, NOISE, strict=True):
        clean = {key: 1.0 + 0.1 * seed for key in METRIC_KEYS}
        results[("clean", seed)] = clean
        results[("noise", seed)] = {key: value + shift + scatter for key, value in clean.items()}
    return results


def comparison(metric: trained.Metric, results: dict) -> core.Check:
    runs = {key: {} for key in results}
    configs = {"clean": {}, "noise": {}}
    return trained._comparison_check(metric, "digits", "noise", SEEDS, results, runs, configs, 0)


@pytest.mark.parametrize("metric", trained.METRICS, ids=lambda m: m.key)
def test_a_paired_comparison_passes_only_a_significant_effect_in_the_claimed_direction(metric):
    """A shift of 0.02 per seed (t ≈ 10) in the claimed direction passes; no shift (t ≈ 0.8),
    and the same shift in the other direction, fail (the latter as "opposite")."""
    claimed = -1.0 if metric.claimed == "less" else 1.0
    supported = comparison(metric, synthetic_results(claimed * 0.02))
    assert supported.passed and supported.details["verdict"] == "supported"
    assert supported.false_failure == pytest.approx(
        1 - independent.paired_t_power(len(SEEDS), trained.REFERENCE_EFFECT, trained.ALPHA),
        abs=1e-6,
    )
    null = comparison(metric, synthetic_results(0.0))
    assert not null.passed and null.details["verdict"] == "inconclusive"
    opposite = comparison(metric, synthetic_results(-claimed * 0.02))
    assert not opposite.passed and opposite.details["verdict"] == "opposite"


@pytest.mark.parametrize(
    "p, expected", [(0.049, "supported"), (0.051, "inconclusive"), (0.949, "inconclusive")]
)
def test_verdicts_at_the_significance_level(p, expected):
    assert trained.verdict({"p_t_one_sided": p}) == expected
    assert (
        trained.verdict({"p_t_one_sided": 1 - p + 1e-12})
        == {
            "supported": "opposite",
            "inconclusive": "inconclusive",
        }[expected]
    )


# -------------------------------------------------------------------------- reports
def test_a_module_with_one_failing_check_fails(tmp_path):
    def stand_in(passed: bool) -> Experiment:
        checks = [
            core.Check(claim=1, name=name, measured={}, criterion="c", tolerance={}, passed=ok)
            for name, ok in (("a", True), ("b", passed))
        ]
        return Experiment(
            name="expansion",
            title="stand-in",
            claims=(1,),
            profiles={profile: profile for profile in PROFILES},
            run=lambda sizes, context: checks,
        )

    assert core.run_module(stand_in(True), "quick")["passed"] is True
    report = core.run_module(stand_in(False), "quick")
    assert report["passed"] is False
    core.write_report(tmp_path, [report])
    assert "SOME CHECKS FAIL" in (tmp_path / "report.md").read_text()
    assert core.read_report(tmp_path / "report.json")["passed"] is False
