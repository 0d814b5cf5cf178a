"""The verification framework (``verification.core``, ``verification.cli``) and the
expansion module at tiny sizes: every check passes, and the checks have power (a wrong
regularizer fails them)."""

from __future__ import annotations

import json
import math

import pytest

import nrnn.verification.expansion as expansion
from nrnn import quadrature
from nrnn.experiments import PROFILES, REGISTRY, Experiment, load
from nrnn.regularizer import Expansion
from nrnn.verification import core
from nrnn.verification.cli import CHECKS_FAILED, main

import independent

TINY = expansion.ExpansionSizes(
    quadrature=(
        expansion.QuadratureCase(hidden=2, steps=2, noise="scalar", nodes=4, seed=1),
        expansion.QuadratureCase(hidden=2, steps=2, noise="released", nodes=3, seed=2),
    ),
    monte_carlo=(
        expansion.MonteCarloCase(
            dataset="digits-rows", hidden=16, noise="diagonal", sequences=1, seed=3
        ),
    ),
    monte_carlo_paths=300,
    convergence_hidden=2,
    convergence_halvings=8,
    convergence_rk4_steps=64,
    gradient_cases=(
        expansion.QuadratureCase(hidden=1, steps=2, noise="diagonal", nodes=4, seed=4),
    ),
    gradient_monte_carlo=expansion.MonteCarloCase(
        dataset="digits-rows", hidden=8, noise="diagonal", sequences=1, seed=5
    ),
    gradient_paths=300,
    gradient_directions=2,
)


@pytest.fixture(scope="module")
def tiny_checks():
    return expansion.run(TINY)


def test_every_tiny_check_passes(tiny_checks):
    names = [check.name for check in tiny_checks]
    assert names == [
        "quadrature_coefficient",
        "probe_coefficient",
        "quadrature_remainder_order",
        "quadrature_odd_orders",
        "monte_carlo_coefficient",
        "time_step_convergence",
        "gradient_quadrature_order",
        "gradient_monte_carlo",
    ]
    for check in tiny_checks:
        assert check.passed, (check.name, check.measured, check.tolerance)
        assert check.seconds > 0 and check.claim in (1, 2, 3, 4) and check.seeds
        assert 0 <= check.false_failure < 1e-4
        json.dumps(check.to_json(), allow_nan=False)


def test_a_wrong_regularizer_fails_the_quadrature_checks(monkeypatch):
    """q scaled by 1.001 must fail the coefficient check and the ε⁴ remainder order."""
    original = expansion.explicit_regularizer

    def wrong(*args, **kwargs):
        result = original(*args, **kwargs)
        return Expansion(result.loss, 1.001 * result.q + 1e-3 * result.r.abs(), result.r)

    monkeypatch.setattr(expansion, "explicit_regularizer", wrong)
    expansion._quadrature_series.cache_clear()
    try:
        assert not expansion.check_quadrature_coefficient(TINY).passed
        assert not expansion.check_quadrature_remainder(TINY).passed
    finally:
        expansion._quadrature_series.cache_clear()


def test_a_biased_probe_estimator_fails_the_probe_check(monkeypatch):
    """The probe method's q + r scaled by 1.3 (the exact method untouched) must fail the
    probe check: the quadrature coefficient, not the estimator, sets the target."""
    original = expansion.explicit_regularizer

    def biased(*args, **kwargs):
        result = original(*args, **kwargs)
        if kwargs.get("method") != "probe":
            return result
        return Expansion(result.loss, 1.3 * result.q, 1.3 * result.r)

    monkeypatch.setattr(expansion, "explicit_regularizer", biased)
    check = expansion.check_probe_coefficient(TINY)
    assert not check.passed and check.measured["max_error_over_tolerance"] > 1


def test_noise_with_a_nonzero_mean_fails_the_odd_order_check(monkeypatch):
    """Every quadrature node shifted by 0.01 (noise of mean 0.01): E ℓ_ε gains ε¹ and ε³
    terms, which the check must find."""
    original = quadrature.expected_loss

    def shifted(model, x, y, rule, epsilon, **options):
        points, weights = rule
        return original(model, x, y, (points + 0.01, weights), epsilon, **options)

    monkeypatch.setattr(quadrature, "expected_loss", shifted)
    expansion._quadrature_series.cache_clear()
    try:
        check = expansion.check_quadrature_odd_orders(TINY)
    finally:
        expansion._quadrature_series.cache_clear()
    assert not check.passed and check.measured["max_odd_over_eps2"] > 1.0


def doubled_regularizer(original):
    """``explicit_regularizer`` returning q + r where (q + r)/2 belongs."""

    def doubled(*args, **kwargs):
        result = original(*args, **kwargs)
        return Expansion(result.loss, 2 * result.q, 2 * result.r)

    return doubled


def test_a_doubled_regularizer_fails_the_monte_carlo_checks(monkeypatch):
    """(q + r) instead of (q + r)/2 against the Monte Carlo ε² coefficient of E ℓ_ε and of
    its directional derivatives (which agree with (q + r)/2 within 0.04 and 1.7 SE)."""
    monkeypatch.setattr(
        expansion, "explicit_regularizer", doubled_regularizer(expansion.explicit_regularizer)
    )
    assert not expansion.check_monte_carlo_coefficient(TINY).passed
    assert not expansion.check_gradient_monte_carlo(TINY).passed


def test_a_simulator_without_the_square_root_of_dt_fails_the_monte_carlo_check(monkeypatch):
    """Noise increments of the simulated paths not scaled by √Δt (Δt = 0.1)."""
    original = expansion.simulate

    def without_root_dt(model, x, **options):
        options["scales"] = tuple(s / math.sqrt(model.dt) for s in options["scales"])
        return original(model, x, **options)

    monkeypatch.setattr(expansion, "simulate", without_root_dt)
    check = expansion.check_monte_carlo_coefficient(TINY)
    assert not check.passed and check.measured["max_z"] > check.tolerance["z"]


def test_a_wrong_regularizer_fails_the_time_step_and_gradient_order_checks(monkeypatch):
    """q off by 0.1 % of r: the discrete values no longer converge to the continuous ones
    (order ≤ 0) and the gradient remainder keeps an ε² part (slope ≈ 3.2 < 3.5)."""
    original = expansion.explicit_regularizer

    def wrong(*args, **kwargs):
        result = original(*args, **kwargs)
        return Expansion(result.loss, 1.001 * result.q + 1e-3 * result.r.abs(), result.r)

    monkeypatch.setattr(expansion, "explicit_regularizer", wrong)
    assert not expansion.check_time_step_convergence(TINY).passed
    assert not expansion.check_gradient_quadrature(TINY).passed


def test_z_of_every_statistical_check_is_the_bonferroni_quantile(tiny_checks):
    comparisons = {
        "probe_coefficient": len(TINY.quadrature),
        "monte_carlo_coefficient": sum(case.sequences for case in TINY.monte_carlo),
        "gradient_monte_carlo": TINY.gradient_directions,
    }
    by_name = {check.name: check for check in tiny_checks}
    for name, count in comparisons.items():
        expected = independent.normal_quantile(expansion.FALSE_FAILURE, count)
        assert by_name[name].tolerance["z"] == pytest.approx(expected, rel=1e-12), name
        assert by_name[name].false_failure == expansion.FALSE_FAILURE


def test_quadrature_rule_integrates_moments_exactly():
    model, _, _ = expansion.quadrature_model(TINY.quadrature[1], 0.5, 0.5)  # released-code noise
    points, weights = quadrature.noise_rule(model, 2, nodes=3)
    assert points.shape == (3 ** (2 * 4), 2, 4) and weights.sum().item() == pytest.approx(1)
    second = (weights[:, None, None] * points**2).sum(0)
    fourth = (weights[:, None, None] * points**4).sum(0)
    assert second.numpy() == pytest.approx(1.0)  # unit variance, Gaussian and uniform
    assert fourth[:, :2].numpy() == pytest.approx(3.0)  # Gaussian ζ
    assert fourth[:, 2:].numpy() == pytest.approx(9 / 5)  # uniform η on [−√3, √3]


def test_a_quadrature_too_big_is_refused_before_any_work(monkeypatch):
    """verify_cell(..., hidden=3) ran over 10 minutes at 2.2 GB without a word (the
    released-code noise's rule has 4^12 points); now it is refused at once, naming the
    size, and the largest case of the shipped profiles stays within the limit."""
    monkeypatch.setattr(expansion, "timed", lambda *args: pytest.fail("a check ran"))
    with pytest.raises(ValueError, match=r"released: .* 4\^\(2·6\) = 16,777,216 points"):
        expansion.verify_cell("lipschitz", hidden=3)
    model, _, _ = expansion.quadrature_model(TINY.quadrature[0], 0.5, 0.5)
    with pytest.raises(ValueError, match="more than the limit"):
        quadrature.noise_rule(model, 12, nodes=4)
    biggest = max(
        quadrature.rule_size(expansion.quadrature_model(case, 0.5, 0.5)[0], case.steps, case.nodes)
        for sizes in expansion.PROFILES.values()
        for case in (*sizes.quadrature, *sizes.gradient_cases)
    )
    assert biggest <= quadrature.MAX_POINTS


def test_the_probe_check_refuses_a_single_state_entry(monkeypatch):
    """With one state entry every probe estimate is the exact value times a function of
    the probes alone: the check's statistic was the same for every cell."""
    monkeypatch.setattr(expansion, "timed", lambda *args: pytest.fail("a check ran"))
    with pytest.raises(ValueError, match="lipschitz,d=1,M=2,diagonal: one state entry"):
        expansion.verify_cell("lipschitz", hidden=1)
    expansion.check_sizes(expansion.cell_sizes("cornn", hidden=1))  # (y, y'): two entries


# ------------------------------------------------------------------ core and the CLI
def make_check(name="a", passed=True, claim=1):
    return core.Check(
        claim=claim,
        name=name,
        measured={"value": 1.5, "list": [1.0, 2e-9]},
        criterion="value is fine",
        tolerance={"z": 4.2},
        passed=passed,
        false_failure=1e-5,
        seeds=[1],
        seconds=0.1,
        details={"nan": float("nan")},
    )


def module_report(name, checks):
    return {
        "module": name,
        "description": "d",
        "claims": [1],
        "profile": "quick",
        "sizes": {},
        "finished": "now",
        "seconds": 1.0,
        "passed": all(c.passed for c in checks),
        "checks": [c.to_json() for c in checks],
    }


def test_report_files_merge_by_module(tmp_path):
    core.write_report(
        tmp_path,
        [
            module_report("expansion", [make_check()]),
            module_report("other", [make_check("b", passed=False)]),
        ],
    )
    core.write_report(tmp_path, [module_report("expansion", [make_check("c")])])
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["modules"]) == ["expansion", "other"]
    assert [c["name"] for c in report["modules"]["expansion"]["checks"]] == ["c"]
    assert report["passed"] is False  # "other" still fails
    assert report["modules"]["other"]["checks"][0]["details"]["nan"] == "nan"
    markdown = (tmp_path / "report.md").read_text()
    assert "| c | 1 |" in markdown and "**FAIL**" in markdown and "value is fine" in markdown
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claims.md", "report.json", "report.md"]


def test_table_lists_every_check():
    table = core.format_table([module_report("expansion", [make_check(), make_check("b", False)])])
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["check", "measured"]
    assert "expansion.a (claim 1)" in table and "FAIL" in lines[-1] and "pass" in lines[2]
    assert "z=4.2" in table and "value=1.5" in table


def test_cli_runs_modules_and_sets_the_exit_code(tmp_path, monkeypatch, capsys):
    """The CLI mechanics with a stand-in module (the real checks run in tiny_checks)."""
    outcome = {"passed": True}
    stand_in = Experiment(
        name="expansion",
        title="stand-in",
        claims=(1,),
        profiles={profile: profile for profile in PROFILES},
        run=lambda sizes, context: [make_check(passed=outcome["passed"])],
    )
    monkeypatch.setattr("nrnn.verification.cli.load", lambda group, name: stand_in)
    monkeypatch.setattr("nrnn.experiments.load", lambda group, name: stand_in)
    monkeypatch.setitem(REGISTRY, "verify", {"expansion": "stand-in"})
    assert main(["expansion", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "expansion.a (claim 1)" in printed and "1/1 checks pass" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["modules"]["expansion"]["profile"] == "quick" and report["passed"]

    outcome["passed"] = False
    assert main(["--out", str(tmp_path)]) == CHECKS_FAILED  # default: all modules, quick
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["modules"]["expansion"]["profile"] == "quick" and not report["passed"]
    assert main(["--profile", "full", "--out", str(tmp_path)]) == CHECKS_FAILED
    assert (
        json.loads((tmp_path / "report.json").read_text())["modules"]["expansion"]["profile"]
        == "full"
    )


@pytest.mark.parametrize("argv", [["nope"], ["--quick", "--full"], ["--threads", "0"]])
def test_cli_usage_errors(argv, tmp_path):
    with pytest.raises(SystemExit) as error:
        main([*argv, "--out", str(tmp_path)])
    assert error.value.code == 2
    assert not any(tmp_path.iterdir())


def test_registry_loads_the_expansion_module():
    module = load("verify", "expansion")
    assert module.claims == (1, 2, 3, 4) and set(module.profiles) == set(PROFILES)
    with pytest.raises(ValueError, match="unknown verify experiment"):
        load("verify", "nope")
