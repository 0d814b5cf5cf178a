"""Itô calculus on explicit component symbols.

A vector SDE ``dX = F(X, t) dt + G(X, t) dB`` is given by its component symbols ``X``, the
drift column ``F`` (n x 1) and the diffusion matrix ``G`` (n x r). The Brownian increments
are built here as ``dB = sqrt(dt) * xi`` with ``xi`` independent standard normal symbols
(not :class:`sympy.stats.WienerProcess`, which treats increments as independent of time).

Itô's formula is *derived*, not typed: for a scalar ``phi(X, t)`` the engine Taylor-expands
``psi(s) = phi(X + s**2 F + s G xi, t + s**2)`` in ``s = sqrt(dt)`` by differentiating at
``s = 0``. The ``s``-coefficient is the martingale part ``grad(phi)^T G dB``; the ``s**2``
coefficient, averaged over ``xi`` with Gaussian moments, is the drift ``L phi``. (The
fluctuation of the quadratic term around its mean sums to a martingale of variance O(dt),
which vanishes as dt -> 0: that is the rule ``dB dB^T = I dt``.) :meth:`SDE.generator`
gives the textbook closed form ``F . grad(phi) + 1/2 tr(G G^T hess(phi))`` for comparison.

Gaussian expectations of polynomials use Isserlis' theorem: the expectation of a product of
centred jointly Gaussian variables is the sum over perfect pairings of the products of the
paired covariances. For independent standard normals this factorises into the moments
``E xi**(2n) = (2n - 1)!!`` (the number of pairings of 2n copies) and 0 for odd powers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import sympy as sp

__all__ = [
    "ItoDifferential",
    "SDE",
    "gaussian_expectation",
    "gaussian_expectation_poly",
    "isserlis",
    "normal_moment",
    "standard_normals",
]


def standard_normals(count: int, name: str = "xi") -> tuple[sp.Symbol, ...]:
    """``count`` symbols standing for independent standard normal variables."""
    return tuple(sp.Symbol(f"{name}_{index}", real=True) for index in range(count))


@cache
def normal_moment(power: int) -> sp.Integer:
    """``E xi**power`` for a standard normal: ``(power - 1)!!`` for even powers, else 0."""
    if power % 2:
        return sp.Integer(0)
    return sp.factorial2(power - 1)


def isserlis(
    variables: Sequence[sp.Symbol], covariance: Callable[[sp.Symbol, sp.Symbol], sp.Expr]
) -> sp.Expr:
    """``E[prod(variables)]`` for centred jointly Gaussian variables (Isserlis / Wick).

    ``variables`` may repeat; ``covariance(a, b)`` returns ``E[a b]``. The expectation is
    the sum over all perfect pairings of the product of the paired covariances.
    """
    items = tuple(variables)
    if len(items) % 2:
        return sp.Integer(0)
    if not items:
        return sp.Integer(1)
    first, rest = items[0], items[1:]
    total = sp.Integer(0)
    for position, partner in enumerate(rest):
        remaining = rest[:position] + rest[position + 1 :]
        total += covariance(first, partner) * isserlis(remaining, covariance)
    return total


def _split_monomial(term: sp.Expr, normals: frozenset) -> tuple[sp.Expr, dict]:
    """Split a product into (factor free of the normals, {normal: power})."""
    powers: dict = {}
    rest = sp.Integer(1)
    for base, exponent in term.as_powers_dict().items():
        if base in normals:
            if not (exponent.is_Integer and exponent >= 0):
                raise ValueError(f"not a polynomial in the normals: {term}")
            powers[base] = int(exponent)
        elif base.free_symbols & normals:
            raise ValueError(f"not a polynomial in the normals: {term}")
        else:
            rest *= base**exponent
    return rest, powers


def gaussian_expectation(
    expr: sp.Expr,
    normals: Sequence[sp.Symbol],
    covariance: Mapping[tuple[sp.Symbol, sp.Symbol], sp.Expr] | None = None,
) -> sp.Expr:
    """Expectation of a polynomial in centred Gaussian ``normals``.

    Without ``covariance`` the normals are independent standard normals and each monomial
    ``prod xi_i**k_i`` has expectation ``prod (k_i - 1)!!`` (0 if some ``k_i`` is odd).
    With ``covariance`` (a mapping ``(a, b) -> E[a b]``, looked up in either order) the
    general Isserlis sum over pairings is used.
    """
    normal_set = frozenset(normals)
    total = sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(expr)):
        rest, powers = _split_monomial(term, normal_set)
        if covariance is None:
            weight = sp.Integer(1)
            for power in powers.values():
                weight *= normal_moment(power)
        else:
            factors = [
                symbol for symbol, power in sorted(powers.items(), key=str) for _ in range(power)
            ]
            weight = isserlis(
                factors, lambda a, b: covariance.get((a, b), covariance.get((b, a), 0))
            )
        if weight != 0:
            total += rest * weight
    return total


def gaussian_expectation_poly(polynomial, normals: Sequence):
    """``gaussian_expectation`` for an element of a SymPy sparse polynomial ring.

    ``normals`` are generators of the ring standing for independent standard normals; the
    monomials are visited directly, without expanding any expression.
    """
    ring = polynomial.ring
    positions = [ring.gens.index(normal) for normal in normals]
    result = ring.zero
    for monomial, coefficient in polynomial.terms():
        weight = sp.Integer(1)
        for position in positions:
            weight *= normal_moment(monomial[position])
            if weight == 0:
                break
        if weight != 0:
            reduced = list(monomial)
            for position in positions:
                reduced[position] = 0
            result += ring({tuple(reduced): coefficient}) * int(weight)
    return result


@dataclass(frozen=True)
class ItoDifferential:
    """``d phi = drift dt + diffusion dB``; ``diffusion`` is a 1 x r row."""

    drift: sp.Expr
    diffusion: sp.Matrix


@dataclass(frozen=True)
class SDE:
    """``dX = drift dt + diffusion dB`` on explicit component symbols.

    ``state``: the n component symbols; ``drift``: n x 1; ``diffusion``: n x r;
    ``time``: the time symbol if the coefficients or test functions depend on it.
    """

    state: tuple[sp.Symbol, ...]
    drift: sp.Matrix
    diffusion: sp.Matrix
    time: sp.Symbol | None = None

    def __post_init__(self) -> None:
        n = len(self.state)
        if self.drift.shape != (n, 1) or self.diffusion.rows != n:
            raise ValueError("drift must be n x 1 and diffusion n x r for n state symbols")

    @property
    def brownian_dimension(self) -> int:
        return self.diffusion.cols

    def gradient(self, phi: sp.Expr) -> sp.Matrix:
        return sp.Matrix([sp.diff(phi, x) for x in self.state])

    def hessian(self, phi: sp.Expr) -> sp.Matrix:
        return sp.hessian(phi, self.state)

    def generator(self, phi: sp.Expr) -> sp.Expr:
        """Closed form ``dphi/dt + F . grad(phi) + 1/2 tr(G G^T hess(phi))``."""
        time_part = sp.diff(phi, self.time) if self.time is not None else sp.Integer(0)
        first = (self.drift.T * self.gradient(phi))[0, 0]
        second = (self.diffusion * self.diffusion.T * self.hessian(phi)).trace() / 2
        return time_part + first + second

    def ito(self, phi: sp.Expr) -> ItoDifferential:
        """Itô's formula for ``phi``, derived from the Euler increment (module docstring)."""
        s = sp.Dummy("s", positive=True)
        xi = standard_normals(self.brownian_dimension, "dB")
        xi_column = sp.Matrix(xi)
        increment = self.drift * s**2 + self.diffusion * xi_column * s
        moved = {x: x + increment[index, 0] for index, x in enumerate(self.state)}
        if self.time is not None:
            moved[self.time] = self.time + s**2
        psi = phi.subs(moved, simultaneous=True)
        first = sp.diff(psi, s).subs(s, 0)
        second = sp.diff(psi, s, 2).subs(s, 0) / 2
        diffusion = sp.Matrix([[sp.diff(first, b) for b in xi]])
        drift = gaussian_expectation(second, xi)
        return ItoDifferential(drift=drift, diffusion=diffusion)
