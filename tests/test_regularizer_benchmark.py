"""The regularizer benchmark runs end to end at tiny sizes and writes well-formed JSON.

No timing is asserted (timings are benchmarks, not tests): only the structure, that every
timing is a positive finite number, that each aim's verdict matches its numbers, and that
the exact regularizer and the autograd oracle agree in the fairness check.
"""

from __future__ import annotations

import json
import math

import pytest

from nrnn.benchmarks import regularizer_speed, run

SMOKE = regularizer_speed.SMOKE


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    status = run.main(["--profile", "smoke", "--only", regularizer_speed.NAME, "--out", str(out)])
    assert status == 0
    return json.loads((out / f"{regularizer_speed.NAME}.json").read_text())


def test_structure_and_settings(result):
    assert result["benchmark"] == regularizer_speed.NAME
    assert result["settings"] == SMOKE.to_json()
    assert set(result["parts"]) == set(regularizer_speed.PARTS)
    assert result["checks_passed"] is True


def test_timings_positive_and_ratios_consistent(result):
    body = result["parts"]["vs_training_step"]
    for length in map(str, SMOKE.lengths):
        timings = body["seconds"][length]
        assert set(timings) == {"training_step", "probe", "exact"}
        assert all(math.isfinite(t) and t > 0 for values in timings.values() for t in values)
        medians = body["median_seconds"][length]
        for method in ("exact", "probe"):
            assert body["ratio_to_training_step"][length][method] == pytest.approx(
                medians[method] / medians["training_step"]
            )
    aims = [item for part in result["parts"].values() for item in part["aims"]]
    assert len(aims) == 2 * len(SMOKE.lengths) + 1
    for item in aims:
        bound, value = item["bound"], item["value"]
        assert item["met"] == (value <= bound if item["comparison"] == "<=" else value >= bound)


def test_oracle_part_agrees(result):
    body = result["parts"]["vs_oracle"]
    assert body["fairness"]["agrees"] is True
    assert body["speedup_over_oracle"] > 0
    assert body["noise_variables_per_sequence"] == SMOKE.oracle_length * SMOKE.oracle_hidden


def test_probe_variance_part_is_variance_times_time(result):
    body = result["parts"]["probe_variance"]
    assert set(body["variance"]) == set(body["median_seconds"]) == {"rademacher", "gaussian"}
    for name, product in body["variance_times_seconds"].items():
        assert body["variance"][name] > 0  # the probes' spread is real
        assert product == pytest.approx(body["variance"][name] * body["median_seconds"][name])
    assert body["gaussian_work_over_rademacher_work"] == pytest.approx(
        body["variance_times_seconds"]["gaussian"] / body["variance_times_seconds"]["rademacher"]
    )
