"""Named plugins: one registry per pluggable concept (cells, noise forms, objectives,
regularizer methods, backends, experiments).

A :class:`Registry` holds entries by name, in the order they were registered; every list
that names the entries of a concept (the catalogue of reference problems, the verification
cases, config validation, command-line choices) reads the registry, so registering an
entry is all it takes to add one. Lookups of an unknown name raise a ``ValueError`` that
names the concept and the known names.

An entry point group (``importlib.metadata``) can contribute entries: a registry made with
``entry_points="nrnn.experiments"`` loads that group the first time it is read (each entry
point names an object to register), so a package installed beside ``nrnn`` adds entries
without ``nrnn`` naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Generic, Protocol, TypeVar

__all__ = ["Named", "Registry"]


class Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    """Entries of one concept by name, in registration order.

    Args:
        concept: what an entry is, for messages ("cell", "noise form", ...).
        entry_points: an entry point group whose entries are loaded (and registered) on the
            first read, or None.
        key: the name under which an entry is registered (default its ``name``).
    """

    def __init__(
        self,
        concept: str,
        *,
        entry_points: str | None = None,
        key: Callable[[T], str] | None = None,
    ) -> None:
        self.concept = concept
        self._entries: dict[str, T] = {}
        self._group = entry_points
        self._loaded = entry_points is None
        self._key = key or (lambda entry: entry.name)

    def register(self, entry: T) -> T:
        """Add ``entry`` under its name and return it. Registering the same entry again (a
        module imported twice) is allowed; another entry under a taken name is an error."""
        name = self._key(entry)
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.concept} needs a non-empty name, got {name!r}")
        known = self._entries.get(name)
        if known is not None and known != entry:
            raise ValueError(f"a {self.concept} named {name!r} is already registered: {known!r}")
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove the entry ``name`` (for throw-away entries of tests and experiments)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The entry ``name``; a ``ValueError`` naming the known ones otherwise."""
        entries = self._read()
        if not isinstance(name, str) or name not in entries:
            raise ValueError(f"unknown {self.concept} {name!r}; expected one of {self.names()}")
        return entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._read())

    def entries(self) -> tuple[T, ...]:
        return tuple(self._read().values())

    def __contains__(self, name: object) -> bool:
        return name in self._read()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._read())

    def __repr__(self) -> str:
        return f"Registry({self.concept!r}, {list(self._entries)})"

    def _read(self) -> dict[str, T]:
        if not self._loaded:
            self._loaded = True
            assert self._group is not None
            for point in sorted(metadata.entry_points(group=self._group), key=lambda p: p.name):
                self.register(point.load())
        return self._entries
