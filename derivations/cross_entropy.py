"""Gradient and Hessian of the cross-entropy loss, and their pull-back through the readout.

``l(x) = -x_y + log sum_k exp(x_k)`` for logits ``x`` of any length ``c``: SymPy
differentiates the indexed expression for symbolic ``c`` (entries ``j, l`` in range), which
after naming ``p_j = exp(x_j) / sum_k exp(x_k)`` reads ``p_j - [j = y]`` and
``[j = l] p_j - p_j p_l``. These are the entries of ``softmax(x) - onehot(y)`` and
``diag(p) - p p^T``; the matrix forms are checked against explicit differentiation for
``c = 2, 3, 4``. Through the readout ``x = V h + c0`` the chain rule (jets of
:mod:`derivations.expansion`) gives ``grad_h l = V^T grad_x l`` and
``hess_h l = V^T hess_x l V``.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from nrnn.derivations.expansion import scalar_function_jet
from nrnn.derivations.explicit import evaluate
from nrnn.derivations.matrix_rules import linear_coefficients, matrix_terms
from nrnn.derivations.nodes import Softmax
from nrnn.derivations.topic import Argument, Derivation, Formula, GeneratedFunction

__all__ = ["derive", "indexed_derivatives", "matrix_forms", "readout_pullback"]

CLASSES = sp.Symbol("c", integer=True, positive=True)
HIDDEN = sp.Symbol("d", integer=True, positive=True)
LOGITS = sp.MatrixSymbol("x", CLASSES, 1)
ONEHOT = sp.MatrixSymbol("e_{y}", CLASSES, 1)


@cache
def indexed_derivatives() -> tuple[sp.Expr, sp.Expr, tuple]:
    """Entry formulas of the gradient and Hessian for symbolic ``c`` in terms of ``p_j``."""
    j, k, ell, y = sp.symbols("j k l y", integer=True, nonnegative=True)
    x = sp.IndexedBase("x")
    p = sp.IndexedBase("p")
    normaliser = sp.Symbol("Z", positive=True)
    loss = -x[y] + sp.log(sp.Sum(sp.exp(x[k]), (k, 0, CLASSES - 1)))

    def in_range(expr: sp.Expr) -> sp.Expr:
        return expr.replace(
            lambda node: isinstance(node, sp.Piecewise), lambda node: node.args[0].expr
        )

    def named(expr: sp.Expr) -> sp.Expr:
        return sp.simplify(
            in_range(expr)
            .subs(sp.Sum(sp.exp(x[k]), (k, 0, CLASSES - 1)), normaliser)
            .subs({sp.exp(x[j]): p[j] * normaliser, sp.exp(x[ell]): p[ell] * normaliser})
        )

    gradient = sp.diff(loss, x[j]).doit()
    hessian = sp.diff(gradient, x[ell]).doit()
    return sp.expand(named(gradient)), sp.expand(named(hessian)), (j, ell, y, p)


def matrix_forms() -> tuple[sp.MatrixExpr, sp.MatrixExpr]:
    probabilities = Softmax(LOGITS)
    return probabilities - ONEHOT, sp.DiagMatrix(probabilities) - probabilities * probabilities.T


def explicit_check(classes: int) -> bool:
    """Matrix forms vs explicit differentiation, and vs the indexed entry formulas."""
    x = sp.Matrix(sp.symbols(f"x_0:{classes}", real=True))
    gradient_form, hessian_form = matrix_forms()
    gradient_entry, hessian_entry, (j, ell, y, _) = indexed_derivatives()
    exponentials = [sp.exp(v) for v in x]
    probabilities = [e / sum(exponentials) for e in exponentials]
    for label in range(classes):
        loss = -x[label] + sp.log(sum(exponentials))
        onehot = sp.Matrix([int(i == label) for i in range(classes)])
        bindings = {CLASSES: classes, LOGITS: x, ONEHOT: onehot}
        gradient = evaluate(gradient_form, bindings)
        for a in range(classes):
            if sp.simplify(gradient[a] - sp.diff(loss, x[a])) != 0:
                return False
            entry = gradient_entry.subs({j: a, y: label}).replace(
                lambda n: isinstance(n, sp.Indexed), lambda n: probabilities[int(n.indices[0])]
            )
            if sp.simplify(entry - gradient[a]) != 0:
                return False
        hessian = evaluate(hessian_form, bindings)
        for a in range(classes):
            for b in range(classes):
                if sp.simplify(hessian[a, b] - sp.diff(loss, x[a], x[b])) != 0:
                    return False
                entry = hessian_entry.subs({j: a, ell: b}).replace(
                    lambda n: isinstance(n, sp.Indexed), lambda n: probabilities[int(n.indices[0])]
                )
                if sp.simplify(entry - hessian[a, b]) != 0:
                    return False
    return True


@cache
def readout_pullback():
    """Gradient and Hessian with respect to h of ``l(V h + c0)`` by the chain rule."""
    V = sp.MatrixSymbol("V", CLASSES, HIDDEN)
    h_bar = sp.MatrixSymbol(r"\bar{h}", HIDDEN, 1)
    delta = sp.MatrixSymbol(r"\delta", HIDDEN, 1)
    logits_grad = sp.MatrixSymbol(r"g_{x}", CLASSES, 1)
    logits_hessian = sp.MatrixSymbol(r"H_{x}", CLASSES, CLASSES)
    first, second = scalar_function_jet(
        logits_grad, logits_hessian, [V * h_bar, V * delta, sp.ZeroMatrix(CLASSES, 1)]
    )
    coefficients, _ = linear_coefficients(sp.MatAdd(*first), [delta])
    gradient = coefficients[delta].T
    hessian_parts = []
    for coefficient, factors in matrix_terms(sp.MatAdd(*second)):
        if factors[0] == delta.T and factors[-1] == delta:
            hessian_parts.append(sp.MatMul(2 * coefficient, *factors[1:-1]).doit())
    hessian = sp.MatAdd(*hessian_parts).doit()
    return gradient, hessian, (V, logits_grad, logits_hessian)


def generated_functions() -> list[GeneratedFunction]:
    gradient_form, hessian_form = matrix_forms()
    pulled_gradient, pulled_hessian, (V, logits_grad, logits_hessian) = readout_pullback()
    logits = Argument("logits", LOGITS, "(..., c)", "logits x")
    readout = Argument(
        "readout_weight", V, "(..., c, d)", "readout matrix V (torch.nn.Linear weight)"
    )
    return [
        GeneratedFunction(
            "cross_entropy_grad",
            "cross_entropy",
            __name__,
            "Gradient of the cross-entropy with respect to the logits: softmax(x) - onehot.",
            (logits, Argument("onehot", ONEHOT, "(..., c)", "one-hot encoding of the label")),
            gradient_form,
            "(..., c)",
        ),
        GeneratedFunction(
            "cross_entropy_hessian",
            "cross_entropy",
            __name__,
            "Hessian of the cross-entropy with respect to the logits: diag(p) - p p^T, p = "
            "softmax(x).",
            (logits,),
            hessian_form,
            "(..., c, c)",
        ),
        GeneratedFunction(
            "readout_grad",
            "cross_entropy",
            __name__,
            "Gradient with respect to h through the readout x = V h + c0: V^T grad_x.",
            (
                readout,
                Argument(
                    "logits_grad", logits_grad, "(..., c)", "gradient with respect to the logits"
                ),
            ),
            pulled_gradient,
            "(..., d)",
        ),
        GeneratedFunction(
            "readout_hessian",
            "cross_entropy",
            __name__,
            "Hessian with respect to h through the readout x = V h + c0: V^T hess_x V.",
            (
                readout,
                Argument(
                    "logits_hessian",
                    logits_hessian,
                    "(..., c, c)",
                    "Hessian with respect to the logits",
                ),
            ),
            pulled_hessian,
            "(..., d, d)",
        ),
    ]


def derive() -> Derivation:
    from nrnn.derivations.latex import equation

    gradient_entry, hessian_entry, _ = indexed_derivatives()
    gradient_form, hessian_form = matrix_forms()
    pulled_gradient, pulled_hessian, _ = readout_pullback()
    derivation = Derivation(
        title="Cross-entropy loss",
        source=__name__,
        summary="l(x) = -x_y + log sum_k exp(x_k), differentiated for symbolic class count c, then "
        "pulled back through x = V h + c0.",
    )
    derivation.formulas += [
        Formula(
            "Entries (symbolic c)",
            (
                equation(r"\partial_{x_j} \ell", gradient_entry),
                equation(r"\partial_{x_j}\partial_{x_l} \ell", hessian_entry),
                r"p_j = \frac{e^{x_j}}{\sum_{k} e^{x_k}}",
            ),
            "0 <= j, l < c; delta_{jy} is the Kronecker delta.",
        ),
        Formula(
            "Gradient and Hessian with respect to the logits",
            (
                equation(r"\nabla_{x} \ell", gradient_form),
                equation(r"\nabla^{2}_{x} \ell", hessian_form),
            ),
            "e_y is the one-hot label; the Hessian is PSD with rank <= c - 1.",
        ),
        Formula(
            "With respect to the hidden state",
            (
                equation(r"\nabla_{h} \ell", pulled_gradient),
                equation(r"\nabla^{2}_{h} \ell", pulled_hessian),
            ),
            "Readout x = V h + c0; g_x, H_x the logit gradient and Hessian above (rank of the "
            "Hessian <= c).",
        ),
    ]
    for classes in (2, 3, 4):
        if not explicit_check(classes):
            raise AssertionError(f"cross-entropy forms fail for c = {classes}")
    derivation.checks.append(
        "softmax(x) - e_y and diag(p) - p p^T equal the explicit derivatives and the indexed entry "
        "formulas for c = 2, 3, 4."
    )
    derivation.functions += generated_functions()
    return derivation
