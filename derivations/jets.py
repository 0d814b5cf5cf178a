"""Truncated power series in epsilon ("jets") and the chain rule that SymPy derives for them.

A jet of order n is the list ``[c_0, ..., c_n]`` of Taylor coefficients of a quantity
``c(eps) = sum_k c_k eps**k``. The small-noise expansion propagates jets through the
Euler--Maruyama recursion instead of expanding a nested expression: this is
"differentiating the recursion" and never calls :func:`sympy.series`.

The only non-trivial operation is composition with a smooth function,
``phi(x + sum_k a_k eps**k)``. Its coefficients (Faà di Bruno) are derived once per
(number of variables, order) by SymPy from the Taylor polynomial of a generic ``phi`` with
symbolic derivatives; callers substitute their own derivative values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import sympy as sp

__all__ = [
    "ChainRule",
    "chain_rule",
    "compose",
    "evaluate_polynomial",
    "jet_add",
    "jet_scale",
    "jet_shift",
]


@dataclass(frozen=True)
class ChainRule:
    """Taylor coefficients of ``phi(x + a(eps))`` for a generic smooth ``phi``.

    ``coefficients[k]`` is a polynomial in the placeholders ``increments[i][j]`` (the
    ``eps**(j+1)`` coefficient of the i-th argument) and in the symbols
    ``derivatives[alpha]`` standing for the partial derivative ``d^alpha phi(x)``
    (``alpha`` a multi-index; ``alpha = (0, ..., 0)`` is ``phi(x)`` itself).
    """

    increments: tuple[tuple[sp.Symbol, ...], ...]
    derivatives: dict
    coefficients: tuple[sp.Expr, ...]


def _multi_indices(variables: int, order: int):
    """All multi-indices of ``variables`` entries with total degree <= order, sorted."""
    if variables == 0:
        return [()]
    return sorted(
        (head,) + tail
        for head in range(order + 1)
        for tail in _multi_indices(variables - 1, order - head)
    )


@cache
def chain_rule(variables: int, order: int) -> ChainRule:
    """Derive the eps-coefficients 0..order of ``phi(x + a(eps))`` with ``variables`` arguments.

    Up to ``eps**order`` a smooth ``phi`` may be replaced by its Taylor polynomial of degree
    ``order`` at ``x`` with symbolic derivatives; SymPy then expands
    ``phi(x + sum_k a_k eps**k)`` and reads off the coefficients of ``eps**k``.
    """
    eps = sp.Symbol("epsilon")
    increments = tuple(
        tuple(sp.Symbol(f"a_{i}_{k}") for k in range(1, order + 1)) for i in range(variables)
    )
    paths = [sum(a * eps ** (k + 1) for k, a in enumerate(row)) for row in increments]
    derivatives = {}
    taylor = sp.Integer(0)
    for alpha in _multi_indices(variables, order):
        symbol = sp.Symbol("D_" + "_".join(map(str, alpha)))
        derivatives[alpha] = symbol
        term = symbol
        for path, power in zip(paths, alpha, strict=True):
            term *= path**power / sp.factorial(power)
        taylor += term
    polynomial = sp.Poly(sp.expand(taylor), eps)
    coefficients = tuple(sp.expand(polynomial.coeff_monomial(eps**k)) for k in range(order + 1))
    return ChainRule(increments=increments, derivatives=derivatives, coefficients=coefficients)


@cache
def _monomials(polynomial: sp.Expr) -> tuple:
    """``polynomial`` as ``((number, ((symbol, power), ...)), ...)``."""
    terms = []
    for term in sp.Add.make_args(sp.expand(polynomial)):
        number, factors = sp.Integer(1), []
        for base, power in sorted(term.as_powers_dict().items(), key=lambda item: str(item[0])):
            if base.is_Number:
                number *= base**power
            else:
                factors.append((base, int(power)))
        terms.append((number, tuple(factors)))
    return tuple(terms)


def evaluate_polynomial(polynomial: sp.Expr, values: Mapping, zero):
    """Value of a polynomial expression with its symbols replaced by ``values``.

    ``values`` may be of any ring type supporting ``+``, ``*`` and ``**`` (SymPy
    expressions, elements of a sparse polynomial ring, ...); ``zero`` is that ring's zero.
    """
    total = zero
    for number, factors in _monomials(polynomial):
        product = None
        for base, power in factors:
            factor = values[base] ** power
            product = factor if product is None else product * factor
        total += number if product is None else product * number
    return total


def compose(
    rule: ChainRule,
    derivative_value: Callable[[tuple], object],
    argument_jets: Sequence[Sequence],
    zero=sp.Integer(0),
) -> list:
    """Jet of ``phi(arguments)`` given the argument jets (their 0th coefficients are the point).

    ``derivative_value(alpha)`` returns the value of ``d^alpha phi`` at the point; the jet
    entries and derivative values may live in any ring (see :func:`evaluate_polynomial`).
    """
    values: dict = {}
    for row, jet in zip(rule.increments, argument_jets, strict=True):
        for k, placeholder in enumerate(row):
            values[placeholder] = jet[k + 1]
    for alpha, symbol in rule.derivatives.items():
        values[symbol] = derivative_value(alpha)
    return [evaluate_polynomial(coefficient, values, zero) for coefficient in rule.coefficients]


def jet_add(*jets: Sequence) -> list:
    """Coefficient-wise sum of jets of equal order (or entrywise sum of equal-length lists)."""
    return [sum(parts[1:], parts[0]) for parts in zip(*jets, strict=True)]


def jet_scale(factor, jet: Sequence) -> list:
    """``factor * jet`` for a factor constant in eps (scalar or matrix, multiplied on the left)."""
    return [factor * c for c in jet]


def jet_shift(jet: Sequence, zero) -> list:
    """``eps * jet``, truncated to the same order; ``zero`` is the 0th coefficient."""
    return [zero] + list(jet[:-1])
