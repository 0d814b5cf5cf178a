"""Where trained runs execute: worker processes on this machine, or a Ray cluster.

A backend's ``map(jobs, finished)`` executes every ``nrnn.harness.Job`` and calls
``finished(position, outcome)`` as each ends (in any order). On Ctrl-C or SIGTERM it
cancels the queued jobs, ends the workers that run the others, and re-raises; what the
workers finished, and the last epoch checkpoint of every run they started, stays in the
store, so running the same command again resumes. An exception raised by ``finished``
stops the backend the same way.

- :class:`LocalBackend`: ``jobs`` spawned worker processes (one job in this process when
  ``jobs`` is 1 or there is only one job). A worker process that dies (``kill -9``, out of
  memory) fails the runs it had not finished as worker failures.
- :class:`RayBackend`: one Ray task per job, with its resource request (the run's threads as
  CPUs; ``gpus_per_run`` GPUs, 1 by default, when the run's device is CUDA, or ``auto`` on a
  cluster with GPUs). A task whose worker dies is retried (``max_retries``) and resumes from
  its checkpoint; one that died every time is a worker failure. Without an address a local
  Ray instance is started (with jobs × threads-per-run CPUs) and shut down at the end;
  ``address="auto"`` or ``"HOST:PORT"`` joins an existing cluster, after checking that
  something answers there and that this process holds the cluster's token when it asks for
  one (:func:`connect`). Before submitting, every resource request is checked against the
  cluster's nodes: a request no node can satisfy is refused, never left waiting. At most
  ``jobs`` tasks are submitted at a time (None: all; the cluster schedules them).

Ray prints task failures to stdout; while the backend runs, stdout goes to stderr, so that
a command's report on stdout stays clean. A failure is reported under the run's label.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import multiprocessing
import os
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..exitcodes import InfrastructureError
from ..interrupt import DeferredSignals, detach_worker
from ..registry import Registry
from .harness import Failure, Job, RunOutcome, RunStatus, execute

Finished = Callable[[int, RunOutcome], None]


class Backend(Protocol):
    """Executes jobs: ``map(jobs, finished)`` calls ``finished(position, outcome)`` as each
    ends (module docstring); ``capacity(threads_per_run)`` says how many run at once and
    why (for ``--plan``)."""

    name: str

    def map(self, jobs: Sequence[Job], finished: Finished) -> None: ...

    def capacity(self, threads_per_run: int) -> tuple[int, str]: ...


@dataclass(frozen=True)
class BackendKind:
    """A registered backend (``--backend NAME``).

    Attributes:
        name: the name on the command line.
        make: ``make(jobs=, address=, gpus_per_run=)`` -> a :class:`Backend`.
        cluster: it can join a cluster at ``--address`` and give runs GPUs
            (``--gpus-per-run``); ``jobs`` may then be None (no limit).
        local_processes: its workers are processes of this machine, so ``--jobs`` ×
            ``--threads-per-run`` must fit this machine's cores.
        summary: one line for ``--help``.
    """

    name: str
    make: Callable[..., Backend]
    cluster: bool = False
    local_processes: bool = False
    summary: str = ""


BACKENDS: Registry[BackendKind] = Registry("backend")


def cluster_backends() -> str:
    """The ``--backend NAME`` spellings of the backends that take a cluster, for messages."""
    return " or ".join(f"--backend {kind.name}" for kind in BACKENDS.entries() if kind.cluster)


def make_backend(
    name: str,
    *,
    jobs: int | None,
    address: str | None = None,
    gpus_per_run: float | None = None,
) -> Backend:
    """The backend registered as ``name`` (:data:`BACKENDS`: ``local``, ``ray``)."""
    kind = BACKENDS.get(name)
    if not kind.cluster:
        if address is not None:
            raise ValueError(f"--address is for {cluster_backends()} only")
        if gpus_per_run is not None:
            raise ValueError(f"--gpus-per-run is for {cluster_backends()} only")
    return kind.make(jobs=jobs, address=address, gpus_per_run=gpus_per_run)


def _check_jobs(jobs: int) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    return jobs


def check_gpus_per_run(gpus: float) -> float:
    """A fraction of one GPU (0 < g <= 1) or a whole number of GPUs, as Ray accepts."""
    if isinstance(gpus, bool) or not isinstance(gpus, int | float) or not 0 < gpus < math.inf:
        raise ValueError(f"--gpus-per-run must be a positive number, got {gpus!r}")
    if gpus > 1 and gpus != int(gpus):
        raise ValueError(
            f"--gpus-per-run must be at most 1 (a fraction of one GPU) or a whole number, got "
            f"{gpus}"
        )
    return float(gpus)


# ----------------------------------------------------------------------------- local
class LocalBackend:
    """Spawned worker processes on this machine."""

    name = "local"

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = _check_jobs(jobs if jobs is not None else os.cpu_count() or 1)

    def capacity(self, threads_per_run: int) -> tuple[int, str]:
        """``jobs`` worker processes of this machine."""
        return self.jobs, f"--jobs {self.jobs} worker processes of this machine"

    def map(self, jobs: Sequence[Job], finished: Finished) -> None:
        if self.jobs == 1 or len(jobs) == 1:
            for position, job in enumerate(jobs):
                finished(position, execute(job))
            return
        context = multiprocessing.get_context("spawn")  # fork is unsafe with torch threads
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=min(self.jobs, len(jobs)), mp_context=context, initializer=_init_worker
        )
        try:
            futures = {pool.submit(execute, job): position for position, job in enumerate(jobs)}
            for future in concurrent.futures.as_completed(futures):
                position = futures[future]
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    outcome = _worker_died(jobs[position])
                finished(position, outcome)
        except BaseException:
            _stop_pool(pool)
            raise
        pool.shutdown()


def _worker_died(job: Job) -> RunOutcome:
    """A run whose worker process died: a pool that lost a worker fails every run it had
    not finished (each keeps its last checkpoint)."""
    run_dir = _run_dir(job)
    return RunOutcome(
        job.spec,
        run_dir,
        RunStatus.FAILED,
        "a worker process of this machine died (killed, or out of memory) before the run "
        f"finished; its last checkpoint is kept in {run_dir}",
        failure=Failure.WORKER,
    )


def _run_dir(job: Job) -> Path:
    from .store import RunStore

    return RunStore(job.store_root).run_dir(job.spec.config)


def _init_worker() -> None:
    detach_worker()
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def _stop_pool(pool: concurrent.futures.ProcessPoolExecutor, grace: float = 5.0) -> None:
    """Cancel queued jobs and end the workers (terminate, then kill after ``grace`` s)."""
    # ProcessPoolExecutor has no public way to end busy workers before Python 3.14
    # (terminate_workers); its process table is the documented-by-source fallback.
    processes = list(getattr(pool, "_processes", {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(grace)
        if process.is_alive():
            process.kill()
            process.join()


# ------------------------------------------------------------------------------- ray
class RayBackend:
    """One Ray task per run on a local instance or an existing cluster."""

    name = "ray"

    def __init__(
        self,
        jobs: int | None = None,
        address: str | None = None,
        max_retries: int = 3,
        gpus_per_run: float | None = None,
    ) -> None:
        if jobs is None and address is None:
            jobs = os.cpu_count() or 1
        self.jobs = None if jobs is None else _check_jobs(jobs)
        self.address = address
        self.max_retries = max_retries
        self.gpus_per_run = None if gpus_per_run is None else check_gpus_per_run(gpus_per_run)

    def map(self, jobs: Sequence[Job], finished: Finished) -> None:
        threads = max((job.threads for job in jobs), default=1)
        # stdout to stderr first: Ray also reports dead workers while it shuts down
        with contextlib.redirect_stdout(sys.stderr), self.session(threads) as (ray, signals):
            self._run(ray, jobs, finished, signals)

    @contextlib.contextmanager
    def session(self, threads_per_run: int = 1) -> Any:
        """Within the block, Ray is initialised (``(ray, signals)``): a local instance with
        jobs × ``threads_per_run`` CPUs, or the cluster at the address; shut down after if
        it was initialised here."""
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here and self.address is not None:
            connect_check(self.address)  # fast, interruptible checks before ray.init
        with DeferredSignals() as signals:
            if started_here:
                if self.address is None:  # a new local instance, never someone else's
                    ray.init(
                        address="local",
                        num_cpus=(self.jobs or 1) * threads_per_run,
                        include_dashboard=False,
                        log_to_driver=False,
                        configure_logging=False,
                    )
                else:
                    try:
                        ray.init(address=self.address, log_to_driver=False, configure_logging=False)
                    except ConnectionError as error:
                        raise InfrastructureError(
                            f"could not join the Ray cluster at {self.address}: {error}"
                        ) from None
                signals.install()  # ray.init replaces the SIGTERM handler with one that exits
            try:
                yield ray, signals
            finally:
                if started_here:
                    ray.shutdown()

    def capacity(self, threads_per_run: int) -> tuple[int, str]:
        """Runs the cluster executes at once at ``threads_per_run`` CPUs each (capped by
        ``jobs``), and where that number comes from, for ``--plan``."""
        if self.address is None:
            jobs = self.jobs or 1
            return jobs, f"{jobs} workers of a local Ray instance"
        with self.session(threads_per_run) as (ray, _):
            nodes = _alive_nodes(ray)
        slots = sum(int(node.get("CPU", 0) // threads_per_run) for node in nodes)
        cpus = sum(node.get("CPU", 0) for node in nodes)
        workers = min(slots, self.jobs) if self.jobs else slots
        source = (
            f"the cluster at {self.address}: {len(nodes)} nodes, {cpus:g} CPUs, "
            f"{threads_per_run} per run" + (f", at most --jobs {self.jobs}" if self.jobs else "")
        )
        return max(1, workers), source

    def _run(
        self, ray: Any, jobs: Sequence[Job], finished: Finished, signals: DeferredSignals
    ) -> None:
        pending: dict = {}
        try:
            signals.check()
            nodes = _alive_nodes(ray)
            cluster_has_gpus = any(node.get("GPU", 0) > 0 for node in nodes)
            requests = [self._request(job, cluster_has_gpus) for job in jobs]
            check_satisfiable(requests, nodes, self.address)
            remote = ray.remote(nrnn_training_run)
            queue = list(enumerate(jobs))
            limit = self.jobs or len(jobs)
            while queue or pending:
                while queue and len(pending) < limit:
                    position, job = queue.pop(0)
                    cpus, gpus = requests[position]
                    options = {
                        "num_cpus": cpus,
                        "num_gpus": gpus,
                        "max_retries": self.max_retries,
                        "retry_exceptions": False,  # only a dead worker is retried
                        "name": job.spec.label,
                    }
                    pending[remote.options(**options).remote(job)] = position
                # Short waits: a signal is acted on between them (see DeferredSignals).
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                signals.check()
                for reference in done:
                    position = pending.pop(reference)
                    finished(position, self._result(ray, reference, jobs[position]))
        except BaseException:
            for reference in pending:
                try:
                    ray.cancel(reference, force=True)
                except Exception:  # already finished or gone
                    pass
            raise

    def _request(self, job: Job, cluster_has_gpus: bool) -> tuple[int, float]:
        """(CPUs, GPUs) a job's task asks for."""
        device = job.spec.config.train.device
        wants_gpu = device.startswith("cuda") or (device == "auto" and cluster_has_gpus)
        return job.threads, (self.gpus_per_run or 1.0) if wants_gpu else 0.0

    def _result(self, ray: Any, reference: Any, job: Job) -> RunOutcome:
        """The outcome of a finished task; a task whose worker died every time it was tried
        becomes a worker failure, reported under the run's label."""
        try:
            return ray.get(reference)
        except ray.exceptions.RayTaskError as error:  # execute itself never raises: the
            # task failed around it (the job could not be unpickled, nrnn not importable)
            cause = getattr(error, "cause", error)
            first = (str(cause).strip().splitlines() or [""])[0]
            return RunOutcome(
                job.spec,
                _run_dir(job),
                RunStatus.FAILED,
                f"the Ray task of run {job.spec.label} failed before the run started "
                f"({type(cause).__name__}: {first}): is this package installed on every node?",
                failure=Failure.ENVIRONMENT,
            )
        except ray.exceptions.RayError as error:
            run_dir = _run_dir(job)
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            return RunOutcome(
                job.spec,
                run_dir,
                RunStatus.FAILED,
                f"its Ray worker died on each of {self.max_retries + 1} tries "
                f"({type(error).__name__}: {first}); its last checkpoint is kept in {run_dir}",
                failure=Failure.WORKER,
            )


def nrnn_training_run(job: Job) -> RunOutcome:
    """The Ray task of one run (named after the run's label when submitted); the outcome
    records the node and the resources (CPUs, GPUs) Ray assigned it."""
    import ray

    outcome = execute(job)
    context = ray.get_runtime_context()
    outcome.placement = {"node": context.get_node_id(), **context.get_assigned_resources()}
    return outcome


BACKENDS.register(
    BackendKind(
        "local",
        lambda jobs, address, gpus_per_run: LocalBackend(jobs),
        local_processes=True,
        summary="local processes",
    )
)
BACKENDS.register(
    BackendKind(
        "ray",
        lambda jobs, address, gpus_per_run: RayBackend(
            jobs=jobs, address=address, gpus_per_run=gpus_per_run
        ),
        cluster=True,
        summary="Ray",
    )
)


# ------------------------------------------------------------------ cluster checks
def _alive_nodes(ray: Any) -> list[dict[str, float]]:
    """The resources of every live node of the cluster."""
    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def check_satisfiable(
    requests: Sequence[tuple[int, float]], nodes: Sequence[dict[str, float]], where: str | None
) -> None:
    """Raise :class:`InfrastructureError` when a (CPUs, GPUs) request fits no node: Ray
    would keep such a task waiting forever."""
    cluster = f"the Ray cluster at {where}" if where else "the local Ray instance"
    most_cpus = max((node.get("CPU", 0) for node in nodes), default=0)
    most_gpus = max((node.get("GPU", 0) for node in nodes), default=0)
    for cpus, gpus in sorted(set(requests)):
        if any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in nodes):
            continue
        if gpus and not most_gpus:
            raise InfrastructureError(
                f"runs ask for {gpus:g} GPU each (train.device cuda) but {cluster} has no GPU: "
                "set train.device to auto or cpu, or join a cluster with GPUs"
            )
        if cpus > most_cpus:
            raise InfrastructureError(
                f"runs ask for {cpus} CPUs each (--threads-per-run {cpus}) but the largest node "
                f"of {cluster} has {most_cpus:g}: use --threads-per-run {max(1, int(most_cpus))} "
                "or fewer"
            )
        raise InfrastructureError(
            f"no node of {cluster} has {cpus} CPUs and {gpus:g} GPUs for one run (largest: "
            f"{most_cpus:g} CPUs, {most_gpus:g} GPUs): lower --threads-per-run or --gpus-per-run"
        )


PROBE_SECONDS = 20.0
"""How long :func:`connect_check` waits for the cluster's answer."""


def connect_check(address: str, timeout: float = PROBE_SECONDS) -> None:
    """Check, before ``ray.init``, that a Ray cluster answers at ``address`` and accepts
    this process (its authentication token): ``ray.init`` itself retries for minutes and
    does not act on Ctrl-C meanwhile. Raises :class:`InfrastructureError` with one line
    that says what to do; a Ctrl-C interrupts the check. ``"auto"`` is left to Ray (it
    finds a cluster started on this machine and its token)."""
    if address == "auto":
        return
    host, _, port_text = address.rpartition(":")
    if not host or not port_text.isdigit():
        raise ValueError(f"--address must be 'auto' or HOST:PORT, got {address!r}")
    host = host.strip("[]")
    _interruptible(lambda: _reach(host, int(port_text), address), timeout, address)
    _interruptible(lambda: _authenticate(address), timeout, address, quiet=True)


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
"""A client's HTTP/2 connection preface and an empty SETTINGS frame: a gRPC server (Ray's
GCS) answers with a SETTINGS frame of its own."""


def _reach(host: str, port: int, address: str) -> None:
    """Something listens at the address and answers as a gRPC (HTTP/2) server does."""
    try:
        with socket.create_connection((host, port), timeout=5) as connection:
            if os.environ.get("RAY_USE_TLS", "0") not in ("0", ""):
                return  # the GCS speaks TLS first: leave the rest to Ray
            connection.sendall(HTTP2_PREFACE)
            header = connection.recv(9)
    except TimeoutError:
        header = b""
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise InfrastructureError(
            f"no Ray cluster answers at {address} ({reason}): start one there with "
            "`ray start --head`, or pass the head node's HOST:PORT to --address"
        ) from None
    if len(header) < 4 or header[3] != 0x04:  # the frame type of SETTINGS
        raise InfrastructureError(
            f"no Ray cluster answers at {address}: something listens there but does not "
            "answer as a Ray head node does; check --address (the head's GCS port, 6379 "
            "unless `ray start --head --port` said otherwise)"
        )


def _authenticate(address: str) -> None:
    """Connect a GCS client (what ``ray.init`` does first): an authentication failure is
    immediate, without the minutes of retries; its one warning line is kept off stderr."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" and not _token_source():
        raise InfrastructureError(token_advice(address))  # Ray would abort the process
    try:
        from ray._raylet import GcsClient  # type: ignore[attr-defined]
        from ray.exceptions import AuthenticationError
    except ImportError:  # another Ray version: leave the checks to ray.init
        return
    try:
        GcsClient(address=address)
    except AuthenticationError:
        raise InfrastructureError(token_advice(address)) from None
    except Exception as error:  # an HTTP/2 server, but not a GCS, or a GCS in trouble
        raise InfrastructureError(
            f"the Ray cluster at {address} did not answer as a Ray head node does "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
            "check --address and the head node"
        ) from None


def _token_source() -> str:
    """Where Ray takes this process's token from, in Ray's order (RAY_AUTH_TOKEN, the file
    RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token); "" when there is none."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return f"the file RAY_AUTH_TOKEN_PATH={path}" if _nonempty(Path(path)) else ""
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if _nonempty(default) else ""


def _nonempty(path: Path) -> bool:
    try:
        return bool(path.read_text().strip())
    except OSError:
        return False


def token_advice(address: str) -> str:
    """One line on the token a cluster with token authentication wants from this driver."""
    token_mode = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    source = _token_source()
    fix = (
        "set RAY_AUTH_TOKEN to the head's token (`ray get-auth-token` on the head prints it; "
        "or copy the head's ~/.ray/auth_token here) and RAY_AUTH_MODE=token"
    )
    if not source:
        if token_mode:
            return f"RAY_AUTH_MODE=token but this machine has no Ray authentication token: {fix}"
        return (
            f"the Ray cluster at {address} requires its authentication token and this "
            f"machine has none: {fix}"
        )
    if not token_mode:
        return (
            f"the Ray cluster at {address} requires its authentication token: set "
            f"RAY_AUTH_MODE=token so that Ray sends the token in {source} (Ray sends it to an "
            "explicit --address only then)"
        )
    return (
        f"the Ray cluster at {address} refused the authentication token in {source}: it is "
        f"not that cluster's token; {fix}"
    )


def _interruptible(
    check: Callable[[], None], timeout: float, address: str, quiet: bool = False
) -> None:
    """Run ``check`` in a thread and wait for it, so that a Ctrl-C in the main thread is
    acted on at once (Ray's C++ client does not return to Python while it retries); re-raise
    its error; give up after ``timeout`` seconds. ``quiet``: file descriptor 2 goes to
    /dev/null meanwhile (Ray's C++ client logs its failures there; our message says it)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            check()
        except BaseException as error:  # handed to the main thread
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True, name="nrnn-ray-probe")
    with _quiet_stderr() if quiet else contextlib.nullcontext():
        thread.start()
        thread.join(timeout)  # a signal interrupts the wait; stderr is restored on the way
    if thread.is_alive():
        raise InfrastructureError(
            f"no Ray cluster answered at {address} within {timeout:.0f} s; check --address "
            "and that the head node is reachable from here"
        )
    if errors:
        raise errors[0]


@contextlib.contextmanager
def _quiet_stderr() -> Any:
    """File descriptor 2 to /dev/null within the block (Ray's C++ logging writes there)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(
            "--backend ray needs the optional package ray: pip install 'noisy-rnn[ray]' "
            "(or pip install -c constraints.txt ray)"
        ) from None
    return ray


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendKind",
    "LocalBackend",
    "RayBackend",
    "check_gpus_per_run",
    "check_satisfiable",
    "connect_check",
    "make_backend",
]
