"""The packages that plug into ``nrnn``, found through entry points, and loading them.

A package declares what it adds in its ``pyproject.toml``; three groups are read:

- ``nrnn.commands``: a :class:`nrnn.workflow.commands.Command` per subcommand of ``nrnn``
  (``derive``, ``verify``, ``figures``, ``bench`` come from the repository's own
  packages this way);
- ``nrnn.experiments``: a package whose import registers its experiments
  (``nrnn.workflow.experiments.register_experiments``);
- ``nrnn.plugins``: a module whose import registers cells, noise forms or objectives
  (``nrnn.cells.register_cell``, ...): loaded by the command line and by every worker of
  the harness, so a run of a plugin's cell trains anywhere.

``nrnn train --plugin MODULE`` (and the experiments' ``--plugin``) imports a module that is
not installed as an entry point; :data:`LOADED` remembers it, and the harness imports it in
its workers too. The runtime package never names the packages above it: this module finds
them.
"""

from __future__ import annotations

import functools
import importlib
from importlib import metadata
from typing import Any

__all__ = ["GROUPS", "LOADED", "import_modules", "load", "packages"]

GROUPS = ("nrnn.commands", "nrnn.experiments", "nrnn.plugins")

LOADED: list[str] = []
"""Modules imported by :func:`import_modules` in this process, in order."""


def entry_points(group: str) -> list[metadata.EntryPoint]:
    """The entry points of ``group`` (one of :data:`GROUPS`), by name."""
    return sorted(metadata.entry_points(group=group), key=lambda point: point.name)


@functools.cache
def load(group: str) -> tuple[Any, ...]:
    """Import every entry point of ``group`` once per process; their objects by name."""
    return tuple(point.load() for point in entry_points(group))


def import_modules(modules: tuple[str, ...] | list[str]) -> None:
    """Import ``modules`` (``--plugin``: their import registers what they add) and remember
    them in :data:`LOADED`.

    Raises:
        ImportError: naming the module that could not be imported.
    """
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise ImportError(f"--plugin {name}: {error}") from None
        if name not in LOADED:
            LOADED.append(name)


def packages() -> tuple[str, ...]:
    """The packages every entry point and plugin module lives in (``nrnn.verification``,
    a user's ``my_cells``, ...): what a worker must run the same code of."""
    modules = [point.module for group in GROUPS for point in entry_points(group)] + LOADED
    found = set()
    for module in modules:
        parts = module.split(".")
        found.add(".".join(parts[:2]) if parts[0] == "nrnn" and len(parts) > 1 else parts[0])
    return tuple(sorted(found))
