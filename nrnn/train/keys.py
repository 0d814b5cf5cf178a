"""Where a run lives: its key, a hash of what defines its result, and its directory in a
store of runs.

A run's key is a hash of its whole canonical configuration (``nrnn.canonical``, epochs
included) and of :data:`CODE_VERSION`, so a run is reused only by a request that would
compute the same thing with the same code. ``nrnn train``, :func:`nrnn.train.train` without
a directory and every experiment (``nrnn.workflow.store.RunStore``) put a run at
``<store>/<dataset>/<key>``, so a model trained by one of them is found by the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..hashing import content_hash

CODE_VERSION = 4
"""Version of the training and evaluation code. Bump it whenever a change can alter the
numbers a run produces (training, the model, the noise, the data, the evaluation tasks):
runs stored under an older version are then never reused. ``nrnn.workflow.store`` pins a
digest of the source files of that code path so that such a change cannot go unnoticed."""

DEFAULT_STORE = Path(".cache") / "runs"
"""The store of trained runs every command uses unless told otherwise."""


def key_content(config: RunConfig) -> dict[str, Any]:
    """What a run's key is a hash of: the full configuration and the code version.

    ``train.threads`` is part of it because results depend on it at round-off level (the
    harness trains every run on one thread, so they do not depend on ``--jobs``);
    ``train.device`` enters as written, so ``"auto"`` runs may come from CPU or GPU.
    """
    return {"config": config.canonical_dict(), "code_version": CODE_VERSION}


def run_key(config: RunConfig) -> str:
    """The run's key: 16 hex digits of :func:`key_content`."""
    return content_hash(key_content(config))


def run_directory(config: RunConfig, store: str | Path = DEFAULT_STORE) -> Path:
    """``<store>/<dataset>/<key>``: the run's directory in the store ``store``."""
    return Path(store) / config.data.name / run_key(config)
