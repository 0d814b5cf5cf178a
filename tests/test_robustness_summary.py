"""Claim 9's statistics and verdicts on constructed results with known answers: paired
differences of accuracy drops with their t intervals (computed independently with
scipy), the verdict rules with a negative control for each, and the claim-9 page, whose
sentences name only differences whose interval excludes zero."""

from __future__ import annotations

import pytest
from scipy import stats

from nrnn.figures import robustness_report as report
from nrnn.figures import robustness_summary as summary_module

LEVELS = {"white": [0.1, 0.2], "fgsm-l2": [0.5, 1.0]}


def entry(name, clean, white, fgsm, seeds=None, control=None):
    """A variant's aggregate: per seed the clean accuracy and, per perturbation, the
    accuracies at the two levels."""
    seeds = list(range(len(clean))) if seeds is None else seeds
    perturbations = {}
    for key, rows in (("white", white), ("fgsm-l2", fgsm)):
        perturbations[key] = {"levels": LEVELS[key], "per_seed": rows}
    return {
        "name": name,
        "label": name.title(),
        "control": control,
        "same_run_as": None,
        "seeds": seeds,
        "clean": {"per_seed": clean},
        "perturbations": perturbations,
    }


def summary_of(*variants):
    return {
        "dataset": "toy",
        "settings": {"levels": LEVELS, "pgd_steps": 10},
        "variants": list(variants),
        "contrasts": summary_module.contrasts(list(variants)),
    }


CLEAN = [0.90, 0.92, 0.91, 0.93]
BASE = entry(
    "lipschitz",
    CLEAN,
    [[0.80, 0.60], [0.83, 0.61], [0.80, 0.59], [0.84, 0.62]],
    [[0.50, 0.20], [0.52, 0.25], [0.49, 0.21], [0.55, 0.22]],
)


def test_paired_differences_and_their_interval_agree_with_scipy():
    differences = [0.10, 0.06, 0.06, 0.02]
    found = summary_module.paired(differences)
    mean = sum(differences) / 4
    low, high = stats.t.interval(0.95, 3, loc=mean, scale=stats.sem(differences))
    assert found["mean_difference"] == pytest.approx(mean)
    assert found["ci95"] == pytest.approx([low, high])
    assert summary_module.paired([0.3])["ci95"] is None


def test_drops_are_paired_by_seed_not_by_position():
    """The treated model lists its seeds in another order: pairing follows the seeds."""
    shifted = entry(
        "noisy",
        [c - 0.02 for c in CLEAN][::-1],
        [[a - 0.02 + 0.05, b - 0.02 + 0.05] for a, b in BASE["perturbations"]["white"]["per_seed"]][
            ::-1
        ],
        [[a - 0.02, b - 0.02] for a, b in BASE["perturbations"]["fgsm-l2"]["per_seed"]][::-1],
        seeds=[3, 2, 1, 0],
        control="lipschitz",
    )
    (twin,) = summary_module.contrasts([BASE, shifted])
    assert twin["seeds"] == [3, 2, 1, 0]
    assert twin["clean"]["per_seed"] == pytest.approx([-0.02] * 4)
    # the white-noise drop is 5 points smaller on every seed, the FGSM drop the same
    white, fgsm = twin["perturbations"]["white"], twin["perturbations"]["fgsm-l2"]
    assert white["mean_drop"]["per_seed"] == pytest.approx([0.05] * 4)
    assert fgsm["mean_drop"]["per_seed"] == pytest.approx([0.0] * 4, abs=1e-12)
    for level in white["accuracy"]:
        assert level["per_seed"] == pytest.approx([0.03] * 4)


def _treated(white_gain, fgsm_gain, noise=(0.01, -0.01, 0.005, -0.005)):
    """The baseline's accuracies with the drops changed by the given gains (plus a little
    seed-to-seed noise, so that intervals have width)."""
    return entry(
        "noisy",
        CLEAN,
        [
            [a + white_gain + e, b + white_gain + e]
            for (a, b), e in zip(BASE["perturbations"]["white"]["per_seed"], noise, strict=True)
        ],
        [
            [a + fgsm_gain + e, b + fgsm_gain + e]
            for (a, b), e in zip(BASE["perturbations"]["fgsm-l2"]["per_seed"], noise, strict=True)
        ],
        control="lipschitz",
    )


@pytest.mark.parametrize(
    "white_gain, fgsm_gain, verdict, more, less",
    [
        (0.05, 0.05, "holds", ["white", "fgsm-l2"], []),
        (0.05, 0.0, "holds", ["white"], []),  # half of the perturbations
        (0.05, -0.05, "mixed", ["white"], ["fgsm-l2"]),
        (-0.05, 0.0, "opposite", [], ["white"]),
        (0.0, 0.0, "not shown", [], []),  # the negative control of "holds"
    ],
)
def test_verdicts(white_gain, fgsm_gain, verdict, more, less):
    (twin,) = summary_module.contrasts([BASE, _treated(white_gain, fgsm_gain)])
    assert (twin["verdict"], twin["more_robust"], twin["less_robust"]) == (verdict, more, less)


def test_partly_needs_fewer_than_half():
    assert summary_module.overall_verdict([1, 0, 0]) == "partly"
    assert summary_module.overall_verdict([1, 1, 0, 0]) == "holds"
    assert summary_module.overall_verdict([]) == "not shown"


def test_one_seed_decides_nothing():
    one = entry("noisy", [0.9], [[0.9, 0.9]], [[0.9, 0.9]], control="lipschitz")
    (twin,) = [c for c in summary_module.contrasts([BASE, one]) if c["kind"] == "twin"]
    assert twin["verdict"] == "not shown" and twin["clean"]["ci95"] is None


def test_the_claim9_page_states_only_resolved_differences():
    resolved = summary_of(BASE, _treated(0.05, 0.0))
    page = report.claim9_page([resolved])
    sentence = next(line for line in page.splitlines() if line.startswith("- toy"))
    assert "loses less accuracy under white noise +5.0" in sentence
    assert "FGSM" not in sentence  # not resolved: not stated
    assert "Verdict: holds." in sentence
    assert "no resolved clean-accuracy difference" in sentence
    unresolved = report.claim9_page([summary_of(BASE, _treated(0.0, 0.0))])
    sentence = next(line for line in unresolved.splitlines() if line.startswith("- toy"))
    assert "no perturbation resolves a difference" in sentence
    assert "Verdict: not shown." in sentence


def test_a_twin_that_is_the_lipschitz_rnn_is_compared_once():
    """Where the twin's runs are the Lipschitz RNN's (the default recipe), the contrast
    against the Lipschitz RNN would repeat the twin contrast: it is left out."""
    twin = BASE | {"name": "paper-clean", "same_run_as": "lipschitz"}
    noisy = _treated(0.05, 0.0) | {"control": "paper-clean"}
    found = summary_module.contrasts([BASE, twin, noisy])
    assert [(c["variant"], c["reference"], c["kind"]) for c in found] == [
        ("noisy", "paper-clean", "twin")
    ]
    other = BASE | {"name": "released-clean"}  # a twin with runs of its own
    found = summary_module.contrasts([BASE, other, noisy | {"control": "released-clean"}])
    assert [c["kind"] for c in found] == ["lipschitz", "twin", "lipschitz"]
