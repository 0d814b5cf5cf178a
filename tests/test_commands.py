"""What a user's command does with bad input and failed runs: no silent success, no verdict
from a broken run, one exit code per kind of outcome (``nrnn.exitcodes``), every check that
can be made before work made before work."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import nrnn.train as training
from nrnn import Noise, exitcodes
from nrnn.cli import main as nrnn
from nrnn.experiments import PROFILES, REGISTRY, Experiment
from nrnn.figures import robustness, runs
from nrnn.verification import core
from nrnn.verification import trained as trained_checks
from nrnn.verification.cli import CHECKS_FAILED

ROOT = Path(__file__).resolve().parent.parent


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a run started although the request is invalid")

    monkeypatch.setattr(training, "train", refuse)


def make_check(passed: bool = True) -> core.Check:
    return core.Check(
        claim=1, name="a", measured={"v": 1.0}, criterion="c", tolerance={}, passed=passed
    )


def stand_in(name: str, run, plan=None) -> Experiment:
    return Experiment(
        name=name,
        title=f"stand-in {name}",
        claims=(1,),
        profiles={profile: profile for profile in PROFILES},
        run=run,
        plan=plan,
    )


def use_stand_ins(monkeypatch, modules: dict[str, Experiment]) -> None:
    monkeypatch.setitem(REGISTRY, "verify", {name: "stand-in" for name in modules})
    monkeypatch.setattr("nrnn.verification.cli.load", lambda group, name: modules[name])
    monkeypatch.setattr("nrnn.experiments.load", lambda group, name: modules[name])


# ------------------------------------------------------------------------- exit codes
def test_exit_codes_are_defined_once():
    assert (exitcodes.OK, exitcodes.USAGE, exitcodes.CLAIM_DOES_NOT_HOLD) == (0, 2, 3)
    assert (exitcodes.INFRASTRUCTURE, exitcodes.INTERRUPTED, exitcodes.TERMINATED) == (4, 130, 143)
    assert CHECKS_FAILED == exitcodes.CLAIM_DOES_NOT_HOLD


@pytest.mark.parametrize("code", [0, 1, 2, 3, 4, 130])
def test_make_reproduce_accepts_a_claim_that_does_not_hold_and_nothing_else(code, tmp_path):
    """The verify line of `make reproduce`, with the command replaced by one exiting
    ``code``: make goes on after 0 and 3 only."""
    recipe = (ROOT / "Makefile").read_text().split("\nreproduce:", 1)[1]
    (line,) = [line.strip() for line in recipe.splitlines() if " -m nrnn verify " in line]
    command, accept = line.split("||")
    shell = f"(exit {code}) ||{accept}".replace("$$", "$")
    result = subprocess.run(["sh", "-c", shell], check=False)
    assert (result.returncode == 0) == (code in (0, exitcodes.CLAIM_DOES_NOT_HOLD))


def test_a_failed_training_run_exits_4_and_is_never_a_failed_check(tmp_path, monkeypatch, capsys):
    """Before, a run that could not be trained (a corrupt checkpoint, a bad store) became a
    failing check of claim 6 and `nrnn verify` exited 3, which `make reproduce` accepts."""

    def broken(config, *args, **kwargs):
        raise training.CheckpointError("checkpoint x is corrupt or unreadable: truncated")

    monkeypatch.setattr(training, "train", broken)
    out = tmp_path / "report"
    argv = ["verify", "trained", "--profile", "smoke", "--jobs", "1", "--no-progress"]
    code = nrnn([*argv, "--store", str(tmp_path / "store"), "--out", str(out)])
    assert code == exitcodes.INFRASTRUCTURE
    assert "4 of 4 training runs failed" in capsys.readouterr().err
    entry = core.read_report(out / "report.json")["modules"]["trained"]
    assert entry["checks"] == [] and not entry["passed"] and "corrupt" in entry["error"]
    assert "COULD NOT RUN" in (out / "report.md").read_text()


def test_an_io_error_in_a_module_exits_4_with_one_line(tmp_path, monkeypatch, capsys):
    def disk_full(sizes, context):
        raise OSError(28, "No space left on device")

    use_stand_ins(monkeypatch, {"expansion": stand_in("expansion", disk_full)})
    assert nrnn(["verify", "--out", str(tmp_path)]) == exitcodes.INFRASTRUCTURE
    assert "No space left on device" in _one_line(capsys.readouterr().err)
    assert "No space" in core.read_report(tmp_path / "report.json")["modules"]["expansion"]["error"]


# --------------------------------------------------------------------- no silent pass
def test_zero_checks_are_never_a_pass(tmp_path, monkeypatch, capsys):
    use_stand_ins(monkeypatch, {"expansion": stand_in("expansion", lambda sizes, context: [])})
    assert nrnn(["verify", "--out", str(tmp_path)]) == exitcodes.INFRASTRUCTURE
    assert "ran no check" in capsys.readouterr().err
    report = core.read_report(tmp_path / "report.json")
    assert report["passed"] is False and report["modules"]["expansion"]["passed"] is False
    assert "all checks pass" not in (tmp_path / "report.md").read_text()
    merged = core.merge_reports(None, [dict(report["modules"]["expansion"], passed=True)])
    assert merged["passed"] is False  # a module entry without checks never passes


def test_set_of_a_key_the_experiment_varies_is_refused(tmp_path, monkeypatch, capsys):
    """`nrnn verify trained --set train.seed=5` made every seed seed 5: one run trained
    twice at once, 0 checks, "all checks pass", exit 0."""
    _no_training(monkeypatch)
    base = ["--profile", "smoke", "--store", str(tmp_path / "store"), "--out", str(tmp_path)]
    assert nrnn(["verify", "trained", *base, "--set", "train.seed=5"]) == exitcodes.USAGE
    line = _one_line(capsys.readouterr().err)
    assert "trained varies train.seed between its runs (0, 1)" in line
    assert nrnn(["verify", "trained", *base, "--set", "train.objective=clean"]) == 2
    assert "train.objective" in capsys.readouterr().err
    figures = ["figures", "--only", "robustness", *base]
    assert nrnn([*figures, "--set", "noise.additive=0.3", "--plan"]) == exitcodes.USAGE
    assert "robustness varies noise.additive" in capsys.readouterr().err
    assert nrnn([*figures, "--set", "model.hidden_dim=4", "--plan"]) == exitcodes.OK  # not varied


def test_set_for_modules_that_train_nothing_is_refused(tmp_path, capsys):
    argv = ["verify", "expansion", "--out", str(tmp_path), "--set", "model.hidden_dim=4"]
    assert nrnn(argv) == exitcodes.USAGE
    assert "expansion trains none" in capsys.readouterr().err
    bench = ["bench", "--only", "model_speed", "--out", str(tmp_path), "--set", "model.dt=1.0"]
    with pytest.raises(SystemExit) as error:
        nrnn(bench)
    assert error.value.code == exitcodes.USAGE
    assert "benchmarks train none" in capsys.readouterr().err


def test_a_paired_test_needs_two_seeds():
    single = dataclasses.replace(trained_checks.SMOKE, seeds=(0,))
    with pytest.raises(ValueError, match="at least 2 seeds"):
        trained_checks.plan(single)


# -------------------------------------------------------------- validation before work
@pytest.mark.parametrize(
    "override,message",
    [
        ("optim.lr=-1", "optim.lr must be a finite number > 0, got -1.0"),
        ("optim.lr=inf", "optim.lr must be a finite number > 0, got inf"),
        ("model.hidden_dim=-4", "model.hidden_dim must be an integer >= 1, got -4"),
        ("optim.lr_decay=-1", r"optim.lr_decay must be in \(0, 1\]"),
        ("optim.lr_decay=0", r"optim.lr_decay must be in \(0, 1\]"),
    ],
)
def test_bad_values_are_refused_before_any_run_in_one_line(
    override, message, tmp_path, monkeypatch, capsys
):
    """Before, --plan rejected these with a traceback while a real run let every training
    run fail (the figures then exited 0 with empty tables)."""
    _no_training(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    previous = out / "robustness_smoke.md"
    previous.write_text("previous\n")
    argv = ["figures", "--only", "robustness", "--profile", "smoke", "--out", str(out)]
    argv += ["--store", str(tmp_path / "store"), "--set", override]
    for extra in ([], ["--plan"]):
        assert nrnn([*argv, *extra]) == exitcodes.USAGE
        assert re.search(message, _one_line(capsys.readouterr().err))
    assert nrnn(["verify", "trained", *argv[5:], "--profile", "smoke"]) == exitcodes.USAGE
    assert re.search(message, _one_line(capsys.readouterr().err))
    assert previous.read_text() == "previous\n" and sorted(out.iterdir()) == [previous]


def test_an_unusable_store_or_out_is_refused_before_any_run(tmp_path, monkeypatch, capsys):
    """Before, `nrnn figures --store FILE` (or /sys/x) let every run fail and exited 0;
    `nrnn verify --out FILE` failed only after training everything."""
    _no_training(monkeypatch)
    monkeypatch.setattr(core, "run_module", lambda *args: pytest.fail("a module ran"))
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    figures = ["figures", "--only", "robustness", "--profile", "smoke", "--no-progress"]
    cases = [
        ([*figures, "--store", str(a_file), "--out", str(tmp_path / "o")], "is a file"),
        ([*figures, "--store", str(a_file / "below"), "--out", str(tmp_path / "o")], "cannot"),
        ([*figures, "--out", str(a_file)], "--out"),
        (["verify", "--out", str(a_file)], f"--out {a_file} is a file, not a directory"),
        (["train", "--dataset", "digits-rows", "--out", str(a_file)], "is a file"),
        (["train", "--out", str(a_file / "run")], f"the folder of --out {a_file / 'run'}"),
        (["train", "--store", str(a_file)], f"of --store {a_file}:"),
    ]
    for argv, message in cases:
        assert nrnn(argv) == exitcodes.USAGE, argv
        assert message in _one_line(capsys.readouterr().err)
    with pytest.raises(SystemExit) as refused:  # argparse's own refusal
        nrnn(["train", "--store", str(tmp_path), "--out", str(tmp_path)])
    assert refused.value.code == exitcodes.USAGE
    assert "not allowed with" in capsys.readouterr().err


def test_figures_exit_4_when_a_run_fails_and_keep_the_previous_outputs(
    tmp_path, monkeypatch, capsys
):
    """A run failing at run time (here every Lipschitz run: the baseline that silently
    dropped out of the table when its checkpoint was truncated) fails the command."""
    monkeypatch.setitem(
        robustness.PROFILES,
        "smoke",
        dataclasses.replace(
            robustness.PROFILES["smoke"], size=runs.Size(8, 1, (0,), train_subset=64)
        ),
    )
    original = training.train

    def truncated(config, *args, **kwargs):
        if config.train.objective == "clean" and isinstance(config.noise, Noise):
            raise training.CheckpointError("checkpoint x is corrupt or unreadable: truncated")
        return original(config, *args, **kwargs)

    monkeypatch.setattr(training, "train", truncated)
    out = tmp_path / "out"
    argv = ["figures", "--only", "robustness", "--profile", "smoke", "--jobs", "1"]
    argv += ["--store", str(tmp_path / "store"), "--out", str(out), "--no-progress"]
    assert nrnn(argv) == exitcodes.INFRASTRUCTURE
    assert "1 of 3 training runs failed (first: digits/lipschitz/s0" in capsys.readouterr().err
    assert list(out.iterdir()) == []


# ---------------------------------------------------------------------------- train
def test_version():
    completed = subprocess.run(
        [sys.executable, "-m", "nrnn", "--version"], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0
    assert re.fullmatch(r"nrnn \S+ \(trained runs: code version \d+\)\n", completed.stdout)


def test_train_takes_threads_and_no_progress_like_the_other_commands(tmp_path, capsys):
    base = ["train", "--dataset", "digits-rows", "--epochs", "1", "--set", "model.hidden_dim=4"]
    assert nrnn([*base, "--threads", "1", "--no-progress", "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["train"]["threads"] == 1
    assert "epoch 1/1" not in capsys.readouterr().err
    assert nrnn([*base, "--quiet", "--out", str(tmp_path / "b")]) == 0  # the old spelling
    assert nrnn([*base, "--threads", "0", "--out", str(tmp_path / "c")]) == exitcodes.USAGE
    assert "--threads must be >= 1" in capsys.readouterr().err


def test_more_epochs_in_the_store_continue_the_stored_shorter_run(tmp_path, capsys):
    """In the store the epoch count is part of the key; asking for more epochs continues
    the stored run instead of training its first epochs again (another seed does not)."""
    base = ["train", "--dataset", "digits-rows", "--set", "model.hidden_dim=4", "--no-progress"]
    base += ["--store", str(tmp_path)]
    assert nrnn([*base, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert nrnn([*base, "--epochs", "2"]) == 0
    captured = capsys.readouterr()
    assert "continued from" in captured.err
    run_dir = Path(json.loads(captured.out)["run_dir"])
    events = training.read_events(run_dir)
    assert [(e["event"], e["from_epoch"]) for e in events] == [("start", 0), ("resume", 1)]
    assert nrnn([*base, "--epochs", "2", "--seed", "1"]) == 0
    assert "continued from" not in capsys.readouterr().err


def test_resuming_with_fewer_epochs_than_the_checkpoint_is_refused(tmp_path, capsys):
    """Before, `--resume --epochs 1` on a finished 2-epoch run returned the 2-epoch run."""
    base = ["train", "--dataset", "digits-rows", "--set", "model.hidden_dim=4", "--no-progress"]
    base += ["--out", str(tmp_path)]
    assert nrnn([*base, "--epochs", "2"]) == 0
    capsys.readouterr()
    assert nrnn([*base, "--epochs", "1", "--resume"]) == exitcodes.USAGE
    assert "holds 2 finished epochs, more than the 1 asked for" in capsys.readouterr().err
    assert training.finished_epochs(tmp_path) == 2  # untouched
    assert nrnn([*base, "--epochs", "3"]) == exitcodes.USAGE  # would overwrite: needs --resume
    assert "already holds a checkpoint" in capsys.readouterr().err
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # truncated: the run's fault
    assert nrnn([*base, "--epochs", "3", "--resume"]) == exitcodes.INFRASTRUCTURE
    assert "corrupt or unreadable" in capsys.readouterr().err


# ------------------------------------------------------------------- the report file
def test_verify_writes_each_module_as_it_finishes(tmp_path, monkeypatch):
    """An interrupt in the last module keeps the modules that finished."""

    def interrupted(sizes, context):
        raise KeyboardInterrupt

    use_stand_ins(
        monkeypatch,
        {
            "expansion": stand_in("expansion", lambda sizes, context: [make_check()]),
            "stability": stand_in("stability", interrupted),
        },
    )
    assert nrnn(["verify", "--out", str(tmp_path)]) == exitcodes.INTERRUPTED
    report = core.read_report(tmp_path / "report.json")
    assert list(report["modules"]) == ["expansion"] and report["passed"]
