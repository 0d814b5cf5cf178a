"""Named plugins: one registry per pluggable concept (cells, noise forms, objectives,
regularizer methods, backends, experiments).

A :class:`Registry` holds entries by name, in the order they were registered; every list
that names the entries of a concept (the catalogue of reference problems, the verification
cases, config validation, command-line choices) reads the registry, so registering an
entry is all it takes to add one. Lookups of an unknown name raise a ``ValueError`` that
names the concept and the known names.

A package installed beside ``nrnn`` registers its entries when it is imported; the
command line and the harness's workers import such packages through entry points
(``nrnn.workflow.plugins``), so ``nrnn`` never names them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
        key: the name under which an entry is registered (default its ``name``).
    """

    def __init__(self, concept: str, *, key: Callable[[T], str] | None = None) -> None:
        self.concept = concept
        self._entries: dict[str, T] = {}
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
        if not isinstance(name, str) or name not in self._entries:
            raise ValueError(f"unknown {self.concept} {name!r}; expected one of {self.names()}")
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entries(self) -> tuple[T, ...]:
        return tuple(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.concept!r}, {list(self._entries)})"
