"""The GPU check's parts that run without a GPU: its refusal, its arguments, its JSON, the
test report it reads, the ratios and aims it computes and the plan it sums. The check
itself runs on a GPU (``python -m nrnn.benchmarks.gpu_check``)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nrnn.benchmarks import gpu_check

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


@NO_CUDA
def test_without_cuda_the_check_refuses_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--out", str(out)]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not out.exists()


def test_arguments():
    defaults = gpu_check.parse_arguments([])
    assert defaults.out == gpu_check.DEFAULT_OUT and defaults.repeats == 5
    assert not defaults.no_tests and not defaults.no_plan
    chosen = gpu_check.parse_arguments(["--out", "x.json", "--repeats", "2", "--no-plan"])
    assert (str(chosen.out), chosen.repeats, chosen.no_plan) == ("x.json", 2, True)
    with pytest.raises(SystemExit):
        gpu_check.parse_arguments(["--repeats", "0"])


def test_the_results_are_written_as_json(tmp_path):
    path = gpu_check.write_results(tmp_path / "deep" / "gpu_check.json", {"device": "X", "a": [1]})
    assert json.loads(path.read_text()) == {"device": "X", "a": [1]}


def test_the_junit_report_gives_each_test_its_outcome(tmp_path):
    report = tmp_path / "junit.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_graphs" name="test_ok"/>'
        '<testcase classname="tests.test_graphs" name="test_bad"><failure message="x"/></testcase>'
        '<testcase classname="tests.test_devices" name="test_gpu">'
        '<skipped type="pytest.skip" message="no CUDA device"/></testcase>'
        "</testsuite></testsuites>"
    )
    assert gpu_check.read_junit(report) == {
        "tests.test_graphs::test_ok": "passed",
        "tests.test_graphs::test_bad": "failed",
        "tests.test_devices::test_gpu": "skipped: no CUDA device",
    }


def _timings(noisy_captured_ms: float) -> dict:
    medians = {name: {"eager": 250.0, "captured": 30.0} for name in gpu_check.VARIANTS}
    medians["noisy_rnn_paper_fused"]["captured"] = noisy_captured_ms
    medians["torch_rnn_cudnn"] = {"eager": 2.5}
    medians["handwritten_lipschitz_loop"] = {"eager": 230.0, "captured": 35.0}
    return {
        name: {mode: {"median_ms": value} for mode, value in modes.items()}
        for name, modes in medians.items()
    }


def test_the_ratios_and_aims_follow_from_the_medians():
    ratios, aims = gpu_check.summarise(_timings(20.0))
    assert ratios["noisy_rnn_paper_fused: eager / captured"] == pytest.approx(12.5)
    assert ratios["noisy_rnn_paper_fused: captured / cuDNN nn.RNN"] == pytest.approx(8.0)
    assert ratios["noisy_rnn_paper_fused: captured / hand-written loop captured"] == (
        pytest.approx(20 / 35)
    )
    assert [a["met"] for a in aims] == [True, True, True]
    _, slow = gpu_check.summarise(_timings(40.0))  # negative control: every aim missed
    assert [a["met"] for a in slow] == [False, False, False]


def test_the_hand_written_loop_is_a_classifier():
    model = gpu_check.HandWrittenLipschitz()
    logits = model(torch.rand(2, 5, gpu_check.INPUT_DIM))
    assert logits.shape == (2, gpu_check.CLASSES)


def test_the_plan_counts_every_run_of_a_profile_once():
    """The smoke profile's runs of verify and figures, timed here (on the CPU)."""
    plan = gpu_check.profile_plan("smoke")
    assert plan["runs"] >= 1 and plan["shapes_timed"] >= 1
    assert plan["shapes_timed"] <= plan["runs"]
    assert 0 < plan["gpu_hours"] < 1


def _results(noisy_captured_ms: float) -> dict:
    timings = _timings(noisy_captured_ms)
    ratios, aims = gpu_check.summarise(timings)
    return {
        "device": "NVIDIA H200",
        "torch_version": "2.13.0",
        "environment": {"timestamp": "2026-12-01T00:00:00+00:00"},
        "step_timings": timings,
        "ratios": ratios,
        "aims": aims,
        "captured_equals_eager": {
            "steps": 3,
            "bitwise_equal": False,
            "largest_absolute_difference": 2e-7,
            "within_round_off": True,
        },
        "tests": {
            "passed": 30,
            "failed": 1,
            "skipped": 0,
            "outcomes": {
                "tests.test_graphs::test_a": "passed",
                "tests.test_graphs::test_b": "failed",
            },
        },
        "full_profile": {"runs": 250, "gpu_hours": 24.5},
    }


def test_the_summary_states_the_timings_aims_tests_and_gpu_hours():
    text = gpu_check.render_markdown(_results(20.0))
    assert "Measured on one NVIDIA H200 (torch 2.13.0" in text
    assert "| `NoisyRNN`, paper noise σ₁ = 0.5, fused recurrence | 250.0 ms | 20.0 ms |" in text
    assert "| `torch.nn.RNN` + Linear (cuDNN) | 2.5 ms | — |" in text
    assert "(met)" in text and "(not met)" not in text
    assert "largest difference 2e-07 (within float32 round-off)" in text
    assert "30 passed, 1 failed, 0 skipped: tests.test_graphs::test_b" in text
    assert "250 runs): 24.5 GPU-hours" in text
    assert "(not met)" in gpu_check.render_markdown(_results(40.0))


def test_without_results_the_summary_says_the_check_has_not_run(tmp_path):
    assert gpu_check.render_markdown(None).startswith("The GPU check has not run yet")
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--markdown", "--out", str(out)]) == 0
    assert (tmp_path / "gpu_check.md").read_text() == gpu_check.render_markdown(None)
    gpu_check.write_results(out, _results(20.0))
    (tmp_path / "gpu_check.md").unlink()
    assert gpu_check.main(["--markdown", "--out", str(out)]) == 0
    assert "GPU-hours" in (tmp_path / "gpu_check.md").read_text()


def test_the_committed_summary_is_the_one_the_committed_results_give():
    """README's GPU section is a copy of benchmarks/results/gpu_check.md (readme_sync)."""
    out = gpu_check.REPOSITORY / gpu_check.DEFAULT_OUT
    results = json.loads(out.read_text()) if out.exists() else None
    assert gpu_check.markdown_path(out).read_text() == gpu_check.render_markdown(results)


def _small_run(device: str):
    from nrnn.config import default_config

    config = default_config("digits-rows")
    config.model.hidden_dim = 8
    config.data.batch_size = 16
    config.train.device = device
    return config


@NO_CUDA
def test_a_run_asking_for_cuda_is_timed_on_this_cpu_when_there_is_no_gpu(tmp_path):
    from nrnn.cost import Timings

    measured = Timings(tmp_path / "timings.json").measure(_small_run("cuda"))
    assert measured["step"] > 0 and measured["forward"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_gpu_timings_are_kept_apart_from_cpu_timings(tmp_path):
    from nrnn.cost import Timings

    timings = Timings(tmp_path / "timings.json")
    on_gpu, on_cpu = timings.measure(_small_run("auto")), timings.measure(_small_run("cpu"))
    assert on_gpu["step"] > 0 and on_cpu["step"] > 0
    cached = json.loads((tmp_path / "timings.json").read_text())
    assert len(cached) == 2


def test_the_measuring_code_runs_end_to_end_with_eager_steps_standing_in(monkeypatch):
    """The timing and equality parts at a tiny size on the CPU, every step eager (a graph
    needs a GPU): what the GPU run will execute, minus the capture."""
    for name, value in {"HIDDEN": 6, "STEPS": 5, "BATCH": 4}.items():
        monkeypatch.setattr(gpu_check, name, value)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *args: None)
    eager_only = gpu_check.graphs.training_step

    def eager_step(loss_of, optimizer, **options):
        for group in optimizer.param_groups:
            group["capturable"] = False  # capturable Adam refuses CPU tensors
        return eager_only(loss_of, optimizer, **{**options, "capture": False})

    monkeypatch.setattr(gpu_check.graphs, "training_step", eager_step)
    cpu = torch.device("cpu")
    timings = gpu_check.time_variants(cpu, repeats=1)
    assert set(timings) == {*gpu_check.VARIANTS, "torch_rnn_cudnn", "handwritten_lipschitz_loop"}
    ratios, aims = gpu_check.summarise(timings)
    assert all(math.isfinite(value) and value > 0 for value in ratios.values())
    assert len(aims) == 3
    equality = gpu_check.captured_equals_eager(cpu, steps=2)
    assert equality["bitwise_equal"] and equality["within_round_off"]
