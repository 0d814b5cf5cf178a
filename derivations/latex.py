"""LaTeX for the formula sheet: SymPy's printer plus the project's matrix-expression nodes."""

from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter

from nrnn.derivations.drift import Applied
from nrnn.derivations.nodes import (
    BlockColumn,
    ColumnBlock,
    NoiseJacobian,
    SampleSum,
    Softmax,
    StackSum,
)

__all__ = ["latex", "equation"]


class _SheetPrinter(LatexPrinter):
    """Symbol names are written as LaTeX already; a few nodes get conventional notation."""

    def _print_Symbol(self, expr, style="plain"):
        if "\\" in expr.name or "{" in expr.name:
            return expr.name
        return super()._print_Symbol(expr, style=style)

    def _print_MatrixSymbol(self, expr):
        if "\\" in expr.name or "{" in expr.name:
            return expr.name
        return super()._print_MatrixSymbol(expr)

    def _print_Transpose(self, expr):
        inner = self._print(expr.arg)
        if not (isinstance(expr.arg, sp.MatrixSymbol) and " " not in expr.arg.name):
            inner = rf"\left({inner}\right)"
        return inner + "^{T}"

    def _print_MatMul(self, expr):
        coefficient, factors = expr.as_coeff_matrices()
        if coefficient == 1 or not coefficient.is_Rational:
            return super()._print_MatMul(expr)
        body = (
            super()._print_MatMul(sp.MatMul(*factors))
            if len(factors) > 1
            else self._print(factors[0])
        )
        if isinstance(factors[0], sp.MatAdd) and len(factors) == 1:
            body = rf"\left({body}\right)"
        if coefficient == -1:
            return "-" + body
        return f"{self._print(coefficient)} {body}"

    def _print_DiagMatrix(self, expr):
        return rf"\operatorname{{diag}}\left({self._print(expr.args[0])}\right)"

    def _print_DiagonalOf(self, expr):
        return rf"\operatorname{{diagvec}}\left({self._print(expr.arg)}\right)"

    def _print_Applied(self, expr: Applied):
        primes = "'" * expr.order if expr.order <= 3 else f"^{{({expr.order})}}"
        return rf"{expr.latex_name}{primes}\left({self._print(expr.argument)}\right)"

    def _print_NoiseJacobian(self, expr: NoiseJacobian):
        return rf"\sigma'(\bar{{h}})\left[{self._print(expr.direction)}\right]"

    def _print_Softmax(self, expr: Softmax):
        return rf"\operatorname{{softmax}}\left({self._print(expr.argument)}\right)"

    def _print_StackSum(self, expr: StackSum):
        indexed = {
            symbol: sp.MatrixSymbol(f"{symbol.name}_{{i}}", *symbol.shape)
            for symbol in expr.stacked
        }
        return r"\sum_{i} " + self._print(expr.summand.xreplace(indexed))

    def _print_ColumnBlock(self, expr: ColumnBlock):
        return rf"\left[{self._print(expr.column)}\right]_{{{expr.index + 1}/{expr.count}}}"

    def _print_BlockColumn(self, expr: BlockColumn):
        rows = r" \\ ".join(self._print(block) for block in expr.blocks)
        return rf"\begin{{pmatrix}} {rows} \end{{pmatrix}}"

    def _print_SampleSum(self, expr: SampleSum):
        return rf"\sum_{{\text{{samples}}}} \left({self._print(expr.summand)}\right)"


_PRINTER = _SheetPrinter({"mat_symbol_style": "plain", "mul_symbol": None})


def latex(expr) -> str:
    """LaTeX of a (matrix) expression."""
    return _PRINTER.doprint(expr)


def equation(left, right) -> str:
    """``left = right`` with either side an expression or a LaTeX string."""
    sides = [side if isinstance(side, str) else latex(side) for side in (left, right)]
    return f"{sides[0]} = {sides[1]}"
