"""Trained runs on a real Ray cluster of this machine (``tests/ray_cluster.py``: a head
started with ``ray start`` in another working directory, with token authentication, 2 CPUs
and one declared GPU; a second raylet where a second node matters), driven by separate
driver processes as a user's command would be: nothing is lost, nothing hangs.

- a relative ``--store`` is the driver's, not each raylet's working directory;
- a node that does not see the store refuses the runs (one line, exit 4), nothing trains;
- requests no node can satisfy are refused at once, not left waiting;
- a driver without the cluster's token fails at once with one line naming the token;
- ``--address`` with nothing there fails at once, and Ctrl-C acts while it is checked;
- ``--plan`` counts the cluster's CPUs; ``--jobs`` caps the runs at once on a cluster;
- a fraction of a GPU per run is what each run asks for;
- a local instance gets jobs × threads-per-run CPUs (it used to hang).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import nrnn.train as training

from ray_cluster import TOKEN, Cluster, can_hide_directories, clean_env, free_port

pytest.importorskip(
    "ray", reason="the optional package ray is not installed (pip install 'noisy-rnn[ray]')"
)

DRIVER = Path(__file__).with_name("cluster_driver.py")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    started = Cluster(tmp_path_factory.mktemp("cluster"), cpus=2, gpus=1)
    yield started
    started.stop()


def drive(env: dict, cwd: Path, timeout: float = 300, **arguments) -> subprocess.CompletedProcess:
    """Run the driver (``cluster_driver.py``) in ``cwd``; a hang fails at ``timeout``."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, str(DRIVER), json.dumps(arguments)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def nrnn_plan(env: dict, address: str, store: Path, *extra: str) -> subprocess.CompletedProcess:
    """``nrnn figures --plan`` against a cluster (it connects to count the cluster's CPUs)."""
    command = [sys.executable, "-m", "nrnn", "figures", "--only", "robustness"]
    command += ["--profile", "smoke", "--backend", "ray", "--address", address]
    command += ["--store", str(store), "--plan", *extra]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def _intervals(outcomes: list[dict]) -> list[tuple[float, float]]:
    """(start, end) of each run: its start event and its final metrics' write, in order."""
    spans = []
    for outcome in outcomes:
        run_dir = Path(outcome["run_dir"])
        (start,) = training.read_events(run_dir)
        spans.append((start["time"], (run_dir / "final.json").stat().st_mtime))
    return sorted(spans)


def test_a_relative_store_is_the_drivers_store(cluster, tmp_path):
    """The driver resolves ``--store runs`` against its own working directory and sends the
    absolute path: every run and its evaluation land in the driver's store, none in the
    head's working directory (where the workers start), none lost. (Two runs of 20 epochs,
    no --jobs: both are submitted at once and usually run together on the cluster's 2 CPUs;
    whether they overlap is Ray's scheduling, not asserted: a worker that starts late can
    begin after the other run ended, as it did once on 2 cores.)"""
    driver_cwd = tmp_path / "driver"
    result = drive(
        cluster.driver_env(),
        driver_cwd,
        address=cluster.address,
        store="runs",
        seeds=[0, 1],
        epochs=20,
    )
    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout)
    assert [o["status"] for o in outcomes] == ["trained", "trained"]
    for outcome in outcomes:
        run_dir = Path(outcome["run_dir"])
        assert run_dir.is_relative_to(driver_cwd / "runs")
        assert training.verified_epochs(run_dir) == 20
        assert 0 <= outcome["result"]["accuracy"] <= 1
        assert outcome["placement"]["CPU"] == 1 and "GPU" not in outcome["placement"]
    assert not (cluster.head_cwd / "runs").exists()


def test_jobs_caps_the_runs_at_once_and_a_gpu_fraction_is_asked_for(cluster, tmp_path):
    """With --jobs 1 on a cluster, one run at a time (without it the same two runs are
    submitted at once and usually overlap); with --gpus-per-run 0.5 and
    ``train.device=auto`` on a cluster with a GPU, each run asks Ray for half a GPU (Ray then
    places two runs on one GPU)."""
    result = drive(
        cluster.driver_env(),
        tmp_path,
        address=cluster.address,
        store="runs",
        seeds=[0, 1],
        epochs=20,
        device="auto",
        gpus_per_run=0.5,
        jobs=1,
    )
    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout)
    assert [o["placement"]["GPU"] for o in outcomes] == [0.5, 0.5]
    (_, first_end), (second_start, _) = _intervals(outcomes)
    assert first_end <= second_start  # one at a time


@pytest.mark.slow
@pytest.mark.skipif(not can_hide_directories(), reason="needs unshare (root) for a node")
def test_a_node_that_does_not_see_the_store_refuses_the_runs(cluster, tmp_path):
    """A second node in its own mount namespace, with an empty file system over the store's
    parent: the store's path does not exist there. Runs asking for 3 CPUs fit only that
    node (the head has 2): the command stops with one line naming the node and the store
    and exits 4, nothing is trained. Control: a store the node sees trains normally.
    (Slow: a third Ray node and two drivers, about 40 s here; the fast suite checks the
    same refusal in a Ray worker of one node, ``test_ray_backend.py``.)"""
    hidden = tmp_path / "node-local"
    hidden.mkdir()
    cluster.add_node(cpus=3, hide=hidden, name="blind")
    try:
        refused = drive(
            cluster.driver_env(),
            tmp_path,
            address=cluster.address,
            store=str(hidden / "store"),
            threads=3,
        )
        seen = drive(
            cluster.driver_env(),
            tmp_path,
            address=cluster.address,
            store=str(tmp_path / "shared-store"),
            threads=3,
            epochs=1,
        )
    finally:
        cluster.stop_node(-1)
    assert refused.returncode == 4, refused.stderr
    line = one_line(refused.stderr)
    assert "does not exist on node" in line and str(hidden / "store") in line
    assert "every node mounts" in line
    assert not list((hidden / "store").rglob("checkpoint.pt"))
    assert seen.returncode == 0, seen.stderr
    assert [o["status"] for o in json.loads(seen.stdout)] == ["trained"]


def test_a_request_no_node_can_satisfy_is_refused(cluster, tmp_path):
    """--threads-per-run 3 on 2-CPU nodes used to wait forever at 0/N: refused at once."""
    result = drive(cluster.driver_env(), tmp_path, address=cluster.address, store="runs", threads=3)
    assert result.returncode == 4
    line = one_line(result.stderr)
    assert "ask for 3 CPUs each" in line and "--threads-per-run 2 or fewer" in line
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.pt"))


@pytest.mark.parametrize(
    ("token", "mode", "expected"),
    [
        (None, None, "this machine has none: set RAY_AUTH_TOKEN"),
        ("not-the-token", "token", "refused the authentication token in RAY_AUTH_TOKEN"),
        (TOKEN, None, "set RAY_AUTH_MODE=token so that Ray sends the token in RAY_AUTH_TOKEN"),
        (None, "token", "RAY_AUTH_MODE=token but this machine has no Ray authentication token"),
    ],
)
def test_a_driver_without_the_clusters_token_gets_one_line(
    cluster, tmp_path, token, mode, expected
):
    """Ray 2.60's own failure: "Authentication token is missing or incorrect" once a second
    for 20 s, then a traceback (or, with RAY_AUTH_MODE=token and no token, an abort). Now:
    one line that names the token and how to provide it, exit 4."""
    result = nrnn_plan(cluster.driver_env(token=token, mode=mode), cluster.address, tmp_path)
    assert result.returncode == 4, result.stderr
    assert expected in one_line(result.stderr)
    assert result.stdout == ""


def test_the_plan_counts_the_clusters_cpus(cluster, tmp_path):
    """--plan on a cluster estimates the wall time on the cluster's CPUs (2, one per run
    here), not on this machine's cores, and says where the number comes from. (The
    control of the token tests: the same command with the token.)"""
    result = nrnn_plan(cluster.driver_env(), cluster.address, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"on 2 workers (the cluster at {cluster.address}: 1 nodes, 2 CPUs, 1 per run)" in (
        result.stdout
    )


def test_a_local_instance_gets_jobs_times_threads_cpus(tmp_path):
    """Without an address, the local Ray instance had ``jobs`` CPUs while each run asked
    for ``--threads-per-run``: --jobs 1 with 2 threads per run waited forever. Now the
    instance has jobs × threads CPUs and the run trains on 2 threads."""
    result = drive(clean_env(tmp_path), tmp_path, store="runs", jobs=1, threads=2)
    assert result.returncode == 0, result.stderr
    (outcome,) = json.loads(result.stdout)
    (event,) = training.read_events(outcome["run_dir"])
    assert event["threads"] == 2


def test_an_address_with_nothing_there_fails_at_once(tmp_path):
    """`--address 127.0.0.1:<port>` with nothing listening: Ray retried for minutes; now
    one line naming the address, exit 4."""
    port = free_port()
    result = nrnn_plan(clean_env(tmp_path), f"127.0.0.1:{port}", tmp_path)
    assert result.returncode == 4
    line = one_line(result.stderr)
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in line and "ray start --head" in line


def _plan_against(address: str, tmp_path: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "nrnn", "figures", "--only", "robustness"]
    command += ["--profile", "smoke", "--backend", "ray", "--address", address]
    command += ["--store", str(tmp_path), "--plan"]
    return subprocess.Popen(
        command,
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.parametrize("interrupt", [False, True])
def test_an_address_that_does_not_answer_fails_and_ctrl_c_acts(tmp_path, interrupt):
    """Something accepts connections at the address but never answers (Ray's client would
    retry for over a minute, ignoring Ctrl-C): one line and exit 4 after a few seconds; a
    Ctrl-C sent while the address is being checked (once it has connected) stops the
    command at once: exit 130 and one line, not the 4 of the check running to its end."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent.settimeout(60)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        process = _plan_against(address, tmp_path)
        connection, _ = silent.accept()  # the command is now waiting for an answer
        with connection:
            if interrupt:
                process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
    if interrupt:
        assert process.returncode == 130, stderr
        assert "interrupted" in one_line(stderr)
    else:
        assert process.returncode == 4, stderr
        assert f"no Ray cluster answers at {address}" in one_line(stderr)
