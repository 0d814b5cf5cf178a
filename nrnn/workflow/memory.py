"""Keep freed memory in the process for reuse (glibc's malloc), for training workers.

A training step allocates and frees the same tensors over and over. By default glibc
returns freed memory to the operating system (large blocks are unmapped, the top of the
heap is trimmed), so the next step's tensors fault their pages in again; on small CPU
machines those page faults cost as much as the arithmetic of a step. :func:`keep_freed_memory`
raises glibc's thresholds so that blocks up to 32 MiB come from the heap and freed memory
stays there, to be reused without faults. It changes where tensors live, never what is
computed: results are bitwise the same. The harness calls it in every training job
(``nrnn.harness.execute``); elsewhere (another C library) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["keep_freed_memory"]

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's largest on 64-bit (mallopt refuses more)
_TRIM_THRESHOLD = 2**31 - 1  # never trim the heap's top
_TOP_PAD = 64 * 1024 * 1024  # grow the heap 64 MiB at a time


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's malloc as the module docstring says (once per process); whether it
    applied (False without glibc)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = (
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX),
        (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
        (_M_TOP_PAD, _TOP_PAD),
    )
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
