"""What a store of trained runs holds, and removing what is of no further use: ``nrnn runs
list`` and ``nrnn runs prune``.

Each run directory is in one state:

==============  =========================================================================
``finished``    its checkpoint holds every epoch (reused by any request for its config)
``partial``     part-way: the next request for its config resumes it
``empty``       started, no epoch finished yet
``damaged``     a checkpoint that fails its digest or does not load, metrics that do not
                parse, no readable config: the harness sets it aside and trains it again
``other code``  stored by another ``nrnn.train.keys.CODE_VERSION`` (or config format): its key
                is no longer what its config hashes to, so it is never reused
``in use``      a live process holds its lease (``nrnn.lease``); never removed
==============  =========================================================================

``prune`` removes damaged and other-code runs (and, with ``partial``, unfinished ones), the
temporary files left by writers killed outright, the ``*.damaged`` files of runs set aside,
and leases of dead processes of this host. It takes each run's lease before removing it,
so it never removes a run a driver is working on.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..files import temporaries
from .lease import Holder, Lease, read_holder
from .store import RunStore

STATES = ("finished", "partial", "empty", "damaged", "other code", "in use")
ROOT_TEMPORARY_AGE = 3600.0
"""Temporaries outside run directories (no lease covers them) older than this are stale."""


@dataclass
class StoredRun:
    """One run directory of a store and its state (see the module documentation)."""

    path: Path
    state: str
    epochs: int = 0
    total: int = 0
    labels: tuple[str, ...] = ()
    detail: str = ""
    holder: Holder | None = None
    temporaries: int = 0
    size: int = 0

    @property
    def dataset(self) -> str:
        return self.path.parent.name

    @property
    def key(self) -> str:
        return self.path.name


def scan(store: RunStore) -> list[StoredRun]:
    """Every run directory of ``store`` (``<root>/<dataset>/<key>``), sorted."""
    if not store.root.is_dir():
        return []
    return [
        inspect(store, run_dir)
        for dataset in sorted(store.root.iterdir())
        if dataset.is_dir() and not dataset.name.startswith(".")
        for run_dir in sorted(dataset.iterdir())
        if run_dir.is_dir()
    ]


def inspect(store: RunStore, run_dir: Path) -> StoredRun:
    """The state of one run directory."""
    from ..config import from_dict
    from ..train import CheckpointError, verified_epochs

    size = sum(path.stat().st_size for path in run_dir.rglob("*") if path.is_file())
    found = StoredRun(run_dir, "damaged", temporaries=len(temporaries(run_dir)), size=size)
    try:
        found.labels = tuple(json.loads((run_dir / "labels.json").read_text()))
    except (OSError, ValueError, TypeError):
        pass
    holder = read_holder(run_dir)
    if holder is not None and not holder.dead_here():
        found.state, found.holder = "in use", holder
        found.detail = f"lease held by {holder.describe()}"
        return found
    try:
        config = from_dict(json.loads((run_dir / "config.json").read_text()))
    except (OSError, ValueError, TypeError, KeyError) as error:
        found.detail = f"no readable config.json ({type(error).__name__})"
        return found
    found.total = config.train.epochs
    if store.key(config) != run_dir.name or config.data.name != run_dir.parent.name:
        found.state = "other code"
        found.detail = "stored by another code version or config format: never reused"
        return found
    try:
        found.epochs = verified_epochs(run_dir)
    except CheckpointError as error:
        found.detail = getattr(error, "problem", str(error))
        return found
    if found.epochs >= found.total:
        found.state = "finished"
    else:
        found.state = "partial" if found.epochs else "empty"
    return found


def format_runs(runs: list[StoredRun], store: RunStore) -> str:
    """A table of runs and a summary line."""
    if not runs:
        return f"no runs in {store.root}"
    width = max(len(run.dataset) for run in runs)
    lines = [f"{'dataset'.ljust(width)}  {'key':16s}  {'state':10s}  {'epochs':>7s}  {'size':>8s}"]
    lines[0] += "  labels / detail"
    for run in runs:
        epochs = f"{run.epochs}/{run.total}" if run.total else "-"
        note = ", ".join(run.labels)
        if run.state not in ("finished", "partial", "empty") or not note:
            note = "; ".join(filter(None, [note, run.detail]))
        if run.temporaries:
            note += f" ({run.temporaries} temporary files)"
        lines.append(
            f"{run.dataset.ljust(width)}  {run.key:16s}  {run.state:10s}  {epochs:>7s}  "
            f"{_size(run.size):>8s}  {note}"
        )
    counts = {state: sum(run.state == state for run in runs) for state in STATES}
    summary = ", ".join(f"{count} {state}" for state, count in counts.items() if count)
    total = _size(sum(run.size for run in runs))
    lines.append(f"{len(runs)} runs in {store.root} ({summary}), {total}")
    return "\n".join(lines)


def prune(store: RunStore, *, partial: bool = False, dry_run: bool = False) -> list[str]:
    """Remove what is of no further use (see the module documentation); return one line per
    removal (what would be removed, with ``dry_run``)."""
    removable = {"damaged", "other code"} | ({"partial", "empty"} if partial else set())
    done = []
    verb = "would remove" if dry_run else "removed"
    for run in scan(store):
        if run.state == "in use":
            continue
        lease = Lease(run.path)
        if not dry_run and lease.try_acquire() is not None:
            continue  # taken meanwhile
        try:
            if run.state in removable:
                if not dry_run:
                    shutil.rmtree(run.path)
                done.append(f"{verb} {run.path} ({run.state}: {run.detail or run.state})")
                continue
            leftovers = temporaries(run.path) + sorted(run.path.glob("*.damaged"))
            for path in leftovers:
                if not dry_run:
                    path.unlink(missing_ok=True)
                done.append(f"{verb} {path}")
        finally:
            if not dry_run:
                lease.release()
    now = time.time()
    for directory in [store.root, *_dataset_dirs(store)]:
        for path in temporaries(directory):
            if now - path.stat().st_mtime > ROOT_TEMPORARY_AGE:
                if not dry_run:
                    path.unlink(missing_ok=True)
                done.append(f"{verb} {path}")
    return done


def _dataset_dirs(store: RunStore) -> list[Path]:
    if not store.root.is_dir():
        return []
    return [p for p in store.root.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


__all__ = ["STATES", "StoredRun", "format_runs", "inspect", "prune", "scan"]
