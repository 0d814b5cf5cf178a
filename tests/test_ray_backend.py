"""The Ray backend against a real local Ray instance (started here, no mock): the same
numbers as the local backend for the same seeds, a worker killed mid-run (by its PID) is
retried and resumes from its checkpoint, and a second invocation reuses every result.
Refusals: a worker with other code or another store, GPU runs without GPUs, a worker that
keeps dying (exit 4, the run named). Clusters of separate nodes: ``test_ray_cluster.py``."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import nrnn.harness as harness
import nrnn.train as training
from nrnn.backends import LocalBackend, RayBackend, check_gpus_per_run, check_satisfiable
from nrnn.exitcodes import InfrastructureError
from nrnn.figures import runs
from nrnn.harness import EvaluationTask, ensure_runs, make_jobs
from nrnn.store import RunStore

from ray_cluster import clean_env

ray = pytest.importorskip(
    "ray", reason="the optional package ray is not installed (pip install 'noisy-rnn[ray]')"
)

DATASET = "digits-rows"


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance with 2 CPUs for this module's tests."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


ACCURACY = EvaluationTask(subset=64)
"""A cheap deterministic task: the accuracy of the trained model on 64 test sequences."""


def specs(epochs: int, hidden: int = 8, seeds=(0, 1), subset: int = 256):
    size = runs.Size(hidden_dim=hidden, epochs=epochs, seeds=seeds, train_subset=subset)
    return runs.grid([DATASET], ("lipschitz", "paper-high"), size)


def parameters(run_dir):
    return training.load_model(run_dir)[0].state_dict()


def test_ray_gives_the_local_numbers_and_reuses_them(ray_instance, tmp_path):
    grid = specs(epochs=2)
    local = ensure_runs(
        grid, RunStore(tmp_path / "local"), LocalBackend(1), task=ACCURACY, progress=False
    )
    ray_store = RunStore(tmp_path / "ray")
    remote = ensure_runs(grid, ray_store, RayBackend(jobs=2), task=ACCURACY, progress=False)
    assert [o.status for o in remote] == ["trained"] * len(grid)
    for one, two in zip(local, remote, strict=True):
        assert one.result == two.result and one.run_dir.name == two.run_dir.name
        first, second = parameters(one.run_dir), parameters(two.run_dir)
        assert all(torch.equal(first[name], second[name]) for name in first)
        (event,) = training.read_events(two.run_dir)
        assert event["pid"] != os.getpid()  # trained in a Ray worker, not here

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("*") if p.is_file()}
    again = ensure_runs(grid, ray_store, RayBackend(jobs=2), task=ACCURACY, progress=False)
    assert [o.status for o in again] == ["stored"] * len(grid)
    assert all(o.task_cached for o in again)
    assert [o.result for o in again] == [o.result for o in remote]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").rglob("*") if p.is_file()} == stamps


def test_a_killed_worker_is_retried_and_resumes_from_its_checkpoint(ray_instance, tmp_path):
    """Kill the Ray worker training a run (SIGKILL, by its PID) after its second epoch is
    checkpointed; the task is retried, resumes from that checkpoint and ends with exactly the
    parameters of an uninterrupted run."""
    (spec,) = specs(epochs=30, hidden=32, seeds=(0,), subset=0)[:1]
    store = RunStore(tmp_path / "ray")
    outcomes = []
    driver = threading.Thread(
        target=lambda: outcomes.extend(
            ensure_runs([spec], store, RayBackend(jobs=1), progress=False)
        )
    )
    driver.start()
    run_dir = store.run_dir(runs_with_one_thread(spec).config)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if (
            training.read_events(run_dir)
            and store.finished_epochs(runs_with_one_thread(spec).config) >= 2
        ):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the run never reached its second checkpoint")
    (started,) = training.read_events(run_dir)
    os.kill(started["pid"], signal.SIGKILL)
    driver.join(timeout=600)
    assert not driver.is_alive()

    (outcome,) = outcomes
    assert outcome.status == "trained", outcome.message
    events = training.read_events(run_dir)
    assert [e["event"] for e in events] == ["start", "resume"]
    assert events[1]["pid"] != started["pid"] and events[1]["from_epoch"] >= 2
    history = training.read_metrics(run_dir)
    assert [record["epoch"] for record in history] == list(range(1, 31))  # nothing lost

    straight = ensure_runs([spec], RunStore(tmp_path / "local"), LocalBackend(1), progress=False)
    first, second = parameters(straight[0].run_dir), parameters(run_dir)
    assert all(torch.equal(first[name], second[name]) for name in first)


def runs_with_one_thread(spec):
    from nrnn.harness import with_threads

    return with_threads(spec, 1)


# ------------------------------------------------------------------- refusals
def tiny(epochs: int = 1, device: str = "cpu"):
    size = runs.Size(
        hidden_dim=4, epochs=epochs, seeds=(0,), train_subset=64, eval_subset=32, device=device
    )
    return runs.grid([DATASET], ("lipschitz",), size)


def test_a_worker_running_other_code_refuses_and_the_command_stops(
    ray_instance, tmp_path, monkeypatch
):
    """The driver sends its source digest with every run; a Ray worker whose package differs
    refuses before it writes anything, and ensure_runs stops with one line (exit code 4).
    Here the driver's digest is made to differ; the worker computes its real one."""
    monkeypatch.setattr(harness, "source_digest", lambda: "0123456789abcdef")
    store = RunStore(tmp_path / "store")
    with pytest.raises(InfrastructureError, match="runs other nrnn code than the driver") as error:
        ensure_runs(tiny(), store, RayBackend(jobs=1), progress=False)
    assert "0123456789abcdef" in str(error.value) and "\n" not in str(error.value)
    assert not list(store.root.rglob("checkpoint.pt"))
    monkeypatch.undo()  # control: the same runs with the real digest train
    (outcome,) = ensure_runs(tiny(), store, RayBackend(jobs=1), progress=False)
    assert outcome.status == "trained"


def test_a_worker_that_sees_another_store_refuses(ray_instance, tmp_path):
    """A Ray worker given the driver's store id checks the store's identity file: another
    directory at the same path (here: another id) is refused, nothing written."""
    store = RunStore(tmp_path / "store")
    (job,) = make_jobs(tiny(), store, None, 1)
    store.identity()
    outcomes = []
    strange = dataclasses.replace(job, store_id="an-id-of-another-store")
    RayBackend(jobs=1).map([strange], lambda position, outcome: outcomes.append(outcome))
    (outcome,) = outcomes
    assert outcome.failure == "environment"
    assert "sees another directory at the store's path" in outcome.message
    assert not store.run_dir(job.spec.config).exists()


def test_gpu_runs_on_a_cluster_without_gpus_are_refused_not_left_waiting(ray_instance, tmp_path):
    """train.device=cuda on a Ray instance without GPUs sat at 0/N forever: now refused."""
    with pytest.raises(InfrastructureError, match="has no GPU: set train.device to auto or cpu"):
        ensure_runs(tiny(device="cuda"), RunStore(tmp_path), RayBackend(jobs=1), progress=False)


def test_gpus_per_run_is_a_fraction_of_one_gpu_or_a_whole_number():
    assert [check_gpus_per_run(g) for g in (0.25, 1, 2)] == [0.25, 1.0, 2.0]
    for bad in (0, -0.5, 1.5, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="--gpus-per-run must be"):
            check_gpus_per_run(bad)


def test_requests_are_checked_against_every_node():
    nodes = [{"CPU": 2.0, "GPU": 1.0}, {"CPU": 8.0}]
    check_satisfiable([(8, 0.0), (2, 0.25), (1, 1.0)], nodes, "here")  # each fits a node
    with pytest.raises(InfrastructureError, match="no node of the Ray cluster at here"):
        check_satisfiable([(4, 1.0)], nodes, "here")  # CPUs on one node, the GPU on another
    with pytest.raises(InfrastructureError, match="use --threads-per-run 8 or fewer"):
        check_satisfiable([(9, 0.0)], nodes, "here")


def test_a_worker_that_keeps_dying_exits_4_and_names_the_run(tmp_path):
    """The worker training a run is killed (SIGKILL) on each of its 2 tries: the command
    ends with one line naming the run and exit code 4 (infrastructure), not 3 (a claim);
    Ray's own messages about the dead worker go to stderr, never stdout."""
    arguments = {"store": str(tmp_path / "store"), "jobs": 1, "max_retries": 1, "epochs": 200}
    driver = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("cluster_driver.py")), json.dumps(arguments)],
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed: set[int] = set()
    deadline = time.monotonic() + 240
    while driver.poll() is None and time.monotonic() < deadline:
        for events in (tmp_path / "store").rglob("events.jsonl"):
            for event in training.read_events(events.parent):
                if event.get("pid") and event["pid"] not in killed:
                    killed.add(event["pid"])
                    os.kill(event["pid"], signal.SIGKILL)
        time.sleep(0.1)
    stdout, stderr = driver.communicate(timeout=120)
    assert len(killed) == 2
    assert driver.returncode == 4, stderr
    last = stderr.strip().splitlines()[-1]
    assert "digits-rows/lipschitz/s0" in last and "died on each of 2 tries" in last
    assert "_ray_execute" not in last
    assert stdout == ""
