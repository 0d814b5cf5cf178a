"""Stability: exponent bounds from Itô's formula, and the Euler--Maruyama mean-square condition.

Two trajectories ``h, h'`` of ``dh = f(h) dt + sigma(h) dB`` driven by the same input and the
same Brownian motion have difference ``e = h - h'`` with
``de = (f(h) - f(h')) dt + (sigma(h) - sigma(h')) dB``. The additive noise cancels; the
multiplicative part leaves ``sigma_2 diag(e)`` (one Brownian motion per unit) or
``[0 | sigma_2 e]`` (one scalar Brownian motion). The drift enters only through
``e^T (f(h) - f(h')) <= kappa |e|^2``: for a drift split as ``f(h) = L h + N(h)`` with
``N`` rho-Lipschitz, ``kappa = lambda_max(sym L) + rho`` (Cauchy--Schwarz). The Lipschitz
cell has ``L = A`` and ``rho = sup|phi'| ||W||_2`` (tanh is 1-Lipschitz); the coupled
oscillator has a constant ``L`` whose ``lambda_max(sym L)`` is derived in closed form here.

The Itô engine (:mod:`derivations.ito`) applied to ``log |e|^2`` and ``|e|^2`` for explicit
sizes gives the Itô corrections:

- scalar Brownian motion: ``d log|e|^2 = (2 e^T g / |e|^2 - sigma_2^2) dt + 2 sigma_2 dbeta``:
  almost surely ``limsup (1/t) log|e_t| <= kappa - sigma_2^2 / 2``;
- per-unit Brownian motions: the correction is ``sigma_2^2 (1 - 2 S)`` with
  ``S = sum e_i^4 / |e|^4`` in ``[1/d, 1]``, so only ``kappa + sigma_2^2 (1/2 - 1/d)``
  follows: weaker (no stabilisation for d >= 2; for d = 1 it equals the scalar bound);
- mean square, both forms: ``d E|e|^2 / dt <= (2 kappa + sigma_2^2) E|e|^2``, so
  ``(1/2t) log E|e_t|^2 <= kappa + sigma_2^2 / 2``: noise never helps in mean square.

The Euler--Maruyama scheme for ``dX = A X dt + sum_i B_i X dbeta_i`` has second moment
``P = E X X^T`` with ``vec P_{k+1} = ((I + dt A) kron (I + dt A) + dt sum_i B_i kron B_i) vec P_k``
(derived with the matrix expectation rules and ``vec(X P Y) = (Y^T kron X) vec P``); it is
mean-square stable for every initial state iff the spectral radius of that matrix is below 1.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from nrnn.derivations.brownian import LAYOUTS, PER_UNIT, SCALAR, BrownianLayout
from nrnn.derivations.cells import coupled_oscillator
from nrnn.derivations.expansion import SYMBOLS
from nrnn.derivations.explicit import evaluate
from nrnn.derivations.ito import SDE
from nrnn.derivations.matrix_rules import RandomModel, expectation, vec_operator
from nrnn.derivations.nodes import StackSum
from nrnn.derivations.topic import Argument, Derivation, Formula, GeneratedFunction

__all__ = [
    "derive",
    "distance_corrections",
    "em_mean_square_operator",
    "exponent_bounds",
    "geometric_brownian_motion",
]

KAPPA = sp.Symbol(r"\kappa", real=True)
LAMBDA = sp.Symbol(r"\lambda_{\max}(\operatorname{sym} L)", real=True)
RHO = sp.Symbol(r"\rho", nonnegative=True)
QUARTIC_SHARE = sp.Symbol("S", positive=True)


def _difference_sde(layout: BrownianLayout, d: int):
    """The SDE of e = h - h' (explicit components) with the Brownian ``layout``: the drift
    values g_i kept symbolic, the diffusion sigma(h' + e) - sigma(h') of the layout's."""
    e = sp.symbols(f"e_0:{d}", real=True)
    g = sp.Matrix(sp.symbols(f"g_0:{d}", real=True))
    h_prime = sp.Matrix(sp.symbols(f"hp_0:{d}", real=True))

    def sigma(h: sp.Matrix) -> sp.Matrix:
        return evaluate(
            layout.diffusion(SYMBOLS.h, SYMBOLS.sigma_add, SYMBOLS.sigma_mult, SYMBOLS.n),
            {SYMBOLS.n: d, SYMBOLS.h: h},
        )

    diffusion = (sigma(h_prime + sp.Matrix(e)) - sigma(h_prime)).applyfunc(sp.expand)
    if diffusion.free_symbols & set(h_prime):
        raise AssertionError("the noise of the difference depends on more than e")
    return SDE(state=e, drift=g, diffusion=diffusion), e, g


@cache
def distance_corrections(layout: BrownianLayout, d: int) -> dict:
    """Itô corrections of log|e|^2 and |e|^2 (drift minus the drift-of-e part) with the
    Brownian ``layout``."""
    sde, e, g = _difference_sde(layout, d)
    norm2 = sum(x**2 for x in e)
    log_ito = sde.ito(sp.log(norm2))
    square_ito = sde.ito(norm2)
    drift_part = 2 * sum(x * y for x, y in zip(e, g, strict=True))
    log_correction = sp.simplify(log_ito.drift - drift_part / norm2)
    square_correction = sp.simplify((square_ito.drift - drift_part) / norm2)
    martingale_rate = sp.simplify(sum(c**2 for c in log_ito.diffusion))
    share = sum(x**4 for x in e) / norm2**2
    return {
        "log_correction": log_correction,
        "square_correction": square_correction,
        "martingale_rate": martingale_rate,
        "share": share,
        "state": e,
    }


def quartic_share_bounds(d: int) -> bool:
    """``1/d <= sum e_i^4 / |e|^4 <= 1`` from two sum-of-squares identities (checked by expand)."""
    e = sp.symbols(f"e_0:{d}", real=True)
    squares = sum(x**2 for x in e)
    quartics = sum(x**4 for x in e)
    pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
    lower = (
        sp.expand(d * quartics - squares**2 - sum((e[i] ** 2 - e[j] ** 2) ** 2 for i, j in pairs))
        == 0
    )
    upper = sp.expand(squares**2 - quartics - 2 * sum(e[i] ** 2 * e[j] ** 2 for i, j in pairs)) == 0
    return lower and upper


@cache
def exponent_bounds() -> dict:
    """The three exponent bounds as expressions in kappa, sigma_2 and d."""
    sigma = SYMBOLS.sigma_mult
    d = SYMBOLS.n
    scalar = distance_corrections(SCALAR, 2)
    if sp.simplify(scalar["log_correction"] + sigma**2) != 0:
        raise AssertionError("scalar Brownian motion: unexpected Itô correction")
    bounds = {"almost_sure_scalar": sp.expand((2 * KAPPA + scalar["log_correction"]) / 2)}
    # Per-unit Brownian motions: the correction is affine and decreasing in S, S >= 1/d.
    correction_in_share = sigma**2 * (1 - 2 * QUARTIC_SHARE)
    for size in (1, 2, 3, 4):
        diagonal = distance_corrections(PER_UNIT, size)
        if (
            sp.simplify(
                diagonal["log_correction"]
                - correction_in_share.subs(QUARTIC_SHARE, diagonal["share"])
            )
            != 0
        ):
            raise AssertionError(f"per-unit Brownian motions, d={size}: unexpected Itô correction")
        if not quartic_share_bounds(size):
            raise AssertionError("quartic share bounds")
    if not sp.diff(correction_in_share, QUARTIC_SHARE).is_nonpositive:
        raise AssertionError("correction is not decreasing in S")
    worst = correction_in_share.subs(QUARTIC_SHARE, 1 / d)
    bounds["almost_sure_diagonal"] = sp.collect(sp.expand((2 * KAPPA + worst) / 2), sigma**2)
    square = {distance_corrections(layout, 2)["square_correction"] for layout in LAYOUTS}
    if square != {sigma**2}:
        raise AssertionError(f"mean-square corrections {square}")
    bounds["mean_square"] = sp.expand((2 * KAPPA + sigma**2) / 2)
    bounds["contraction_rate"] = LAMBDA + RHO
    return bounds


@cache
def oscillator_linear_rate():
    """lambda_max(sym L) of the coupled oscillator's linear part, in closed form.

    L = P_y^T P_z - gamma P_z^T P_y - epsilon P_z^T P_z = [[0, I], [-gamma I, -epsilon I]], so
    sym L = K kron I with K = [[0, (1 - gamma)/2], [(1 - gamma)/2, -epsilon]]: its eigenvalues
    (-epsilon +- sqrt(epsilon^2 + (1 - gamma)^2)) / 2, each d times. Returns (the larger one,
    whether explicit L for d = 1, 2, 3 has exactly these eigenvalues, (gamma, epsilon)).
    """
    spec = coupled_oscillator()
    if spec.split is None:
        raise AssertionError("the coupled oscillator's drift has no split f = L h + N(h)")
    linear = spec.split[0]
    named = {entry.name: entry.symbol for entry in spec.symbols}
    gamma, epsilon = named["gamma"], named["epsilon"]
    root = sp.sqrt(epsilon**2 + (1 - gamma) ** 2)
    top, bottom = (-epsilon + root) / 2, (-epsilon - root) / 2
    agrees = True
    for d in (1, 2, 3):
        bindings = dict(spec.sizes(d)) | {
            symbol: sp.Matrix(make(d)) for symbol, make in spec.constants
        }
        matrix = evaluate(linear, bindings)
        eigenvalues = ((matrix + matrix.T) / 2).eigenvals()
        found = sorted(
            (int(sp.simplify(value - top) != 0), multiplicity)
            for value, multiplicity in eigenvalues.items()
            if sp.simplify(value - top) == 0 or sp.simplify(value - bottom) == 0
        )
        agrees &= found == [(0, d), (1, d)]
    return top, agrees, (gamma, epsilon)


def symmetric_part_check(d: int = 3) -> bool:
    """``e^T A e = e^T sym(A) e``: only the symmetric part of A enters the one-sided bound."""
    A = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"a_{i}{j}"))
    e = sp.Matrix(sp.symbols(f"e_0:{d}"))
    return sp.expand((e.T * A * e)[0, 0] - (e.T * (A + A.T) / 2 * e)[0, 0]) == 0


def geometric_brownian_motion() -> dict:
    """dX = a X dt + s X dB: Itô on log X and X^2 (closed-form exponents)."""
    a, s = sp.symbols("a s", real=True)
    x = sp.Symbol("x", positive=True)
    sde = SDE(state=(x,), drift=sp.Matrix([a * x]), diffusion=sp.Matrix([[s * x]]))
    log_ito = sde.ito(sp.log(x))
    square_ito = sde.ito(x**2)
    return {
        "almost_sure": sp.simplify(log_ito.drift),
        "log_diffusion": sp.simplify(log_ito.diffusion[0, 0]),
        "mean_square": sp.simplify(square_ito.drift / x**2),
    }


def commuting_solution_check(d: int = 2) -> bool:
    """dX = A X dt + s X dbeta is solved by X = exp(s beta - s^2 t / 2) Y with dY = A Y dt."""
    t, s = sp.symbols("t s", real=True)
    beta = sp.Symbol("beta", real=True)
    y = sp.symbols(f"y_0:{d}", real=True)
    A = sp.Matrix(d, d, lambda i, j: sp.Symbol(f"a_{i}{j}"))
    Y = sp.Matrix(y)
    sde = SDE(
        state=y + (beta,),
        drift=sp.Matrix.vstack(A * Y, sp.Matrix([0])),
        diffusion=sp.Matrix.vstack(sp.zeros(d, 1), sp.Matrix([1])),
        time=t,
    )
    scale = sp.exp(s * beta - s**2 * t / 2)
    X = scale * Y
    for i in range(d):
        ito = sde.ito(X[i])
        if (
            sp.simplify(ito.drift - (A * X)[i]) != 0
            or sp.simplify(ito.diffusion[0, 0] - s * X[i]) != 0
        ):
            return False
    return True


@cache
def em_mean_square_operator(noises: int = 2):
    """Derive vec(E X_{k+1} X_{k+1}^T) = K vec(E X_k X_k^T) for ``noises`` scalar Brownian motions.

    Returns ``(second_moment_step, K, general)`` where ``general`` is the stacked form
    ``S kron S + dt sum_i B_i kron B_i`` checked against ``K``.
    """
    d = SYMBOLS.n
    dt = SYMBOLS.dt
    S = sp.MatrixSymbol("S", d, d)
    X = sp.MatrixSymbol("X", d, 1)
    P = sp.MatrixSymbol("P", d, d)
    B = [sp.MatrixSymbol(f"B_{{{i + 1}}}", d, d) for i in range(noises)]
    xi = sp.symbols(f"xi_1:{noises + 1}", real=True)
    new = S * X + sp.sqrt(dt) * sp.MatAdd(*[x * b * X for x, b in zip(xi, B, strict=True)])
    model = RandomModel(scalar_noise=xi, means={X: sp.ZeroMatrix(d, 1)}, second_moments={X: P})
    second_moment_step = expectation(new * new.T, model)
    operator = vec_operator(second_moment_step, P)
    stacked = sp.MatrixSymbol("B", d, d)
    general = sp.KroneckerProduct(S, S) + dt * StackSum(
        sp.KroneckerProduct(stacked, stacked), stacked
    )
    return second_moment_step, operator, general, (S, P, B, stacked)


def em_operator_check(d: int = 2, noises: int = 2) -> bool:
    """Explicit check: K vec(P) = vec(P_{k+1}) and K equals the stacked general form."""
    second_moment_step, operator, general, (S, P, B, stacked) = em_mean_square_operator(noises)

    def matrix(name: str) -> sp.Matrix:
        return sp.Matrix(d, d, lambda i, j: sp.Symbol(f"{name}_{i}{j}"))

    bindings = {SYMBOLS.n: d, SYMBOLS.dt: SYMBOLS.dt, S: matrix("s"), P: matrix("p")}
    bindings.update({b: matrix(f"b{i}") for i, b in enumerate(B)})
    bindings[stacked] = [bindings[b] for b in B]

    def vec(M: sp.Matrix) -> sp.Matrix:
        return M.T.reshape(d * d, 1)  # column-major

    K = evaluate(operator, bindings)
    lhs = K * vec(bindings[P])
    rhs = vec(evaluate(second_moment_step, bindings))
    same_action = (lhs - rhs).applyfunc(sp.expand) == sp.zeros(d * d, 1)
    same_form = (K - evaluate(general, bindings)).applyfunc(sp.expand) == sp.zeros(d * d, d * d)
    return same_action and same_form


def scalar_em_limit() -> sp.Expr:
    """d = 1: ((1 + dt a)^2 + dt s^2 - 1) / dt -> 2 a + s^2 as dt -> 0 (the mean-square
    exponent)."""
    a, s = sp.symbols("a s", real=True)
    _, _, general, (S, _, _, stacked) = em_mean_square_operator(1)
    value = evaluate(
        general, {SYMBOLS.n: 1, S: sp.Matrix([[1 + SYMBOLS.dt * a]]), stacked: [sp.Matrix([[s]])]}
    )[0, 0]
    return sp.limit((value - 1) / SYMBOLS.dt, SYMBOLS.dt, 0)


def generated_functions() -> list[GeneratedFunction]:
    bounds = exponent_bounds()
    scalar = "float or (...)"
    kappa = Argument("kappa", KAPPA, scalar, "contraction rate lambda_max(sym L) + rho")
    sigma_mult = Argument(
        "sigma_mult", SYMBOLS.sigma_mult, scalar, "multiplicative noise level sigma_2"
    )
    state = Argument("state_dim", SYMBOLS.n, "int or (...)", "state size n")
    _, _, general, (S, _, _, stacked) = em_mean_square_operator()
    rate, _, (gamma, epsilon) = oscillator_linear_rate()
    return [
        GeneratedFunction(
            "contraction_rate",
            "stability",
            __name__,
            "kappa = lambda_max(sym L) + rho: one-sided Lipschitz constant of a drift L h + N(h), "
            "N rho-Lipschitz.",
            (
                Argument("sym_l_max_eig", LAMBDA, scalar, "largest eigenvalue of (L + L^T)/2"),
                Argument("nonlinear_lipschitz", RHO, scalar, "Lipschitz constant rho of N"),
            ),
            bounds["contraction_rate"],
            "float or (...)",
            elementwise=True,
        ),
        GeneratedFunction(
            "oscillator_linear_rate",
            "stability",
            __name__,
            "lambda_max(sym L) of the coupled oscillator's L = [[0, I], [-gamma I, -epsilon I]].",
            (
                Argument("gamma", gamma, scalar, "the restoring constant gamma"),
                Argument("epsilon", epsilon, scalar, "the damping constant epsilon"),
            ),
            rate,
            "float or (...)",
            elementwise=True,
        ),
        GeneratedFunction(
            "almost_sure_bound_scalar",
            "stability",
            __name__,
            "A.s. exponent bound kappa - sigma_2^2 / 2 (multiplicative noise on one scalar "
            "Brownian motion).",
            (kappa, sigma_mult),
            bounds["almost_sure_scalar"],
            "float or (...)",
            elementwise=True,
        ),
        GeneratedFunction(
            "almost_sure_bound_diagonal",
            "stability",
            __name__,
            "A.s. exponent bound kappa + sigma_2^2 (1/2 - 1/n) (one Brownian motion per unit; "
            "weaker).",
            (kappa, sigma_mult, state),
            bounds["almost_sure_diagonal"],
            "float or (...)",
            elementwise=True,
        ),
        GeneratedFunction(
            "mean_square_bound",
            "stability",
            __name__,
            "Mean-square exponent bound kappa + sigma_2^2 / 2 for (1/2t) log E|h - h'|^2 (both "
            "noise forms).",
            (kappa, sigma_mult),
            bounds["mean_square"],
            "float or (...)",
            elementwise=True,
        ),
        GeneratedFunction(
            "em_mean_square_matrix",
            "stability",
            __name__,
            "Euler--Maruyama second-moment operator (I + dt A) kron (I + dt A) + dt sum_i B_i kron "
            "B_i.",
            (
                Argument("step_matrix", S, "(..., d, d)", "I + dt A"),
                Argument(
                    "noise_matrices",
                    stacked,
                    "(..., n, d, d)",
                    "B_1 .. B_n of dX = A X dt + sum_i B_i X dbeta_i",
                ),
                Argument("dt", SYMBOLS.dt, scalar, "time step"),
            ),
            general,
            "(..., d * d, d * d)",
            notes="Mean-square stable for every initial state iff its spectral radius is below 1 "
            "(column-major vec).",
        ),
    ]


def derive() -> Derivation:
    from nrnn.derivations.latex import equation, latex

    bounds = exponent_bounds()
    derivation = Derivation(
        title="Stability",
        source=__name__,
        summary=(
            "Itô's formula on log|h - h'|^2 and |h - h'|^2 for two trajectories with common input "
            "and common noise, and the exact mean-square stability condition of the "
            "Euler--Maruyama scheme for a linear system."
        ),
    )
    scalar = distance_corrections(SCALAR, 2)
    diagonal = distance_corrections(PER_UNIT, 2)
    e = r"\lvert e\rvert"
    second_moment_step, _, general, _ = em_mean_square_operator()
    derivation.formulas += [
        Formula(
            "Contraction rate",
            (
                equation(KAPPA, bounds["contraction_rate"]),
                rf"e^{{T}}\left(f(h) - f(h')\right) \le \kappa {e}^{{2}},\quad {e}_t \le "
                rf"e^{{\kappa t}} {e}_0",
            ),
            "e = h - h', same input, for a drift f(h) = L h + N(h) with N rho-Lipschitz: e^T L e = "
            "e^T sym(L) e <= lambda_max(sym L) |e|^2 and e^T (N(h) - N(h')) <= rho |e|^2. "
            "Lipschitz cell: L = A, rho = sup|phi'| ||W||_2 (1 for tanh and arctan, 1/4 for the "
            "sigmoid); coupled oscillator: L = [[0, I], [-gamma I, -epsilon I]], rho = sup|phi'| "
            "||[W calW]||_2; the gated cell has no such split.",
        ),
        Formula(
            "Coupled oscillator: lambda_max(sym L)",
            (equation(LAMBDA, oscillator_linear_rate()[0]),),
            "sym L = K kron I_d with K = [[0, (1 - gamma)/2], [(1 - gamma)/2, -epsilon]]; the "
            "larger eigenvalue of K. It is >= 0 (the position y is not damped in the Euclidean "
            "norm), so kappa > 0 for every coRNN: the bounds below then need noise to show "
            "contraction.",
        ),
        Formula(
            "Itô correction of log|e|^2, scalar Brownian motion",
            (
                rf"d \log {e}^{{2}} = \left(\frac{{2 e^{{T}} (f(h) - f(h'))}}{{{e}^{{2}}}} "
                rf"{latex(scalar['log_correction'])}\right) dt + 2 \sigma_{{2}}\, d\beta",
            ),
            "Multiplicative part sigma_2 h on one scalar Brownian motion beta (brownian='scalar'); "
            "the additive part cancels.",
        ),
        Formula(
            "Almost-sure bound, scalar Brownian motion",
            (
                rf"\limsup_{{t\to\infty}} \frac{{1}}{{t}} \log {e}_t \le "
                rf"{latex(bounds['almost_sure_scalar'])}",
            ),
            "Almost surely (beta_t / t -> 0). Noise stabilises: a system with kappa > 0 contracts "
            "when sigma_2^2 > 2 kappa.",
        ),
        Formula(
            "Itô correction of log|e|^2, one Brownian motion per unit",
            (
                rf"\text{{correction}} = {latex(diagonal['log_correction'])} = \sigma_{{2}}^{{2}} "
                rf"(1 - 2 S),\quad S = \frac{{\sum_i e_i^{{4}}}}{{{e}^{{4}}}} \in "
                r"\left[\frac{1}{d}, 1\right]",
            ),
            "brownian='diagonal' (the correction is shown for d = 2). S >= 1/d by d sum e_i^4 - "
            "(sum e_i^2)^2 = sum_{i<j} (e_i^2 - e_j^2)^2; S <= 1 trivially. The martingale part "
            "has quadratic-variation rate 4 sigma_2^2 S <= 4 sigma_2^2.",
        ),
        Formula(
            "Almost-sure bound, one Brownian motion per unit (weaker)",
            (
                rf"\limsup_{{t\to\infty}} \frac{{1}}{{t}} \log {e}_t \le "
                rf"{latex(bounds['almost_sure_diagonal'])}",
            ),
            "Almost surely. The worst case S = 1/d (all |e_i| equal) is attained, so this bound "
            "cannot be improved by this argument: it equals the scalar bound only for d = 1, gives "
            "no stabilisation for d = 2 (exactly kappa) and tends to kappa + sigma_2^2/2 for large "
            "d.",
        ),
        Formula(
            "Mean-square bound (both noise forms)",
            (
                rf"\frac{{d}}{{dt}} \mathbb{{E}} {e}^{{2}} \le (2\kappa + \sigma_{{2}}^{{2}})\, "
                rf"\mathbb{{E}} {e}^{{2}}",
                rf"\limsup_{{t\to\infty}} \frac{{1}}{{2t}} \log \mathbb{{E}} {e}_t^{{2}} \le "
                rf"{latex(bounds['mean_square'])}",
            ),
            "Itô correction of |e|^2 is sigma_2^2 |e|^2 for both forms: noise never helps in mean "
            "square.",
        ),
        Formula(
            "Euler--Maruyama mean-square stability of dX = A X dt + sum_i B_i X dbeta_i",
            (
                equation(
                    r"\mathbb{E}\, X_{k+1} X_{k+1}^{T}",
                    second_moment_step.xreplace(
                        {
                            sp.MatrixSymbol("P", SYMBOLS.n, SYMBOLS.n): sp.MatrixSymbol(
                                "P_{k}", SYMBOLS.n, SYMBOLS.n
                            )
                        }
                    ),
                ),
                rf"\operatorname{{vec}} P_{{k+1}} = \left({latex(general)}\right) "
                r"\operatorname{vec} P_{k},\quad S = I + \Delta t A",
                rf"\text{{mean-square stable}} \iff \rho\left({latex(general)}\right) < 1",
            ),
            "Exact for the scheme (any dt), beta_i independent scalar Brownian motions; shown with "
            "two and stated for n. The map is positive on the cone of PSD matrices, so rho < 1 is "
            "also necessary for every X_0 to decay.",
        ),
    ]
    gbm = geometric_brownian_motion()
    a, s = sp.symbols("a s", real=True)
    checks = [
        (symmetric_part_check(), "e^T A e = e^T sym(A) e (d = 3)."),
        (
            oscillator_linear_rate()[1],
            "coupled oscillator: sym L has exactly the eigenvalues (-epsilon +- sqrt(epsilon^2 + "
            "(1 - gamma)^2))/2, each d times, for explicit d = 1, 2, 3.",
        ),
        (
            all(quartic_share_bounds(size) for size in (2, 3, 4)),
            "1/d <= sum e_i^4/|e|^4 <= 1 by sum-of-squares identities (d = 2, 3, 4).",
        ),
        (
            sp.simplify(gbm["almost_sure"] - (a - s**2 / 2)) == 0 and gbm["log_diffusion"] == s,
            f"dX = aX dt + sX dB: d log X = ({gbm['almost_sure']}) dt + {gbm['log_diffusion']} dB, "
            "a.s. exponent a - s^2/2.",
        ),
        (
            sp.simplify(gbm["mean_square"] - (2 * a + s**2)) == 0,
            f"dX = aX dt + sX dB: d E X^2 / dt = ({gbm['mean_square']}) E X^2.",
        ),
        (
            commuting_solution_check(),
            "dX = AX dt + sX dbeta is solved by exp(s beta - s^2 t/2) e^{At} X_0 (engine, d = 2): "
            "a.s. exponent max Re eig(A) - s^2/2.",
        ),
        (
            all(em_operator_check(d, n) for d, n in ((1, 1), (2, 1), (2, 2), (3, 2))),
            "EM: K vec(P) = vec(E X_{k+1} X_{k+1}^T) and K = S kron S + dt sum B_i kron B_i, "
            "explicit (d, n) in (1,1), (2,1), (2,2), (3,2).",
        ),
    ]
    limit = scalar_em_limit()
    checks.append(
        (
            sp.simplify(limit - (2 * a + s**2)) == 0,
            f"d = 1: (K - 1)/dt -> {limit} as dt -> 0, the continuous mean-square exponent.",
        )
    )
    for ok, statement in checks:
        if not ok:
            raise AssertionError(statement)
        derivation.checks.append(statement)
    derivation.functions += generated_functions()
    return derivation
