"""The store of trained runs: one directory per run, keyed by what defines its result.

A run's key is a hash of its whole configuration (epochs included) and of
:data:`CODE_VERSION`, so a run is reused only by a request that would compute the same
thing with the same code. Every command that trains (``nrnn figures``, ``nrnn verify
trained``, any sweep) asks the same store, so a model trained for one figure is reused by
another that needs the same configuration. Layout::

    <root>/<dataset>/<key>/            the run directory of ``nrnn.train.train``
        config.json, checkpoint.pt, metrics.jsonl, events.jsonl, final.json
        labels.json                    the names experiments gave this run
        task-<name>-<task key>.json    results of work done on the trained model

A run is finished when its checkpoint holds its last epoch or its stopping rule stopped
it (``train.stop_window``); an unfinished run is resumed
from its checkpoint. Every file is written atomically (write, then rename), so an
interrupted run never leaves a half-written file and the store is always consistent.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .config import RunConfig
from .files import write_json_atomic

CODE_VERSION = 4
"""Version of the training and evaluation code. Bump it whenever a change can alter the
numbers a run produces (training, the model, the noise, the data, the evaluation tasks):
runs stored under an older version are then never reused. ``tests/test_store.py`` pins a
digest of the source files of that code path so that such a change cannot go unnoticed."""

NOT_CODE_PATH = (
    "__init__.py",
    "__main__.py",
    "backends.py",
    "cli.py",
    "cost.py",
    "exitcodes.py",
    "experiments.py",
    "files.py",
    "graph_safety.py",
    "interrupt.py",
    "memory.py",
    "store.py",
)
"""Modules of ``nrnn`` that cannot change the numbers of a run (commands, scheduling,
bookkeeping); every other module of the runtime package is on the code path. (The
subpackages mapped from the repository's other folders are not: the tasks they define
carry versions in their own keys.)"""
MAPPED_SUBPACKAGES = ("derivations/", "verification/", "figures/", "benchmarks/")


def code_path() -> list[str]:
    """The package's source files (relative paths) whose changes can alter stored results:
    every module of ``nrnn`` and its subpackages except :data:`NOT_CODE_PATH`."""
    package = Path(__file__).resolve().parent
    return sorted(
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if path.relative_to(package).as_posix() not in NOT_CODE_PATH
        and not path.relative_to(package).as_posix().startswith(MAPPED_SUBPACKAGES)
    )


CODE_DIGEST = "d943ad9f1ebe3413"
""":func:`code_digest` of the code path when :data:`CODE_VERSION` was last reviewed. A
test fails when the code changes: whoever changed it decides whether results can change
(then bumps CODE_VERSION) and records the new digest here."""


def code_digest() -> str:
    """A hash of the code on :func:`code_path`: its syntax trees without docstrings, so
    comments, formatting and documentation do not count."""
    import ast

    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
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


def key_content(config: RunConfig) -> dict[str, Any]:
    """What a run's key is a hash of: the full configuration and the code version.

    ``train.threads`` is part of it because results depend on it at round-off level (the
    harness trains every run on one thread, so they do not depend on ``--jobs``);
    ``train.device`` enters as written, so ``"auto"`` runs may come from CPU or GPU.
    """
    return {"config": config.canonical_dict(), "code_version": CODE_VERSION}


def hash_content(content: Any, length: int = 16) -> str:
    """A short stable hash of JSON-serialisable ``content``."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


class RunStore:
    """Trained runs under ``root``, one directory per configuration (see the module doc)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def key(self, config: RunConfig) -> str:
        return hash_content(key_content(config))

    def run_dir(self, config: RunConfig) -> Path:
        return self.root / config.data.name / self.key(config)

    def finished_epochs(self, config: RunConfig) -> int:
        """Epochs in the run's checkpoint (0 without one or with a damaged one: training
        it again reports the damage)."""
        from .train import CheckpointError, finished_epochs

        try:
            return finished_epochs(self.run_dir(config))
        except CheckpointError:
            return 0

    def is_finished(self, config: RunConfig) -> bool:
        """Whether the run holds its last epoch or was stopped by its stopping rule (False
        with a damaged checkpoint: training it again reports the damage)."""
        from .train import CheckpointError, is_complete

        try:
            return is_complete(self.run_dir(config), config)
        except CheckpointError:
            return False

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

    def add_label(self, config: RunConfig, label: str) -> None:
        """Record that an experiment refers to this run as ``label`` (for people browsing
        the store; never read by the code)."""
        path = self.run_dir(config) / "labels.json"
        try:
            labels = json.loads(path.read_text())
        except (OSError, ValueError):
            labels = []
        if label not in labels:
            write_json_atomic(path, sorted([*labels, label]))
