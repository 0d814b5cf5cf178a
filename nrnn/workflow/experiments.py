"""One registry of experiments, one set of profiles, one set of command-line flags.

Every verification module, figure and benchmark is an :class:`Experiment` in
:data:`REGISTRY` (by group: ``verify``, ``figures``, ``bench``), with sizes for each of the
named :data:`PROFILES`. The packages that define experiments register them when they are
imported (:func:`register_experiments`); :func:`names` and :func:`load` import the packages
of the ``nrnn.experiments`` entry points first (``nrnn.workflow.plugins``), so this module
names none of them.

=========  ==========================================================================
smoke      tiny sizes, seconds: what the tests run
quick      the default: minutes on 2 CPU cores (``make reproduce``)
medium     bigger than quick; the pixel-MNIST robustness runs take days on 2 cores
full       the paper's sizes, for a cluster or a GPU
=========  ==========================================================================

An experiment that needs trained models lists them with ``plan(sizes, context)``; its
``run(sizes, context)`` asks the :class:`Context` for them (``context.ensure``), so all
experiments share one store of trained runs and one way to execute them (``--backend
local`` processes or ``--backend ray``). ``nrnn verify|figures|bench`` all take the same
flags (:func:`add_common_arguments`): ``--profile``, ``--backend``, ``--address``,
``--store``, ``--jobs``, ``--plan``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RunConfig, from_dict, parse_override
from ..train.keys import DEFAULT_STORE
from .backends import BACKENDS, check_gpus_per_run, cluster_backends
from .cost import Timings
from .harness import (
    PlanRow,
    RunOutcome,
    RunSpec,
    TaskChoice,
    ensure_runs,
    format_plan,
    plan,
    raise_if_failed,
)

if TYPE_CHECKING:
    from .backends import Backend
from . import plugins
from .store import RunStore

PROFILES: tuple[str, ...] = ("smoke", "quick", "medium", "full")
DEFAULT_PROFILE = "quick"
DEFAULT_BACKEND = "local"

REGISTRY: dict[str, dict[str, str]] = {}
"""group -> experiment name -> module defining ``EXPERIMENT`` (imported on demand), in the
order the group's package registered them (:func:`register_experiments`)."""


def register_experiments(group: str, modules: Mapping[str, str]) -> None:
    """Add the experiments of ``group``: name -> the module that defines ``EXPERIMENT``
    (imported when the experiment is loaded), in their order (the order they run in)."""
    known = REGISTRY.setdefault(group, {})
    for name, module in modules.items():
        if known.get(name, module) != module:
            raise ValueError(f"a {group} experiment {name!r} is already registered")
        known[name] = module


def names(group: str) -> tuple[str, ...]:
    """The experiments of ``group``, in order (their packages imported first)."""
    plugins.load("nrnn.experiments")
    if group not in REGISTRY:
        raise ValueError(f"unknown group {group!r}; expected one of {list(REGISTRY)}")
    return tuple(REGISTRY[group])


@dataclass(frozen=True)
class Experiment:
    """One experiment: its sizes per profile, what it trains, and how it runs.

    Attributes:
        name: unique within its group.
        title: one line, shown by ``--list``.
        profiles: profile name -> sizes (any object the experiment's functions accept); every
            name of :data:`PROFILES` must be present (a profile may reuse another's sizes).
        run: ``run(sizes, context)``, the experiment; what it returns depends on the group
            (verification: a list of checks; figures: written paths; benchmarks: a result).
        plan: ``plan(sizes, context) -> [(specs, task), ...]``, the trained runs it needs
            (None: it trains nothing).
        claims: the paper's claims it tests (verification).
        parts: named parts that can be run alone (benchmarks; ``context.parts`` chooses).
    """

    name: str
    title: str
    profiles: Mapping[str, Any]
    run: Callable[[Any, Context], Any]
    plan: Callable[[Any, Context], Sequence[tuple[Sequence[RunSpec], TaskChoice]]] | None = None
    claims: tuple[int, ...] = ()
    parts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        missing = [name for name in PROFILES if name not in self.profiles]
        if missing:
            raise ValueError(f"experiment {self.name!r} lacks profiles {missing}")

    def sizes(self, profile: str) -> Any:
        if profile not in self.profiles:
            raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
        return self.profiles[profile]


def load(group: str, name: str) -> Experiment:
    """The experiment ``name`` of ``group`` (its module is imported now)."""
    if name not in names(group):
        raise ValueError(
            f"unknown {group} experiment {name!r}; expected one of {', '.join(REGISTRY[group])}"
        )
    return importlib.import_module(REGISTRY[group][name]).EXPERIMENT


@dataclass
class Context:
    """What every experiment receives: the profile and where and how runs execute.

    Attributes:
        profile: one of :data:`PROFILES`.
        store: the store of trained runs.
        backend: executes runs (``nrnn.backends``), made on first use from ``backend_name``.
        jobs: parallel runs (local processes, or runs of a local Ray instance, which gets
            jobs × threads_per_run CPUs; on a cluster, the most tasks submitted at once, None:
            no limit, the cluster schedules them).
        gpus_per_run: GPUs (a fraction of one, or a whole number) a run on a GPU asks Ray
            for (None: one).
        out_dir: where the group writes its files.
        report_dir: the verification report's directory: figures read it, and write there
            the module reports they compute.
        report_sources: more report directories figures read (never write), after
            ``report_dir``: ``nrnn figures --out X`` reads the default report and writes X.
        progress: show progress bars.
        datasets: datasets chosen on the command line (None: each experiment's default).
        threads_per_run: torch threads of every training run (enters the store key).
        parts: the parts of the experiment to run (None: all; benchmarks).
        overrides: ``section.key=value`` settings applied to every trained run's config
            (after the experiment's own), e.g. ``model.cell=cornn``.
    """

    profile: str = DEFAULT_PROFILE
    store: RunStore = field(default_factory=lambda: RunStore(DEFAULT_STORE))
    backend_name: str = DEFAULT_BACKEND
    address: str | None = None
    jobs: int | None = field(default_factory=lambda: os.cpu_count() or 1)
    gpus_per_run: float | None = None
    out_dir: Path = Path(".")
    report_dir: Path = Path("verification")
    report_sources: tuple[Path, ...] = ()
    progress: bool = True
    datasets: tuple[str, ...] | None = None
    threads_per_run: int = 1
    parts: tuple[str, ...] | None = None
    overrides: tuple[str, ...] = ()
    log: Callable[[str], None] = field(default=lambda message: print(message, file=sys.stderr))
    _backend: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {self.profile!r}")
        cluster = BACKENDS.get(self.backend_name).cluster
        if self.jobs is None and not (cluster and self.address):
            raise ValueError("jobs=None (no limit) is for a Ray cluster (an address) only")
        if self.jobs is not None and (
            isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1
        ):
            raise ValueError(f"jobs must be a positive integer, got {self.jobs!r}")
        self.out_dir = Path(self.out_dir)
        self.report_dir = Path(self.report_dir)
        self.report_sources = tuple(Path(source) for source in self.report_sources)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            from .backends import make_backend

            self._backend = make_backend(
                self.backend_name,
                jobs=self.jobs,
                address=self.address,
                gpus_per_run=self.gpus_per_run,
            )
        return self._backend

    def ensure(
        self, specs: Sequence[RunSpec], task: TaskChoice = None, description: str = "runs"
    ) -> list[RunOutcome]:
        """Train (or read from the store) every run and do its task; outcomes in order.

        Raises:
            nrnn.harness.RunsFailedError: some run failed (after every other run finished
                and was stored): an experiment never draws a table or a verdict from an
                incomplete set of runs.
        """
        return raise_if_failed(
            ensure_runs(
                specs,
                self.store,
                self.backend,
                task=task,
                threads_per_run=self.threads_per_run,
                progress=self.progress,
                description=description,
                log=self.log,
            )
        )

    def configure(self, config: RunConfig) -> RunConfig:
        """``config`` with the command line's ``--set`` overrides applied, validated."""
        for text in self.overrides:
            config = from_dict(parse_override(text), config)
        return config.validate()

    def plan_rows(self, specs: Sequence[RunSpec], task: TaskChoice = None) -> list[PlanRow]:
        return plan(specs, self.store, task=task, threads_per_run=self.threads_per_run)


# ---------------------------------------------------------------------- command line
def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every experiment command takes."""
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--profile",
        choices=PROFILES,
        default=None,
        help="sizes: smoke (tests), quick (default; minutes on 2 cores), medium (bigger; "
        "the pixel-MNIST robustness runs take days on 2 cores), full (the paper's sizes)",
    )
    size.add_argument(
        "--quick",
        dest="profile",
        action="store_const",
        const="quick",
        help="same as --profile quick",
    )
    size.add_argument(
        "--full", dest="profile", action="store_const", const="full", help="same as --profile full"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS.names(),
        default=DEFAULT_BACKEND,
        help="where trained runs execute: "
        + " or ".join(f"{kind.summary} ({kind.name})" for kind in BACKENDS.entries())
        + f"; default {DEFAULT_BACKEND}",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="with --backend ray: 'auto' or HOST:PORT of a running cluster "
        "(default: start a local Ray instance and shut it down at the end)",
    )
    parser.add_argument(
        "--gpus-per-run",
        type=float,
        default=None,
        metavar="G",
        help="with --backend ray: GPUs each run on a GPU asks for (default 1); a fraction "
        "such as 0.25 lets 4 small runs share one GPU",
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=DEFAULT_STORE,
        help=f"directory of the store of trained runs (default {DEFAULT_STORE}; "
        "on a cluster, a path every node sees)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="parallel training runs (default: all cores / --threads-per-run; with --address: "
        "the most runs submitted to the cluster at once, default no limit)",
    )
    parser.add_argument(
        "--threads-per-run",
        type=int,
        default=1,
        help="torch threads of each training run (default 1: the numbers then do not "
        "depend on --jobs, the backend or the load; more speeds up a few long runs on an "
        "idle machine, and enters the store key)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value of every trained run (repeatable), e.g. "
        "model.cell=cornn; needs --out, so that the default outputs are not overwritten",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="list every run, whether it is stored, and its estimated cost; run nothing",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars"
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first: it registers a cell, noise form or objective of your own "
        "that --set names (repeatable; the workers import it too)",
    )
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")


def context_from_arguments(
    args: argparse.Namespace, parser: argparse.ArgumentParser, **extra: Any
) -> Context:
    try:
        plugins.import_modules(args.plugin)
    except ImportError as error:
        parser.error(str(error))
    cores = os.cpu_count() or 1
    threads = args.threads_per_run
    if threads < 1:
        parser.error(f"--threads-per-run must be >= 1, got {threads}")
    jobs: int | None = max(1, cores // threads) if args.jobs is None else args.jobs
    if args.jobs is None and args.address is not None:
        jobs = None  # a cluster: no limit of this machine's cores
    if jobs is not None and jobs < 1:
        parser.error(f"--jobs must be >= 1, got {jobs}")
    kind = BACKENDS.get(args.backend)
    if args.gpus_per_run is not None:
        if not kind.cluster:
            parser.error(f"--gpus-per-run needs {cluster_backends()}")
        try:
            check_gpus_per_run(args.gpus_per_run)
        except ValueError as error:
            parser.error(str(error))
    if jobs is not None and threads > 1 and kind.local_processes and jobs * threads > cores:
        parser.error(
            f"--jobs {jobs} x --threads-per-run {threads} = {jobs * threads} threads would "
            f"oversubscribe the {cores} cores of this machine"
        )
    if args.address is not None and not kind.cluster:
        parser.error(f"--address needs {cluster_backends()}")
    if args.overrides and getattr(args, "out", None) is None:
        parser.error("--set needs --out: the default outputs are those of the shipped settings")
    for text in args.overrides:
        try:
            parse_override(text)
        except ValueError as error:
            parser.error(str(error))
    return Context(
        profile=args.profile or DEFAULT_PROFILE,
        store=RunStore(args.store),
        backend_name=args.backend,
        address=args.address,
        jobs=jobs,
        gpus_per_run=args.gpus_per_run,
        threads_per_run=threads,
        progress=args.progress,
        overrides=tuple(args.overrides),
        **extra,
    )


def print_list(group: str) -> None:
    for name in names(group):
        print(f"{name:18s} {load(group, name).title}")


def print_plan(group: str, names: Sequence[str], context: Context) -> int:
    """``--plan``: every run the chosen experiments need, with state and estimated cost."""
    workers, source = plan_workers(context)  # first: a cluster that cannot be joined fails now
    rows: list[PlanRow] = []
    for name in names:
        experiment = load(group, name)
        if experiment.plan is None:
            continue
        for specs, task in experiment.plan(experiment.sizes(context.profile), context):
            rows.extend(context.plan_rows(specs, task))
    title = (
        f"nrnn {group} --profile {context.profile}: {', '.join(names)} "
        f"(backend {context.backend_name}, store {context.store.root})"
    )
    if not rows:
        print(f"{title}\nno trained runs needed")
        return 0
    print(format_plan(rows, workers, title, workers_from=source))
    print(Timings(context.store.root / "timings.json").summary())
    return 0


def validate_request(group: str, names: Sequence[str], context: Context) -> bool:
    """Check, before any work starts, what can be checked of a command's request; returns
    whether any of the chosen experiments trains runs.

    Every trained run's configuration is built with the ``--set`` overrides and validated
    (a bad value fails here, in one line, not as a traceback from every run). An override
    of a key that an experiment varies between its runs (``train.seed`` across seeds,
    ``train.objective`` or the noise across variants) is refused: it would merge those runs
    into one. ``--set`` for experiments that train nothing is refused (or, next to others
    that train, noted in the log).

    Raises:
        ValueError: naming the override or the value at fault.
    """
    experiments = [load(group, name) for name in names]
    quiet = dataclasses.replace(context, log=lambda message: None)  # the run logs it again
    training = [experiment for experiment in experiments if _trained_runs(experiment, quiet)]
    if context.overrides:
        if not training:
            verb = "trains" if len(names) == 1 else "train"
            raise ValueError(
                f"--set changes the configuration of trained runs; {', '.join(names)} {verb} none"
            )
        idle = [experiment.name for experiment in experiments if experiment not in training]
        if idle:
            context.log(f"note: --set does not apply to {', '.join(idle)} (they train nothing)")
        for experiment in training:
            _refuse_overrides_of_varied_keys(experiment, context)
    return bool(training)


def _trained_runs(experiment: Experiment, context: Context) -> list[RunSpec]:
    """Every run the experiment trains at the context's profile, with the overrides."""
    if experiment.plan is None:
        return []
    chosen = experiment.plan(experiment.sizes(context.profile), context)
    return [spec for specs, _task in chosen for spec in specs]


def _refuse_overrides_of_varied_keys(experiment: Experiment, context: Context) -> None:
    if experiment.plan is None:
        return
    bare = dataclasses.replace(context, overrides=(), log=lambda message: None)
    for specs, _task in experiment.plan(experiment.sizes(context.profile), bare):
        for text in context.overrides:
            parse_override(text)  # checked
            path = [part.strip() for part in text.partition("=")[0].split(".")]
            seen = sorted({json.dumps(_setting(spec.config, path)) for spec in specs})
            if len(seen) > 1:
                shown = ", ".join(seen[:4]) + (", ..." if len(seen) > 4 else "")
                raise ValueError(
                    f"--set {text}: {experiment.name} varies {'.'.join(path)} between its "
                    f"runs ({shown}); overriding it would make them one run. Leave that key "
                    "to the experiment"
                )


def _setting(config: RunConfig, path: Sequence[str]) -> Any:
    """The value a ``--set`` key names: a key of the flat layout of older configs
    (``model.beta``, ``model.cell=cornn``) in that layout, any other in the config's
    content; None if neither has it."""
    from ..canonical import flat_dict

    for content in (flat_dict(config), config.to_dict()):
        value: Any = content
        for part in path:
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            return value
    return None


def plan_workers(context: Context) -> tuple[int, str]:
    """How many runs execute at once, and why: this machine's ``--jobs``, or what a
    cluster's nodes hold at ``--threads-per-run`` CPUs per run (connecting to it)."""
    return context.backend.capacity(context.threads_per_run)
