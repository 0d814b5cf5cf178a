"""Atomic, durable file writes: write a temporary file in the same directory, flush it to
the disk (``fsync``), rename it onto the target, and flush the directory entry.

A reader (or a resumed run) never sees half a file, a failure leaves the old file in place,
and a machine that loses power right after a write keeps either the old or the new file,
not an empty one (the rename alone does not order the data before the name on every file
system). Every checkpoint, cache entry, metrics file and report in the package goes through
:func:`write_atomic`.

A process killed outright (``kill -9``) between creating and renaming its temporary file
leaves the temporary behind. Temporary names start with ``.`` and end with
:data:`TEMPORARY_SUFFIX`; :func:`remove_temporaries` deletes them from a directory that no
one else writes (the store calls it under a run's lease, and ``nrnn runs prune`` calls it).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEMPORARY_SUFFIX = ".tmp"


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)``, flush it to the disk, then move it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX
    )
    os.close(handle)
    temporary = Path(name)
    try:
        os.chmod(temporary, 0o644)  # mkstemp makes the file private; results are shared
        write(temporary)
        _fsync_file(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return write_atomic(path, lambda temporary: temporary.write_bytes(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | os.PathLike, data: Any, indent: int = 2) -> Path:
    """Write ``data`` as JSON to ``path`` atomically; NaN and infinity are refused."""
    return write_text_atomic(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")


def prepare_directory(path: str | os.PathLike, what: str) -> Path:
    """Create the directory ``path`` (with its parents) if needed and check that a file can
    be written in it, before any work whose results would go there.

    Raises:
        ValueError: naming ``what`` (e.g. ``"--out"``) and the reason, when ``path`` is a
            file, lies under one, or cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(f"{what} {path} cannot be used as a directory: {reason}") from None
    return path


def temporaries(directory: str | os.PathLike) -> list[Path]:
    """The temporary files of :func:`write_atomic` in ``directory`` (not recursive)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        entry
        for entry in directory.iterdir()
        if entry.name.startswith(".") and entry.name.endswith(TEMPORARY_SUFFIX)
    )


def remove_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporaries left in ``directory`` by killed writers; return them. Call it
    only where no other process is writing (a temporary of a live writer would vanish)."""
    removed = []
    for path in temporaries(directory):
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            pass
    return removed


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_directory(directory: Path) -> None:
    """Flush a directory's entries (the rename); a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(descriptor)
