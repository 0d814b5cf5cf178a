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
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .config import RunConfig
from .exitcodes import InfrastructureError
from .interrupt import Interrupted, as_interrupted
from .store import RunStore


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
        from . import data

        size = data.info(config.data.name, recipe=config.data.recipe).size(self.split)
        return (min(size, self.subset) if self.subset else size), 0

    def __call__(self, model: Any, config: RunConfig, run_dir: Path) -> dict:
        from .train import evaluate, load_split

        return evaluate(model, load_split(config, self.split, self.subset), self.batch_size)


"""One task for every spec, a function choosing each spec's task, or none."""


@dataclass
class RunOutcome:
    """What happened to one run.

    ``status``: ``"trained"`` (trained or resumed now), ``"stored"`` (finished before) or
    ``"failed"`` (``message`` holds the error). ``result`` is the task's output (None without
    a task or on failure); ``task_cached`` says whether it came from the store.
    """

    spec: RunSpec
    run_dir: Path
    status: str
    message: str = ""
    result: dict | None = None
    task_cached: bool = False
    seconds: float = 0.0


class RunsFailedError(InfrastructureError):
    """Some runs an experiment needs failed: no result may be drawn from the others as if
    the set were complete (``outcomes`` holds every run's outcome, in spec order)."""

    def __init__(self, outcomes: Sequence[RunOutcome]) -> None:
        self.outcomes = list(outcomes)
        failed = [outcome for outcome in self.outcomes if outcome.status == "failed"]
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
    if any(outcome.status == "failed" for outcome in outcomes):
        raise RunsFailedError(outcomes)
    return list(outcomes)


@dataclass(frozen=True)
class Job:
    """What a backend executes: one spec, the store root and the task."""

    spec: RunSpec
    store_root: str
    task: RunTask | None

    @property
    def threads(self) -> int:
        return max(1, self.spec.config.train.threads)


def with_threads(spec: RunSpec, threads: int) -> RunSpec:
    """The spec with ``train.threads`` set (a copy; the store key includes it)."""
    config = _copy_config(spec.config)
    config.train.threads = threads
    return RunSpec(spec.name, config)


def _copy_config(config: RunConfig) -> RunConfig:
    from .config import from_dict

    return from_dict(config.to_dict())


def execute(job: Job) -> RunOutcome:
    """Train (or resume) one run if needed, then run the task if its result is not stored.

    Never raises for a failed run (the error is in the outcome); an interruption propagates.
    """
    import torch

    from .memory import keep_freed_memory
    from .train import load_model, train

    keep_freed_memory()
    spec, task = job.spec, job.task
    store = RunStore(job.store_root)
    run_dir = store.run_dir(spec.config)
    started = time.perf_counter()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(job.threads)
        status = "stored"
        if not store.is_finished(spec.config):
            train(spec.config, run_dir, resume=True, start_if_missing=True, progress=False)
            status = "trained"
        store.add_label(spec.config, spec.label)
        outcome = RunOutcome(spec, run_dir, status)
        if task is not None:
            cached = store.read_task(spec.config, task.name, task.key())
            if cached is not None:
                outcome.result, outcome.task_cached = cached, True
            else:
                model, config = load_model(run_dir)
                outcome.result = task(model, config, run_dir)
                store.write_task(spec.config, task.name, task.key(), outcome.result)
    except Exception as error:  # report it and keep the other runs going
        detail = traceback.format_exc(limit=4)
        outcome = RunOutcome(
            spec, run_dir, "failed", message=f"{type(error).__name__}: {error}\n{detail}"
        )
    finally:
        torch.set_num_threads(threads)
    outcome.seconds = time.perf_counter() - started
    return outcome


def stored_outcome(job: Job) -> RunOutcome | None:
    """The outcome of a run whose training (and task) are already stored, else None."""
    spec, task = job.spec, job.task
    store = RunStore(job.store_root)
    if not store.is_finished(spec.config):
        return None
    run_dir = store.run_dir(spec.config)
    if task is None:
        return RunOutcome(spec, run_dir, "stored")
    result = store.read_task(spec.config, task.name, task.key())
    if result is None:
        return None
    return RunOutcome(spec, run_dir, "stored", result=result, task_cached=True)


def make_jobs(
    specs: Iterable[RunSpec], store: RunStore, task: TaskChoice, threads_per_run: int
) -> list[Job]:
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

    Stored runs are read here; the others go to ``backend`` (``nrnn.backends``). On Ctrl-C
    or SIGTERM the backend cancels queued runs and ends its workers; finished runs and the
    last checkpoint of every started run stay in the store, and :class:`Interrupted` is
    raised with a one-line summary.
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    jobs = make_jobs(specs, store, task, threads_per_run)
    outcomes: dict[int, RunOutcome] = {}
    pending: list[int] = []
    for index, job in enumerate(jobs):
        stored = stored_outcome(job)
        if stored is None:
            pending.append(index)
        else:
            outcomes[index] = stored
    # The most expensive runs first, so that none of them finishes last alone.
    pending.sort(key=lambda i: -_priority(jobs[i]))
    bar = _progress_bar(len(pending), description, progress)

    def finished(position: int, outcome: RunOutcome) -> None:
        outcomes[pending[position]] = outcome
        if bar is not None:
            spec = outcome.spec
            bar.set_postfix_str(f"{spec.label} {outcome.status} ({outcome.seconds:.0f}s)")
            bar.update(1)

    try:
        if pending:
            backend.map([jobs[i] for i in pending], finished)
    except (KeyboardInterrupt, Interrupted) as error:
        interrupted = as_interrupted(error)
        raise interrupted.with_message(_interruption_summary(jobs, outcomes, store)) from None
    finally:
        if bar is not None:
            bar.close()
    for outcome in outcomes.values():
        if outcome.status == "failed":
            log(f"run {outcome.run_dir} ({outcome.spec.label}) failed: {outcome.message}")
    return [outcomes[index] for index in range(len(jobs))]


def _priority(job: Job) -> float:
    """Work in a run relative to others: epochs × sequence length × hidden size² × cost of
    the objective (the explicit regularizer's exact method costs about d times a step)."""
    config = job.spec.config
    from . import data

    steps = data.info(config.data.name).seq_len
    weight = 1.0
    if config.train.objective == "explicit":
        weight = config.model.hidden_dim if config.train.regularizer_method == "exact" else 10.0
    return config.train.epochs * steps * config.model.hidden_dim**2 * weight


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
@dataclass
class PlanRow:
    """One run of a plan: its label, store key, state and estimated remaining cost."""

    label: str
    key: str
    state: str  # "stored", "partial k/N" or "to run"
    remaining_seconds: float
    task: str = ""


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
        done = store.finished_epochs(config)
        seconds = 0.0
        if done < config.train.epochs:
            seconds += timings.training_seconds(config, epochs=config.train.epochs - done)
            state = f"partial {done}/{config.train.epochs}" if done else "to run"
        else:
            state = "stored"
        task_name = ""
        if job.task is not None:
            task_name = job.task.name
            if store.read_task(config, job.task.name, job.task.key()) is None:
                seconds += timings.task_seconds(config, job.task)
                if state == "stored":
                    state = f"stored, {job.task.name} to run"
        rows.append(PlanRow(job.spec.label, store.key(config), state, seconds, task_name))
    return rows


def format_plan(rows: Sequence[PlanRow], workers: int, title: str = "") -> str:
    """A table of a plan and its totals (sequential seconds and wall time on ``workers``)."""
    lines = [title] if title else []
    width = max([len(row.label) for row in rows] + [5])
    lines.append(f"{'run'.ljust(width)}  {'key':16s}  {'state':28s}  estimated")
    for row in rows:
        lines.append(
            f"{row.label.ljust(width)}  {row.key:16s}  {row.state:28s}  "
            f"{format_duration(row.remaining_seconds)}"
        )
    total = sum(row.remaining_seconds for row in rows)
    stored = sum(1 for row in rows if row.state == "stored")
    lines.append(
        f"{len(rows)} runs, {stored} stored; remaining work {format_duration(total)} on one "
        f"worker, about {format_duration(_wall_time(rows, workers))} on {workers} workers "
        "(estimated from measured seconds per training step on this machine)"
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
    "Job",
    "PlanRow",
    "RunOutcome",
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
