"""Options of a plugin (a cell's constructor arguments) as a frozen dataclass whose fields
declare their checks.

    @dataclass(frozen=True)
    class MyOptions(Options):
        gamma: float = options.real(2.7, minimum=0)
        activation: str = options.choice("tanh", ACTIVATIONS)

An :class:`Options` instance checks every field when it is made (``nrnn.contract``: a wrong
type raises ``TypeError``, a value out of range ``ValueError``, naming the field), so an
options value in a config is valid by construction. A field without a declared check is
taken as it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from . import contract

__all__ = ["Options", "choice", "flag", "integer", "real"]

CHECK = "nrnn.check"
"""The metadata key of a field's check: ``check(name, value) -> value``."""


def real(
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
) -> Any:
    """A finite real field (``contract.real``; ints are taken as floats)."""

    def check(name: str, value: Any) -> float:
        return contract.real(name, value, minimum=minimum, maximum=maximum, strict=strict)

    return dataclasses.field(default=default, metadata={CHECK: check})


def integer(default: int, *, minimum: int = 0) -> Any:
    """An integer field (``contract.integer``)."""
    return dataclasses.field(
        default=default,
        metadata={CHECK: lambda name, value: contract.integer(name, value, minimum=minimum)},
    )


def choice(default: str, choices: Sequence[str] | Callable[[], Sequence[str]]) -> Any:
    """A field whose value is one of ``choices`` (a sequence, or a function giving one)."""

    def check(name: str, value: Any) -> Any:
        return contract.choice(name, value, choices() if callable(choices) else choices)

    return dataclasses.field(default=default, metadata={CHECK: check})


def flag(default: bool) -> Any:
    """A boolean field."""

    def check(name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be true or false, got {value!r}")
        return value

    return dataclasses.field(default=default, metadata={CHECK: check})


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of options dataclasses (frozen; subclasses add the fields): every field's
    declared check runs when an instance is made."""

    def __post_init__(self) -> None:
        for entry in dataclasses.fields(self):
            check = entry.metadata.get(CHECK)
            if check is not None:
                object.__setattr__(self, entry.name, check(entry.name, getattr(self, entry.name)))

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, in declaration order."""
        return {entry.name: getattr(self, entry.name) for entry in dataclasses.fields(self)}
