"""One process at a time per run (``nrnn.lease``), with real processes: a second holder
waits, a holder killed outright on this host is replaced at once, one on another host only
after its heartbeat stops, a broken lease is noticed by its holder. Through the harness: two
drivers on one store train each run once; identical specs in one call train once; a
temporary file left by a writer killed outright is removed; a local worker process that
dies is an infrastructure failure, not a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import nrnn.train as training
from nrnn import exitcodes
from nrnn.backends import LocalBackend
from nrnn.exitcodes import InfrastructureError
from nrnn.figures import runs
from nrnn.files import temporaries
from nrnn.harness import RunSpec, ensure_runs, with_threads
from nrnn.lease import Lease, LeaseLost, read_holder
from nrnn.store import RunStore

ROOT = Path(__file__).resolve().parent.parent


def holder_process(directory: Path, host: str = "", heartbeat: float = 5.0) -> subprocess.Popen:
    """A process that takes the lease on ``directory`` (as if on ``host``), says "held" and
    sleeps; its heartbeat keeps running."""
    script = textwrap.dedent(
        f"""
        import socket, sys, time
        if {host!r}:
            socket.gethostname = lambda: {host!r}
        from nrnn.lease import Lease
        lease = Lease({str(directory)!r}, heartbeat={heartbeat}, stale_after=3600)
        assert lease.try_acquire() is None
        print("held", flush=True)
        time.sleep(600)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_one_holder_at_a_time(tmp_path):
    first, second = Lease(tmp_path), Lease(tmp_path)
    assert first.try_acquire() is None
    holder = second.try_acquire()
    assert holder is not None and holder.pid == os.getpid() and holder.token == first.token
    assert read_holder(tmp_path) == holder
    first.release()
    assert read_holder(tmp_path) is None
    assert second.try_acquire() is None
    second.release()
    again = Lease(tmp_path, heartbeat=0.05, stale_after=1.0)
    for _ in range(2):  # a released lease can be taken again, and beats again
        assert again.try_acquire() is None
        beat = read_holder(tmp_path).beat
        deadline = time.monotonic() + 30
        while read_holder(tmp_path).beat == beat:
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.01)
        again.release()


def test_a_holder_killed_outright_on_this_host_is_replaced_at_once(tmp_path):
    """kill -9 leaves the lease file; its holder's process is gone from this host, so the
    next process takes the lease at once (no waiting for the heartbeat to go stale)."""
    holder = holder_process(tmp_path)
    waiter = Lease(tmp_path, stale_after=3600)
    busy = waiter.try_acquire()
    assert busy is not None and busy.pid == holder.pid  # control: alive, so busy
    kill(holder)
    assert waiter.try_acquire() is None
    waiter.release()


def test_a_holder_on_another_host_is_replaced_only_after_its_heartbeat_stops(tmp_path):
    """A holder on another node cannot be asked whether it lives: the waiter watches the
    lease file. While its heartbeat (0.1 s) runs, 3 s of waiting with a 1 s stale time
    never take it; once it is killed, the lease is taken after about 1 s unchanged."""
    holder = holder_process(tmp_path, host="another-node", heartbeat=0.1)
    waiter = Lease(tmp_path, heartbeat=0.5, stale_after=1.0)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        found = waiter.try_acquire()
        assert found is not None and found.host == "another-node"
        time.sleep(0.05)
    kill(holder)
    deadline = time.monotonic() + 60
    while waiter.try_acquire() is not None:
        assert time.monotonic() < deadline, "an abandoned lease was never taken"
        time.sleep(0.05)
    assert read_holder(tmp_path).token == waiter.token
    waiter.release()


def test_a_holder_whose_lease_was_broken_notices(tmp_path):
    lease = Lease(tmp_path, heartbeat=0.05, stale_after=1.0)
    assert lease.try_acquire() is None
    lease.check()  # control: still ours
    (tmp_path / "intruder").write_text("{}")
    os.replace(tmp_path / "intruder", lease.path)
    deadline = time.monotonic() + 30
    with pytest.raises(LeaseLost, match="taken over by another process"):
        while time.monotonic() < deadline:
            lease.check()
            time.sleep(0.05)
    lease.release()
    assert lease.path.read_text() == "{}"  # the other's lease is left alone


# ------------------------------------------------------------------ the harness
def specs(epochs: int, seeds=(0,), names=("lipschitz",)) -> list[RunSpec]:
    size = runs.Size(hidden_dim=8, epochs=epochs, seeds=seeds, train_subset=128, eval_subset=64)
    return runs.grid(["digits-rows"], names, size)


DRIVER = textwrap.dedent(
    """
    import json, sys
    from nrnn.backends import LocalBackend
    from nrnn.figures import runs
    from nrnn.harness import EvaluationTask, ensure_runs
    from nrnn.store import RunStore
    size = runs.Size(hidden_dim=8, epochs=15, seeds=(0, 1), train_subset=128, eval_subset=64)
    specs = runs.grid(["digits-rows"], ("lipschitz",), size)
    outcomes = ensure_runs(specs, RunStore(sys.argv[1]), LocalBackend(1),
                           task=EvaluationTask(subset=64), progress=False)
    print(json.dumps([[o.status, o.result] for o in outcomes]))
    """
)


def test_two_drivers_on_one_store_train_each_run_once(tmp_path):
    """Two commands started together on one store (before: both trained every run, and
    interleaved writes skipped an epoch and moved a checkpoint backwards). Now each run is
    trained by one of them, once, from epoch 1 to the end; the other waits for its lease
    and reuses it; both report the same results."""
    store = tmp_path / "store"
    drivers = [
        subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(store)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    reports = [driver.communicate(timeout=600) for driver in drivers]
    assert [driver.returncode for driver in drivers] == [0, 0], reports
    first, second = (json.loads(stdout) for stdout, _ in reports)
    assert [result for _, result in first] == [result for _, result in second]
    assert sorted(status for status, _ in first + second).count("trained") == 2
    for run_dir in store.glob("digits-rows/*"):
        events = training.read_events(run_dir)
        assert [(e["event"], e["from_epoch"]) for e in events] == [("start", 0)]
        assert [m["epoch"] for m in training.read_metrics(run_dir)] == list(range(1, 16))
    assert len(list(store.glob("digits-rows/*"))) == 2


def test_identical_specs_in_one_call_train_once(tmp_path):
    """Two specs asking for the same run (same config, two names: what `--set train.seed=5`
    does to a grid of seeds) are trained once, and both get the outcome, each with its own
    spec; the run records both labels."""
    (spec,) = specs(epochs=1)
    twin = RunSpec("twin", spec.config)
    store = RunStore(tmp_path)
    messages: list[str] = []
    outcomes = ensure_runs(
        [spec, twin], store, LocalBackend(2), progress=False, log=messages.append
    )
    assert [o.spec.name for o in outcomes] == ["lipschitz", "twin"]
    assert [o.status for o in outcomes] == ["trained", "trained"]
    assert outcomes[0].run_dir == outcomes[1].run_dir
    assert [e["event"] for e in training.read_events(outcomes[0].run_dir)] == ["start"]
    labels = json.loads((outcomes[0].run_dir / "labels.json").read_text())
    assert labels == sorted([spec.label, twin.label])


def test_a_temporary_left_by_a_killed_writer_is_removed_when_the_run_trains(tmp_path):
    """A writer killed outright (kill -9) between creating and renaming its temporary file
    leaves it behind; the next training of that run (under its lease) removes it."""
    (spec,) = specs(epochs=2)
    store = RunStore(tmp_path)
    run_dir = store.run_dir(with_threads(spec, 1).config)
    run_dir.mkdir(parents=True)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from nrnn.files import write_text_atomic\n"
            "from nrnn import files\n"
            "def slow(path):\n"
            "    path.write_text('half')\n"
            "    print('writing', flush=True)\n"
            "    time.sleep(600)\n"
            f"files.write_atomic({str(run_dir / 'metrics.jsonl')!r}, slow)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
    kill(writer)
    (left,) = temporaries(run_dir)
    assert left.name.startswith(".metrics.jsonl.")
    (outcome,) = ensure_runs([spec], store, LocalBackend(1), progress=False)
    assert outcome.status == "trained"
    assert temporaries(run_dir) == []


def test_a_local_worker_process_that_dies_is_an_infrastructure_failure(tmp_path):
    """kill -9 of a local worker process used to end the command with a BrokenProcessPool
    traceback; now: InfrastructureError (exit 4) naming the runs, checkpoints kept."""
    grid = specs(epochs=400, seeds=(0, 1))
    store = RunStore(tmp_path)
    outcome: list = []

    def killer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for events in tmp_path.rglob("events.jsonl"):
                for event in training.read_events(events.parent):
                    os.kill(event["pid"], signal.SIGKILL)
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    with pytest.raises(InfrastructureError, match="process executing them died") as error:
        ensure_runs(grid, store, LocalBackend(2), progress=False, log=outcome.append)
    thread.join()
    message = str(error.value)
    assert "digits-rows/lipschitz/s" in message and "run the same command again" in message
    assert "\n" not in message


def test_nrnn_train_refuses_a_run_directory_in_use(tmp_path, capsys):
    """`nrnn train --resume` on a directory another process is training: one line naming
    the holder, exit 1, the holder's lease untouched; once released, it trains."""
    from nrnn.cli import main

    out = tmp_path / "run"
    argv = ["train", "--dataset", "digits-rows", "--epochs", "1", "--out", str(out), "--quiet"]
    argv += ["--set", "data.train_subset=32", "--set", "model.hidden_dim=4"]
    holder = Lease(out)
    assert holder.try_acquire() is None
    try:
        assert main([*argv, "--start-if-missing"]) == exitcodes.INFRASTRUCTURE
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert f"{out} is being trained by process {os.getpid()}" in line
        assert read_holder(out).token == holder.token
    finally:
        holder.release()
    assert main([*argv, "--start-if-missing"]) == 0
    assert training.verified_epochs(out) == 1
