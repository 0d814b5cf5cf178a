"""The discrete small-noise expansion of the Euler--Maruyama recursion: the one-step rules.

For any drift f and diffusion sigma, with all noise scaled by eps::

    h_{k+1} = h_k + dt f(h_k) + eps sqrt(dt) sigma(h_k) xi_k

Write the state as a jet ``h_k = h_bar_k + eps delta_k + eps**2 eta_k + O(eps**3)``. Along
the path, f(h_bar + eps delta + eps^2 eta) = f(h_bar) + eps F delta + eps^2 (F eta + 1/2 S)
+ O(eps^3) with F = D_h f and S = D^2 f[delta, delta] (the cell's derivatives, derived for
each drift in :mod:`derivations.cells`). Pushing the jet through one step gives the
linearised response ``delta`` and the second-order response ``eta``. Their moments follow
from the expectation rules of :mod:`derivations.matrix_rules` (``E xi = 0``,
``E xi xi^T = I``, ``xi_k`` independent of the state at step k):

- ``E delta_{k+1} = J E delta_k`` so ``E delta_k = 0``;
- ``C_{k+1} = J C_k J^T + dt Sigma Sigma^T`` with ``J = I + dt F`` read off as the
  coefficient of delta;
- ``m_{k+1} = J m_k + (dt/2) v_k`` with ``v = E S``, the curvature of the drift (for the
  Lipschitz cell ``v = tanh''(z) o diagvec(W C W^T)``);
- ``E l(h_M) = l(h_bar_M) + eps**2 (grad l^T m_M + 1/2 tr(hess l C_M)) + O(eps**3)``; the
  odd orders vanish (sign symmetry of xi, see :mod:`derivations.brute_force`), so O(eps**4).

The brute-force check of every cell for small sizes is in :mod:`derivations.brute_force`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from nrnn.derivations.brownian import LAYOUTS
from nrnn.derivations.jets import chain_rule, jet_shift
from nrnn.derivations.matrix_rules import RandomModel, expectation, linear_coefficients
from nrnn.derivations.nodes import NoiseJacobian
from nrnn.derivations.topic import Argument, Derivation, Formula, GeneratedFunction

__all__ = [
    "OneStepRules",
    "SYMBOLS",
    "Symbols",
    "derive",
    "one_step_rules",
    "scalar_function_jet",
]


@dataclass(frozen=True)
class Symbols:
    """The matrix symbols of the derivation (names double as LaTeX)."""

    n: sp.Symbol = sp.Symbol("n", integer=True, positive=True)
    r: sp.Symbol = sp.Symbol("r", integer=True, positive=True)
    dt: sp.Symbol = sp.Symbol(r"\Delta t", positive=True)
    sigma_add: sp.Symbol = sp.Symbol(r"\sigma_{1}", nonnegative=True)
    sigma_mult: sp.Symbol = sp.Symbol(r"\sigma_{2}", nonnegative=True)

    def matrix(self, name: str, rows, cols) -> sp.MatrixSymbol:
        return sp.MatrixSymbol(name, rows, cols)

    @property
    def h_bar(self):
        return self.matrix(r"\bar{h}", self.n, 1)

    @property
    def h(self):
        return self.matrix("h", self.n, 1)

    @property
    def delta(self):
        return self.matrix(r"\delta", self.n, 1)

    @property
    def eta(self):
        return self.matrix(r"\eta", self.n, 1)

    @property
    def xi(self):
        return self.matrix(r"\xi", self.r, 1)

    @property
    def Sigma(self):
        return self.matrix(r"\Sigma", self.n, self.r)

    @property
    def F(self):
        return self.matrix("F", self.n, self.n)

    @property
    def J(self):
        return self.matrix("J", self.n, self.n)

    @property
    def C(self):
        return self.matrix("C", self.n, self.n)

    @property
    def m(self):
        return self.matrix("m", self.n, 1)

    @property
    def mu(self):
        return self.matrix(r"\mu", self.n, 1)

    @property
    def v(self):
        return self.matrix("v", self.n, 1)

    @property
    def S(self):
        """D^2 f[delta, delta], the second differential of the drift along the response."""
        return self.matrix("S", self.n, 1)

    @property
    def grad(self):
        return self.matrix("g", self.n, 1)

    @property
    def hess(self):
        return self.matrix("H", self.n, self.n)


SYMBOLS = Symbols()


def scalar_function_jet(gradient, hessian, jet: list) -> list:
    """Jet coefficients 1..2 of ``l(h_bar + sum_k jet[k] eps**k)`` for a smooth scalar ``l``.

    The one-variable chain rule is lifted along the direction: ``l' a`` becomes
    ``grad^T a`` and ``l'' a b`` becomes ``a^T hess b``. Returned as a list of lists of
    terms (so that the first- and second-derivative parts stay apart).
    """
    rule = chain_rule(1, len(jet) - 1)
    placeholders = {a: jet[k + 1] for k, a in enumerate(rule.increments[0])}
    orders = {symbol: alpha[0] for alpha, symbol in rule.derivatives.items()}
    result = []
    for coefficient in rule.coefficients[1:]:
        terms = []
        for term in sp.Add.make_args(coefficient):
            number, order, directions = sp.Integer(1), 0, []
            for base, power in term.as_powers_dict().items():
                if base in orders:
                    order = orders[base]
                elif base in placeholders:
                    directions.extend([placeholders[base]] * int(power))
                else:
                    number *= base**power
            if order == 1:
                terms.append(number * gradient.T * directions[0])
            elif order == 2:
                terms.append(number * directions[0].T * hessian * directions[1])
            else:
                raise NotImplementedError("loss derivatives beyond the second")
        result.append(terms)
    return result


@dataclass(frozen=True)
class OneStepRules:
    """The derived rules (matrix expressions in :data:`SYMBOLS`)."""

    step_jacobian: sp.MatrixExpr
    first_order_step: sp.MatrixExpr
    second_order_step: sp.MatrixExpr
    first_order_mean_step: sp.MatrixExpr
    covariance_step: sp.MatrixExpr
    mean_step: sp.MatrixExpr
    q_term: sp.MatrixExpr
    r_term: sp.Expr
    loss_first_order: sp.Expr
    loss_second_order: sp.Expr


def _is_zero(expr) -> bool:
    value = sp.expand(expr)
    return value == 0 or isinstance(value, sp.ZeroMatrix)


@cache
def one_step_rules() -> OneStepRules:
    """Derive the one-step rules from the jet of one Euler--Maruyama step."""
    s = SYMBOLS
    state_jet = [s.h_bar, s.delta, s.eta]
    # f along the jet, for any smooth drift: [f(h_bar), F delta, F eta + S/2].
    drift = [None, s.F * s.delta, s.F * s.eta + s.S / 2]
    # eps sqrt(dt) sigma(h) xi with sigma(h) = Sigma + eps sigma'(h_bar)[delta] + O(eps^2):
    # the jet of sqrt(dt) sigma(h) xi, multiplied by eps (shifted by one order, truncated).
    diffusion_jet = [s.Sigma, NoiseJacobian(s.delta, s.r), None]
    noise = jet_shift(
        [None if sigma is None else sp.sqrt(s.dt) * sigma * s.xi for sigma in diffusion_jet],
        sp.ZeroMatrix(s.n, 1),
    )
    first_order = s.delta + s.dt * drift[1] + noise[1]
    second_order = s.eta + s.dt * drift[2] + noise[2]

    # Linear structure: delta' = J delta + sqrt(dt) Sigma xi.
    coefficients, rest = linear_coefficients(first_order, [s.delta, s.xi])
    step_jacobian = coefficients[s.delta]
    noise_gain = coefficients[s.xi]
    if not _is_zero(rest) or not _is_zero(step_jacobian - (sp.Identity(s.n) + s.dt * s.F)):
        raise AssertionError("first-order response is not J delta + gain xi")
    second_coefficients, second_rest = linear_coefficients(second_order, [s.eta])
    if not _is_zero(second_coefficients[s.eta] - step_jacobian):
        raise AssertionError("second-order response does not propagate with J")
    first_order_step = s.J * s.delta + noise_gain * s.xi
    second_order_step = s.J * s.eta + second_rest

    # Moments of one step. S is random through delta; E S = v defines the curvature v,
    # derived for each drift in derivations.cells.
    mean_model = RandomModel(noise=(s.xi,), means={s.delta: s.mu})
    first_order_mean_step = expectation(first_order_step, mean_model)
    model = RandomModel(
        noise=(s.xi,),
        means={s.delta: sp.ZeroMatrix(s.n, 1), s.eta: s.m},
        second_moments={s.delta: s.C},
    )
    covariance_step = expectation(first_order_step * first_order_step.T, model)
    mean_step = expectation(second_order_step, model).xreplace({s.S: s.v})
    if not _is_zero(mean_step - (s.J * s.m + s.dt / 2 * s.v)):
        raise AssertionError("mean step is not J m + dt/2 v")

    # The loss: E l(h_M) to second order.
    loss_first, loss_second = scalar_function_jet(s.grad, s.hess, state_jet)
    loss_first_order = expectation(sp.MatAdd(*loss_first), model)
    gradient_part, curvature_part = (
        [t for t in loss_second if t.has(s.grad)],
        [t for t in loss_second if t.has(s.hess)],
    )
    q_term = sp.expand(2 * expectation(sp.MatAdd(*gradient_part), model))
    r_term = sp.expand(2 * expectation(sp.MatAdd(*curvature_part), model))
    loss_second_order = expectation(sp.MatAdd(*loss_second), model)
    # Stored in the factored forms checked above (equal to the derived expressions).
    return OneStepRules(
        step_jacobian=sp.Identity(s.n) + s.dt * s.F,
        first_order_step=first_order_step,
        second_order_step=second_order_step,
        first_order_mean_step=first_order_mean_step,
        covariance_step=covariance_step,
        mean_step=sp.MatAdd(s.J * s.m, s.dt / 2 * s.v),
        q_term=q_term,
        r_term=r_term,
        loss_first_order=loss_first_order,
        loss_second_order=loss_second_order,
    )


def at_step(expr, step: str = "k"):
    """For display: the step-k quantities carry their index (delta -> delta_k, ...)."""
    s = SYMBOLS
    indexed = {
        symbol: sp.MatrixSymbol(f"{symbol.name}_{{{step}}}", *symbol.shape)
        for symbol in (s.delta, s.eta, s.xi, s.C, s.m, s.v, s.J, s.Sigma, s.S, s.F)
    }
    return expr.xreplace(indexed)


def _arguments():
    s = SYMBOLS
    scalar = "float or (...)"
    return {
        "h": Argument("h", s.h, "(..., n)", "state"),
        "dt": Argument("dt", s.dt, scalar, "time step"),
        "sigma_add": Argument("sigma_add", s.sigma_add, scalar, "additive noise level sigma_1"),
        "sigma_mult": Argument(
            "sigma_mult", s.sigma_mult, scalar, "multiplicative noise level sigma_2"
        ),
        "covariance": Argument(
            "covariance", s.C, "(..., n, n)", "covariance C_k of the linear response"
        ),
        "jacobian": Argument("jacobian", s.J, "(..., n, n)", "step Jacobian J_k = I + dt F_k"),
        "diffusion": Argument(
            "diffusion", s.Sigma, "(..., n, r)", "diffusion matrix Sigma_k = sigma(h_bar_k)"
        ),
        "mean": Argument("mean", s.m, "(..., n)", "mean correction m_k"),
        "curvature": Argument(
            "curvature", s.v, "(..., n)", "v_k = E D^2 f[delta, delta], the cell's curvature"
        ),
        "loss_grad": Argument("loss_grad", s.grad, "(..., n)", "gradient of the loss at h_bar_M"),
        "loss_hessian": Argument(
            "loss_hessian", s.hess, "(..., n, n)", "Hessian of the loss at h_bar_M"
        ),
    }


def _function(name, summary, argument_names, expr, returns, notes=""):
    arguments = _arguments()
    return GeneratedFunction(
        name=name,
        module="expansion",
        source=__name__,
        summary=summary,
        arguments=tuple(arguments[a] for a in argument_names),
        expr=expr,
        returns=returns,
        notes=notes,
    )


def generated_functions() -> list[GeneratedFunction]:
    rules = one_step_rules()
    s = SYMBOLS
    diffusions = [
        _function(
            f"diffusion_{layout.name}",
            f"Diffusion sigma(h) = {layout.diffusion_text} ({layout.motions}).",
            ("h", "sigma_add", "sigma_mult"),
            layout.diffusion(s.h, s.sigma_add, s.sigma_mult, s.n),
            f"(..., n, {layout.noise_dimension(s.n)})",
            notes="Model definition (docs/design.md), not derived.",
        )
        for layout in LAYOUTS
    ]
    return diffusions + [
        _function(
            "covariance_step",
            "Covariance of the linear response, one step: J C J^T + dt Sigma Sigma^T.",
            ("covariance", "jacobian", "diffusion", "dt"),
            rules.covariance_step,
            "(..., n, n)",
        ),
        _function(
            "mean_step",
            "Mean correction, one step: J m + (dt / 2) v.",
            ("mean", "jacobian", "curvature", "dt"),
            rules.mean_step,
            "(..., n)",
        ),
        _function(
            "q_term",
            "Q = 2 grad(l)^T m: the mean-correction part of the regularizer.",
            ("loss_grad", "mean"),
            rules.q_term,
            "(...)",
        ),
        _function(
            "r_term",
            "R = tr(hess(l) C): the covariance part of the regularizer.",
            ("loss_hessian", "covariance"),
            rules.r_term,
            "(...)",
        ),
    ]


def derive() -> Derivation:
    from nrnn.derivations.latex import equation, latex

    rules = one_step_rules()
    eps = sp.Symbol(r"\varepsilon")
    derivation = Derivation(
        title="Discrete small-noise expansion (Euler--Maruyama), any drift",
        source=__name__,
        summary=(
            "The recursion h_{k+1} = h_k + dt f(h_k, x_k) + eps sqrt(dt) sigma(h_k) xi_k is "
            "expanded as h_k = h_bar_k + eps delta_k + eps^2 eta_k + O(eps^3) by pushing jets in "
            "eps through one step; along the path f(h_bar + eps delta + eps^2 eta) = f(h_bar) + "
            "eps F delta + eps^2 (F eta + S/2) + O(eps^3) with F = D_h f and S = D^2 f[delta, "
            "delta], whose forms for each cell are derived in the cell sections; the moments "
            "follow from E xi = 0, E xi xi^T = I and the independence of xi_k from the state at "
            "step k."
        ),
    )
    loss = sp.Symbol(r"\ell(\bar{h}_M)")
    k = at_step
    step = "_{k+1}"
    derivation.formulas += [
        Formula(
            "Step Jacobian",
            (equation("J", rules.step_jacobian),),
            "F = D_h f on the deterministic path (the cell's drift Jacobian). Read off as the "
            "coefficient of delta_k in delta_{k+1}.",
        ),
        Formula(
            "Linear (first-order) response",
            (equation(rf"\delta{step}", k(rules.first_order_step)), equation(r"\delta_0", "0")),
            "Any smooth drift and diffusion sigma; Sigma_k = sigma(h_bar_k).",
        ),
        Formula(
            "Second-order response",
            (equation(rf"\eta{step}", k(rules.second_order_step)), equation(r"\eta_0", "0")),
            "S_k = D^2 f[delta_k, delta_k]; sigma'(h_bar)[delta] is the derivative of the "
            "diffusion along delta.",
        ),
        Formula(
            "Mean of the linear response",
            (
                equation(
                    rf"\mathbb{{E}}\,\delta{step}",
                    latex(k(rules.first_order_mean_step)).replace(
                        r"\mu", r"\mathbb{E}\,\delta_{k}"
                    ),
                ),
                r"\mathbb{E}\,\delta_k = 0",
            ),
            "By induction from delta_0 = 0.",
        ),
        Formula(
            "Covariance recursion",
            (
                equation(f"C{step}", k(rules.covariance_step)),
                r"C_0 = 0,\quad C_k = \mathbb{E}\,\delta_k \delta_k^{T}",
            ),
            "J_k and Sigma_k are evaluated on the deterministic path at step k.",
        ),
        Formula(
            "Mean-correction recursion",
            (
                equation(f"m{step}", k(rules.mean_step)),
                r"m_0 = 0,\quad m_k = \mathbb{E}\,\eta_k,\quad v_k = "
                r"\mathbb{E}\, D^2 f[\delta_k, \delta_k]",
            ),
            "The noise term sigma'(h_bar)[delta_k] xi_k has mean zero for any smooth sigma (xi_k "
            "is independent of delta_k); v_k, the curvature of the drift, is derived for each cell "
            "below.",
        ),
        Formula(
            "Expected loss to second order",
            (
                rf"\mathbb{{E}}\,\ell(h_M) = {latex(loss)} + "
                rf"{latex(eps)}^{{2}}\left({latex(rules.loss_second_order)}\right) + "
                rf"O({latex(eps)}^{{4}})",
                rf"\mathbb{{E}}\,[\text{{coefficient of }} {latex(eps)}^{{1}}] = "
                rf"{latex(rules.loss_first_order)}",
                r"g = \nabla \ell(\bar{h}_M),\quad H = \nabla^{2} \ell(\bar{h}_M),\quad C = "
                r"C_M,\quad m = m_M",
            ),
            "l smooth (C^4) with bounded derivatives near the path; all noise scaled by eps. The "
            "remainder is O(eps^4), sharper than the paper's O(eps^3): E l(h_M) is even in eps "
            "because xi -> -xi maps the eps-path to the (-eps)-path and leaves the Gaussian law "
            "unchanged, so every odd order vanishes (checked symbolically for every cell at the "
            "small sizes of its section).",
        ),
        Formula(
            "The explicit regularizer",
            (
                equation("Q", rules.q_term),
                equation("R", rules.r_term),
                rf"\mathbb{{E}}\,\ell(h_M) = {latex(loss)} + \frac{{{latex(eps)}^{{2}}}}{{2}}\,"
                rf"(Q + R) + O({latex(eps)}^{{4}})",
            ),
            "As above. For cross-entropy, g and H come from the section on the loss.",
        ),
    ]
    derivation.functions += generated_functions()
    return derivation
