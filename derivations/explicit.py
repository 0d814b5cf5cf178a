"""Evaluate a matrix expression on explicit SymPy matrices.

The derived one-step rules are matrix expressions in ``MatrixSymbol``s; the small-size
proofs evaluate them on explicit matrices of symbols. ``bindings`` maps each symbol (and any
node whose value is given, e.g. an :class:`~derivations.nodes.ActivationDerivative`) to an
explicit ``sympy.Matrix`` (or a list of matrices for a stacked symbol), and dimension
symbols to integers. An activation use φ(a) (:class:`derivations.drift.Applied`) is
evaluated entrywise with the SymPy function bound to the symbol named by its label; a
:class:`~derivations.nodes.SampleSum` is evaluated for one sample (its summand).
"""

from __future__ import annotations

from collections.abc import Mapping

import sympy as sp
from sympy.matrices.expressions.diagonal import DiagonalOf
from sympy.matrices.expressions.hadamard import HadamardPower, HadamardProduct

from nrnn.derivations.drift import Applied
from nrnn.derivations.nodes import BlockColumn, ColumnBlock, SampleSum, Softmax, StackSum

__all__ = ["evaluate"]


def _hadamard(left: sp.Matrix, right: sp.Matrix) -> sp.Matrix:
    return left.multiply_elementwise(right)


def evaluate(expr, bindings: Mapping):
    """Explicit value of ``expr``: a ``sympy.Matrix`` (or a scalar for scalar expressions)."""
    if expr in bindings:
        return bindings[expr]
    if isinstance(expr, sp.Trace):
        return evaluate(expr.arg, bindings).trace()
    if not isinstance(expr, sp.MatrixExpr):
        if expr.is_Matrix:
            return expr
        traced = expr.replace(
            lambda node: isinstance(node, sp.Trace), lambda node: evaluate(node, bindings)
        )
        return traced.xreplace({k: v for k, v in bindings.items() if isinstance(k, sp.Symbol)})
    if isinstance(expr, sp.Identity):
        return sp.eye(int(sp.sympify(expr.rows).xreplace(bindings)))
    if isinstance(expr, sp.ZeroMatrix):
        rows, cols = (int(sp.sympify(n).xreplace(bindings)) for n in expr.shape)
        return sp.zeros(rows, cols)
    if isinstance(expr, sp.OneMatrix):
        rows, cols = (int(sp.sympify(n).xreplace(bindings)) for n in expr.shape)
        return sp.ones(rows, cols)
    if isinstance(expr, sp.MatAdd):
        parts = [evaluate(arg, bindings) for arg in expr.args]
        return sum(parts[1:], parts[0])
    if isinstance(expr, sp.MatMul):
        coefficient, factors = expr.as_coeff_matrices()
        value = evaluate(factors[0], bindings)
        for factor in factors[1:]:
            value = value * evaluate(factor, bindings)
        return evaluate(coefficient, bindings) * value
    if isinstance(expr, sp.Transpose):
        return evaluate(expr.arg, bindings).T
    if isinstance(expr, sp.DiagMatrix):
        return sp.diag(*evaluate(expr.args[0], bindings))
    if isinstance(expr, DiagonalOf):
        matrix = evaluate(expr.arg, bindings)
        return sp.Matrix([matrix[i, i] for i in range(matrix.rows)])
    if isinstance(expr, HadamardProduct):
        parts = [evaluate(arg, bindings) for arg in expr.args]
        value = parts[0]
        for part in parts[1:]:
            value = _hadamard(value, part)
        return value
    if isinstance(expr, HadamardPower):
        base = evaluate(expr.args[0], bindings)
        return base.applyfunc(lambda entry: entry ** expr.args[1])
    if isinstance(expr, sp.KroneckerProduct):
        parts = [evaluate(arg, bindings) for arg in expr.args]
        return sp.kronecker_product(*parts)
    if isinstance(expr, sp.BlockMatrix):
        blocks = [[evaluate(block, bindings) for block in row] for row in expr.blocks.tolist()]
        return sp.Matrix.vstack(*[sp.Matrix.hstack(*row) for row in blocks])
    if isinstance(expr, Softmax):
        logits = evaluate(expr.argument, bindings)
        exponentials = logits.applyfunc(sp.exp)
        return exponentials / sum(exponentials)
    if isinstance(expr, StackSum):
        stacks = [bindings[symbol] for symbol in expr.stacked]
        total = None
        for members in zip(*stacks, strict=True):
            inner = dict(bindings)
            inner.update(dict(zip(expr.stacked, members, strict=True)))
            value = evaluate(expr.summand, inner)
            total = value if total is None else total + value
        return total
    if isinstance(expr, Applied) and expr.order == 0:
        function = bindings[sp.Symbol(expr.label)]
        return evaluate(expr.argument, bindings).applyfunc(function)
    if isinstance(expr, SampleSum):
        return evaluate(expr.summand, bindings)
    if isinstance(expr, ColumnBlock):
        column = evaluate(expr.column, bindings)
        size = column.rows // expr.count
        return column[expr.index * size : (expr.index + 1) * size, :]
    if isinstance(expr, BlockColumn):
        return sp.Matrix.vstack(*[evaluate(block, bindings) for block in expr.blocks])
    raise NotImplementedError(f"cannot evaluate {type(expr).__name__}: {expr}")
