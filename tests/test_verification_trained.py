"""nrnn.verification.trained: the paired tests, run caching and the shape of its report rows."""

import dataclasses
import importlib.util
import json
import math

import pytest
from scipy import stats

from nrnn.experiments import Context, load
from nrnn.store import RunStore
from nrnn.train import read_events
from nrnn.verification import trained
from nrnn.verification.core import Check, run_module

HAS_REGULARIZER = importlib.util.find_spec("nrnn.regularizer") is not None


def micro_sizes(epochs: int = 1, objectives=("clean", "noise")) -> trained.Sizes:
    """The smoke profile (digits row by row, 8 hidden units, 2 seeds, tiny subsets)."""
    plan = trained.DatasetPlan(
        "digits-rows", {"model": {"hidden_dim": 8}, "train": {"epochs": epochs}}
    )
    return dataclasses.replace(trained.SMOKE, datasets=(plan,), objectives=objectives)


def micro_context(tmp_path) -> Context:
    return Context(store=RunStore(tmp_path), jobs=1, progress=False, log=lambda message: None)


# ------------------------------------------------------------------------- statistics
def test_paired_test_matches_scipy():
    clean = [3.0, 2.5, 4.0, 3.2, 2.9]
    noise = [2.1, 2.6, 3.1, 2.0, 2.5]
    result = trained.paired_test(clean, noise, "less")
    reference = stats.ttest_rel(noise, clean, alternative="less")
    assert result["t"] == pytest.approx(reference.statistic)
    assert result["p_t_one_sided"] == pytest.approx(reference.pvalue)
    differences = [b - a for a, b in zip(clean, noise, strict=True)]
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


def test_paired_test_confidence_interval_matches_scipy():
    clean = [3.0, 2.5, 4.0, 3.2, 2.9, 3.3]
    noise = [2.1, 2.6, 3.1, 2.0, 2.5, 2.2]
    result = trained.paired_test(clean, noise, "less")
    differences = [b - a for a, b in zip(clean, noise, strict=True)]
    low, high = stats.t.interval(
        0.95, len(differences) - 1, loc=stats.tmean(differences), scale=stats.sem(differences)
    )
    assert result["ci95_difference"] == pytest.approx([low, high])


def test_profiles_are_registered():
    experiment = load("verify", "trained")
    assert experiment is trained.EXPERIMENT and experiment.claims == (6, 7, 8)
    assert set(experiment.profiles) == {"smoke", "quick", "medium", "full"}
    quick = experiment.sizes("quick")
    assert len(quick.seeds) >= 10  # P(false fail) at d_z = 1 at most 0.2
    assert 1 - trained.t_test_power(len(quick.seeds), 1.0) <= 0.2
    for profile in ("medium", "full"):
        assert len(experiment.sizes(profile).seeds) > len(quick.seeds)
    full = experiment.sizes("full")
    assert {plan.name for plan in full.datasets} == {"digits", "ecg5000"}


# ------------------------------------------------------------------------------ module
def test_micro_run_reports_every_field_and_reuses_its_runs(tmp_path):
    objectives = ("clean", "noise", "explicit") if HAS_REGULARIZER else ("clean", "noise")
    sizes = micro_sizes(objectives=objectives)
    module = dataclasses.replace(trained.EXPERIMENT, profiles={**trained.PROFILES, "quick": sizes})
    report = run_module(module, "quick", micro_context(tmp_path))
    json.dumps(report, allow_nan=False)
    names = [check["name"] for check in report["checks"]]
    expected_metrics = {(m.claim, m.key) for m in trained.METRICS}
    assert len(names) == len(set(names)) == len(expected_metrics) * (len(objectives) - 1)
    for check in report["checks"]:
        assert set(check) == {field.name for field in dataclasses.fields(Check)}
        assert (check["claim"], check["name"].split(".")[0]) in expected_metrics
        assert {"clean", "mean_diff", "se_diff", "ci95_diff", "p_t", "p_sign", "d_z", "n"} <= set(
            check["measured"]
        )
        low, high = check["measured"]["ci95_diff"]
        assert low <= check["measured"]["mean_diff"] <= high
        assert check["measured"]["n"] == 2 and check["seeds"] == [0, 1]
        assert isinstance(check["passed"], bool)
        assert 0.0 <= check["false_failure"] <= 1.0
        details = check["details"]
        assert details["verdict"] in ("supported", "opposite", "inconclusive")
        assert len(details["runs"]) == 4
        assert all(run["status"] == "trained" for run in details["runs"].values())
        assert details["configs"]["clean"]["model"]["hidden_dim"] == 8

    again = trained.run(sizes, micro_context(tmp_path))
    assert all(run["status"] == "stored" for c in again for run in c.details["runs"].values())
    assert [c.measured for c in again] == [c["measured"] for c in report["checks"]]


def test_unfinished_runs_are_resumed(tmp_path):
    trained.run(micro_sizes(epochs=1), micro_context(tmp_path))
    longer = trained.run(micro_sizes(epochs=2), micro_context(tmp_path))
    for run in longer[0].details["runs"].values():
        assert run["status"] == "trained"
        events = [(e["event"], e["from_epoch"]) for e in read_events(run["run_dir"])]
        assert events == [("start", 0), ("resume", 1)]
    # epochs enter the store key: the 2-epoch runs are new runs, continued from the 1-epoch
    # ones (their first epoch is not trained again), which stay
    assert len(list((tmp_path / "digits-rows").iterdir())) == 8


def test_the_lyapunov_exponent_along_data_separates_contracting_and_expanding_models():
    """A model with κ < 0 has a negative exponent along any data; one whose W scales the
    state up has a positive one (checked against κ, an upper bound)."""
    import torch

    from nrnn import NoisyRNN
    from nrnn.stability import contraction_rate

    torch.manual_seed(0)
    x = torch.randn(6, 40, 2)
    exponents = {}
    for gamma in (-2.0, 3.0):  # A = ... − γ I: γ = 3 contracts, γ = −2 expands
        model = NoisyRNN(2, 4, 3, dt=0.1, gamma_a=gamma, gamma_w=0.0, init_std=0.1).double()
        exponents[gamma] = trained.data_lyapunov_exponent(model, x.double(), seed=0)
        assert exponents[gamma] <= float(contraction_rate(model).detach()) + 1e-9
    assert exponents[3.0] < 0 < exponents[-2.0]


def test_a_missing_baseline_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="clean"):
        trained.run(micro_sizes(objectives=("noise",)), micro_context(tmp_path))
