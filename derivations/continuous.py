"""Continuous time: the moment ODEs of the first- and second-order response processes.

The SDE ``dh = f(h) dt + eps sigma(h) dB`` expanded as ``h = h_bar + eps delta + eps^2 eta``
gives the response processes (the continuous analogue of :mod:`derivations.expansion`),
for any smooth drift with F = D_h f and S = D^2 f[delta, delta] along the path::

    d delta = F delta dt + Sigma dB
    d eta   = (F eta + 1/2 S) dt + sigma'(h_bar)[delta] dB

Two derivations of ``d E[.]/dt`` are carried out and must agree:

1. on whole matrices, Itô's product rule written with the increment ``dB = sqrt(dt) xi``:
   ``d(delta delta^T) = (delta + d delta)(delta + d delta)^T - delta delta^T``, averaged with
   the rules of :mod:`derivations.matrix_rules` and truncated at order dt;
2. componentwise with the Itô engine (:mod:`derivations.ito`) for explicit sizes, applying
   Itô's formula to ``phi = delta_i delta_j`` and ``phi = eta_i`` and averaging with
   ``E delta delta^T = C`` (Isserlis), ``E eta = m``.

Result: ``dC/dt = F C + C F^T + Sigma Sigma^T`` and ``dm/dt = F m + 1/2 v``. As a closed-form
check, the scalar Ornstein--Uhlenbeck process has ``C(t) = s^2 (1 - exp(-2 theta t)) / (2 theta)``
both from the ODE (``dsolve``) and from the Itô isometry (``integrate``). The Euler--Maruyama
recursion is one explicit Euler step of these ODEs up to ``dt^2 F C F^T``: the discrete terms
converge with error O(dt).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp

from nrnn.derivations.expansion import SYMBOLS, one_step_rules
from nrnn.derivations.explicit import evaluate
from nrnn.derivations.ito import SDE, gaussian_expectation
from nrnn.derivations.matrix_rules import RandomModel, expectation, matrix_terms
from nrnn.derivations.nodes import NoiseJacobian
from nrnn.derivations.topic import Argument, Derivation, Formula, GeneratedFunction

__all__ = ["MomentODEs", "derive", "moment_odes", "componentwise_check", "ornstein_uhlenbeck_check"]


@dataclass(frozen=True)
class MomentODEs:
    covariance_rhs: sp.MatrixExpr
    mean_rhs: sp.MatrixExpr
    covariance_consistency: sp.MatrixExpr
    mean_consistency: sp.MatrixExpr


def order_coefficient(expr, symbol: sp.Symbol, power) -> sp.MatrixExpr:
    """The terms of a matrix expression whose scalar coefficient is ``c * symbol**power``,
    divided by ``symbol**power``."""
    parts = []
    for coefficient, factors in matrix_terms(expr):
        rest, exponent = sp.expand(coefficient).as_coeff_exponent(symbol)
        if exponent == power:
            parts.append(sp.MatMul(rest, *factors).doit())
    if not parts:
        return sp.ZeroMatrix(*expr.shape)
    return sp.MatAdd(*parts).doit()


@cache
def moment_odes() -> MomentODEs:
    """Derive dC/dt and dm/dt on whole matrices (route 1 of the module docstring)."""
    s = SYMBOLS
    dt = s.dt
    d_delta = s.F * s.delta * dt + s.Sigma * s.xi * sp.sqrt(dt)
    d_eta = (s.F * s.eta + s.S / 2) * dt + NoiseJacobian(s.delta, s.r) * s.xi * sp.sqrt(dt)
    model = RandomModel(
        noise=(s.xi,),
        means={s.delta: sp.ZeroMatrix(s.n, 1), s.eta: s.m},
        second_moments={s.delta: s.C},
    )
    new_delta = s.delta + d_delta
    covariance_increment = expectation(new_delta * new_delta.T - s.delta * s.delta.T, model)
    # E S = v, the cell's curvature (S is random through delta).
    mean_increment = expectation(d_eta, model).xreplace({s.S: s.v})
    covariance_rhs = order_coefficient(covariance_increment, dt, 1)
    if not isinstance(
        sp.expand(
            covariance_increment
            - covariance_rhs * dt
            - order_coefficient(covariance_increment, dt, 2) * dt**2
        ),
        sp.ZeroMatrix,
    ):
        raise AssertionError("covariance increment has terms beyond dt^2")
    mean_rhs = sp.MatAdd(s.F * s.m, s.v / 2)
    if not isinstance(
        sp.expand(order_coefficient(mean_increment, dt, 1) - mean_rhs), sp.ZeroMatrix
    ):
        raise AssertionError("mean increment is not F m + v/2")

    # Consistency of the discrete recursion: (X_{k+1} - X_k)/dt - rhs with J = I + dt F.
    rules = one_step_rules()
    step = {s.J: sp.Identity(s.n) + dt * s.F}
    covariance_consistency = sp.expand(
        (rules.covariance_step.xreplace(step) - s.C) / dt - covariance_rhs
    )
    mean_consistency = sp.expand((rules.mean_step.xreplace(step) - s.m) / dt - mean_rhs)
    return MomentODEs(
        covariance_rhs=covariance_rhs,
        mean_rhs=mean_rhs,
        covariance_consistency=covariance_consistency,
        mean_consistency=mean_consistency,
    )


def componentwise_check(d: int, noise_dimension: int) -> bool:
    """Route 2: Itô's formula component by component for explicit sizes; True if it agrees."""
    odes = moment_odes()
    s = SYMBOLS
    delta = sp.symbols(f"delta_0:{d}", real=True)
    eta = sp.symbols(f"eta_0:{d}", real=True)
    F = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"f_{i}{j}"))
    Sigma = sp.Matrix(d, noise_dimension, lambda i, j: sp.Symbol(f"s_{i}{j}"))
    # A generic second differential S_i = sum_jk T_ijk delta_j delta_k (T_ijk = T_ikj).
    T = [
        sp.Matrix(d, d, lambda j, k, i=i: sp.Symbol(f"t_{i}{min(j, k)}{max(j, k)}"))
        for i in range(d)
    ]
    # A generic diffusion derivative: sigma'(h_bar)[delta]_{ij} = sum_l q_{ijl} delta_l.
    noise_derivative = sp.Matrix(
        d,
        noise_dimension,
        lambda i, j: sum(sp.Symbol(f"q_{i}{j}{ell}") * delta[ell] for ell in range(d)),
    )
    C = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"c_{min(i, j)}{max(i, j)}"))
    m = sp.Matrix(d, 1, lambda i, _: sp.Symbol(f"m_{i}"))
    delta_column, eta_column = sp.Matrix(delta), sp.Matrix(eta)
    second = sp.Matrix([(delta_column.T * T[i] * delta_column)[0, 0] for i in range(d)])
    drift = sp.Matrix.vstack(F * delta_column, F * eta_column + second / 2)
    sde = SDE(state=delta + eta, drift=drift, diffusion=sp.Matrix.vstack(Sigma, noise_derivative))
    covariance = {(delta[i], delta[j]): C[i, j] for i in range(d) for j in range(d)}

    def average(expr):
        """E over delta ~ (0, C) and E eta = m; eta may only enter linearly and alone."""
        for monomial in sp.Poly(expr, *eta, *delta).monoms():
            eta_degree, delta_degree = sum(monomial[:d]), sum(monomial[d:])
            if eta_degree > 1 or (eta_degree and delta_degree):
                raise NotImplementedError("eta must enter linearly and alone")
        return gaussian_expectation(
            expr.xreplace(dict(zip(eta, m, strict=True))), delta, covariance
        )

    bindings = {
        s.n: d,
        s.r: noise_dimension,
        s.F: F,
        s.C: C,
        s.Sigma: Sigma,
        s.m: m,
        s.v: sp.Matrix([(T[i] * C).trace() for i in range(d)]),
    }
    covariance_rhs = evaluate(odes.covariance_rhs, bindings)
    mean_rhs = evaluate(odes.mean_rhs, bindings)
    for i in range(d):
        if sp.expand(average(sde.ito(eta[i]).drift) - mean_rhs[i, 0]) != 0:
            return False
        for j in range(d):
            if sp.expand(average(sde.ito(delta[i] * delta[j]).drift) - covariance_rhs[i, j]) != 0:
                return False
    return True


def ornstein_uhlenbeck_check() -> tuple[sp.Expr, bool]:
    """Scalar OU ``d delta = -theta delta dt + s dB``: C(t) from the ODE and from the Itô
    isometry."""
    theta, noise, t, u = sp.symbols("theta s t u", positive=True)
    odes = moment_odes()
    covariance = sp.Function("C")
    rhs = evaluate(
        odes.covariance_rhs,
        {
            SYMBOLS.n: 1,
            SYMBOLS.r: 1,
            SYMBOLS.F: sp.Matrix([[-theta]]),
            SYMBOLS.Sigma: sp.Matrix([[noise]]),
            SYMBOLS.C: sp.Matrix([[covariance(t)]]),
        },
    )[0, 0]
    solution = sp.dsolve(
        sp.Eq(covariance(t).diff(t), rhs), covariance(t), ics={covariance(0): 0}
    ).rhs
    isometry = sp.integrate((noise * sp.exp(-theta * (t - u))) ** 2, (u, 0, t))
    closed_form = noise**2 * (1 - sp.exp(-2 * theta * t)) / (2 * theta)
    agrees = sp.simplify(solution - isometry) == 0 and sp.simplify(solution - closed_form) == 0
    return closed_form, agrees


def generated_functions() -> list[GeneratedFunction]:
    odes = moment_odes()
    s = SYMBOLS
    covariance = Argument(
        "covariance", s.C, "(..., n, n)", "covariance C(t) of the linear response"
    )
    jacobian = Argument(
        "drift_jacobian", s.F, "(..., n, n)", "drift Jacobian F = D_h f (the cell's)"
    )
    diffusion = Argument("diffusion", s.Sigma, "(..., n, r)", "diffusion matrix sigma(h_bar(t))")
    mean = Argument("mean", s.m, "(..., n)", "mean correction m(t)")
    curvature = Argument("curvature", s.v, "(..., n)", "v = E D^2 f[delta, delta], the cell's")
    return [
        GeneratedFunction(
            "covariance_rhs",
            "expansion",
            __name__,
            "Continuous time: dC/dt = F C + C F^T + Sigma Sigma^T.",
            (covariance, jacobian, diffusion),
            odes.covariance_rhs,
            "(..., n, n)",
        ),
        GeneratedFunction(
            "mean_rhs",
            "expansion",
            __name__,
            "Continuous time: dm/dt = F m + v / 2.",
            (mean, jacobian, curvature),
            odes.mean_rhs,
            "(..., n)",
        ),
    ]


def derive() -> Derivation:
    from nrnn.derivations.latex import equation

    odes = moment_odes()
    derivation = Derivation(
        title="Continuous time",
        source=__name__,
        summary=(
            "Itô's formula on the response processes d delta = F delta dt + Sigma dB and d eta = "
            "(F eta + 1/2 S) dt + sigma'(h_bar)[delta] dB, S = D^2 f[delta, delta], for any smooth "
            "drift."
        ),
    )
    derivation.formulas += [
        Formula(
            "Covariance ODE",
            (equation(r"\frac{dC}{dt}", odes.covariance_rhs), "C(0) = 0"),
            "F = D_h f (the cell's drift Jacobian) and Sigma = sigma(h_bar(t)) along the "
            "deterministic path (docs/design.md writes J for F in continuous time).",
        ),
        Formula(
            "Mean-correction ODE",
            (
                equation(r"\frac{dm}{dt}", odes.mean_rhs),
                r"v = \mathbb{E}\, D^2 f[\delta, \delta],\quad m(0) = 0",
            ),
            "As above; any smooth drift and diffusion sigma; v is the cell's curvature.",
        ),
        Formula(
            "Consistency of the Euler--Maruyama recursion",
            (
                equation(
                    r"\frac{C_{k+1} - C_k}{\Delta t} - \frac{dC}{dt}", odes.covariance_consistency
                ),
                equation(r"\frac{m_{k+1} - m_k}{\Delta t} - \frac{dm}{dt}", odes.mean_consistency),
            ),
            "With J = I + dt F: the recursion is an explicit Euler step of the ODEs with a local "
            "error O(dt^2), so C_M, m_M and hence Q, R converge to their continuous-time values "
            "with error O(dt) on a fixed horizon.",
        ),
    ]
    sizes = [(1, 1), (2, 2), (2, 3), (3, 3)]
    for d, r in sizes:
        if not componentwise_check(d, r):
            raise AssertionError(f"componentwise Itô check failed for d={d}, r={r}")
    derivation.checks.append(
        "Itô's formula applied componentwise by the engine to delta_i delta_j and eta_i, with a "
        "generic second differential S_i = sum_jk T_ijk delta_j delta_k, agrees with the matrix "
        f"ODEs for (n, r) in {sizes}."
    )
    closed_form, agrees = ornstein_uhlenbeck_check()
    if not agrees:
        raise AssertionError("Ornstein--Uhlenbeck check failed")
    derivation.checks.append(
        "Ornstein--Uhlenbeck d delta = -theta delta dt + s dB: the covariance ODE solved by dsolve "
        f"and the Itô isometry both give C(t) = {closed_form}."
    )
    derivation.formulas.append(
        Formula(
            "Ornstein--Uhlenbeck check",
            (equation("C(t)", closed_form),),
            "d delta = -theta delta dt + s dB, delta(0) = 0; the covariance ODE solved by dsolve "
            "equals the Itô isometry.",
        )
    )
    derivation.functions += generated_functions()
    return derivation
