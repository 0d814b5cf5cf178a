"""A real Ray cluster on this machine for tests: a head started with ``ray start --head
--block`` and more raylets (nodes) with ``ray start --address --block``, each in its own
session; stopped with SIGTERM (``--block`` then stops what it started) and SIGKILL of the
session after a grace period. Never ``ray stop``: it would stop every Ray instance of the
machine, other users' included.

The head has token authentication on (``RAY_AUTH_MODE=token``) with a token of the test's
own and ``HOME`` in the test's directory, so the machine's ``~/.ray/auth_token`` is neither
used nor touched. :meth:`Cluster.driver_env` gives a driver the environment to join it
(with the token, another token or none).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).parent / "ray")
TOKEN = "nrnn-test-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env(home: Path) -> dict[str, str]:
    """This process's environment without Ray's variables, with ``HOME=home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(home)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


class Cluster:
    """A head node (``cpus`` CPUs, ``gpus`` GPU resources: Ray accepts declared GPUs
    without hardware) and the nodes added by :meth:`add_node`."""

    def __init__(self, directory: Path, *, cpus: int = 2, gpus: int = 0) -> None:
        self.directory = Path(directory)
        self.home = self.directory / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.head_cwd = self.directory / "head-cwd"
        self.head_cwd.mkdir(exist_ok=True)
        # Ray's sockets live in its temp dir: keep the path short (a socket path < 108 bytes).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="nrnn-ray-", dir="/tmp"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []
        self._start(
            ["--head", f"--port={self.port}", "--include-dashboard=false"],
            cpus,
            gpus,
            self.head_cwd,
            "head",
        )
        self._wait_for(1)

    def node_env(self) -> dict[str, str]:
        env = clean_env(self.home)
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN)
        return env

    def driver_env(self, token: str | None = TOKEN, mode: str | None = "token") -> dict:
        """A driver's environment: ``token`` in RAY_AUTH_TOKEN (None: unset) and
        RAY_AUTH_MODE=``mode`` (None: unset)."""
        env = clean_env(self.home / "driver")
        (self.home / "driver").mkdir(exist_ok=True)
        if token is not None:
            env["RAY_AUTH_TOKEN"] = token
        if mode is not None:
            env["RAY_AUTH_MODE"] = mode
        return env

    def add_node(self, cpus: int, *, hide: Path | None = None, name: str = "node") -> None:
        """Another raylet with ``cpus`` CPUs; ``hide``: in its own mount namespace, with an
        empty file system mounted over that directory (a node that does not share it)."""
        self._start([f"--address={self.address}"], cpus, 0, self.directory, name, hide=hide)
        self._wait_for(len(self.processes))

    def _start(
        self, arguments: list[str], cpus: int, gpus: int, cwd: Path, name: str, hide=None
    ) -> None:
        command = [
            RAY,
            "start",
            *arguments,
            "--block",
            f"--num-cpus={cpus}",
            f"--num-gpus={gpus}",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        ]
        if hide is not None:
            script = f"mount -t tmpfs nrnn-test {hide} && exec " + " ".join(command)
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
        with open(self.directory / f"{name}.log", "w") as log:  # the child keeps its copy
            self.processes.append(
                subprocess.Popen(
                    command,
                    cwd=cwd,
                    env=self.node_env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def _wait_for(self, nodes: int, timeout: float = 120) -> None:
        """Until ``nodes`` nodes are alive (asked through the ray CLI's status)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"a Ray node exited ({process.returncode}); see {self.directory}/*.log"
                    )
            status = subprocess.run(
                [RAY, "status", f"--address={self.address}"],
                env=self.node_env(),
                capture_output=True,
                text=True,
            )
            if status.returncode == 0 and status.stdout.count("node_") >= nodes:
                return
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster did not reach {nodes} nodes; see {self.directory}")

    def stop_node(self, index: int) -> None:
        _stop(self.processes[index])

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop(process)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _stop(process: subprocess.Popen, grace: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the session this test started, nothing else
    except ProcessLookupError:
        pass
    process.wait()


def can_hide_directories() -> bool:
    """Whether this process may start a node in its own mount namespace (root, unshare)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    return probe.returncode == 0
