"""The benchmarks run end to end at tiny sizes and write well-formed JSON.

No timing is asserted here: timings are benchmarks, not tests. These tests check the
structure of the results, that every timing is a positive finite number, and that the
Monte Carlo fairness check agrees when both simulators run the same SDE (and disagrees
when they do not).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest
import torch

pytest.importorskip("torchsde")

from nrnn.benchmarks import model_speed, monte_carlo_speed, run, torchsde_reference
from nrnn.benchmarks.timing import time_interleaved
from nrnn.noise import Noise

SMOKE = model_speed.SMOKE


@pytest.fixture(scope="module")
def smoke_result(tmp_path_factory):
    """One smoke-profile run of every benchmark through the command line."""
    out = tmp_path_factory.mktemp("bench")
    status = run.main(["--profile", "smoke", "--out", str(out)])
    assert status == 0
    path = out / f"{model_speed.NAME}.json"
    return out, json.loads(path.read_text())


def _leaf_lists(seconds) -> list[list[float]]:
    """The lists of raw timings in a ``seconds`` entry, however deeply nested."""
    if isinstance(seconds, list):
        return [seconds]
    return [leaf for nested in seconds.values() for leaf in _leaf_lists(nested)]


def _numbers(tree) -> list[float]:
    """Every number in a nested dict of numbers."""
    if isinstance(tree, dict):
        return [number for nested in tree.values() for number in _numbers(nested)]
    return [tree]


def test_json_has_environment_and_all_parts(smoke_result):
    out, result = smoke_result
    assert result["benchmark"] == "model_speed"
    assert result["profile"] == "smoke"
    assert set(result["parts"]) == set(model_speed.PARTS)
    env = result["environment"]
    for key in ("timestamp", "torch_version", "torch_threads", "cpu_count", "platform"):
        assert env[key] not in (None, "")
    assert env["torch_version"] == torch.__version__
    assert result["settings"] == SMOKE.to_json()
    assert isinstance(result["aims_met"], bool) and result["checks_passed"] is True
    assert sorted(p.name for p in out.iterdir()) == [
        "model_speed.json",
        "monte_carlo_speed.json",
        "regularizer_speed.json",
    ]  # no temporary left


@pytest.mark.parametrize("part", model_speed.PARTS)
def test_part_timings_are_positive_and_finite(smoke_result, part):
    _, result = smoke_result
    body = result["parts"][part]
    timing_lists = _leaf_lists(body["seconds"])
    assert timing_lists and all(len(values) == SMOKE.step_repeats for values in timing_lists)
    for value in [t for values in timing_lists for t in values] + _numbers(body["median_seconds"]):
        assert math.isfinite(value) and value > 0
    for item in body["aims"]:
        assert set(item) == {"description", "value", "comparison", "bound", "met"}
        assert math.isfinite(item["value"]) and item["value"] > 0
        assert item["met"] == (
            item["value"] <= item["bound"]
            if item["comparison"] == "<="
            else item["value"] >= item["bound"]
        )


def test_ratios_and_aims_recorded(smoke_result):
    parts = smoke_result[1]["parts"]
    scaling = parts["sequence_scaling"]
    assert scaling["lengths"] == [SMOKE.short_length, SMOKE.long_length]
    short, long = str(SMOKE.short_length), str(SMOKE.long_length)
    assert scaling["aims"][0]["bound"] == pytest.approx(1.3 * int(long) / int(short))
    ratio = scaling["median_seconds"][long] / scaling["median_seconds"][short]
    assert scaling["ratio_long_to_short"] == pytest.approx(ratio)
    versus = parts["vs_torch_rnn"]
    assert set(versus["ratio_noisy_to_torch_rnn"]) == {str(m) for m in versus["lengths"]}


def test_only_runs_the_chosen_part(tmp_path, capsys):
    status = run.main(
        ["--profile", "smoke", "--out", str(tmp_path), "--only", "model_speed.vs_torch_rnn"]
    )
    assert status == 0
    result = json.loads((tmp_path / "model_speed.json").read_text())
    assert list(result["parts"]) == ["vs_torch_rnn"]
    assert "nn.RNN" in capsys.readouterr().out


def test_resolve_selection_forms():
    assert run.resolve_selection(None) == {name: None for name in run.experiment_names("bench")}
    assert run.resolve_selection(["model_speed"]) == {"model_speed": None}
    assert run.resolve_selection(["training_step", "model_speed.vs_torch_rnn"]) == {
        "model_speed": ("training_step", "vs_torch_rnn")
    }
    assert run.resolve_selection(["vs_torchsde_larger", "model_speed.training_step"]) == {
        "monte_carlo_speed": ("vs_torchsde_larger",),
        "model_speed": ("training_step",),
    }
    assert run.resolve_selection(["model_speed.vs_torch_rnn", "model_speed"]) == {
        "model_speed": None
    }


@pytest.mark.parametrize(
    "argv", [["--only", "nope"], ["--threads", "0"], ["--quick", "--profile", "full"]]
)
def test_bad_arguments_exit_with_usage_error(argv, tmp_path):
    with pytest.raises(SystemExit) as error:
        run.main([*argv, "--out", str(tmp_path)])
    assert error.value.code == 2
    assert not any(tmp_path.iterdir())


def test_list_prints_parts(capsys):
    assert run.main(["--list"]) == 0
    printed = capsys.readouterr().out
    assert all(f"model_speed.{part}" in printed for part in model_speed.PARTS)


def test_time_interleaved_alternates_and_counts():
    order: list[str] = []
    seconds = time_interleaved(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3, warmup=1
    )
    assert order == ["a", "b"] * 4
    assert {name: len(values) for name, values in seconds.items()} == {"a": 3, "b": 3}


# ----------------------------------------------------------- Monte Carlo benchmark
MONTE_CARLO_SMOKE = monte_carlo_speed.SMOKE


def test_monte_carlo_speed_ratios_come_from_the_same_run(smoke_result):
    out, _ = smoke_result
    result = json.loads((out / f"{monte_carlo_speed.NAME}.json").read_text())
    assert result["settings"] == MONTE_CARLO_SMOKE.to_json()
    assert set(result["parts"]) == set(monte_carlo_speed.PARTS)
    assert result["checks_passed"] is True
    for part_name, part in result["parts"].items():
        case = MONTE_CARLO_SMOKE.case(part_name)
        fairness = part["fairness"]
        assert fairness["agrees"] is True
        assert fairness["torchsde_solver_steps"] == fairness["model_steps"] == case.steps
        assert len(fairness["mean"]["simulator"]) == case.hidden
        assert 0 < fairness["false_failure_probability_at_most"] < 1e-3
        assert set(part["threads"]) == {str(count) for count in MONTE_CARLO_SMOKE.threads}
        for timed in part["threads"].values():
            medians = timed["median_seconds"]
            assert set(medians) == {"simulator", "torchsde", "draws", "matmuls"}
            assert all(math.isfinite(value) and value > 0 for value in medians.values())
            limit = medians["draws"] + medians["matmuls"]
            assert timed["arithmetic_limit_seconds"] == pytest.approx(limit)
            assert timed["speedup_over_torchsde"] == pytest.approx(
                medians["torchsde"] / medians["simulator"]
            )
            assert timed["fraction_of_arithmetic_limit"]["simulator"] == pytest.approx(
                limit / medians["simulator"]
            )
        assert len(part["aims"]) == len(MONTE_CARLO_SMOKE.threads)
        for item, timed in zip(part["aims"], part["threads"].values(), strict=True):
            assert item["bound"] == monte_carlo_speed.SPEEDUP_AIM == 3.0
            assert item["comparison"] == ">="
            assert item["value"] == pytest.approx(timed["speedup_over_torchsde"])


def test_fairness_check_detects_a_different_sde():
    """With a different diffusion in torchsde the check must fail: it has power."""
    case = MONTE_CARLO_SMOKE.case("vs_torchsde")
    model = monte_carlo_speed.build_model(MONTE_CARLO_SMOKE, case)
    x = monte_carlo_speed.shared_input(MONTE_CARLO_SMOKE, case)
    wrong = copy.deepcopy(model)
    wrong.noise = Noise(
        additive=2 * MONTE_CARLO_SMOKE.additive, multiplicative=MONTE_CARLO_SMOKE.multiplicative
    )
    generator = torch.Generator().manual_seed(1)
    ours = monte_carlo_speed.simulate_paths(model, x, case.paths, generator)
    theirs, _ = torchsde_reference.simulate_with_torchsde(wrong, x, entropy=2, paths=case.paths)
    fairness = torchsde_reference.compare_final_states(ours, theirs, MONTE_CARLO_SMOKE.fairness_z)
    assert not fairness["agrees"]
    assert set(fairness["mean"]) == {"simulator", "torchsde"}


def test_compare_final_states_flags_a_scaled_sample():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=generator)
    b = torch.randn(4000, 3, generator=generator)
    assert torchsde_reference.compare_final_states(a, b, 4.5)["agrees"]
    assert not torchsde_reference.compare_final_states(a, 1.3 * b, 4.5)["agrees"]


def test_monte_carlo_speed_without_torchsde_skips_that_comparison(monkeypatch, capsys):
    message = "torchsde is not installed: the comparison with torchsde was skipped"
    monkeypatch.setattr(monte_carlo_speed, "torchsde_missing", lambda: message)
    monkeypatch.setattr(
        monte_carlo_speed,
        "simulate_with_torchsde",
        lambda *args, **kwargs: pytest.fail("torchsde was called"),
    )
    sizes = dataclasses.replace(MONTE_CARLO_SMOKE, threads=(1,))
    part = monte_carlo_speed.run(sizes, ("vs_torchsde",))["parts"]["vs_torchsde"]
    assert part["torchsde_skipped"] == message and "fairness" not in part
    assert part["aims"] == []
    assert set(part["threads"]["1"]["median_seconds"]) == {"simulator", "draws", "matmuls"}
    assert message in capsys.readouterr().err
    assert any(
        message in value
        for _, value in monte_carlo_speed.summary_rows({"parts": {"vs_torchsde": part}})
    )
