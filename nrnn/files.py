"""Atomic file writes: write to a temporary file in the same directory, then rename.

A reader (or a resumed run) never sees half a file, and a failure leaves the old file in
place. Every checkpoint, cache entry, metrics file and report in the package goes through
these two functions.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)``, then move the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(name)
    try:
        os.chmod(temporary, 0o644)  # mkstemp makes the file private; results are shared
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


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
