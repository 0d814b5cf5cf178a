"""The derivatives of a drift along a direction, and the curvature term, symbolically.

For a drift f written as in :mod:`derivations.drift`, with y a fixed direction:

- :func:`differentiate` gives the directional derivative ∇f[y] by the sum, product and chain
  rules on the expression (an activation φ^(j)(a) becomes φ^(j+1)(a) ∘ ∇a[y]); applied
  twice it gives ∇²f[y, y];
- :func:`terms` expands an expression into monomials (products of symbols, linear maps,
  activation values and elementwise products, without sums), collecting equal ones;
- :func:`linear_form` reads off the matrix X with ∇f[y] = X y from a monomial linear in y
  (an elementwise product g ∘ (X y) becomes diag(g) X y): summed, the drift Jacobian F;
- :func:`quadratic_expectation` takes E over y ~ (0, C) of a monomial quadratic in y:
  g ∘ (P y) ∘ (Q y) becomes g ∘ diagvec(P C Qᵀ), a linear map M applied to such a term
  keeps M: summed, the curvature v = E ∇²f[δ, δ] of the mean correction.

Nothing is differentiated numerically, and a term outside these patterns raises
``NotImplementedError`` rather than being guessed.
"""

from __future__ import annotations

from itertools import product as cartesian

import sympy as sp
from sympy.matrices.expressions.diagonal import DiagonalOf
from sympy.matrices.expressions.hadamard import HadamardProduct

from nrnn.derivations.drift import Applied

__all__ = [
    "assemble",
    "differentiate",
    "linear_form",
    "matrix_product",
    "quadratic_expectation",
    "terms",
]


def _depends(expr, symbol) -> bool:
    return expr.has(symbol)


def matrix_product(*factors, coefficient=1):
    """coefficient · the product of matrix factors, nested products flattened, identities
    dropped (an all-identity product is that identity)."""
    coefficient, flat = sp.sympify(coefficient), []
    for factor in factors:
        if isinstance(factor, sp.MatMul):
            inner_coefficient, inner = factor.as_coeff_matrices()
            coefficient *= inner_coefficient
            flat.extend(inner)
        elif not isinstance(factor, sp.Identity):
            flat.append(factor)
    if not flat:
        flat = [factors[0]]
    if len(flat) == 1 and coefficient == 1:
        return flat[0]
    return sp.MatMul(coefficient, *flat) if coefficient != 1 else sp.MatMul(*flat)


def _flat_hadamard(factors) -> list:
    flat = []
    for factor in factors:
        flat.extend(
            _flat_hadamard(factor.args) if isinstance(factor, HadamardProduct) else [factor]
        )
    return flat


def _hadamard(factors):
    """The elementwise product, flattened, ones dropped, factors in canonical order."""
    factors = [f for f in _flat_hadamard(factors) if not isinstance(f, sp.OneMatrix)]
    if not factors:
        raise NotImplementedError("an elementwise product of ones only")
    if len(factors) == 1:
        return factors[0]
    return HadamardProduct(*sorted(factors, key=sp.default_sort_key))


def terms(expr) -> list[tuple[sp.Expr, sp.MatrixExpr]]:
    """``expr`` as [(scalar coefficient, monomial)]: no sums inside a monomial, equal
    monomials collected, zero coefficients dropped."""
    collected: dict = {}
    for coefficient, monomial in _expand(expr):
        collected[monomial] = collected.get(monomial, 0) + coefficient
    return [
        (sp.expand(c), m)
        for m, c in sorted(collected.items(), key=lambda item: sp.default_sort_key(item[0]))
        if sp.expand(c) != 0
    ]


def _expand(expr) -> list[tuple[sp.Expr, sp.MatrixExpr]]:
    if isinstance(expr, sp.ZeroMatrix) or expr == 0:
        return []
    if isinstance(expr, sp.MatAdd):
        return [term for arg in expr.args for term in _expand(arg)]
    if isinstance(expr, sp.MatMul):
        coefficient, factors = expr.as_coeff_matrices()
        result = []
        for parts in cartesian(*[_expand(f) for f in factors]):
            scalar = coefficient
            for c, _ in parts:
                scalar *= c
            result.append((scalar, _strip(matrix_product(*[m for _, m in parts]))))
        return [(c * inner, m) for c, (inner, m) in result]
    if isinstance(expr, HadamardProduct):
        result = []
        for parts in cartesian(*[_expand(f) for f in expr.args]):
            scalar = sp.Integer(1)
            for c, _ in parts:
                scalar *= c
            result.append((scalar, _hadamard([m for _, m in parts])))
        return result
    if isinstance(expr, sp.DiagMatrix):
        return [(c, sp.DiagMatrix(m)) for c, m in _expand(expr.args[0])]
    if isinstance(expr, sp.Transpose):
        return [(c, sp.Transpose(m).doit()) for c, m in _expand(expr.arg)]
    if isinstance(expr, sp.Identity | sp.OneMatrix | sp.MatrixSymbol | Applied | DiagonalOf):
        return [(sp.Integer(1), expr)]
    raise NotImplementedError(f"cannot expand {type(expr).__name__}: {expr}")


def _strip(monomial):
    """(1, m) for a coefficient-free monomial; a product keeps its coefficient apart."""
    if isinstance(monomial, sp.MatMul):
        coefficient, factors = monomial.as_coeff_matrices()
        return coefficient, matrix_product(*factors) if len(factors) > 1 else factors[0]
    return sp.Integer(1), monomial


def assemble(pairs, shape) -> sp.MatrixExpr:
    """Σ coefficient · monomial as one matrix expression (a ZeroMatrix if empty)."""
    parts = [m if c == 1 else sp.MatMul(c, m) for c, m in pairs]
    if not parts:
        return sp.ZeroMatrix(*shape)
    return parts[0] if len(parts) == 1 else sp.MatAdd(*parts)


def differentiate(expr, state, direction):
    """∇expr[direction] with respect to ``state`` (``direction`` constant)."""
    if not _depends(expr, state):
        return sp.ZeroMatrix(*expr.shape)
    if expr == state:
        return direction
    if isinstance(expr, sp.MatAdd):
        return sp.MatAdd(*[differentiate(arg, state, direction) for arg in expr.args])
    if isinstance(expr, sp.MatMul):
        coefficient, factors = expr.as_coeff_matrices()
        parts = []
        for index, factor in enumerate(factors):
            if _depends(factor, state):
                changed = list(factors)
                changed[index] = differentiate(factor, state, direction)
                parts.append(sp.MatMul(coefficient, *changed))
        return sp.MatAdd(*parts)
    if isinstance(expr, HadamardProduct):
        parts = []
        for index, factor in enumerate(expr.args):
            if _depends(factor, state):
                changed = list(expr.args)
                changed[index] = differentiate(factor, state, direction)
                parts.append(HadamardProduct(*changed))
        return sp.MatAdd(*parts)
    if isinstance(expr, Applied):
        inner = differentiate(expr.argument, state, direction)
        return HadamardProduct(expr.derivative(), inner)
    if isinstance(expr, sp.DiagMatrix):
        return sp.DiagMatrix(differentiate(expr.args[0], state, direction))
    if isinstance(expr, sp.Transpose):
        return sp.Transpose(differentiate(expr.arg, state, direction))
    raise NotImplementedError(f"cannot differentiate {type(expr).__name__}: {expr}")


def linear_form(monomial, direction):
    """X with ``monomial`` = X · direction, for a monomial linear in ``direction``."""
    if monomial == direction:
        return sp.Identity(direction.shape[0])
    if isinstance(monomial, sp.MatMul):
        coefficient, factors = monomial.as_coeff_matrices()
        dependent = [i for i, f in enumerate(factors) if _depends(f, direction)]
        if dependent != [len(factors) - 1]:
            raise NotImplementedError(f"the direction is not in the last factor of {monomial}")
        last = linear_form(factors[-1], direction)
        return matrix_product(*factors[:-1], last, coefficient=coefficient)
    if isinstance(monomial, HadamardProduct):
        dependent = [f for f in monomial.args if _depends(f, direction)]
        if len(dependent) != 1:
            raise NotImplementedError(f"{monomial} is not linear in {direction}")
        others = [f for f in monomial.args if f is not dependent[0]]
        gain = sp.DiagMatrix(_hadamard(others))
        return matrix_product(gain, linear_form(dependent[0], direction))
    raise NotImplementedError(f"{monomial} is not linear in {direction}")


def _leading_gains(matrix) -> tuple[list, sp.MatrixExpr]:
    """(gains, rest) with matrix = diag(g₁) ⋯ diag(g_k) rest: diagvec(diag(g) P C Qᵀ diag(k))
    = g ∘ k ∘ diagvec(P C Qᵀ), so leading diagonal factors leave the diagvec."""
    if not isinstance(matrix, sp.MatMul):
        if isinstance(matrix, sp.DiagMatrix):
            return [matrix.args[0]], sp.Identity(matrix.shape[0])
        return [], matrix
    coefficient, factors = matrix.as_coeff_matrices()
    gains = []
    while len(factors) > 1 and isinstance(factors[0], sp.DiagMatrix):
        gains.append(factors[0].args[0])
        factors = factors[1:]
    if coefficient != 1:
        gains.append(coefficient * sp.OneMatrix(matrix.shape[0], 1))
    return gains, matrix_product(*factors)


def quadratic_expectation(monomial, direction, covariance):
    """E monomial over direction ~ (0, covariance), for a monomial quadratic in it."""
    if isinstance(monomial, sp.MatMul):
        coefficient, factors = monomial.as_coeff_matrices()
        dependent = [i for i, f in enumerate(factors) if _depends(f, direction)]
        if dependent != [len(factors) - 1]:
            raise NotImplementedError(f"the direction is not in the last factor of {monomial}")
        inner = quadratic_expectation(factors[-1], direction, covariance)
        return matrix_product(*factors[:-1], inner, coefficient=coefficient)
    if isinstance(monomial, HadamardProduct):
        dependent = [f for f in monomial.args if _depends(f, direction)]
        others = [f for f in monomial.args if all(f is not g for g in dependent)]
        if len(dependent) == 1:
            inner = quadratic_expectation(dependent[0], direction, covariance)
        elif len(dependent) == 2:
            (left_gains, left), (right_gains, right) = (
                _leading_gains(linear_form(f, direction)) for f in dependent
            )
            others = [*others, *left_gains, *right_gains]
            inner = DiagonalOf(matrix_product(left, covariance, sp.Transpose(right).doit()))
        else:
            raise NotImplementedError(f"{monomial} is not quadratic in {direction}")
        return _hadamard([*others, inner]) if others else inner
    raise NotImplementedError(f"{monomial} is not quadratic in {direction}")
