"""The registry of cells: every cell a config, the catalogue and the verification can name.

A :class:`CellKind` ties a name (``[model.cell] kind`` of a run config) to the torch class,
its options (a frozen :class:`nrnn.options.Options` dataclass whose fields are the class's
keyword arguments, with the same defaults) and the variants the catalogue of reference
problems builds (``nrnn.catalogue.CELLS``: the generic tests and the verification run
every one). :func:`register_cell` adds one; the built-in cells register themselves in
their modules, a cell of your own in yours::

    register_cell("my_cell", MyCell, MyCellOptions)

A cell with generated formulas has a SymPy spec of the same name in the derivations
(``nrnn derive`` builds every spec registered there).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..options import Options
from ..registry import Registry
from .base import Cell

__all__ = ["CELLS", "CellKind", "register_cell"]


@dataclass(frozen=True)
class CellKind:
    """One registered cell.

    Attributes:
        name: the cell's name in configs (``[model.cell] kind``) and in the catalogue.
        cell_type: the :class:`nrnn.cells.Cell` subclass, called as
            ``cell_type(hidden_dim, **options)``.
        options: its options dataclass (a frozen :class:`nrnn.options.Options`).
        variants: the catalogue's models of this cell, by name: option values that differ
            from the defaults (default: the cell at its defaults, under ``name``).
        legacy_keys: option -> the key of the flat ``[model]`` table of configs written
            before cells were tagged unions (built-in cells only; ``nrnn.canonical``).
    """

    name: str
    cell_type: type[Cell[Any]]
    options: type[Options]
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    legacy_keys: Mapping[str, str] = field(default_factory=dict)

    def build(self, hidden_dim: int, options: Options | None = None) -> Cell[Any]:
        """The cell of size ``hidden_dim`` with ``options`` (default: the defaults);
        weights from torch's RNG."""
        chosen = self.options() if options is None else options
        if type(chosen) is not self.options:
            raise TypeError(
                f"the {self.name} cell takes {self.options.__name__}, got {type(chosen).__name__}"
            )
        return self.cell_type(hidden_dim, **chosen.as_dict())

    def catalogue(self) -> dict[str, Callable[[int], Cell[Any]]]:
        """The catalogue's variants: name -> (hidden size d -> a cell)."""
        variants = self.variants or {self.name: {}}
        return {
            variant: _builder(self, self.options(**values)) for variant, values in variants.items()
        }


def _builder(kind: CellKind, options: Options) -> Callable[[int], Cell[Any]]:
    return lambda hidden: kind.build(hidden, options)


CELLS: Registry[CellKind] = Registry("cell")
"""Every registered cell by name, built-in ones first (``lipschitz``, ``cornn``, ``gru``)."""


def register_cell(
    name: str,
    cell_type: type[Cell[Any]],
    options: type[Options],
    *,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    legacy_keys: Mapping[str, str] | None = None,
) -> CellKind:
    """Register a cell (see :class:`CellKind`) and return its entry.

    Raises:
        TypeError: ``cell_type`` is not a Cell subclass, or ``options`` not an Options
            dataclass whose fields are ``cell_type``'s keyword arguments with the same
            defaults.
    """
    if not (isinstance(cell_type, type) and issubclass(cell_type, Cell)):
        raise TypeError(f"cell_type must be an nrnn.cells.Cell subclass, got {cell_type!r}")
    if not (
        isinstance(options, type)
        and issubclass(options, Options)
        and dataclasses.is_dataclass(options)
    ):
        raise TypeError(f"options must be an nrnn.options.Options dataclass, got {options!r}")
    _check_options_match(cell_type, options)
    kind = CellKind(name, cell_type, options, dict(variants or {}), dict(legacy_keys or {}))
    for values in kind.variants.values():
        options(**values)  # a wrong variant fails here, not in a test run
    return CELLS.register(kind)


def _check_options_match(cell_type: type[Cell[Any]], options: type[Options]) -> None:
    parameters = inspect.signature(cell_type.__init__).parameters
    keywords = {
        name: parameter.default
        for name, parameter in parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    fields = {entry.name: entry.default for entry in dataclasses.fields(options)}
    if fields != keywords:
        raise TypeError(
            f"{options.__name__} must have the keyword arguments of {cell_type.__name__} with "
            f"their defaults: {keywords}, got {fields}"
        )
