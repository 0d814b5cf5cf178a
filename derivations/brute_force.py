"""Brute-force small-noise expansion for small sizes, and the proof that it matches the rules.

For explicit sizes (hidden size ``d``, ``M`` steps, noise form ``"diagonal"`` or
``"scalar"``), with symbolic weights ``A``, ``W``, noise levels, step ``dt`` and a generic
smooth loss ``l`` (its partial derivatives at ``h_bar_M`` are free symbols ``D_alpha``),
the Euler--Maruyama recursion with all noise scaled by eps is pushed through as a jet in eps
of order 3. This is "differentiating the recursion": each step applies the chain rule
(:mod:`derivations.jets`) to the previous step's Taylor coefficients, so nothing is expanded
as a nested expression and :func:`sympy.series` is never called. The eps^n coefficient of
``l(h_M)`` is a polynomial in the standard normals ``xi_{k,j}``; its expectation follows
from Gaussian moments. All arithmetic is exact, in a sparse polynomial ring over Q whose
generators are every symbol of the problem (``sqrt(dt)`` is one generator).

The deterministic path enters the coefficients only through ``h_bar_k`` and the values
``tanh(z_bar_k)``; they are kept as free symbols, so every identity proved here holds for
all their values and in particular along the actual path. ``h_0 = 0``.

Proved, for each size:

- the eps^1 and eps^3 coefficients of ``E l(h_M)`` are identically zero;
- the eps^2 coefficient equals ``grad l^T m_M + 1/2 tr(hess l C_M)`` computed with the
  one-step rules of :mod:`derivations.expansion`.

The general reason for the vanishing odd orders: replacing every ``xi`` by ``-xi`` maps the
path of ``eps`` to the path of ``-eps`` and leaves the Gaussian law unchanged, so
``E l(h_M)`` is even in eps and the remainder after eps^2 is O(eps^4).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import sympy as sp

from nrnn.derivations.activation import TANH, tanh_derivative
from nrnn.derivations.expansion import SYMBOLS, diffusion_matrix, one_step_rules
from nrnn.derivations.explicit import evaluate
from nrnn.derivations.ito import gaussian_expectation_poly, standard_normals
from nrnn.derivations.jets import chain_rule, compose, evaluate_polynomial, jet_add, jet_scale
from nrnn.derivations.nodes import ActivationDerivative

__all__ = [
    "BruteForceResult",
    "DEFAULT_CASES",
    "FULL_CASES",
    "Problem",
    "expand_loss",
    "prove",
    "recursion_value",
]

ORDER = 3
FORMS = ("diagonal", "scalar")
DEFAULT_CASES = tuple((d, steps, form) for d in (1, 2) for steps in (1, 2, 3) for form in FORMS)
FULL_CASES = DEFAULT_CASES + tuple((3, steps, form) for steps in (1, 2) for form in FORMS)


class Problem:
    """The explicit symbols of one size and the polynomial ring they generate."""

    def __init__(self, d: int, steps: int, form: str):
        self.d, self.steps, self.form = d, steps, form
        self.noise_dimension = d if form == "diagonal" else d + 1
        self.sqrt_dt = sp.Symbol("sqrt_dt", positive=True)
        self.A = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"a_{i}{j}"))
        self.W = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"w_{i}{j}"))
        self.h_bar = [sp.zeros(d, 1)] + [
            sp.Matrix(d, 1, lambda i, _, k=k: sp.Symbol(f"hbar{k}_{i}"))
            for k in range(1, steps + 1)
        ]
        self.tanh_values = [
            sp.Matrix(d, 1, lambda i, _, k=k: sp.Symbol(f"t{k}_{i}")) for k in range(steps)
        ]
        self.normals = [standard_normals(self.noise_dimension, f"xi{k}") for k in range(steps)]
        self.loss_rule = chain_rule(d, ORDER)
        self.placeholder = sp.Matrix(d, 1, lambda i, _: sp.Symbol(f"p_{i}"))

    @cached_property
    def ring(self):
        generators = (
            [SYMBOLS.sigma_add, SYMBOLS.sigma_mult, self.sqrt_dt]
            + list(self.A)
            + list(self.W)
            + [x for h in self.h_bar[1:] for x in h]
            + [x for t in self.tanh_values for x in t]
            + [x for xi in self.normals for x in xi]
            + list(self.loss_rule.derivatives.values())
        )
        ring, *_ = sp.ring(generators, sp.QQ)
        return ring

    def poly(self, expr):
        return self.ring(expr)

    def loss_derivative(self, alpha: tuple) -> sp.Symbol:
        """The symbol for ``d^alpha l(h_bar_M)``."""
        return self.loss_rule.derivatives[alpha]

    @cached_property
    def diffusion_template(self) -> sp.Matrix:
        """sigma(p) for the placeholder column p, from :func:`diffusion_matrix`."""
        expr = diffusion_matrix(self.form, SYMBOLS.h, SYMBOLS.sigma_add, SYMBOLS.sigma_mult)
        return evaluate(expr, {SYMBOLS.d: self.d, SYMBOLS.h: self.placeholder})

    def diffusion(self, h: list) -> list:
        """sigma(h) as rows of ring elements, for a column h of ring elements."""
        values = {
            SYMBOLS.sigma_add: self.poly(SYMBOLS.sigma_add),
            SYMBOLS.sigma_mult: self.poly(SYMBOLS.sigma_mult),
        }
        values.update(zip(self.placeholder, h))
        template = self.diffusion_template
        return [
            [
                evaluate_polynomial(template[i, j], values, self.ring.zero)
                for j in range(template.cols)
            ]
            for i in range(template.rows)
        ]

    def activation(self, step: int, order: int) -> sp.Matrix:
        return self.tanh_values[step].applyfunc(lambda t: tanh_derivative(order).subs(TANH, t))


def _matvec(matrix: list, vector: list) -> list:
    return [sum((a * x for a, x in zip(row, vector)), vector[0] * 0) for row in matrix]


def _step(problem: Problem, step: int, jet: list) -> list:
    """One Euler--Maruyama step on a jet (list over orders of columns of ring elements)."""
    ring = problem.ring
    poly = problem.poly
    A = [[poly(x) for x in problem.A.row(i)] for i in range(problem.d)]
    W = [[poly(x) for x in problem.W.row(i)] for i in range(problem.d)]
    zero = [ring.zero] * problem.d
    inner = [_matvec(W, c) for c in jet]
    tanh_rule = chain_rule(1, ORDER)
    tanh_jet = [list(zero) for _ in range(ORDER + 1)]
    for i in range(problem.d):
        t = poly(problem.tanh_values[step][i, 0])
        derivative = lambda alpha, t=t: evaluate_polynomial(
            tanh_derivative(alpha[0]), {TANH: t}, ring.zero
        )
        argument = [ring.zero] + [c[i] for c in inner[1:]]
        for k, value in enumerate(compose(tanh_rule, derivative, [argument], ring.zero)):
            tanh_jet[k][i] = value
    drift = [jet_add(_matvec(A, c), tanh_c) for c, tanh_c in zip(jet, tanh_jet)]
    # sigma is affine in h: sigma(h_bar + sum_n c_n eps^n) = sigma(h_bar) + sum_n (sigma(c_n) - sigma(0)) eps^n.
    sigma_zero = problem.diffusion(zero)
    diffusion = [problem.diffusion(jet[0])] + [
        [[a - b for a, b in zip(row, row0)] for row, row0 in zip(problem.diffusion(c), sigma_zero)]
        for c in jet[1:]
    ]
    xi = [poly(x) for x in problem.normals[step]]
    sqrt_dt = poly(problem.sqrt_dt)
    noise = [zero] + [
        jet_scale(sqrt_dt, _matvec(sigma, xi)) for sigma in diffusion[:-1]
    ]  # eps * jet
    new = [jet_add(c, jet_scale(sqrt_dt**2, f), n) for c, f, n in zip(jet, drift, noise)]
    return [[poly(x) for x in problem.h_bar[step + 1]]] + new[1:]


def expand_loss(d: int, steps: int, form: str) -> list:
    """Expectations of the eps^0..eps^3 coefficients of ``l(h_M)``, as ring elements."""
    problem = Problem(d, steps, form)
    ring = problem.ring
    jet = [[ring.zero] * d for _ in range(ORDER + 1)]
    for step in range(steps):
        jet = _step(problem, step, jet)
    components = [[c[i] for c in jet] for i in range(d)]
    derivative = lambda alpha: problem.poly(problem.loss_derivative(alpha))
    loss_jet = compose(problem.loss_rule, derivative, components, ring.zero)
    normals = [problem.poly(x) for xi in problem.normals for x in xi]
    return [gaussian_expectation_poly(c, normals) for c in loss_jet]


def recursion_value(d: int, steps: int, form: str) -> sp.Expr:
    """``grad l^T m_M + 1/2 tr(hess l C_M)`` from the derived one-step rules (explicit)."""
    problem = Problem(d, steps, form)
    rules = one_step_rules()
    s = SYMBOLS
    covariance = sp.zeros(d, d)
    mean = sp.zeros(d, 1)
    for step in range(steps):
        sigma = evaluate(
            diffusion_matrix(form, s.h, s.sigma_add, s.sigma_mult),
            {s.d: d, s.h: problem.h_bar[step]},
        )
        bindings = {
            s.d: d,
            s.r: problem.noise_dimension,
            s.dt: problem.sqrt_dt**2,
            s.A: problem.A,
            s.W: problem.W,
            ActivationDerivative(1, s.z): problem.activation(step, 1),
            ActivationDerivative(2, s.z): problem.activation(step, 2),
            s.Sigma: sigma,
            s.C: covariance,
            s.m: mean,
        }
        bindings[s.J] = evaluate(rules.step_jacobian, bindings)
        bindings[s.v] = evaluate(rules.contraction, bindings)
        covariance = evaluate(rules.covariance_step, bindings)
        mean = evaluate(rules.mean_step, bindings)
    unit = lambda *indices: tuple(sum(j == i for i in indices) for j in range(d))
    gradient = sp.Matrix(d, 1, lambda i, _: problem.loss_derivative(unit(i)))
    hessian = sp.Matrix(d, d, lambda i, j: problem.loss_derivative(unit(i, j)))
    bindings = {s.d: d, s.grad: gradient, s.hess: hessian, s.C: covariance, s.m: mean}
    return (evaluate(rules.q_term, bindings)[0, 0] + evaluate(rules.r_term, bindings)) / 2


@dataclass(frozen=True)
class BruteForceResult:
    d: int
    steps: int
    form: str
    first_order_zero: bool
    third_order_zero: bool
    second_order_matches: bool
    terms: int

    @property
    def proved(self) -> bool:
        return self.first_order_zero and self.third_order_zero and self.second_order_matches

    def statement(self) -> str:
        verdict = "proved" if self.proved else "FAILED"
        return (
            f"d={self.d}, M={self.steps}, {self.form} noise: eps^1 and eps^3 coefficients of E l(h_M) "
            f"are identically 0; eps^2 coefficient ({self.terms} terms) minus the recursion "
            f"is 0: {verdict}."
        )


@cache
def prove(d: int, steps: int, form: str) -> BruteForceResult:
    """Run the brute force for one size and compare with the one-step rules."""
    problem = Problem(d, steps, form)
    coefficients = expand_loss(d, steps, form)
    recursion = problem.poly(recursion_value(d, steps, form))
    return BruteForceResult(
        d=d,
        steps=steps,
        form=form,
        first_order_zero=coefficients[1] == 0,
        third_order_zero=coefficients[3] == 0,
        second_order_matches=coefficients[2] - recursion == 0,
        terms=len(coefficients[2]),
    )
