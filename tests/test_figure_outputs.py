"""The committed figure data (paper_figures/output, written by `make reproduce`) supports
what its figures and the README state, checked from the JSON instead of the pixels.

These read files, so they fail when a regeneration produces data that no longer shows the
claim (or breaks the format), not when the code changes. Statistical comparisons use
z = 4.75 per point: with at most 27 points per check the chance that correct data fails a
check is below 5e-5.
"""

import csv
import json
import statistics
from pathlib import Path

import pytest

OUTPUT = Path(__file__).resolve().parent.parent / "paper_figures" / "output"
Z = 4.75


def load(name: str) -> dict:
    return json.loads((OUTPUT / name).read_text(encoding="utf-8"))


def test_expansion_remainder_is_fourth_order_and_monte_carlo_agrees():
    summary = load("expansion.json")
    low, high = summary["remainder"]["slope_range"]
    slopes = [case["slope"] for case in summary["remainder"]["cases"]]
    assert slopes and all(low <= slope <= high for slope in slopes), slopes
    rows = summary["coefficient"]["monte_carlo"]
    assert rows
    for row in rows:
        z = (row["estimate"] - row["predicted"]) / row["stderr"]
        assert abs(z) <= summary["coefficient"]["z_tolerance"], row


def test_linear_stabilisation_matches_the_euler_maruyama_exponent():
    """Every noisy Monte Carlo point of panels (a)–(c) is within Z standard errors of the
    exact a.s. exponent of the Euler–Maruyama step, and noise makes each system stable."""
    summary = load("stabilisation.json")
    for system in summary["linear"]:
        noisy = [point for point in system["points"] if point["sigma"] > 0]
        assert len(noisy) >= 3
        for point in noisy:
            assert abs(point["measured"] - point["as_em"]) <= Z * point["stderr"], (
                system["name"],
                point,
            )
        assert system["points"][0]["measured"] > 0 > noisy[-1]["measured"], system["name"]


def test_rnn_exponents_stay_below_their_bounds():
    rnn = load("stabilisation.json")["rnn"]
    bound_of_mode = {"scalar": "as_em_bound", "diagonal": "as_bound_per_unit"}
    for mode, points in rnn["points"].items():
        for point in points:
            assert point["measured"] <= point[bound_of_mode[mode]] + Z * point["stderr"], (
                mode,
                point,
            )
    strongest = rnn["points"]["scalar"][-1]
    assert strongest["sigma"] > rnn["stabilising_sigma_bound"] and strongest["measured"] < 0


def test_trained_metrics_hold_every_objective_and_seed():
    summary = load("trained_metrics.json")
    assert summary["datasets"]
    for dataset in summary["datasets"]:
        assert dataset["objectives"][0] == "clean" and len(dataset["objectives"]) >= 2
        for objective in dataset["objectives"]:
            runs = dataset["measurements"][objective]
            assert len(runs) == len(dataset["seeds"]) >= 2


def perturbed_accuracy_from_csv(path: Path) -> dict[str, float]:
    """Per variant, the mean over every (perturbation, level) of the accuracy averaged over
    seeds, computed from the CSV's one row per (variant, seed, perturbation, level)."""
    cells: dict[str, dict[tuple[str, float], list[float]]] = {}
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["perturbation"] == "clean":
                continue
            key = (row["perturbation"], float(row["level"]))
            cells.setdefault(row["variant"], {}).setdefault(key, []).append(float(row["accuracy"]))
    return {
        variant: statistics.fmean(statistics.fmean(seeds) for seeds in per_level.values())
        for variant, per_level in cells.items()
    }


@pytest.mark.parametrize("path", sorted(OUTPUT.glob("robustness_*.json")), ids=lambda p: p.name)
def test_robustness_ranking_follows_the_mean_perturbed_accuracy(path):
    """The ranking against the mean perturbed accuracy recomputed from the per-seed rows of
    the CSV, not from the JSON's own aggregate."""
    summary = load(path.name)
    levels = summary["settings"]["levels"]
    for variant in summary["variants"]:
        assert set(variant["perturbations"]) == set(levels), variant["name"]
        for name, entry in variant["perturbations"].items():
            assert entry["levels"] == levels[name]
            assert all(0.0 <= value <= 1.0 for value in entry["mean"])
    recomputed = perturbed_accuracy_from_csv(path.with_suffix(".csv"))
    stored = {v["name"]: v["mean_perturbed_accuracy"] for v in summary["variants"]}
    assert set(recomputed) == set(summary["ranking"]) == set(stored)
    for name, value in recomputed.items():
        assert stored[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    ranked = [recomputed[name] for name in summary["ranking"]]
    assert all(a >= b - 1e-12 for a, b in zip(ranked, ranked[1:], strict=False)), ranked
