"""Brute-force small-noise expansion of a cell for small sizes, and the proof that it
matches the one-step rules with the cell's derived Jacobian and curvature.

For explicit sizes (the cell's hidden size ``d``, ``M`` steps, a Brownian layout of
:mod:`derivations.brownian`), with symbolic parameters, noise levels, step ``dt`` and a
generic smooth loss ``l`` (its partial derivatives at ``h_bar_M`` are free symbols
``D_alpha``), the Euler--Maruyama recursion with all noise scaled by eps is pushed through
as a jet in eps of order 3. This is "differentiating the recursion": the drift expression
of the cell (:class:`derivations.drift.CellSpec`) is evaluated on jets, sums and linear
maps coefficient by coefficient, elementwise products by the Cauchy product, and every
activation by the chain rule (:mod:`derivations.jets`), so nothing is expanded as a nested
expression and :func:`sympy.series` is never called. The eps^n coefficient of ``l(h_M)`` is
a polynomial in the standard normals ``xi_{k,j}``; its expectation follows from Gaussian
moments. All arithmetic is exact, in a sparse polynomial ring over Q whose generators are
every symbol of the problem (``sqrt(dt)`` is one generator).

The deterministic path enters the coefficients only through ``h_bar_k`` and the values of
the activations and their derivatives there; they are kept as free symbols, so every
identity proved here holds for all their values (for any smooth activation) and in
particular along the actual path. ``h_0 = 0``.

Proved, for each size:

- the eps^1 and eps^3 coefficients of ``E l(h_M)`` are identically zero;
- the eps^2 coefficient equals ``grad l^T m_M + 1/2 tr(hess l C_M)`` computed with the
  one-step rules of :mod:`derivations.expansion` and the cell's J and v.

The general reason for the vanishing odd orders: replacing every ``xi`` by ``-xi`` maps the
path of ``eps`` to the path of ``-eps`` and leaves the Gaussian law unchanged, so
``E l(h_M)`` is even in eps and the remainder after eps^2 is O(eps^4).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, cached_property

import sympy as sp
from sympy.matrices.expressions.hadamard import HadamardProduct

from nrnn.derivations.brownian import BrownianLayout
from nrnn.derivations.drift import Applied, CellSpec, point_symbol
from nrnn.derivations.expansion import SYMBOLS, one_step_rules
from nrnn.derivations.explicit import evaluate
from nrnn.derivations.ito import gaussian_expectation_poly, standard_normals
from nrnn.derivations.jets import chain_rule, compose, evaluate_polynomial

__all__ = ["BruteForceResult", "Problem", "expand_loss", "prove", "recursion_value"]

ORDER = 3


class Problem:
    """The explicit symbols of one cell at one size and the polynomial ring they generate."""

    def __init__(self, spec: CellSpec, d: int, steps: int, layout: BrownianLayout):
        self.spec, self.d, self.steps, self.layout = spec, d, steps, layout
        self.sizes = dict(spec.sizes(d))
        self.n = int(sp.sympify(spec.state_dimension).xreplace(self.sizes))
        self.noise_dimension = int(layout.noise_dimension(self.n))
        self.sqrt_dt = sp.Symbol("sqrt_dt", positive=True)
        self.values = {s.symbol: self._explicit(s.symbol) for s in spec.symbols}
        self.h_bar = [sp.zeros(self.n, 1)] + [
            sp.Matrix(self.n, 1, lambda i, _, k=k: sp.Symbol(f"hbar{k}_{i}"))
            for k in range(1, steps + 1)
        ]
        self.uses = spec.applied()
        self.normals = [standard_normals(self.noise_dimension, f"xi{k}") for k in range(steps)]
        self.loss_rule = chain_rule(self.n, ORDER)
        self.placeholder = sp.Matrix(self.n, 1, lambda i, _: sp.Symbol(f"p_{i}"))

    def _explicit(self, symbol):
        """A parameter's explicit value: the given constant, or a matrix of free symbols."""
        constants = dict(self.spec.constants)
        if symbol in constants:
            return sp.Matrix(constants[symbol](self.d))
        if not isinstance(symbol, sp.MatrixSymbol):
            return symbol
        rows, cols = (int(sp.sympify(n).xreplace(self.sizes)) for n in symbol.shape)
        name = "".join(ch for ch in symbol.name if ch.isalnum())
        return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i}_{j}"))

    def derivative_values(self, step: int, use: Applied, order: int) -> sp.Matrix:
        """φ^(order) of one activation use at the path, step ``step``: free symbols."""
        rows = int(sp.sympify(use.shape[0]).xreplace(self.sizes))
        return sp.Matrix(rows, 1, lambda i, _: sp.Symbol(f"{use.label}{step}_{order}_{i}"))

    @cached_property
    def ring(self):
        generators = set()
        for value in self.values.values():
            generators |= value.free_symbols
        generators |= {SYMBOLS.sigma_add, SYMBOLS.sigma_mult, self.sqrt_dt}
        generators |= {x for h in self.h_bar[1:] for x in h}
        generators |= {
            x
            for k in range(self.steps)
            for use in self.uses
            for order in range(ORDER + 1)
            for x in self.derivative_values(k, use, order)
        }
        generators |= {x for xi in self.normals for x in xi}
        generators |= set(self.loss_rule.derivatives.values())
        ring, *_ = sp.ring(sorted(generators, key=str), sp.QQ)
        return ring

    def poly(self, expr):
        return self.ring(expr)

    def loss_derivative(self, alpha: tuple) -> sp.Symbol:
        """The symbol for ``d^alpha l(h_bar_M)``."""
        return self.loss_rule.derivatives[alpha]

    @cached_property
    def diffusion_template(self) -> sp.Matrix:
        """sigma(p) for the placeholder column p, from the layout's diffusion."""
        expr = self.layout.diffusion(SYMBOLS.h, SYMBOLS.sigma_add, SYMBOLS.sigma_mult, SYMBOLS.n)
        return evaluate(expr, {SYMBOLS.n: self.n, SYMBOLS.h: self.placeholder})

    def diffusion(self, h: list) -> list:
        """sigma(h) as rows of ring elements, for a column h of ring elements."""
        values = {
            SYMBOLS.sigma_add: self.poly(SYMBOLS.sigma_add),
            SYMBOLS.sigma_mult: self.poly(SYMBOLS.sigma_mult),
        }
        values.update(zip(self.placeholder, h, strict=True))
        template = self.diffusion_template
        return [
            [
                evaluate_polynomial(template[i, j], values, self.ring.zero)
                for j in range(template.cols)
            ]
            for i in range(template.rows)
        ]


# ---------------------------------------------------------------------- jets of matrices
# A jet is a list over orders 0..ORDER of explicit matrices (lists of rows of ring
# elements), with None for a zero coefficient.
def _constant(problem: Problem, matrix: sp.Matrix) -> list:
    rows = [[problem.poly(x) for x in matrix.row(i)] for i in range(matrix.rows)]
    return [rows] + [None] * ORDER


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return [[x + y for x, y in zip(ra, rb, strict=True)] for ra, rb in zip(a, b, strict=True)]


def _scale(factor, a):
    return None if a is None else [[factor * x for x in row] for row in a]


def _matmul(a, b):
    if a is None or b is None:
        return None
    columns = list(zip(*b, strict=True))
    return [
        [sum((x * y for x, y in zip(row, col, strict=True)), row[0] * 0) for col in columns]
        for row in a
    ]


def _hadamard(a, b):
    if a is None or b is None:
        return None
    return [[x * y for x, y in zip(ra, rb, strict=True)] for ra, rb in zip(a, b, strict=True)]


def _cauchy(a: list, b: list, multiply) -> list:
    """The jet of a product: (a b)_k = Σ_{i+j=k} a_i b_j."""
    result = [None] * (ORDER + 1)
    for i, left in enumerate(a):
        for j, right in enumerate(b[: ORDER + 1 - i]):
            result[i + j] = _add(result[i + j], multiply(left, right))
    return result


def _drift_jet(problem: Problem, step: int, expr, state_jet: list) -> list:
    """The jet of a sub-expression of the drift at step ``step``."""
    spec = problem.spec
    if expr == spec.state:
        return state_jet
    if expr in problem.values:
        return _constant(problem, problem.values[expr])
    if isinstance(expr, sp.Identity | sp.OneMatrix | sp.ZeroMatrix):
        return _constant(problem, evaluate(expr, problem.sizes))
    if isinstance(expr, sp.MatAdd):
        jets = [_drift_jet(problem, step, arg, state_jet) for arg in expr.args]
        return [_sum([jet[k] for jet in jets]) for k in range(ORDER + 1)]
    if isinstance(expr, sp.MatMul):
        coefficient, factors = expr.as_coeff_matrices()
        jet = _drift_jet(problem, step, factors[0], state_jet)
        for factor in factors[1:]:
            jet = _cauchy(jet, _drift_jet(problem, step, factor, state_jet), _matmul)
        scale = problem.poly(coefficient.xreplace(problem.values))
        return [_scale(scale, c) for c in jet]
    if isinstance(expr, HadamardProduct):
        jet = _drift_jet(problem, step, expr.args[0], state_jet)
        for factor in expr.args[1:]:
            jet = _cauchy(jet, _drift_jet(problem, step, factor, state_jet), _hadamard)
        return jet
    if isinstance(expr, sp.Transpose):
        jet = _drift_jet(problem, step, expr.arg, state_jet)
        return [None if c is None else [list(col) for col in zip(*c, strict=True)] for c in jet]
    if isinstance(expr, Applied):
        return _activation_jet(problem, step, expr, state_jet)
    raise NotImplementedError(f"cannot evaluate {type(expr).__name__} on jets: {expr}")


def _sum(matrices):
    total = None
    for matrix in matrices:
        total = _add(total, matrix)
    return total


def _activation_jet(problem: Problem, step: int, use: Applied, state_jet: list) -> list:
    """φ(argument) entrywise by the chain rule; φ^(j) at the path are free symbols."""
    ring = problem.ring
    argument = _drift_jet(problem, step, use.argument, state_jet)
    rows = len(next(c for c in argument if c is not None))
    rule = chain_rule(1, ORDER)
    values = [
        [problem.poly(x) for x in problem.derivative_values(step, use, order)]
        for order in range(ORDER + 1)
    ]
    result = [[[ring.zero] for _ in range(rows)] for _ in range(ORDER + 1)]
    for i in range(rows):
        increments = [ring.zero] + [ring.zero if c is None else c[i][0] for c in argument[1:]]

        def derivative(alpha: tuple, i: int = i) -> object:
            return values[alpha[0]][i]

        for k, value in enumerate(compose(rule, derivative, [increments], ring.zero)):
            result[k][i][0] = value
    return result


def _step(problem: Problem, step: int, jet: list) -> list:
    """One Euler--Maruyama step on a state jet (list over orders of columns)."""
    ring = problem.ring
    columns = [[[x] for x in c] for c in jet]
    drift = _drift_jet(problem, step, problem.spec.drift, columns)
    zero = [ring.zero] * problem.n
    drift = [zero if c is None else [row[0] for row in c] for c in drift]
    # sigma is affine in h:
    # sigma(h_bar + sum_n c_n eps^n) = sigma(h_bar) + sum_n (sigma(c_n) - sigma(0)) eps^n.
    sigma_zero = problem.diffusion(zero)
    diffusion = [problem.diffusion(jet[0])] + [
        [
            [a - b for a, b in zip(row, row0, strict=True)]
            for row, row0 in zip(problem.diffusion(c), sigma_zero, strict=True)
        ]
        for c in jet[1:]
    ]
    xi = [problem.poly(x) for x in problem.normals[step]]
    sqrt_dt = problem.poly(problem.sqrt_dt)
    noise = [zero] + [
        [sqrt_dt * sum((a * x for a, x in zip(row, xi, strict=True)), ring.zero) for row in sigma]
        for sigma in diffusion[:-1]
    ]  # eps * jet
    new = [
        [h + sqrt_dt**2 * f + w for h, f, w in zip(c, fc, nc, strict=True)]
        for c, fc, nc in zip(jet, drift, noise, strict=True)
    ]
    return [[problem.poly(x) for x in problem.h_bar[step + 1]]] + new[1:]


def expand_loss(spec: CellSpec, d: int, steps: int, layout: BrownianLayout) -> list:
    """Expectations of the eps^0..eps^3 coefficients of ``l(h_M)``, as ring elements."""
    problem = Problem(spec, d, steps, layout)
    ring = problem.ring
    jet = [[ring.zero] * problem.n for _ in range(ORDER + 1)]
    for step in range(steps):
        jet = _step(problem, step, jet)
    components = [[c[i] for c in jet] for i in range(problem.n)]

    def derivative(alpha: tuple) -> object:
        return problem.poly(problem.loss_derivative(alpha))

    loss_jet = compose(problem.loss_rule, derivative, components, ring.zero)
    normals = [problem.poly(x) for xi in problem.normals for x in xi]
    return [gaussian_expectation_poly(c, normals) for c in loss_jet]


def recursion_value(
    spec: CellSpec, formulas, d: int, steps: int, layout: BrownianLayout
) -> sp.Expr:
    """``grad l^T m_M + 1/2 tr(hess l C_M)`` from the one-step rules with the cell's derived
    step Jacobian and curvature (``formulas``: a :class:`derivations.cells.CellFormulas`)."""
    problem = Problem(spec, d, steps, layout)
    rules = one_step_rules()
    s = SYMBOLS
    n = problem.n
    covariance = sp.zeros(n, n)
    mean = sp.zeros(n, 1)
    for step in range(steps):
        sigma = evaluate(
            layout.diffusion(s.h, s.sigma_add, s.sigma_mult, s.n),
            {s.n: n, s.h: problem.h_bar[step]},
        )
        bindings = dict(problem.sizes) | dict(problem.values)
        for use in problem.uses:
            for order in (0, 1, 2):
                values = problem.derivative_values(step, use, order)
                bindings[point_symbol(_at_order(use, order))] = values
        bindings |= {spec.state: problem.h_bar[step], formulas.covariance: covariance}
        bindings |= {formulas.dt: problem.sqrt_dt**2}
        jacobian = evaluate(formulas.step_jacobian, bindings)
        curvature = evaluate(formulas.curvature, bindings)
        generic = {
            s.n: n,
            s.r: problem.noise_dimension,
            s.dt: problem.sqrt_dt**2,
            s.J: jacobian,
            s.v: curvature,
            s.Sigma: sigma,
            s.C: covariance,
            s.m: mean,
        }
        covariance = evaluate(rules.covariance_step, generic)
        mean = evaluate(rules.mean_step, generic)

    def unit(*indices: int) -> tuple[int, ...]:
        """The multi-index of the derivative along the given coordinates."""
        return tuple(sum(j == i for i in indices) for j in range(n))

    gradient = sp.Matrix(n, 1, lambda i, _: problem.loss_derivative(unit(i)))
    hessian = sp.Matrix(n, n, lambda i, j: problem.loss_derivative(unit(i, j)))
    bindings = {s.n: n, s.grad: gradient, s.hess: hessian, s.C: covariance, s.m: mean}
    return (evaluate(rules.q_term, bindings)[0, 0] + evaluate(rules.r_term, bindings)) / 2


def _at_order(use: Applied, order: int) -> Applied:
    for _ in range(order):
        use = use.derivative()
    return use


@dataclass(frozen=True)
class BruteForceResult:
    cell: str
    d: int
    steps: int
    layout: BrownianLayout
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
            f"{self.cell}, d={self.d}, M={self.steps}, {self.layout.name} noise: eps^1 and eps^3 "
            f"coefficients of E l(h_M) are identically 0; eps^2 coefficient ({self.terms} terms) "
            f"minus the recursion is 0: {verdict}."
        )


@cache
def prove(spec: CellSpec, formulas, d: int, steps: int, layout: BrownianLayout) -> BruteForceResult:
    """Run the brute force for one size and one Brownian layout and compare with the
    one-step rules."""
    problem = Problem(spec, d, steps, layout)
    coefficients = expand_loss(spec, d, steps, layout)
    recursion = problem.poly(recursion_value(spec, formulas, d, steps, layout))
    return BruteForceResult(
        cell=spec.name,
        d=d,
        steps=steps,
        layout=layout,
        first_order_zero=coefficients[1] == 0,
        third_order_zero=coefficients[3] == 0,
        second_order_matches=coefficients[2] - recursion == 0,
        terms=len(coefficients[2]),
    )
