"""Trained runs for experiments: specs, tasks, execution on a backend, and the plan.

An experiment asks for trained models as :class:`RunSpec` objects (a name and a config) and
optionally attaches a :class:`RunTask`, work done on each trained model in the same worker
(an evaluation), whose result is cached in the run's directory of the :class:`RunStore`.
:func:`ensure_runs` trains what is missing — on this machine's processes or on Ray, see
``nrnn.backends`` — and returns one :class:`RunOutcome` per spec, in order.

Every run trains with ``threads_per_run`` torch threads (1 by default), which enters its
store key: the numbers a run produces do not depend on ``--jobs``, the backend or the load
of the machine. :func:`plan` lists every run, whether it is stored, and its estimated cost
from measured seconds per training step at that size (``nrnn.cost``).

A worker (:func:`execute`) first checks that it runs the driver's code and sees the
driver's store, then takes the run's lease (``nrnn.lease``): a second driver on the same
store, or a retried task whose first attempt still lives, waits for the holder and then
reuses what it stored. Specs that ask for the same run (the same store key and task) are
executed once per :func:`ensure_runs` call.
"""

from __future__ import annotations

import dataclasses
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..config import RunConfig
from ..exitcodes import InfrastructureError
from ..interrupt import Interrupted, as_interrupted
from . import plugins
from .store import RunStore, StoreNotVisible, source_digest


@dataclass(frozen=True)
class RunSpec:
    """One trained model an experiment needs.

    Attributes:
        name: what the experiment calls the model (a variant such as ``"paper-high"`` or an
            objective such as ``"clean"``).
        config: the full run configuration (its seed included).
    """

    name: str
    config: RunConfig = field(compare=False)

    @property
    def dataset(self) -> str:
        return self.config.data.name

    @property
    def seed(self) -> int:
        return self.config.train.seed

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.name}/s{self.seed}"


@runtime_checkable
class RunTask(Protocol):
    """Work done on a trained model in the training worker, cached in the run directory.

    ``name`` and ``key()`` name the cache file; the key must change whenever the result
    would. ``task(model, config, run_dir)`` returns a JSON-serialisable dict.
    ``passes(config)`` gives its cost for the plan: (sequences through a forward pass,
    sequences through a forward and backward pass).
    """

    @property
    def name(self) -> str: ...

    def key(self) -> str: ...

    def passes(self, config: RunConfig) -> tuple[int, int]: ...

    def __call__(self, model: Any, config: RunConfig, run_dir: Path) -> dict: ...


TaskChoice = RunTask | Callable[[RunSpec], RunTask | None] | None


@dataclass(frozen=True)
class EvaluationTask:
    """The simplest task: loss and accuracy of the trained model (noise off) on a split of
    its dataset, or on a fixed random subset of it (``subset`` sequences; 0: all)."""

    split: str = "test"
    subset: int = 0
    batch_size: int = 500
    name: str = "evaluation"

    def key(self) -> str:
        # the batch size orders the loss sums: results differ at round-off
        return f"{self.split}-{self.subset}-{self.batch_size}-v2"

    def passes(self, config: RunConfig) -> tuple[int, int]:
        from .. import data

        size = data.info(config.data.name, recipe=config.data.recipe).size(self.split)
        return (min(size, self.subset) if self.subset else size), 0

    def __call__(self, model: Any, config: RunConfig, run_dir: Path) -> dict:
        from ..train import evaluate, load_split

        return evaluate(model, load_split(config, self.split, self.subset), self.batch_size)


"""One task for every spec, a function choosing each spec's task, or none."""


class RunStatus(StrEnum):
    """What happened to one run (its value is the text the outputs show)."""

    TRAINED = "trained"
    """Trained or resumed now."""
    STORED = "stored"
    """Finished before."""
    FAILED = "failed"
    """Failed; the outcome's ``message`` holds the error and ``failure`` what failed."""


class Failure(StrEnum):
    """What failed in a failed run (its value is the text the outputs show)."""

    NONE = ""
    """Nothing: the run did not fail."""
    RUN = "run"
    """The run itself: it diverged, its config is invalid."""
    WORKER = "worker"
    """The process or node executing it kept dying."""
    ENVIRONMENT = "environment"
    """The worker runs other code or does not see the store."""


@dataclass
class RunOutcome:
    """What happened to one run.

    ``status``: a :class:`RunStatus`. ``result`` is the task's output (None without a task or
    on failure); ``task_cached`` says whether it came from the store. ``failure``: a
    :class:`Failure`. ``notes``: what the user should know about a run that did not fail (a
    damaged run set aside and trained again, a wait for another process that held its
    lease).
    """

    spec: RunSpec
    run_dir: Path
    status: RunStatus
    message: str = ""
    result: dict | None = None
    task_cached: bool = False
    seconds: float = 0.0
    failure: Failure = Failure.NONE
    notes: list[str] = field(default_factory=list)
    placement: dict = field(default_factory=dict)
    """Where it executed on Ray: the node's id and the resources Ray assigned the task."""


class RunsFailedError(InfrastructureError):
    """Some runs an experiment needs failed: no result may be drawn from the others as if
    the set were complete (``outcomes`` holds every run's outcome, in spec order)."""

    def __init__(self, outcomes: Sequence[RunOutcome]) -> None:
        self.outcomes = list(outcomes)
        failed = [outcome for outcome in self.outcomes if outcome.status is RunStatus.FAILED]
        first = failed[0]
        reason = first.message.splitlines()[0] if first.message else "no message"
        super().__init__(
            f"{len(failed)} of {len(self.outcomes)} training runs failed (first: "
            f"{first.spec.label} in {first.run_dir}: {reason}); nothing was drawn from the "
            "others. Finished runs are kept in the store: fix the cause and run the same "
            "command again"
        )


def raise_if_failed(outcomes: Sequence[RunOutcome]) -> list[RunOutcome]:
    """``outcomes`` unchanged when every run succeeded; else :class:`RunsFailedError`."""
    if any(outcome.status is RunStatus.FAILED for outcome in outcomes):
        raise RunsFailedError(outcomes)
    return list(outcomes)


@dataclass(frozen=True)
class Job:
    """What a backend executes: one spec, the store root (absolute) and the task.

    ``store_id`` and ``code`` are the driver's store identity and source digest (the worker
    refuses to run where they differ; empty: not checked); ``labels`` are the labels of
    every spec this job stands for (identical specs run once)."""

    spec: RunSpec
    store_root: str
    task: RunTask | None
    store_id: str = ""
    code: str = ""
    labels: tuple[str, ...] = ()
    plugins: tuple[str, ...] = ()
    """Modules the driver imported with ``--plugin``: the worker imports them too."""

    @property
    def threads(self) -> int:
        return max(1, self.spec.config.train.threads)


def with_threads(spec: RunSpec, threads: int) -> RunSpec:
    """The spec with ``train.threads`` set (a copy; the store key includes it)."""
    config = _copy_config(spec.config)
    config.train.threads = threads
    return RunSpec(spec.name, config)


def _copy_config(config: RunConfig) -> RunConfig:
    from ..config import from_dict

    return from_dict(config.to_dict())


class WorkerMismatch(RuntimeError):
    """A worker that runs other code than the driver."""


def check_worker(job: Job, store: RunStore) -> None:
    """Raise unless this worker runs the driver's code and sees the driver's store."""
    if job.code and job.code != source_digest():
        raise WorkerMismatch(
            f"a worker on {socket.gethostname()} runs other nrnn code than the driver (source "
            f"digest {source_digest()}, the driver's {job.code}): a node has another version "
            "of the package, or its files changed since the command started; install the "
            "driver's version on every node (the same commit, e.g. pip install -e on a shared "
            "checkout) and start the command again"
        )
    if job.store_id:
        store.check_visible(job.store_id)


LEASE_ATTEMPTS = 3
"""How often a worker whose lease was broken (judged dead) waits and starts again."""


def execute(job: Job) -> RunOutcome:
    """Train (or resume) one run if needed, then run the task if its result is not stored,
    holding the run's lease.

    Never raises for a failed run (the error is in the outcome); an interruption propagates.
    """
    import torch

    from .memory import keep_freed_memory

    keep_freed_memory()
    store = RunStore(job.store_root)
    run_dir = store.run_dir(job.spec.config)
    started = time.perf_counter()
    notes: list[str] = []
    threads = torch.get_num_threads()
    try:
        plugins.load("nrnn.plugins")
        plugins.import_modules(job.plugins)
        check_worker(job, store)
        torch.set_num_threads(job.threads)
        outcome = _execute_leased(job, store, run_dir, notes)
    except (WorkerMismatch, StoreNotVisible, ImportError) as error:
        outcome = RunOutcome(
            job.spec, run_dir, RunStatus.FAILED, str(error), failure=Failure.ENVIRONMENT
        )
    except Exception as error:  # report it and keep the other runs going
        detail = traceback.format_exc(limit=4)
        message = f"{type(error).__name__}: {error}\n{detail}"
        outcome = RunOutcome(job.spec, run_dir, RunStatus.FAILED, message, failure=Failure.RUN)
    finally:
        torch.set_num_threads(threads)
    outcome.notes = notes
    outcome.seconds = time.perf_counter() - started
    return outcome


def _execute_leased(job: Job, store: RunStore, run_dir: Path, notes: list[str]) -> RunOutcome:
    from ..files import remove_temporaries
    from ..train import load_model, train
    from .lease import Lease, LeaseLost

    spec, task = job.spec, job.task

    def waiting(holder: Any) -> None:
        notes.append(f"waited for {holder.describe()}, which held the run's lease")

    for attempt in range(1, LEASE_ATTEMPTS + 1):
        lease = Lease(run_dir).acquire(on_wait=waiting)
        try:
            remove_temporaries(run_dir)  # left by writers killed outright; no one writes now
            status = RunStatus.STORED
            if not store.is_finished(spec.config):
                continued = store.continue_from_shorter(spec.config)
                if continued is not None:
                    notes.append(continued)
                result = train(
                    spec.config,
                    run_dir,
                    resume=True,
                    start_if_missing=True,
                    progress=False,
                    on_damage="restart",
                    guard=lease.check,
                )
                notes.extend(result.notes)
                status = RunStatus.TRAINED
            store.add_labels(spec.config, job.labels or (spec.label,))
            outcome = RunOutcome(spec, run_dir, status)
            if task is not None:
                cached = store.read_task(spec.config, task.name, task.key())
                if cached is not None:
                    outcome.result, outcome.task_cached = cached, True
                else:
                    model, config = load_model(run_dir)
                    outcome.result = task(model, config, run_dir)
                    store.write_task(spec.config, task.name, task.key(), outcome.result)
            return outcome
        except LeaseLost as error:
            if attempt == LEASE_ATTEMPTS:
                raise
            notes.append(str(error))  # wait for the process that took over, then reuse
        finally:
            lease.release()
    raise AssertionError("unreachable")


def stored_outcome(job: Job) -> RunOutcome | None:
    """The outcome of a run whose training (and task) are already stored, else None."""
    spec, task = job.spec, job.task
    store = RunStore(job.store_root)
    if not store.is_finished(spec.config):
        return None
    run_dir = store.run_dir(spec.config)
    if task is None:
        return RunOutcome(spec, run_dir, RunStatus.STORED)
    result = store.read_task(spec.config, task.name, task.key())
    if result is None:
        return None
    return RunOutcome(spec, run_dir, RunStatus.STORED, result=result, task_cached=True)


def make_jobs(
    specs: Iterable[RunSpec], store: RunStore, task: TaskChoice, threads_per_run: int
) -> list[Job]:
    """One job per spec, with ``train.threads`` set (the store identity and code digest are
    added by :func:`ensure_runs` to the jobs it submits)."""
    jobs = []
    for spec in specs:
        spec = with_threads(spec, threads_per_run)
        chosen = task if task is None or isinstance(task, RunTask) else task(spec)
        jobs.append(Job(spec, str(store.root), chosen))
    return jobs


def ensure_runs(
    specs: Sequence[RunSpec],
    store: RunStore,
    backend: Any,
    *,
    task: TaskChoice = None,
    threads_per_run: int = 1,
    progress: bool = True,
    description: str = "runs",
    log: Callable[[str], None] | None = None,
) -> list[RunOutcome]:
    """Make sure every run is trained (and its task done); return outcomes in spec order.

    Stored runs are read here; the others go to ``backend`` (``nrnn.backends``), each
    distinct run once however many specs ask for it. On Ctrl-C or SIGTERM the backend
    cancels queued runs and ends its workers; finished runs and the last checkpoint of every
    started run stay in the store, and :class:`Interrupted` is raised with a one-line
    summary. A failed run is logged and returned as failed; a failure of the machinery
    raises :class:`nrnn.exitcodes.InfrastructureError` (a worker that does not see the store or
    runs other code: at once; runs whose worker died, on Ray after every retry: once the
    others are done).
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    jobs = make_jobs(specs, store, task, threads_per_run)
    outcomes: dict[int, RunOutcome] = {}
    same_work: dict[tuple, list[int]] = {}
    for index, job in enumerate(jobs):
        stored = stored_outcome(job)
        if stored is None:
            same_work.setdefault(_work_key(job), []).append(index)
        else:
            outcomes[index] = stored
    # The most expensive runs first, so that none of them finishes last alone.
    groups = sorted(same_work.values(), key=lambda indices: -_priority(jobs[indices[0]]))
    submitted = []
    if groups:
        store_id, code = store.identity(), source_digest()
        for indices in groups:
            labels = tuple(dict.fromkeys(jobs[index].spec.label for index in indices))
            submitted.append(
                dataclasses.replace(
                    jobs[indices[0]],
                    store_id=store_id,
                    code=code,
                    labels=labels,
                    plugins=tuple(plugins.LOADED),
                )
            )
    bar = _progress_bar(len(submitted), description, progress)

    def finished(position: int, outcome: RunOutcome) -> None:
        for index in groups[position]:
            outcomes[index] = dataclasses.replace(outcome, spec=jobs[index].spec)
        if outcome.failure is Failure.ENVIRONMENT:
            raise InfrastructureError(outcome.message)
        if bar is not None:
            spec = outcome.spec
            bar.set_postfix_str(f"{spec.label} {outcome.status} ({outcome.seconds:.0f}s)")
            bar.update(1)

    try:
        if submitted:
            backend.map(submitted, finished)
    except (KeyboardInterrupt, Interrupted) as error:
        interrupted = as_interrupted(error)
        raise interrupted.with_message(_interruption_summary(jobs, outcomes, store)) from None
    finally:
        if bar is not None:
            bar.close()
    crashed = []
    for indices in groups:
        outcome = outcomes[indices[0]]
        for note in outcome.notes:
            log(f"run {outcome.spec.label} ({outcome.run_dir}): {note}")
        if outcome.failure is Failure.WORKER:
            crashed.append(outcome)
        elif outcome.status is RunStatus.FAILED:
            log(f"run {outcome.run_dir} ({outcome.spec.label}) failed: {outcome.message}")
    if crashed:
        raise InfrastructureError(_crash_summary(crashed, len(groups), store))
    return [outcomes[index] for index in range(len(jobs))]


def _work_key(job: Job) -> tuple:
    """What makes two jobs the same work: the run (its store key) and the task."""
    task = job.task
    return (
        RunStore(job.store_root).key(job.spec.config),
        None if task is None else (task.name, task.key()),
    )


def _crash_summary(crashed: list[RunOutcome], total: int, store: RunStore) -> str:
    shown = "; ".join(f"{o.spec.label}: {o.message}" for o in crashed[:3])
    more = f"; and {len(crashed) - 3} more" if len(crashed) > 3 else ""
    return (
        f"{len(crashed)} of {total} runs failed because the process executing them died "
        f"({shown}{more}); finished runs and checkpoints are kept in {store.root}: run the "
        "same command again to resume"
    )


def _priority(job: Job) -> float:
    """Work in a run relative to others: epochs × sequence length × hidden size² × cost of
    the objective relative to a noisy step (``nrnn.objectives``: the explicit regularizer's
    exact method costs about d times a step)."""
    config = job.spec.config
    from .. import data
    from ..objectives import OBJECTIVES

    steps = data.info(config.data.name).seq_len
    hidden = config.model.hidden_dim
    weight = OBJECTIVES.get(config.train.objective).relative_cost(config.train, hidden)
    return config.train.epochs * steps * hidden**2 * weight


def _interruption_summary(jobs: list[Job], outcomes: dict[int, RunOutcome], store: RunStore) -> str:
    finished = sum(1 for job in jobs if store.is_finished(job.spec.config))
    partial = sum(
        1
        for job in jobs
        if not store.is_finished(job.spec.config) and store.finished_epochs(job.spec.config) > 0
    )
    return (
        f"interrupted: {finished} of {len(jobs)} runs finished and {partial} checkpointed "
        f"part-way are kept in {store.root}; run the same command again to resume"
    )


def _progress_bar(total: int, description: str, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="run", dynamic_ncols=True)


# ------------------------------------------------------------------------------ plan
class PlanState(StrEnum):
    """Where one run of a plan stands (its value is the text the plan shows)."""

    STORED = "stored"
    """Trained, and its task (if any) stored."""
    TASK_TO_RUN = "task to run"
    """Trained; its task still to run."""
    PARTIAL = "partial"
    """Checkpointed part-way."""
    TO_RUN = "to run"
    """Not started."""


@dataclass
class PlanRow:
    """One run of a plan: its label, store key, state and estimated remaining cost;
    ``finished_epochs`` of ``epochs`` for a partial run, ``task`` the task's name (if any)."""

    label: str
    key: str
    state: PlanState
    remaining_seconds: float
    task: str = ""
    finished_epochs: int = 0
    epochs: int = 0

    @property
    def description(self) -> str:
        """The state as the plan shows it: "stored", "stored, TASK to run", "partial k/N"
        or "to run"."""
        if self.state is PlanState.PARTIAL:
            return f"partial {self.finished_epochs}/{self.epochs}"
        if self.state is PlanState.TASK_TO_RUN:
            return f"stored, {self.task} to run"
        return self.state.value


def plan(
    specs: Sequence[RunSpec],
    store: RunStore,
    *,
    task: TaskChoice = None,
    threads_per_run: int = 1,
    timings: Any = None,
) -> list[PlanRow]:
    """Every run with whether it is stored and its estimated remaining cost in seconds (on
    one worker of this machine; ``timings`` is a ``nrnn.cost.Timings``)."""
    from .cost import Timings

    timings = timings or Timings(store.root / "timings.json")
    rows = []
    for job in make_jobs(specs, store, task, threads_per_run):
        config = job.spec.config
        done, finished = store.progress(config)
        seconds = 0.0
        if not finished:
            seconds += timings.training_seconds(config, epochs=config.train.epochs - done)
            state = PlanState.PARTIAL if done else PlanState.TO_RUN
        else:
            state = PlanState.STORED
        task_name = ""
        if job.task is not None:
            task_name = job.task.name
            if store.read_task(config, job.task.name, job.task.key()) is None:
                seconds += timings.task_seconds(config, job.task)
                if state is PlanState.STORED:
                    state = PlanState.TASK_TO_RUN
        rows.append(
            PlanRow(
                job.spec.label,
                store.key(config),
                state,
                seconds,
                task_name,
                finished_epochs=done,
                epochs=config.train.epochs,
            )
        )
    return rows


def format_plan(
    rows: Sequence[PlanRow], workers: int, title: str = "", workers_from: str = ""
) -> str:
    """A table of a plan and its totals (sequential seconds and wall time on ``workers``,
    whose source ``workers_from`` names)."""
    lines = [title] if title else []
    width = max([len(row.label) for row in rows] + [5])
    lines.append(f"{'run'.ljust(width)}  {'key':16s}  {'state':28s}  estimated")
    for row in rows:
        lines.append(
            f"{row.label.ljust(width)}  {row.key:16s}  {row.description:28s}  "
            f"{format_duration(row.remaining_seconds)}"
        )
    total = sum(row.remaining_seconds for row in rows)
    stored = sum(1 for row in rows if row.state is PlanState.STORED)
    lines.append(
        f"{len(rows)} runs, {stored} stored; remaining work {format_duration(total)} on one "
        f"worker, about {format_duration(_wall_time(rows, workers))} on {workers} workers"
        + (f" ({workers_from})" if workers_from else "")
        + "; estimated from seconds per training step measured on this machine, with one "
        "worker as fast as this machine's"
    )
    return "\n".join(lines)


def _wall_time(rows: Sequence[PlanRow], workers: int) -> float:
    """Longest-first greedy schedule of the remaining runs on ``workers`` workers."""
    loads = [0.0] * max(1, workers)
    for seconds in sorted((row.remaining_seconds for row in rows), reverse=True):
        loads[loads.index(min(loads))] += seconds
    return max(loads)


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return "0 s" if seconds == 0 else "<1 s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = [
    "EvaluationTask",
    "Failure",
    "Job",
    "PlanRow",
    "PlanState",
    "RunOutcome",
    "RunStatus",
    "RunSpec",
    "RunTask",
    "RunsFailedError",
    "ensure_runs",
    "execute",
    "format_duration",
    "format_plan",
    "plan",
    "raise_if_failed",
    "stored_outcome",
]
