"""Leases: at most one process works on a run directory at a time, across processes, drivers
and the nodes of a cluster that share the store's file system.

A lease is the file ``lease.json`` in the run directory, created with ``O_CREAT | O_EXCL``
(atomic on local file systems, NFS v3 and later, Lustre, GPFS, BeeGFS), holding the holder's
identity (host, process id and start time, pid namespace) and a heartbeat counter that a
thread of the holder rewrites and flushes to the disk every :data:`HEARTBEAT_SECONDS`.

Why not ``fcntl``/``flock`` locks: on a cluster's shared file system they are often not
shared at all (Lustre mounted with ``localflock``, NFS without a lock daemon) and then fail
silently, granting the lock on every node. A lease file needs only atomic exclusive create
and visible writes.

A waiting process decides that a lease is abandoned

- at once, when the holder ran on this host in this pid namespace and its process is gone
  (or the pid now belongs to a process started at another time): a worker killed with
  ``kill -9`` on this machine;
- otherwise, when the lease file has not changed for :data:`STALE_SECONDS` by the waiter's
  own clock (no comparison of clocks between nodes): a holder on another node that died,
  or whose node died.

Breaking an abandoned lease renames it to a name of the breaker's own (atomic: one breaker
wins) and checks that what it renamed is the lease it judged abandoned; a fresh lease taken
by mistake is put back. A holder whose lease file was replaced notices at its next heartbeat
and :meth:`Lease.check` raises :class:`LeaseLost` (training calls it before it writes anything
of an epoch: ``nrnn.train.train``'s ``guard``).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

LEASE_FILE = "lease.json"
HEARTBEAT_SECONDS = 5.0
"""How often the holder rewrites its lease file."""
STALE_SECONDS = 60.0
"""A lease file unchanged for this long (observed by the waiter) belongs to a dead holder.
Well above :data:`HEARTBEAT_SECONDS` and the attribute caching of NFS clients (acregmax)."""


class LeaseLost(RuntimeError):
    """Another process broke this process's lease (it judged the holder dead)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lease, as its file says (fields absent from a damaged file are empty)."""

    host: str = ""
    pid: int = 0
    started: str = ""
    namespace: str = ""
    token: str = ""
    beat: int = 0
    since: float = 0.0

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since)) if self.since else ""
        return f"process {self.pid} on host {self.host or '?'}" + (f" since {when}" if when else "")

    def dead_here(self) -> bool:
        """True when the holder ran on this host, in this pid namespace, and is gone."""
        here = _identity()
        if not self.pid or (self.host, self.namespace) != (here["host"], here["namespace"]):
            return False
        started = _process_start(self.pid)
        return started is None or bool(self.started and started != self.started)


def read_holder(directory: str | os.PathLike) -> Holder | None:
    """The holder of the lease on ``directory``, or None when it is not leased."""
    try:
        content = (Path(directory) / LEASE_FILE).read_bytes()
    except FileNotFoundError:
        return None
    return _parse(content)


class Lease:
    """The lease on one run directory (see the module documentation).

    Use as ``with Lease(run_dir).acquire(): ...`` or call :meth:`try_acquire` and
    :meth:`release`. ``heartbeat`` and ``stale_after`` are in seconds.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
        stale_after: float = STALE_SECONDS,
    ) -> None:
        if not 0 < heartbeat < stale_after:
            raise ValueError(
                f"need 0 < heartbeat < stale_after, got heartbeat={heartbeat}, "
                f"stale_after={stale_after}"
            )
        self.directory = Path(directory)
        self.path = self.directory / LEASE_FILE
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self.token = uuid.uuid4().hex
        self._descriptor: int | None = None
        self._beat = 0
        self._since = 0.0
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observed: tuple[bytes, float] | None = None

    # ------------------------------------------------------------------ acquiring
    def try_acquire(self) -> Holder | None:
        """Take the lease if it is free or abandoned; otherwise return its live holder."""
        if self._descriptor is not None:
            raise RuntimeError(f"the lease on {self.directory} is already held here")
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # free -> create; abandoned -> break, then create
            try:
                descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder, content = self._current()
                if content is None:
                    continue  # released meanwhile
                if not self._abandoned(holder, content) or not self._break(content):
                    return holder
                continue
            self._descriptor = descriptor
            self._since = time.time()
            self._stop.clear()
            self._lost.clear()
            self._write()
            self._thread = threading.Thread(target=self._beat_loop, daemon=True)
            self._thread.start()
            return None
        holder, _ = self._current()
        return holder

    def acquire(self, poll: float = 1.0, on_wait: Callable[[Holder], None] | None = None) -> Lease:
        """Wait until the lease is ours (``on_wait(holder)`` is called once when it is busy)."""
        told = False
        while (holder := self.try_acquire()) is not None:
            if on_wait is not None and not told:
                on_wait(holder)
                told = True
            time.sleep(poll)
        return self

    def check(self) -> None:
        """Raise :class:`LeaseLost` if another process broke this lease."""
        if self._lost.is_set():
            raise LeaseLost(
                f"the lease {self.path} was taken over by another process, which judged this "
                f"one dead (no heartbeat seen for {self.stale_after:.0f} s); stopping here"
            )

    def release(self) -> None:
        """Stop the heartbeat and remove the lease file (if it is still ours)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._descriptor is None:
            return
        try:
            if self._owns_path():
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self._descriptor)
            self._descriptor = None

    def __enter__(self) -> Lease:
        if self._descriptor is None:
            self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    # ------------------------------------------------------------------- internals
    def _current(self) -> tuple[Holder, bytes | None]:
        try:
            content = self.path.read_bytes()
        except FileNotFoundError:
            return Holder(), None
        return _parse(content), content

    def _abandoned(self, holder: Holder, content: bytes) -> bool:
        if holder.dead_here():
            return True
        now = time.monotonic()
        if self._observed is None or self._observed[0] != content:
            self._observed = (content, now)  # a change is a heartbeat
            return False
        return now - self._observed[1] >= self.stale_after

    def _break(self, judged: bytes) -> bool:
        """Remove the abandoned lease whose content is ``judged``; False if it changed."""
        aside = self.directory / f".lease-broken-{self.token}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True  # someone else removed it: try to create
        try:
            if aside.read_bytes() == judged:
                return True
            try:  # a fresh lease taken by mistake: put it back unless replaced meanwhile
                os.link(aside, self.path)
            except FileExistsError:
                pass
            return False
        finally:
            aside.unlink(missing_ok=True)
            self._observed = None

    def _write(self) -> None:
        assert self._descriptor is not None
        self._beat += 1
        content = json.dumps(
            {**_identity(), "token": self.token, "beat": self._beat, "since": self._since}
        ).encode()
        os.pwrite(self._descriptor, content, 0)
        os.ftruncate(self._descriptor, len(content))
        os.fsync(self._descriptor)  # visible to other nodes' clients (NFS writes back late)

    def _owns_path(self) -> bool:
        assert self._descriptor is not None
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(self._descriptor)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                if not self._owns_path():
                    self._lost.set()
                    return
                self._write()
            except OSError:  # a transient error of the file system: try again next beat
                continue


def _identity() -> dict[str, object]:
    pid = os.getpid()
    try:
        namespace = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        namespace = ""
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "started": _process_start(pid) or "",
        "namespace": namespace,
    }


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (Linux: clock ticks since boot, from /proc), "" where
    unknown, or None when there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19] if fields[0] != "Z" else None
    except FileNotFoundError:
        return None
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return ""


def _parse(content: bytes) -> Holder:
    try:
        fields = json.loads(content)
        return Holder(
            host=str(fields.get("host", "")),
            pid=int(fields.get("pid", 0)),
            started=str(fields.get("started", "")),
            namespace=str(fields.get("namespace", "")),
            token=str(fields.get("token", "")),
            beat=int(fields.get("beat", 0)),
            since=float(fields.get("since", 0.0)),
        )
    except (ValueError, TypeError, AttributeError):  # being written, or damaged
        return Holder()
