"""Expectation and linear-algebra rules on SymPy matrix expressions.

The one-step rules of the small-noise expansion and the Euler--Maruyama moment recursion are
derived on whole matrices (``MatrixSymbol`` for J, C, Sigma, xi, ...), with a small rule set
for the expectation of a term (a product of matrices with a scalar coefficient):

1. A term with an odd number of vector-noise factors ``xi`` has expectation 0 (``xi`` is
   symmetric and independent of the state at the same step).
2. ``X xi xi^T Y`` with X, Y deterministic has expectation ``X Y`` (``E xi xi^T = I``).
3. A term with one random state vector ``v`` (or ``v^T``) becomes ``X E[v] Y``.
4. ``X v v^T Y`` becomes ``X E[v v^T] Y``; ``v^T X v`` becomes ``tr(X E[v v^T])``.
5. ``g o (X v) o (Y v)`` (Hadamard, g deterministic) becomes ``g o diagvec(X E[v v^T] Y^T)``:
   componentwise ``E (Xv)_i (Yv)_i = (X E[vv^T] Y^T)_ii``.
6. Scalar standard normals in the coefficient are independent of the matrix factors and are
   averaged with Gaussian moments (:func:`derivations.ito.gaussian_expectation`).

A term outside these patterns raises ``NotImplementedError`` rather than being guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import sympy as sp
from sympy.matrices.expressions.diagonal import DiagonalOf
from sympy.matrices.expressions.hadamard import HadamardPower, HadamardProduct

from nrnn.derivations.ito import gaussian_expectation

__all__ = [
    "RandomModel",
    "expectation",
    "hadamard_to_diagonal",
    "linear_coefficients",
    "matrix_terms",
    "vec_operator",
]


@dataclass(frozen=True)
class RandomModel:
    """What one step knows about its random symbols.

    ``noise``: vector normals ``xi`` with ``E xi = 0``, ``E xi xi^T = I``, independent of
    the state. ``scalar_noise``: independent standard normal scalars. ``means`` and
    ``second_moments``: ``E v`` and ``E v v^T`` of random state vectors ``v``.
    """

    noise: tuple = ()
    scalar_noise: tuple = ()
    means: Mapping = field(default_factory=dict)
    second_moments: Mapping = field(default_factory=dict)

    @property
    def states(self) -> frozenset:
        return frozenset(self.means) | frozenset(self.second_moments)


def matrix_terms(expr) -> list[tuple[sp.Expr, list]]:
    """Expand ``expr`` into ``[(scalar coefficient, [matrix factors])]``."""
    expanded = sp.expand(expr)
    if isinstance(expanded, sp.ZeroMatrix) or expanded == 0:
        return []
    terms = expanded.args if isinstance(expanded, sp.MatAdd) else (expanded,)
    result = []
    for term in terms:
        if isinstance(term, sp.ZeroMatrix):
            continue
        if isinstance(term, sp.MatMul):
            coefficient, factors = term.as_coeff_matrices()
            result.append((coefficient, list(factors)))
        else:
            result.append((sp.Integer(1), [term]))
    return result


def _product(coefficient, factors, shape):
    if not factors:
        return coefficient * sp.Identity(shape[0])
    return (
        sp.MatMul(coefficient, *factors).doit() if coefficient != 1 else sp.MatMul(*factors).doit()
    )


def _count(expr, symbol) -> int:
    return sum(1 for node in sp.preorder_traversal(expr) if node == symbol)


def _depends(expr, symbols: Iterable) -> bool:
    free = expr.free_symbols
    return any(symbol in free for symbol in symbols)


def _is_vector_of(factor, v) -> bool:
    return factor == v or factor == v.T


def _hadamard_args(factor) -> list:
    """The flat list of Hadamard factors (a Hadamard square counts twice)."""
    if isinstance(factor, HadamardPower):
        base, exponent = factor.args
        if not (exponent.is_Integer and exponent > 0):
            raise NotImplementedError(f"Hadamard power {factor}")
        return _hadamard_args(base) * int(exponent)
    if isinstance(factor, HadamardProduct):
        return [leaf for arg in factor.args for leaf in _hadamard_args(arg)]
    return [factor]


def _hadamard_expectation(factor, model: RandomModel):
    """Rule 5 on one Hadamard factor; returns None if the factor is deterministic."""
    args = _hadamard_args(factor)
    random_args = [a for a in args if _depends(a, model.states | set(model.noise))]
    if not random_args:
        return None
    if len(random_args) != 2:
        raise NotImplementedError(f"Hadamard factor {factor}")
    left, right = random_args
    for v, moment in model.second_moments.items():
        prefix_left, prefix_right = _left_factor(left, v), _left_factor(right, v)
        if prefix_left is not None and prefix_right is not None:
            deterministic = [a for a in args if a not in random_args]
            diagonal = DiagonalOf(prefix_left * moment * prefix_right.T)
            return HadamardProduct(*deterministic, diagonal) if deterministic else diagonal
    raise NotImplementedError(f"Hadamard factor {factor}")


def _left_factor(expr, v):
    """X if ``expr == X v`` with X deterministic in ``v``, else None."""
    if expr == v:
        return sp.Identity(v.shape[0])
    if (
        isinstance(expr, sp.MatMul)
        and expr.args[-1] == v
        and not _depends(sp.MatMul(*expr.args[:-1]), [v])
    ):
        return sp.MatMul(*expr.args[:-1]).doit()
    return None


def _term_expectation(coefficient, factors, model: RandomModel, shape):
    if model.scalar_noise:
        coefficient = gaussian_expectation(coefficient, model.scalar_noise)
        if coefficient == 0:
            return None
    random = model.states | set(model.noise)
    noise_count = sum(_count(f, xi) for f in factors for xi in model.noise)
    if noise_count % 2:
        return None  # rule 1
    if noise_count == 2:  # rule 2
        for position in range(len(factors) - 1):
            first, second = factors[position], factors[position + 1]
            if first in model.noise and second == first.T:
                rest = factors[:position] + factors[position + 2 :]
                if any(_depends(f, random) for f in rest):
                    break
                return _product(coefficient, rest, shape)
        raise NotImplementedError(f"noise pattern in {factors}")
    if noise_count:
        raise NotImplementedError(f"{noise_count} noise factors in {factors}")
    hadamards = [
        i for i, f in enumerate(factors) if isinstance(f, (HadamardProduct, HadamardPower))
    ]
    for index in hadamards:  # rule 5
        replaced = _hadamard_expectation(factors[index], model)
        if replaced is not None:
            rest = factors[:index] + factors[index + 1 :]
            if any(_depends(f, random) for f in rest):
                raise NotImplementedError(f"Hadamard factor with random neighbours in {factors}")
            return _product(coefficient, factors[:index] + [replaced] + factors[index + 1 :], shape)
    random_positions = [i for i, f in enumerate(factors) if _depends(f, random)]
    if not random_positions:
        return _product(coefficient, factors, shape)
    for i in random_positions:
        if not any(_is_vector_of(factors[i], v) for v in model.states):
            raise NotImplementedError(f"random factor {factors[i]} is not a state vector")
    if len(random_positions) == 1:  # rule 3
        i = random_positions[0]
        v = next(v for v in model.states if _is_vector_of(factors[i], v))
        mean = model.means[v] if factors[i] == v else model.means[v].T
        if mean == 0 or isinstance(mean, sp.ZeroMatrix):
            return None
        return _product(coefficient, factors[:i] + [mean] + factors[i + 1 :], shape)
    if len(random_positions) == 2:  # rule 4
        i, j = random_positions
        for v, moment in model.second_moments.items():
            if factors[i] == v and factors[j] == v.T and j == i + 1:
                return _product(coefficient, factors[:i] + [moment] + factors[j + 1 :], shape)
            if factors[i] == v.T and factors[j] == v and i == 0 and j == len(factors) - 1:
                middle = factors[1:-1]
                inner = sp.MatMul(*middle, moment).doit() if middle else moment
                return coefficient * sp.Trace(inner)
    raise NotImplementedError(f"state pattern in {factors}")


def expectation(expr, model: RandomModel):
    """``E[expr]`` by the module's rules; ``expr`` is a matrix (or 1 x 1) expression."""
    shape = expr.shape
    total = []
    for coefficient, factors in matrix_terms(expr):
        value = _term_expectation(coefficient, factors, model, shape)
        if value is not None:
            total.append(value)
    if not total:
        return sp.ZeroMatrix(*shape)
    return (
        sp.Add(*total)
        if any(not isinstance(t, sp.MatrixExpr) for t in total)
        else sp.MatAdd(*total).doit()
    )


def hadamard_to_diagonal(expr, variables: Iterable):
    """Rewrite ``g o (X v)`` (g free of ``variables``) as ``diag(g) X v``."""
    variables = tuple(variables)

    def is_target(node) -> bool:
        if not isinstance(node, HadamardProduct):
            return False
        dependent = [a for a in node.args if _depends(a, variables)]
        return len(dependent) == 1

    def rewrite(node):
        dependent = next(a for a in node.args if _depends(a, variables))
        others = [a for a in node.args if a is not dependent]
        gain = others[0] if len(others) == 1 else HadamardProduct(*others)
        return sp.MatMul(sp.DiagMatrix(gain), dependent)

    return expr.replace(is_target, rewrite)


def linear_coefficients(expr, variables: Iterable) -> tuple[dict, object]:
    """Write ``expr = sum_v K_v v + rest``; return ``({v: K_v}, rest)``.

    Every term must end in at most one of ``variables`` (after Hadamard products with a
    single dependent factor are rewritten as diagonal matrices).
    """
    variables = tuple(variables)
    rewritten = hadamard_to_diagonal(sp.expand(expr), variables)
    shape = expr.shape
    coefficients: dict = {v: [] for v in variables}
    rest = []
    for coefficient, factors in matrix_terms(rewritten):
        hits = [v for v in variables if any(_depends(f, [v]) for f in factors)]
        if not hits:
            rest.append(_product(coefficient, factors, shape))
            continue
        v = hits[0]
        if len(hits) > 1 or factors[-1] != v or any(_depends(f, variables) for f in factors[:-1]):
            raise NotImplementedError(f"term {factors} is not linear in {variables}")
        coefficients[v].append(_product(coefficient, factors[:-1], (v.shape[0], v.shape[0])))
    collected = {
        v: sp.MatAdd(*parts).doit() if parts else sp.ZeroMatrix(shape[0], v.shape[0])
        for v, parts in coefficients.items()
    }
    remainder = sp.MatAdd(*rest).doit() if rest else sp.ZeroMatrix(*shape)
    return collected, remainder


def vec_operator(expr, unknown):
    """The matrix K with ``vec(expr) = K vec(unknown)`` (column-major vec).

    ``expr`` must be a sum of terms ``c X unknown Y``; each becomes ``c (Y^T kron X)`` by
    ``vec(X P Y) = (Y^T kron X) vec(P)``.
    """
    size = unknown.shape[0]
    parts = []
    for coefficient, factors in matrix_terms(expr):
        positions = [i for i, f in enumerate(factors) if f == unknown]
        if len(positions) != 1 or any(
            _depends(f, [unknown]) for i, f in enumerate(factors) if i != positions[0]
        ):
            raise NotImplementedError(f"term {factors} is not of the form X P Y")
        i = positions[0]
        left = sp.MatMul(*factors[:i]).doit() if i else sp.Identity(size)
        right = sp.MatMul(*factors[i + 1 :]).doit() if i + 1 < len(factors) else sp.Identity(size)
        parts.append(coefficient * sp.KroneckerProduct(right.T, left))
    return sp.MatAdd(*parts).doit()
