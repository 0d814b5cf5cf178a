"""The comparison of two computations of a robustness table (``nrnn.figures.robustness_compare``)
on the committed digits table: a table compared with itself agrees everywhere; a mean moved
just outside its interval, a per-seed accuracy changed and a verdict flipped are each found
(negative controls); mismatched inputs are refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from nrnn.figures import robustness_compare

COMMITTED = Path(__file__).resolve().parent.parent / "paper_figures/output/robustness_digits.json"


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads(COMMITTED.read_text(encoding="utf-8"))


def test_a_table_agrees_with_itself(committed):
    comparison = robustness_compare.compare(committed, copy.deepcopy(committed))
    assert comparison["cells"] and all(cell["inside"] for cell in comparison["cells"])
    assert comparison["per_seed_clean"]["differ"] == 0
    assert comparison["per_seed_clean"]["of"] == sum(len(v["seeds"]) for v in committed["variants"])
    assert len(comparison["contrasts"]) == len(committed["contrasts"])
    assert all(
        c["committed"] == c["other"] and c["largest_shift"] == 0 for c in comparison["contrasts"]
    )
    assert comparison["left_out"] == []


@pytest.mark.parametrize("factor, inside", [(0.99, True), (1.01, False)])
def test_a_mean_is_inside_exactly_when_within_its_t_interval(committed, factor, inside):
    """The clean mean of one variant moved by 0.99 and 1.01 times its interval's
    half-width t₀.₉₇₅,₉ · s/√10 (computed here from the standard deviation, 10 seeds)."""
    other = copy.deepcopy(committed)
    variant = other["variants"][0]
    seeds = len(variant["seeds"])
    t_quantile = {10: 2.2621571627409915}[seeds]
    half = t_quantile * variant["clean"]["std"] / seeds**0.5
    variant["clean"]["mean"] += factor * half
    comparison = robustness_compare.compare(committed, other)
    (cell,) = [
        c for c in comparison["cells"] if c["variant"] == variant["name"] and c["cell"] == "clean"
    ]
    assert cell["inside"] is inside
    assert cell["half_width"] == pytest.approx(half, rel=1e-12)
    assert sum(not c["inside"] for c in comparison["cells"]) == (0 if inside else 1)


def test_a_changed_seed_and_a_flipped_verdict_are_reported(committed):
    other = copy.deepcopy(committed)
    other["variants"][1]["clean"]["per_seed"][3] += 0.01
    flipped = other["contrasts"][2]
    flipped["verdict"] = "opposite" if flipped["verdict"] != "opposite" else "holds"
    flipped["clean"]["mean_difference"] += 0.02
    comparison = robustness_compare.compare(committed, other)
    assert comparison["per_seed_clean"]["differ"] == 1
    changed = [c for c in comparison["contrasts"] if c["committed"] != c["other"]]
    assert [(c["variant"], c["reference"]) for c in changed] == [
        (flipped["variant"], flipped["reference"])
    ]
    assert changed[0]["largest_shift"] == pytest.approx(0.02)
    text = robustness_compare.to_markdown(comparison, "a test")
    assert f"{len(comparison['contrasts']) - 1} of {len(comparison['contrasts'])} verdicts" in text
    carried = text.split("carried over, other than *not shown*: ")[1].split(". A verdict")[0]
    assert f"{flipped['variant']} vs {flipped['reference']}" not in carried
    kept = [c for c in committed["contrasts"] if c is not committed["contrasts"][2]]
    for contrast in kept:
        named = f"{contrast['variant']} vs {contrast['reference']} ({contrast['verdict']})"
        assert (named in carried) is (contrast["verdict"] != "not shown")


def test_variants_only_one_side_has_are_left_out_and_named(committed):
    other = copy.deepcopy(committed)
    dropped = other["variants"].pop()["name"]
    other["contrasts"] = [c for c in other["contrasts"] if c["variant"] != dropped]
    comparison = robustness_compare.compare(committed, other)
    assert dropped in comparison["left_out"]
    assert all(cell["variant"] != dropped for cell in comparison["cells"])
    assert "Only in one of them: " in robustness_compare.to_markdown(comparison, "a test")


def test_mismatched_inputs_are_refused(committed, tmp_path):
    other = copy.deepcopy(committed)
    other["dataset"] = "ecg5000"
    with pytest.raises(ValueError, match="different datasets"):
        robustness_compare.compare(committed, other)
    other = copy.deepcopy(committed)
    other["variants"][0]["seeds"] = other["variants"][0]["seeds"][:-1]
    with pytest.raises(ValueError, match="seeds differ"):
        robustness_compare.compare(committed, other)
    with pytest.raises(SystemExit) as missing:
        robustness_compare.main(
            [str(COMMITTED), str(tmp_path / "missing.json"), "--label", "x", "--out", "o.md"]
        )
    other_path = tmp_path / "other.json"
    other_path.write_text(json.dumps(other))
    with pytest.raises(SystemExit) as mismatched:
        robustness_compare.main(
            [str(COMMITTED), str(other_path), "--label", "x", "--out", str(tmp_path / "o.md")]
        )
    assert missing.value.code == mismatched.value.code == 2  # usage errors, no traceback
    assert not (tmp_path / "o.md").exists()
