"""Derivatives of the activations, and their Lipschitz constants.

SymPy differentiates each activation φ of :data:`derivations.drift.FUNCTIONS`. Where the
derivatives are polynomials in φ itself (tanh: ``tanh' = 1 - T**2``; the logistic sigmoid:
``σ' = S (1 - S)``) they are written that way, so the generated code evaluates φ once per
entry; otherwise (arctan) they are printed in z. The Lipschitz constant sup |φ'| is the
maximum of φ' over the range (SymPy's ``maximum``): 1 for tanh and arctan, 1/4 for the
sigmoid. It enters the contraction rate κ of the cells that use φ.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from nrnn.derivations.drift import FUNCTIONS
from nrnn.derivations.topic import Argument, Derivation, Formula, GeneratedFunction

__all__ = ["TANH", "derive", "derivative", "lipschitz_constant", "tanh_derivative"]

_Z = sp.Symbol("z", real=True)
TANH = sp.Symbol("T", real=True)  # stands for tanh(z)
_VALUE = sp.Symbol("P", real=True)  # stands for φ(z)

sigmoid = sp.Function("sigmoid")
"""The logistic function as a printable SymPy function (``torch.sigmoid``)."""


@dataclass(frozen=True)
class _Range:
    """The inverse z(φ) of an activation whose derivatives are polynomials in φ, and the
    range of φ; None when they are not (the derivatives are then printed in z)."""

    inverse: sp.Expr | None
    interval: sp.Interval


_RANGES = {
    "tanh": _Range(sp.atanh(_VALUE), sp.Interval(-1, 1)),
    "sigmoid": _Range(sp.log(_VALUE / (1 - _VALUE)), sp.Interval(0, 1)),
    "arctan": _Range(None, sp.Reals),
}
_PRINTABLE = {"tanh": sp.tanh(_Z), "sigmoid": sigmoid(_Z), "arctan": sp.atan(_Z)}
WORDS = {1: ("prime", "first"), 2: ("second", "second")}


@cache
def derivative(name: str, order: int) -> sp.Expr:
    """d^order φ / dz^order, as a polynomial in ``P`` = φ(z) where possible, else in z."""
    expr = sp.diff(FUNCTIONS[name], _Z, order)
    inverse = _RANGES[name].inverse
    if inverse is None:
        return sp.simplify(expr)
    direct = expr.subs(FUNCTIONS[name], _VALUE)  # tanh: SymPy's derivative is in tanh already
    if _Z not in direct.free_symbols:
        return direct
    polynomial = sp.factor(sp.simplify(expr.subs(_Z, inverse)))
    if _Z in polynomial.free_symbols or not polynomial.is_polynomial(_VALUE):
        raise AssertionError(f"the derivative of {name} is not a polynomial in {name}")
    return polynomial


def tanh_derivative(order: int) -> sp.Expr:
    """d^order tanh / dz^order as a polynomial in ``TANH``."""
    return derivative("tanh", order).subs(_VALUE, TANH)


def _printable(name: str, order: int) -> sp.Expr:
    """The derivative as an expression in z, with φ written as the printable function."""
    return derivative(name, order).subs(_VALUE, _PRINTABLE[name])


@cache
def lipschitz_constant(name: str) -> sp.Expr:
    """sup |φ'| over the range: the activation's Lipschitz constant."""
    variable = _VALUE if _RANGES[name].inverse is not None else _Z
    slope = derivative(name, 1)
    interval = _RANGES[name].interval
    if sp.minimum(slope, variable, interval) < 0:
        raise AssertionError(f"{name} is not increasing")
    return sp.maximum(slope, variable, interval)


def derive() -> Derivation:
    z_argument = Argument("z", _Z, "(...)", "pre-activation values, any shape")
    derivation = Derivation(
        title="Activations",
        source=__name__,
        summary=(
            "Derivatives of tanh, the logistic sigmoid and arctan by SymPy differentiation, "
            "written in terms of the activation itself where they are polynomials in it; Lipschitz "
            "constants sup |φ'|."
        ),
    )
    for name in FUNCTIONS:
        for order, (suffix, word) in WORDS.items():
            expr = _printable(name, order)
            derivation.functions.append(
                GeneratedFunction(
                    name=f"{name}_{suffix}",
                    module="activation",
                    source=__name__,
                    summary=f"The {word} derivative of {name}, entrywise.",
                    arguments=(z_argument,),
                    expr=expr,
                    returns="same shape as z",
                    elementwise=True,
                )
            )
            symbol = rf"\{name}" if name != "sigmoid" else r"\sigma"
            symbol = symbol.replace(r"\arctan", r"\operatorname{arctan}")
            derivation.formulas.append(
                Formula(
                    title=f"{name}, {word} derivative",
                    lines=(f"{symbol}{chr(39) * order}(z) = {sp.latex(expr)}",),
                    assumptions="Exact, entrywise.",
                )
            )
        constant = lipschitz_constant(name)
        derivation.functions.append(
            GeneratedFunction(
                name=f"{name}_lipschitz",
                module="activation",
                source=__name__,
                summary=f"The Lipschitz constant sup |{name}'| of {name}.",
                arguments=(),
                expr=constant,
                returns="a number",
                elementwise=True,
            )
        )
        derivation.checks.append(
            f"{name} is increasing and the maximum of its derivative over its range is {constant}: "
            f"{name} is {constant}-Lipschitz."
        )
    return derivation
