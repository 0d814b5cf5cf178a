"""Stopping a command cleanly on Ctrl-C (SIGINT) or SIGTERM.

:func:`handle_termination` turns SIGTERM into :class:`Interrupted` in the main thread, the
way Python already turns SIGINT into ``KeyboardInterrupt``, so that one ``except`` clause
cleans up after both: queued work is cancelled, worker processes are ended, and the
command prints one line saying what was kept. The exit code is 128 + the signal number
(130 for SIGINT, 143 for SIGTERM), as a shell reports a process killed by that signal.

Worker processes call :func:`detach_worker` first: they ignore SIGINT (the terminal sends it
to the whole process group; the parent decides what happens to them) and, on Linux, ask the
kernel to send them SIGTERM when their parent dies, so that no worker outlives a driver
that was killed outright.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator


class Interrupted(BaseException):
    """The command was stopped by a signal; ``message`` says what was kept.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception`` clauses
    around a single run never swallow it.
    """

    def __init__(self, signal_number: int, message: str = "") -> None:
        super().__init__(message or signal.Signals(signal_number).name)
        self.signal_number = signal_number
        self.message = message

    @property
    def exit_code(self) -> int:
        return 128 + self.signal_number

    def with_message(self, message: str) -> Interrupted:
        """The same interruption, described by ``message``."""
        return Interrupted(self.signal_number, message)


def as_interrupted(error: BaseException) -> Interrupted:
    """``KeyboardInterrupt`` or :class:`Interrupted` as :class:`Interrupted`."""
    if isinstance(error, Interrupted):
        return error
    return Interrupted(signal.SIGINT)


def _raise_interrupted(signal_number: int, frame: object) -> None:
    raise Interrupted(signal_number)


@contextlib.contextmanager
def handle_termination() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Interrupted` in the main thread."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class DeferredSignals:
    """Within the block, SIGINT and SIGTERM are recorded instead of raising, so that they
    never interrupt a call into a C extension that cannot take an exception (Ray's waits);
    :meth:`check`, called between such calls, raises :class:`Interrupted` for the first
    one. Outside the main thread it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, signal._HANDLER] = {}

    def _record(self, signal_number: int, frame: object) -> None:
        self.received.append(signal_number)

    def install(self) -> None:
        """(Re)install the recording handlers, e.g. after a library replaced them; a signal
        the process ignores (a worker's SIGINT) stays ignored."""
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                if self._previous.get(number) is not signal.SIG_IGN:
                    signal.signal(number, self._record)

    def check(self) -> None:
        if self.received:
            raise Interrupted(self.received[0])

    def __enter__(self) -> DeferredSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {number: signal.getsignal(number) for number in self.SIGNALS}
            self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def detach_worker() -> None:
    """Prepare a worker process: ignore SIGINT, die with the parent (Linux)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        except (OSError, AttributeError):  # no prctl: rely on the parent's cleanup
            pass
