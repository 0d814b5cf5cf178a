"""The Ray backend against a real local Ray instance (started here, no mock): the same
numbers as the local backend for the same seeds, a worker killed mid-run (by its PID) is
retried and resumes from its checkpoint, and a second invocation reuses every result."""

import os
import signal
import threading
import time

import pytest
import torch

import nrnn.train as training
from nrnn.backends import LocalBackend, RayBackend
from nrnn.figures import runs
from nrnn.harness import EvaluationTask, ensure_runs
from nrnn.store import RunStore

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
