"""Reverse-mode differentiation of a drift expression: vector–Jacobian products, symbolically.

For a column expression e (a drift, or a whole Euler–Maruyama step) in the language of
:mod:`derivations.drift` and a cotangent λ of the same shape, :func:`reverse` returns the
cotangents λᵀ ∂e/∂x of the leaves x it is asked for, propagating λ from the root of the
expression to its leaves by the transposed rules of the forward derivative:

- a sum passes λ to every term;
- a product c X₁ ⋯ X_k passes c (X₁ ⋯ X_{i−1})ᵀ λ (X_{i+1} ⋯ X_k)ᵀ to its factor X_i: a column
  factor continues with it, a matrix parameter P receives the outer product
  (c (X₁ ⋯ X_{i−1})ᵀ λ)(X_{i+1} ⋯ X_k)ᵀ, collected as a (left, right) pair of columns;
- an elementwise product g₁ ∘ ⋯ ∘ g_k passes λ ∘ ∏_{j≠i} g_j to g_i;
- an activation φ(a) passes φ'(a) ∘ λ to its argument a.

Nothing else is differentiated, and a node outside these patterns raises
``NotImplementedError``. Every intermediate cotangent is built once and shared by the
expressions that use it, so a printer that binds repeated subexpressions computes it once.

:func:`blocks_as_slices` rewrites products with block selections P = [0 ⋯ I ⋯ 0] (the coRNN's
P_y and P_z) into slices and concatenations, so the code computes no product with a
selection matrix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sympy as sp
from sympy.matrices.expressions.hadamard import HadamardProduct

from nrnn.derivations.drift import Applied, point_symbol
from nrnn.derivations.nodes import BlockColumn, ColumnBlock, SampleSum

__all__ = [
    "Cotangents",
    "blocks_as_slices",
    "matrix_gradient",
    "reverse",
    "with_point_symbols",
]


@dataclass(frozen=True)
class Cotangents:
    """What :func:`reverse` found: a cotangent per column leaf (its shape) and, per matrix
    parameter P, the pairs (l, r) of columns with λᵀ ∂e/∂P = Σ l rᵀ."""

    columns: Mapping[sp.MatrixSymbol, sp.MatrixExpr]
    pairs: Mapping[sp.MatrixSymbol, tuple[tuple[sp.MatrixExpr, sp.MatrixExpr], ...]]


def _transpose(factor):
    """The transpose of one factor of a product (a symbol, a transposed symbol, a column)."""
    if isinstance(factor, sp.Transpose):
        return factor.arg
    if isinstance(factor, sp.OneMatrix):
        return sp.OneMatrix(factor.shape[1], factor.shape[0])
    return sp.Transpose(factor)


def _product(coefficient, factors):
    """coefficient · X₁ ⋯ X_k without nesting a product in a product (identities dropped)."""
    flat = []
    for factor in factors:
        if isinstance(factor, sp.MatMul):
            inner, inner_factors = factor.as_coeff_matrices()
            coefficient = coefficient * inner
            flat.extend(inner_factors)
        elif not isinstance(factor, sp.Identity):
            flat.append(factor)
    if coefficient == 1 and len(flat) == 1:
        return flat[0]
    return sp.MatMul(*([] if coefficient == 1 else [coefficient]), *flat)


def _sum(terms: list, shape):
    if not terms:
        return sp.ZeroMatrix(*shape)
    return terms[0] if len(terms) == 1 else sp.MatAdd(*terms)


def reverse(
    expr,
    cotangent,
    columns: Iterable[sp.MatrixSymbol],
    matrices: Iterable[sp.MatrixSymbol] = (),
) -> Cotangents:
    """λᵀ ∂expr/∂x for the column leaves ``columns`` and the matrix leaves ``matrices``
    (every other symbol is a constant); ``cotangent`` is λ, shaped like ``expr``."""
    found: dict[sp.MatrixSymbol, list] = {leaf: [] for leaf in columns}
    pairs: dict[sp.MatrixSymbol, list] = {leaf: [] for leaf in matrices}
    leaves = (*found, *pairs)

    def depends(node) -> bool:
        return any(node.has(leaf) for leaf in leaves)

    def visit(node, incoming) -> None:
        if not depends(node):
            return
        if node in found:
            found[node].append(incoming)
        elif isinstance(node, sp.MatAdd):
            for term in node.args:
                visit(term, incoming)
        elif isinstance(node, sp.MatMul):
            visit_product(node, incoming)
        elif isinstance(node, HadamardProduct):
            for index, factor in enumerate(node.args):
                others = [f for j, f in enumerate(node.args) if j != index]
                if depends(factor):
                    visit(factor, HadamardProduct(incoming, *others))
        elif isinstance(node, Applied) and node.order == 0:
            visit(node.argument, HadamardProduct(node.derivative(), incoming))
        else:
            raise NotImplementedError(f"cannot differentiate {type(node).__name__}: {node}")

    def visit_product(node, incoming) -> None:
        coefficient, factors = node.as_coeff_matrices()
        if depends(coefficient):
            raise NotImplementedError(f"a leaf in the scalar coefficient of {node}")
        for index, factor in enumerate(factors):
            if not depends(factor):
                continue
            before = [_transpose(f) for f in reversed(factors[:index])]
            after = factors[index + 1 :]
            left = _product(coefficient, [*before, incoming])
            matrix = factor.arg if isinstance(factor, sp.Transpose) else factor
            if matrix in pairs:
                right = _product(1, after)
                pairs[matrix].append((right, left) if matrix is not factor else (left, right))
            elif factor.shape[1] == 1 or not after:
                if after:
                    left = _product(1, [left, _transpose(_product(1, after))])
                visit(factor, left)
            else:
                raise NotImplementedError(f"a matrix that depends on a leaf in {node}")

    visit(expr, cotangent)
    return Cotangents(
        columns={leaf: _sum(terms, leaf.shape) for leaf, terms in found.items()},
        pairs={leaf: tuple(found_pairs) for leaf, found_pairs in pairs.items()},
    )


def matrix_gradient(pairs) -> sp.MatrixExpr:
    """Σ over the samples of Σ l rᵀ: the gradient of a matrix shared by every sample."""
    outer = [sp.MatMul(left, sp.Transpose(right)) for left, right in pairs]
    return SampleSum(_sum(outer, outer[0].shape))


def with_point_symbols(expr):
    """Every activation value and derivative φ^(j)(a) replaced by its point symbol (the
    values the runtime computes at the path: ``label_value``, ``label_slope``)."""
    uses = {node for node in sp.preorder_traversal(expr) if isinstance(node, Applied)}
    return expr.xreplace({use: point_symbol(use) for use in uses})


# ------------------------------------------------------------------- block selections
def blocks_as_slices(expr, selections: Mapping, state=None):
    """``P_i x`` -> block i of x and, at the top level of ``expr`` (a cotangent of
    ``state``), Σ P_iᵀ u_i -> the column of blocks (u_0, …, u_{k−1}).

    ``selections``: selection matrix symbol -> (index, count) with P_i = [0 ⋯ I ⋯ 0] the
    i-th of ``count`` equal blocks.
    """
    if not selections:
        return expr
    expr = _slices(expr, selections)
    terms = expr.args if isinstance(expr, sp.MatAdd) else (expr,)
    placed: dict[int, list] = {}
    rest = []
    for term in terms:
        block = _placed_block(term, selections)
        if block is None:
            rest.append(term)
        else:
            index, inner = block
            placed.setdefault(index, []).append(inner)
    if not placed:
        return expr
    count = next(iter(selections.values()))[1]
    rows = next(iter(selections)).shape[0]
    blocks = [_sum(placed.get(index, []), (rows, 1)) for index in range(count)]
    return _sum([*rest, BlockColumn(expr.shape[0], *blocks)], expr.shape)


def _placed_block(term, selections):
    """(i, u) if ``term`` is P_iᵀ u (a coefficient allowed), else None."""
    if not isinstance(term, sp.MatMul):
        return None
    coefficient, factors = term.as_coeff_matrices()
    first = factors[0]
    if isinstance(first, sp.Transpose) and first.arg in selections and len(factors) > 1:
        return selections[first.arg][0], _product(coefficient, factors[1:])
    return None


def _slices(expr, selections):
    """Rewrite every ``P_i x`` inside ``expr`` (P_i first in a product) as a block slice."""
    if isinstance(expr, sp.MatMul):
        coefficient, factors = expr.as_coeff_matrices()
        factors = [_slices(f, selections) for f in factors]
        rewritten: list = []
        for factor in reversed(factors):
            if factor in selections and rewritten:
                index, count = selections[factor]
                tail = _product(1, list(reversed(rewritten)))
                rewritten = [ColumnBlock(tail, index, count, factor.shape[0])]
            else:
                rewritten.append(factor)
        return _product(coefficient, list(reversed(rewritten)))
    if isinstance(expr, Applied):
        return expr  # arguments keep their form (values come from the point)
    if isinstance(expr, (sp.MatAdd, HadamardProduct, SampleSum, sp.Transpose)):
        return expr.func(*[_slices(arg, selections) for arg in expr.args])
    return expr
