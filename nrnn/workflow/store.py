"""The store of trained runs: one directory per run, keyed by what defines its result.

A run's key is a hash of its whole configuration (epochs included) and of
:data:`CODE_VERSION` (``nrnn.train.keys``), so a run is reused only by a request that would
compute the same thing with the same code. Every command that trains (``nrnn train``,
``nrnn figures``, ``nrnn verify trained``, any sweep) asks the same store, so a model
trained for one figure is reused by another that needs the same configuration. Layout::

    <root>/.nrnn-store.json            the store's identity (a random id)
    <root>/<dataset>/<key>/            the run directory of ``nrnn.train.train``
        config.json, checkpoint.pt, metrics.jsonl, events.jsonl, final.json
        labels.json                    the names experiments gave this run
        task-<name>-<task key>.json    results of work done on the trained model
        lease.json                     while a process works on the run (``nrnn.lease``)

A run is finished when its checkpoint holds its last epoch (or its stopping rule,
``train.stop_window``, stopped it) and its metrics cover every epoch; an unfinished run is
resumed from its checkpoint, and a damaged one (a checkpoint that fails its digest, a
metrics file that does not parse) is set aside and trained again by the harness. Every file
is written atomically (write, flush, rename), so an interrupted run never leaves a
half-written file. One process at a time works on a run: the harness takes the run's lease
first, so two drivers on one store, or a retried task while its first attempt still lives,
never train the same run twice.

The root is made absolute when the store is created, so that every worker of a cluster
writes where the driver reads. A worker checks that it sees the driver's store (the same
identity file) before it writes anything: a path that is not on a file system shared by
every node is refused, not filled on one node while the driver's stays empty.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import socket
import uuid
from pathlib import Path

from ..config import RunConfig
from ..files import TEMPORARY_SUFFIX, write_bytes_atomic, write_json_atomic
from ..hashing import content_hash
from ..train.keys import CODE_VERSION as CODE_VERSION
from ..train.keys import key_content as key_content
from ..train.keys import run_directory, run_key
from . import plugins

NOT_CODE_PATH = (
    "__init__.py",
    "__main__.py",
    "exitcodes.py",
    "files.py",
    "graph_safety.py",
    "interrupt.py",
    *(f"workflow/{name}.py" for name in ("__init__", "backends", "cli", "commands", "cost")),
    *(f"workflow/{name}.py" for name in ("experiments", "inventory", "lease", "memory")),
    *(f"workflow/{name}.py" for name in ("plugins", "store")),
    *(f"{name}.py" for name in ("backends", "cli", "cost", "experiments", "harness")),
    *(f"{name}.py" for name in ("inventory", "lease", "memory", "store")),
)
"""Modules of ``nrnn`` that cannot change the numbers of a run: the workflow layer
(``nrnn.workflow``: commands, scheduling, the store's bookkeeping) but its harness, which
runs the training in a worker (its thread count, resuming), the old names of its modules
kept at the top level, and process plumbing (exit codes, atomic files, signals, the
graph-safety recorder of the tests); every other module of the runtime package is on the
code path. (Packages that plug into ``nrnn`` through entry points, ``nrnn.verification``
and the like, are not: the tasks they define carry versions in their own keys.)"""


def _plugged_in() -> tuple[str, ...]:
    """Folders of the ``nrnn`` package that hold packages plugged in through entry points
    (an installed wheel puts ``nrnn.verification`` there), as relative prefixes."""
    return tuple(
        name.removeprefix("nrnn.") + "/" for name in plugins.packages() if name.startswith("nrnn.")
    )


def code_path() -> list[str]:
    """The package's source files (relative paths) whose changes can alter stored results:
    every module of ``nrnn`` and its subpackages except :data:`NOT_CODE_PATH`."""
    package = Path(__file__).resolve().parent.parent
    excluded = NOT_CODE_PATH + _plugged_in()
    return sorted(
        relative
        for relative in (path.relative_to(package).as_posix() for path in package.rglob("*.py"))
        if relative not in excluded and not relative.startswith(excluded)
    )


CODE_DIGEST = "eab116354d62e82d"
""":func:`code_digest` of the code path when :data:`CODE_VERSION` was last reviewed. A
test fails when the code changes: whoever changed it decides whether results can change
(then bumps CODE_VERSION) and records the new digest here."""


def code_digest() -> str:
    """A hash of the code on :func:`code_path`: its syntax trees without docstrings, so
    comments, formatting and documentation do not count."""
    import ast

    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    for relative in code_path():
        tree = ast.parse((package / relative).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (
                isinstance(body, list)
                and body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                body[:] = body[1:] or [ast.Pass()]  # in place: the node's own list
        digest.update(relative.encode() + b"\0" + ast.dump(tree).encode() + b"\0")
    return digest.hexdigest()[:16]


@functools.cache
def source_digest() -> str:
    """A hash of the bytes of every Python source file of the installed package (``nrnn``
    and the packages plugged into it through entry points: ``nrnn.verification`` and the
    like, a user's plugins), computed once per process. A worker refuses a job sent by a
    driver whose digest differs: the nodes of a cluster must run the driver's code.
    Stricter than :func:`code_digest` (a comment counts), and fast enough for every worker
    process."""
    digest = hashlib.sha256()
    plugged = _plugged_in()
    for package in ("nrnn", *plugins.packages()):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            base = Path(location)
            for path in sorted(base.rglob("*.py")):
                relative = path.relative_to(base).as_posix()
                if package == "nrnn" and relative.startswith(plugged):
                    continue
                digest.update(f"{package}/{relative}".encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


hash_content = content_hash
"""A short stable hash of JSON-serialisable ``content`` (``nrnn.hashing.content_hash``)."""


class RunStore:
    """Trained runs under ``root``, one directory per configuration (see the module doc)."""

    IDENTITY_FILE = ".nrnn-store.json"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(os.path.abspath(root))  # workers elsewhere get the driver's path

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def key(self, config: RunConfig) -> str:
        return run_key(config)

    def run_dir(self, config: RunConfig) -> Path:
        return run_directory(config, self.root)

    def identity(self) -> str:
        """The store's id, from its identity file (created now if absent, so call it on the
        driver); a worker compares it with :meth:`check_visible`."""
        path = self.root / self.IDENTITY_FILE
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            claim = self.root / f".nrnn-store.{uuid.uuid4().hex}{TEMPORARY_SUFFIX}"
            write_json_atomic(claim, {"id": uuid.uuid4().hex, "created_on": socket.gethostname()})
            try:
                os.link(claim, path)  # atomic: the first driver's id wins
            except FileExistsError:
                pass
            except OSError:  # no hard links on this file system
                if not path.exists():
                    os.replace(claim, path)
            finally:
                claim.unlink(missing_ok=True)
        return self._read_identity(path)

    def check_visible(self, expected: str) -> None:
        """Raise :class:`StoreNotVisible` unless this process sees the store whose id is
        ``expected`` (what the driver's :meth:`identity` returned)."""
        path = self.root / self.IDENTITY_FILE
        host = socket.gethostname()
        advice = (
            "put --store on a file system that every node mounts at the same path (the "
            "store's path is resolved on the driver)"
        )
        if not self.root.is_dir():
            raise StoreNotVisible(
                f"the store {self.root} does not exist on node {host}, where a run was sent: "
                + advice
            )
        try:
            found = self._read_identity(path)
        except (OSError, ValueError):
            found = None
        if found != expected:
            raise StoreNotVisible(
                f"node {host} sees another directory at the store's path {self.root} (its "
                f"{self.IDENTITY_FILE} is {'absent' if found is None else 'different'}): " + advice
            )

    @staticmethod
    def _read_identity(path: Path) -> str:
        content = json.loads(path.read_text())
        if not isinstance(content, dict) or not isinstance(content.get("id"), str):
            raise ValueError(f"{path} is not a store identity file")
        return content["id"]

    def finished_epochs(self, config: RunConfig) -> int:
        """Epochs the run's checkpoint holds and its metrics cover (0 without a checkpoint,
        or when the run is damaged: the harness then sets it aside and trains it again)."""
        from ..train import CheckpointError, verified_epochs

        try:
            return verified_epochs(self.run_dir(config))
        except CheckpointError:
            return 0

    def is_finished(self, config: RunConfig) -> bool:
        """Whether the run holds its last epoch or was stopped by its stopping rule (False
        with a damaged checkpoint: training it again reports the damage)."""
        from ..train import CheckpointError, is_complete

        try:
            return is_complete(self.run_dir(config), config)
        except CheckpointError:
            return False

    def progress(self, config: RunConfig) -> tuple[int, bool]:
        """(finished epochs, whether the run is finished) of ``config``'s run, or of the
        shorter run it will continue from (:meth:`shorter_run`) while it has not begun."""
        from ..train import CheckpointError, verified_progress

        run_dir = self.run_dir(config)
        if not (run_dir / "checkpoint.pt").exists():
            run_dir = self.shorter_run(config) or run_dir
        try:
            return verified_progress(run_dir, config)
        except CheckpointError:
            return 0, False

    def shorter_run(self, config: RunConfig) -> Path | None:
        """The directory of the same run with fewer epochs, if the store holds one: a run of
        this code version whose config differs from ``config`` in ``train.epochs`` alone
        (the same :meth:`RunConfig.identity_hash`), holding the most verified epochs; None
        if there is none or ``config``'s own run has begun.

        Training such a run on to ``config.train.epochs`` gives the run ``config`` describes:
        randomness is re-seeded per epoch, the learning-rate schedule and the stopping rule
        read the epoch number and the history, never the cap (``nrnn.train``)."""
        from ..config import from_dict
        from ..train import CheckpointError, verified_epochs

        own = self.run_dir(config)
        if (own / "checkpoint.pt").exists():
            return None
        identity, best, most = config.identity_hash(), None, 0
        for run_dir in sorted(own.parent.glob("*/config.json")):
            run_dir = run_dir.parent
            try:
                other = from_dict(json.loads((run_dir / "config.json").read_text()))
                if (
                    run_dir.name != self.key(other)  # another code version
                    or other.identity_hash() != identity
                    or other.train.epochs >= config.train.epochs
                ):
                    continue
                epochs = verified_epochs(run_dir)
            except (OSError, ValueError, TypeError, CheckpointError):
                continue  # unreadable or damaged: never a starting point
            if epochs > most:
                best, most = run_dir, epochs
        return best

    def continue_from_shorter(self, config: RunConfig) -> str | None:
        """Start ``config``'s run from :meth:`shorter_run`: copy its checkpoint, then its
        metrics and events (each atomically; metrics may then cover one epoch more than the
        checkpoint, which resuming handles), so that training resumes there. Call it under
        the run's lease. A note for the user, or None when there is nothing to continue."""
        source = self.shorter_run(config)
        if source is None:
            return None
        target = self.run_dir(config)
        target.mkdir(parents=True, exist_ok=True)
        for name in ("checkpoint.pt", "metrics.jsonl", "events.jsonl"):
            if (source / name).exists():
                write_bytes_atomic(target / name, (source / name).read_bytes())
        from ..train import verified_epochs

        return (
            f"continued from {source.name} ({verified_epochs(target)} epochs; the same run "
            "with fewer train.epochs)"
        )

    def task_path(self, config: RunConfig, name: str, key: str) -> Path:
        return self.run_dir(config) / f"task-{name}-{key}.json"

    def read_task(self, config: RunConfig, name: str, key: str) -> dict | None:
        """A cached task result, or None (absent or unreadable)."""
        path = self.task_path(config, name, key)
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def write_task(self, config: RunConfig, name: str, key: str, result: dict) -> Path:
        return write_json_atomic(self.task_path(config, name, key), result, indent=1)

    def add_labels(self, config: RunConfig, labels: list[str] | tuple[str, ...]) -> None:
        """Record that experiments refer to this run as ``labels`` (for people browsing the
        store and ``nrnn runs list``; never read by the code). Call it under the run's lease
        (a read-modify-write)."""
        path = self.run_dir(config) / "labels.json"
        try:
            known = json.loads(path.read_text())
        except (OSError, ValueError):
            known = []
        if not set(labels) <= set(known):
            write_json_atomic(path, sorted({*known, *labels}))


class StoreNotVisible(RuntimeError):
    """A worker does not see the driver's store at the path it was given."""
