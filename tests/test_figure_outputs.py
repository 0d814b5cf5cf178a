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


def accuracies_from_csv(path: Path) -> dict[tuple[str, int], dict[tuple[str, float], float]]:
    """{(variant, seed): {(perturbation, level): accuracy}} from the CSV's one row per
    (variant, seed, perturbation, level); clean accuracy under ("clean", 0.0)."""
    found: dict[tuple[str, int], dict[tuple[str, float], float]] = {}
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            key = (row["perturbation"], float(row["level"]))
            found.setdefault((row["variant"], int(row["seed"])), {})[key] = float(row["accuracy"])
    return found


@pytest.mark.parametrize("path", sorted(OUTPUT.glob("robustness_*.json")), ids=lambda p: p.name)
def test_robustness_contrasts_follow_from_the_per_seed_rows(path):
    """Every contrast's paired difference of mean accuracy drops, recomputed from the CSV
    (not from the JSON's aggregates), and every direction and verdict from its interval."""
    from scipy import stats

    summary = load(path.name)
    levels = summary["settings"]["levels"]
    rows = accuracies_from_csv(path.with_suffix(".csv"))
    own = {v["name"]: v.get("same_run_as") or v["name"] for v in summary["variants"]}
    assert summary["contrasts"], "no contrast"
    for contrast in summary["contrasts"]:
        variant, reference = own[contrast["variant"]], own[contrast["reference"]]
        directions = []
        for name, values in levels.items():
            differences = []
            for seed in contrast["seeds"]:
                mine, theirs = rows[(variant, seed)], rows[(reference, seed)]
                drops = [
                    (mine[(name, v)] - mine[("clean", 0.0)])
                    - (theirs[(name, v)] - theirs[("clean", 0.0)])
                    for v in values
                ]
                differences.append(statistics.fmean(drops))
            stored = contrast["perturbations"][name]["mean_drop"]
            assert stored["per_seed"] == pytest.approx(differences, abs=1e-12)
            mean = statistics.fmean(differences)
            low, high = stats.t.interval(0.95, len(differences) - 1, mean, stats.sem(differences))
            assert stored["ci95"] == pytest.approx([low, high], abs=1e-12)
            direction = 1 if low > 0 else -1 if high < 0 else 0
            assert contrast["perturbations"][name]["direction"] == direction
            directions.append(direction)
        more, less = directions.count(1), directions.count(-1)
        expected = (
            "mixed"
            if more and less
            else "opposite"
            if less
            else "not shown"
            if not more
            else "holds"
            if 2 * more >= len(directions)
            else "partly"
        )
        assert contrast["verdict"] == expected, contrast["variant"]
