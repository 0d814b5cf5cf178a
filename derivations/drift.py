"""How a cell's drift is written for the derivation engine.

A drift f(h, c) is a SymPy matrix expression (a column, n x 1) built from

- the state ``h`` (a ``MatrixSymbol`` n x 1) and the drive(s) c (columns),
- matrix and scalar symbols (the cell's parameters; constant matrices such as selections),
- linear maps (``MatMul``), sums and scalar multiples,
- elementwise activations: ``Activation(label, function)(argument)`` is the column
  φ(argument) with φ a smooth function of :data:`FUNCTIONS`; each use gets its own label,
  which names the values the generated code takes (``label_value``, ``label_slope`` and
  ``label_curvature`` for φ, φ' and φ'' at the argument),
- elementwise products (``HadamardProduct``) and the column of ones (``OneMatrix``).

:class:`CellSpec` bundles a drift with what the printers and the proofs need: code names of
the symbols, the sizes of an explicit instance, the values of constant matrices, and
optionally a split f = L h + N(h) with N Lipschitz for the stability bounds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixExpr

__all__ = [
    "FUNCTIONS",
    "Activation",
    "Applied",
    "CellSpec",
    "Symbol",
    "point_symbol",
]

_Z = sp.Symbol("z", real=True)

FUNCTIONS: dict[str, sp.Expr] = {
    "tanh": sp.tanh(_Z),
    "sigmoid": 1 / (1 + sp.exp(-_Z)),
    "arctan": sp.atan(_Z),
}
"""The smooth activations, as expressions in ``z``."""

ORDER_NAMES = {0: "_value", 1: "_slope", 2: "_curvature"}
ORDER_PRIMES = {0: "", 1: "'", 2: "''"}


class Applied(MatrixExpr):
    """The column (φ^(order)(aᵢ))ᵢ for an argument column a; φ is ``function`` and this use
    of it is called ``label`` (``latex`` typesets it)."""

    def __new__(cls, label, latex, function, order, argument):
        # Names arrive as str, or as the Symbols they are stored as when SymPy rebuilds.
        label, latex, function = (str(value) for value in (label, latex, function))
        if function not in FUNCTIONS:
            raise ValueError(f"unknown activation {function!r}; expected one of {list(FUNCTIONS)}")
        names = (sp.Symbol(label), sp.Symbol(latex), sp.Symbol(function))
        return super().__new__(cls, *names, sp.Integer(order), argument)

    @property
    def label(self) -> str:
        return self.args[0].name

    @property
    def latex_name(self) -> str:
        return self.args[1].name

    @property
    def function(self) -> str:
        return self.args[2].name

    @property
    def order(self) -> int:
        return int(self.args[3])

    @property
    def argument(self):
        return self.args[4]

    @property
    def shape(self):
        return self.argument.shape

    def derivative(self) -> Applied:
        """The next derivative of the same use, at the same argument."""
        return Applied(self.label, self.latex_name, self.function, self.order + 1, self.argument)


@dataclass(frozen=True)
class Activation:
    """One use of an activation in a drift: ``Activation("u", "sigmoid")(a)`` is σ(a)."""

    label: str
    function: str
    latex: str = ""

    def __call__(self, argument) -> Applied:
        return Applied(self.label, self.latex or self.label, self.function, 0, argument)


def point_symbol(applied: Applied) -> sp.MatrixSymbol:
    """The column symbol standing for an applied derivative at the path (φ, φ', φ'')."""
    latex = applied.latex_name + ORDER_PRIMES[applied.order]
    return sp.MatrixSymbol(latex, *applied.shape)


def point_name(applied: Applied) -> str:
    """The code name of :func:`point_symbol` (``phi_value``, ``phi_slope``, ``phi_curvature``)."""
    return applied.label + ORDER_NAMES[applied.order]


@dataclass(frozen=True)
class Symbol:
    """A symbol of the drift with its code name and description (for the docstrings)."""

    symbol: sp.Basic
    name: str
    description: str
    shape: str


@dataclass(frozen=True)
class CellSpec:
    """A drift and everything the engine needs to derive, print and prove its formulas.

    Attributes:
        name: the generated module is ``nrnn._generated.cell_<name>``.
        title, summary, assumptions: for the formula sheet.
        state: h, the state column (n x 1); ``state_name`` its code name.
        drift: f(h, c), a column (n x 1).
        symbols: every other symbol of the drift: parameters, constants, drives.
        sizes: d -> {dimension symbol: size} of an explicit instance with hidden size d.
        constants: (matrix symbol, d -> explicit sympy Matrix) pairs (e.g. selections);
            every other matrix symbol is a free parameter in the proofs.
        split: (L, N) with f = L h + N(h) and N ρ-Lipschitz, or None; ``split_note`` says
            what ρ is.
        proof_cases: (d, steps) of the brute-force proofs (each with both Brownian modes).
        step_proof_size: d of the proof of the step's vector-Jacobian product (every noise
            form).
        selections: (matrix symbol, i, k) for constants that select block i of k equal
            blocks of a column (P = [0 ⋯ I ⋯ 0]); the fused recurrence's code slices
            instead of multiplying by them.
    """

    name: str
    title: str
    summary: str
    state: sp.MatrixSymbol
    drift: sp.MatrixExpr
    symbols: tuple[Symbol, ...]
    sizes: Callable[[int], Mapping]
    assumptions: str
    constants: tuple = ()
    split: tuple | None = None
    split_note: str = ""
    proof_cases: tuple[tuple[int, int], ...] = ((1, 1), (1, 2), (2, 1), (2, 2))
    state_name: str = "state"
    selections: tuple = ()
    step_proof_size: int = 2

    @property
    def state_dimension(self):
        return self.state.shape[0]

    def applied(self) -> list[Applied]:
        """The activation uses of the drift (order 0), sorted by label."""
        found = {node for node in sp.preorder_traversal(self.drift) if isinstance(node, Applied)}
        return sorted(found, key=lambda node: node.label)
