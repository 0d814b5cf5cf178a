"""Where trained runs execute: worker processes on this machine, or a Ray cluster.

A backend's ``map(jobs, finished)`` executes every ``nrnn.harness.Job`` and calls
``finished(position, outcome)`` as each ends (in any order). On Ctrl-C or SIGTERM it
cancels the queued jobs, ends the workers that run the others, and re-raises; what the
workers finished, and the last epoch checkpoint of every run they started, stays in the
store, so running the same command again resumes.

- :class:`LocalBackend`: ``jobs`` spawned worker processes (one job in this process when
  ``jobs`` is 1 or there is only one job). A worker process that dies (``kill -9``, out of
  memory) fails the runs it had not finished as worker failures.
- :class:`RayBackend`: one Ray task per job, with its resource request (the run's threads as
  CPUs; one GPU when the run's device is CUDA, or ``auto`` on a cluster with GPUs). A task
  whose worker dies is retried (``max_retries``) and resumes from its checkpoint. Without an
  address a local Ray instance is started (with ``jobs`` CPUs) and shut down at the end;
  ``address="auto"`` or ``"HOST:PORT"`` joins an existing cluster.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from .harness import Job, RunOutcome, execute
from .interrupt import DeferredSignals, detach_worker

BACKENDS = ("local", "ray")

Finished = Callable[[int, RunOutcome], None]


def make_backend(name: str, *, jobs: int, address: str | None = None) -> Backend:
    """The backend called ``name`` ("local" or "ray")."""
    if name == "local":
        if address is not None:
            raise ValueError("--address is for --backend ray only")
        return LocalBackend(jobs)
    if name == "ray":
        return RayBackend(jobs=jobs, address=address)
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


def _check_jobs(jobs: int) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    return jobs


# ----------------------------------------------------------------------------- local
class LocalBackend:
    """Spawned worker processes on this machine."""

    name = "local"

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = _check_jobs(jobs if jobs is not None else os.cpu_count() or 1)

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
        "failed",
        "a worker process of this machine died (killed, or out of memory) before the run "
        f"finished; its last checkpoint is kept in {run_dir}",
        failure="worker",
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
        self, jobs: int | None = None, address: str | None = None, max_retries: int = 3
    ) -> None:
        self.jobs = _check_jobs(jobs if jobs is not None else os.cpu_count() or 1)
        self.address = address
        self.max_retries = max_retries

    def map(self, jobs: Sequence[Job], finished: Finished) -> None:
        ray = import_ray()
        with DeferredSignals() as signals:
            started_here = not ray.is_initialized()
            if started_here:
                if self.address is None:  # a new local instance, never someone else's
                    ray.init(
                        address="local",
                        num_cpus=self.jobs,
                        include_dashboard=False,
                        log_to_driver=False,
                        configure_logging=False,
                    )
                else:
                    ray.init(address=self.address, log_to_driver=False, configure_logging=False)
                signals.install()  # ray.init replaces the SIGTERM handler with one that exits
            try:
                self._run(ray, jobs, finished, signals)
            finally:
                if started_here:
                    ray.shutdown()

    def _run(
        self, ray: Any, jobs: Sequence[Job], finished: Finished, signals: DeferredSignals
    ) -> None:
        pending: dict = {}
        try:
            signals.check()
            gpus = ray.cluster_resources().get("GPU", 0) > 0
            remote = ray.remote(_ray_execute)
            for position, job in enumerate(jobs):
                options = {
                    "num_cpus": job.threads,
                    "num_gpus": 1 if _wants_gpu(job, gpus) else 0,
                    "max_retries": self.max_retries,
                    "retry_exceptions": False,  # only a dead worker is retried
                    "name": job.spec.label,
                }
                pending[remote.options(**options).remote(job)] = position
            while pending:
                # Short waits: a signal is acted on between them (see DeferredSignals).
                done, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                signals.check()
                for reference in done:
                    position = pending.pop(reference)
                    finished(position, _ray_result(ray, reference, jobs[position]))
        except BaseException:
            for reference in pending:
                try:
                    ray.cancel(reference, force=True)
                except Exception:  # already finished or gone
                    pass
            raise


def _ray_execute(job: Job) -> RunOutcome:
    return execute(job)


Backend = LocalBackend | RayBackend
"""What :func:`make_backend` returns: ``run(jobs, finished)`` executes jobs."""


def _ray_result(ray: Any, reference: Any, job: Job) -> RunOutcome:
    """The outcome of a finished task; a task that failed for good becomes a failed run."""
    try:
        return ray.get(reference)
    except ray.exceptions.RayError as error:
        from .store import RunStore

        run_dir = RunStore(job.store_root).run_dir(job.spec.config)
        return RunOutcome(job.spec, run_dir, "failed", message=f"{type(error).__name__}: {error}")


def _wants_gpu(job: Job, cluster_has_gpus: bool) -> bool:
    device = job.spec.config.train.device
    return device.startswith("cuda") or (device == "auto" and cluster_has_gpus)


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
