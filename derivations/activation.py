"""Derivatives of the activation tanh, written as polynomials in tanh itself.

SymPy differentiates ``tanh(z)``; substituting ``T = tanh(z)`` leaves a polynomial in ``T``
(``tanh' = 1 - T**2``, ``tanh'' = -2 T (1 - T**2)``), which is how the generated code
evaluates them: one ``tanh`` per entry.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from nrnn.derivations.topic import Argument, Derivation, Formula, GeneratedFunction

__all__ = ["TANH", "derive", "tanh_derivative"]

_Z = sp.Symbol("z", real=True)
TANH = sp.Symbol("T", real=True)  # stands for tanh(z)


@cache
def tanh_derivative(order: int) -> sp.Expr:
    """``d^order tanh / dz^order`` as a polynomial in ``TANH``."""
    derivative = sp.diff(sp.tanh(_Z), _Z, order).subs(sp.tanh(_Z), TANH)
    if _Z in derivative.free_symbols:
        raise AssertionError("tanh derivative is not a polynomial in tanh")
    return derivative


def _in_terms_of_tanh(order: int) -> sp.Expr:
    """The derivative as an expression in ``tanh(z)``, for printing and typesetting."""
    return tanh_derivative(order).subs(TANH, sp.tanh(_Z))


def derive() -> Derivation:
    names = {1: ("tanh_prime", "first"), 2: ("tanh_second", "second")}
    z_argument = Argument("z", _Z, "(...)", "pre-activation values, any shape")
    derivation = Derivation(
        title="Activation",
        source=__name__,
        summary="Derivatives of tanh by SymPy differentiation, rewritten in terms of tanh.",
    )
    for order, (name, word) in names.items():
        expr = _in_terms_of_tanh(order)
        derivation.functions.append(
            GeneratedFunction(
                name=name,
                module="activation",
                source=__name__,
                summary=f"The {word} derivative of tanh, entrywise, in terms of tanh(z).",
                arguments=(z_argument,),
                expr=expr,
                returns="same shape as z",
                elementwise=True,
            )
        )
        symbol = r"\tanh" + "'" * order + "(z)"
        derivation.formulas.append(
            Formula(
                title=f"tanh, {word} derivative",
                lines=(f"{symbol} = {sp.latex(expr)}",),
                assumptions="Exact, entrywise.",
            )
        )
    bound = sp.maximum(1 - TANH**2, TANH, sp.Interval(-1, 1))
    derivation.checks.append(
        f"max over tanh in [-1, 1] of tanh' = 1 - tanh^2 is {bound}: tanh is 1-Lipschitz."
    )
    return derivation
