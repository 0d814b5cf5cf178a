"""Ctrl-C and SIGTERM stop a real `nrnn figures` run promptly on both backends: queued runs
are cancelled, no process outlives the command, the store stays consistent (every
checkpoint loads and matches its metrics), and one line says what was kept (exit 130 / 143).
Also: `nrnn train` interrupted and with a closed stdout."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nrnn.train as training
from nrnn.figures import robustness
from nrnn.harness import plan, with_threads
from nrnn.store import RunStore

ROOT = Path(__file__).resolve().parent.parent

# Two runs of 40 epochs (about a second each here) on 2 workers: long enough to be stopped
# in the middle, started through the real command line.
DRIVER = textwrap.dedent(
    """
    import dataclasses, sys
    from nrnn.figures import robustness, runs
    robustness.PROFILES["smoke"] = dataclasses.replace(
        robustness.PROFILES["smoke"],
        variants=("lipschitz", "released-high"),
        size=runs.Size(hidden_dim=32, epochs=40, seeds=(0,), eval_subset=64),
    )
    from nrnn.cli import main
    sys.exit(main(["figures", "--only", "robustness", "--profile", "smoke", *sys.argv[1:]]))
    """
)


def children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, frontier = set(), [pid]
    while frontier:
        for child in parents.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _interruptible() -> None:
    """In the child before exec: Ctrl-C's default action. A test run started in the
    background of a non-interactive shell inherits SIGINT ignored, and Python then leaves
    it ignored, as it should for the command itself (``nohup``, ``&``)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def smoke_specs():
    settings = robustness.settings_for("smoke")
    from nrnn.figures import runs

    size = runs.Size(hidden_dim=32, epochs=40, seeds=(0,), eval_subset=64)
    variants = ("lipschitz", "released-high")  # one run per worker, as in DRIVER
    return [with_threads(s, 1) for s in runs.grid(settings.datasets, variants, size)]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find child processes")
@pytest.mark.parametrize(
    "backend,signal_number",
    [
        ("local", signal.SIGINT),
        ("local", signal.SIGTERM),
        ("ray", signal.SIGTERM),
        ("ray", signal.SIGINT),
    ],
)
def test_a_signal_stops_every_process_and_keeps_a_consistent_store(
    tmp_path, backend, signal_number
):
    if backend == "ray":
        pytest.importorskip("ray", reason="the optional package ray is not installed")
    store = RunStore(tmp_path / "store")
    argv = ["--store", str(store.root), "--out", str(tmp_path / "out"), "--jobs", "2"]
    argv += ["--no-progress", "--backend", backend]
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER, *argv],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=_interruptible,
    )
    specs = smoke_specs()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if all(store.finished_epochs(spec.config) >= 1 for spec in specs):
            break
        time.sleep(0.1)
    assert process.poll() is None, process.communicate()[1]
    assert all(store.finished_epochs(spec.config) >= 1 for spec in specs), "runs never started"
    workers = children(process.pid)
    if signal_number == signal.SIGINT:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    else:
        process.send_signal(signal.SIGTERM)  # `kill PID`: the main process only
    started = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - started < 30, "the command did not stop promptly"
    assert process.returncode == 128 + signal_number, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("nrnn figures: interrupted: ") and "again to resume" in last, stderr
    assert "Traceback" not in stderr, stderr

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not [pid for pid in workers if alive(pid)], "processes outlived the command"

    # The store is consistent: every checkpoint loads and its metrics record every epoch it
    # holds (a worker killed outright between an epoch's two writes, as Ray's forced cancel
    # does, leaves the metrics one epoch ahead, written first; a resumption rewrites it),
    # the runs are seen as partial (to resume), nothing is finished that was not.
    for spec in specs:
        run_dir = store.run_dir(spec.config)
        epochs = training.verified_epochs(run_dir)
        assert 1 <= epochs < 40
        recorded = [m["epoch"] for m in training.read_metrics(run_dir)]
        assert recorded in (list(range(1, epochs + 1)), list(range(1, epochs + 2)))
    states = [row.state for row in plan(specs, store)]
    assert all(state.startswith("partial") for state in states), states


def test_nrnn_train_interrupted_says_where_to_resume(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "nrnn", "train", "--dataset", "digits", "--epochs", "200"]
        + ["--set", "model.hidden_dim=16", "--out", str(out), "--quiet"],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and training.finished_epochs(out) < 1:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - started < 30, "the command did not stop promptly"
    assert process.returncode == 130
    (line,) = stderr.strip().splitlines()
    assert line.startswith("nrnn train: interrupted: the checkpoint of epoch ")
    assert f"is kept in {out}; add --resume to continue" in line


def test_nrnn_train_into_a_closed_pipe_exits_quietly(tmp_path):
    """`nrnn train ... | head -0`: the reader is gone before the result is printed."""
    command = (
        f"{sys.executable} -m nrnn train --dataset digits-rows --epochs 1 --quiet "
        f"--set model.hidden_dim=4 --out {tmp_path / 'run'} | head -c 0"
    )
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr
    assert result.returncode in (0, 128 + signal.SIGPIPE)
