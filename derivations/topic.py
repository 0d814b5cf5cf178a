"""What a derivation hands to the printers: functions to generate and formulas to typeset."""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

__all__ = ["Argument", "Derivation", "Formula", "GeneratedFunction"]


@dataclass(frozen=True)
class Argument:
    """One argument of a generated function.

    ``symbol`` is the SymPy symbol (``Symbol`` or ``MatrixSymbol``) it binds; ``shape`` the
    documented array shape, e.g. ``"(..., d, d)"`` or ``"float or (...)"``.
    """

    name: str
    symbol: sp.Basic
    shape: str
    description: str


@dataclass(frozen=True)
class GeneratedFunction:
    """A derived expression to be printed as a batched torch / numpy function.

    ``elementwise``: ``expr`` is a scalar expression applied entry by entry to the array
    arguments (which then all share one shape, up to broadcasting); scalar arguments listed
    in ``per_batch`` are lifted to broadcast against the last axis.

    ``layout="rows"``: columns are printed as rows (..., n) and a matrix M (unbatched,
    shared by every sample) acts on them as ``rows @ M^T``, one matrix product for the
    whole batch (the fused recurrence's code). ``outputs``: (name, expression) pairs
    returned as a dict instead of ``expr``; subexpressions they share are computed once,
    under the names ``intermediates`` gives them ((expression, name) pairs) or
    ``shared_<i>``.
    """

    name: str
    module: str
    source: str
    summary: str
    arguments: tuple[Argument, ...]
    expr: sp.Basic
    returns: str
    elementwise: bool = False
    per_batch: tuple[str, ...] = ()
    notes: str = ""
    layout: str = "columns"
    outputs: tuple[tuple[str, sp.Basic], ...] = ()
    intermediates: tuple[tuple[sp.Basic, str], ...] = ()


@dataclass(frozen=True)
class Formula:
    """A derived formula for the sheet: LaTeX display lines and when they hold."""

    title: str
    lines: tuple[str, ...]
    assumptions: str


@dataclass
class Derivation:
    """The outcome of one derivation module."""

    title: str
    source: str
    summary: str
    formulas: list[Formula] = field(default_factory=list)
    functions: list[GeneratedFunction] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    constants: dict[str, dict[str, object]] = field(default_factory=dict)
    """Module -> name -> a constant printed into the generated module (plain data, repr)."""
