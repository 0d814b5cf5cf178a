"""nrnn.verification.trained: the paired tests, run caching and the shape of its report rows."""

import dataclasses
import importlib.util
import json
import math

import pytest
from scipy import stats

from nrnn.verification import trained
from nrnn.verification.core import Check, run_module

HAS_REGULARIZER = importlib.util.find_spec("nrnn.regularizer") is not None


def micro_sizes(cache_dir, epochs: int = 1, objectives=("clean", "noise")) -> trained.Sizes:
    """A microscopic profile: digits row by row, 8 hidden units, 2 seeds, tiny subsets."""
    plan = trained.DatasetPlan(
        "digits-rows", {"model": {"hidden_dim": 8}, "train": {"epochs": epochs}}
    )
    return trained.Sizes(
        datasets=(plan,),
        seeds=(0, 1),
        objectives=objectives,
        hessian_samples=24,
        hessian_probes=3,
        lanczos_iterations=3,
        eval_samples=12,
        cache_dir=str(cache_dir),
    )


# ------------------------------------------------------------------------- statistics
def test_paired_test_matches_scipy():
    clean = [3.0, 2.5, 4.0, 3.2, 2.9]
    noise = [2.1, 2.6, 3.1, 2.0, 2.5]
    result = trained.paired_test(clean, noise, "less")
    reference = stats.ttest_rel(noise, clean, alternative="less")
    assert result["t"] == pytest.approx(reference.statistic)
    assert result["p_t_one_sided"] == pytest.approx(reference.pvalue)
    differences = [b - a for a, b in zip(clean, noise)]
    mean = sum(differences) / 5
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / 4)
    assert result["mean_difference"] == pytest.approx(mean)
    assert result["se_difference"] == pytest.approx(sd / math.sqrt(5))
    assert result["cohen_dz"] == pytest.approx(mean / sd)
    # 4 of 5 differences are negative: P(Binomial(5, 1/2) >= 4) = 6/32
    assert result["p_sign_one_sided"] == pytest.approx(6 / 32)
    flipped = trained.paired_test(clean, noise, "greater")
    assert flipped["p_t_one_sided"] == pytest.approx(1 - reference.pvalue)
    assert reference.pvalue < 0.05
    assert trained.verdict(result) == "supported"
    assert trained.verdict(flipped) == "opposite"


def test_verdicts_and_power():
    assert (
        trained.verdict(trained.paired_test([1, 2, 3, 4], [0, 1.1, 2, 2.9], "less")) == "supported"
    )
    assert (
        trained.verdict(trained.paired_test([1, 2, 3, 4], [0, 1.1, 2, 2.9], "greater"))
        == "opposite"
    )
    assert trained.t_test_power(3, 1.0) < trained.t_test_power(10, 1.0) < 1.0
    assert trained.t_test_power(200, 1.0) == pytest.approx(1.0)
    assert trained.t_test_power(1, 1.0) == 0.0
    with pytest.raises(ValueError, match="claimed"):
        trained.paired_test([1.0], [2.0], "smaller")
    with pytest.raises(ValueError, match="same length"):
        trained.paired_test([1.0, 2.0], [2.0], "less")


def test_paired_runs_differ_in_the_objective_only():
    plan = trained.DatasetPlan("digits", {"train": {"epochs": 3}})
    clean = trained.run_config(plan, 4, "clean", 0.1).to_dict()
    noise = trained.run_config(plan, 4, "noise", 0.1).to_dict()
    assert clean["train"].pop("objective") == "clean"
    assert noise["train"].pop("objective") == "noise"
    assert clean == noise
    assert noise["noise"]["additive"] == noise["noise"]["multiplicative"] == 0.1
    assert noise["train"]["seed"] == 4 and noise["train"]["epochs"] == 3


def test_profiles_are_registered():
    assert trained.MODULE.name == "trained" and trained.MODULE.claims == (6, 7, 8)
    assert set(trained.MODULE.profiles) == {"quick", "full"}
    full = trained.MODULE.profiles["full"]
    assert {plan.name for plan in full.datasets} == {"digits", "ecg5000"}
    assert len(full.seeds) >= 5


# ------------------------------------------------------------------------------ module
def test_micro_run_reports_every_field_and_reuses_its_runs(tmp_path):
    objectives = ("clean", "noise", "explicit") if HAS_REGULARIZER else ("clean", "noise")
    sizes = micro_sizes(tmp_path, objectives=objectives)
    module = dataclasses.replace(trained.MODULE, profiles={"quick": sizes})
    report = run_module(module, "quick")
    json.dumps(report, allow_nan=False)
    names = [check["name"] for check in report["checks"]]
    expected_metrics = {(m.claim, m.key) for m in trained.METRICS}
    assert len(names) == len(set(names)) == len(expected_metrics) * (len(objectives) - 1)
    for check in report["checks"]:
        assert set(check) == {field.name for field in dataclasses.fields(Check)}
        assert (check["claim"], check["name"].split(".")[0]) in expected_metrics
        assert {"clean", "mean_diff", "se_diff", "p_t", "p_sign", "d_z", "n"} <= set(
            check["measured"]
        )
        assert check["measured"]["n"] == 2 and check["seeds"] == [0, 1]
        assert isinstance(check["passed"], bool)
        assert 0.0 <= check["false_failure"] <= 1.0
        assert check["seconds"] > 0
        details = check["details"]
        assert details["verdict"] in ("supported", "opposite", "inconclusive")
        assert len(details["runs"]) == 4
        assert all(run["reused"] is False for run in details["runs"].values())
        assert details["configs"]["clean"]["model"]["hidden_dim"] == 8

    again = trained.run(sizes, log=lambda message: None)
    assert all(run["reused"] for check in again for run in check.details["runs"].values())
    assert [c.measured for c in again] == [c["measured"] for c in report["checks"]]


def test_unfinished_runs_are_resumed(tmp_path):
    trained.run(micro_sizes(tmp_path, epochs=1), log=lambda message: None)
    longer = trained.run(micro_sizes(tmp_path, epochs=2), log=lambda message: None)
    runs = longer[0].details["runs"].values()
    assert all(run["resumed_from_epoch"] == 1 and not run["reused"] for run in runs)


def test_a_missing_baseline_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="clean"):
        trained.run(micro_sizes(tmp_path, objectives=("noise",)), log=lambda message: None)
