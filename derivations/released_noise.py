"""The released code's noise and its SDE equivalent.

The authors' released code steps ``h_{k+1} = h_k + (delta o u_k) o f(h_k, x_k) + s_a zeta_k``
with ``u_k ~ Uniform[1 - s_m, 1]`` per unit, ``zeta_k ~ N(0, I)`` and a per-unit step
``delta`` (initialised to dt). SymPy integrates the uniform density for ``E u`` and
``Var u`` and averages the increment; matching the first two moments of one step with an
Euler--Maruyama step ``h + dt (scale f) + sqrt(dt) sigma xi`` (with ``delta = dt``) gives

- the drift shrunk by ``E u = 1 - s_m / 2``;
- additive noise of level ``s_a / sqrt(dt)``;
- a drift-proportional noise with per-step variance ``(s_m^2 / 12) (delta f)^2``, i.e.
  ``sigma = [(s_a / sqrt(dt)) I | diag(s_m delta f / sqrt(12 dt))]`` (d x 2d).

The sign of the second block is immaterial (the noise is symmetric). The uniform noise is
symmetric about its mean (third central moment 0), so odd orders of the small-noise
expansion still vanish; its fourth moment differs from a Gaussian's, which affects only the
O(eps^4) remainder.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from nrnn.derivations.explicit import evaluate
from nrnn.derivations.ito import gaussian_expectation
from nrnn.derivations.topic import Argument, Derivation, Formula, GeneratedFunction

__all__ = ["derive", "uniform_moments", "sde_equivalent"]

S_ADD = sp.Symbol("s_{a}", nonnegative=True)
S_MULT = sp.Symbol("s_{m}", positive=True)
DT = sp.Symbol(r"\Delta t", positive=True)
STEP_DRIFT = sp.Symbol(r"(\delta \circ f)_{i}", real=True)
D = sp.Symbol("d", integer=True, positive=True)
STEP_DRIFT_VECTOR = sp.MatrixSymbol(r"\delta \circ f", D, 1)


@cache
def uniform_moments() -> dict:
    """Moments of u ~ Uniform[1 - s_m, 1] by integrating the density 1/s_m."""
    u = sp.Symbol("u", real=True)

    def average(expr: sp.Expr) -> sp.Expr:
        return sp.simplify(sp.integrate(expr / S_MULT, (u, 1 - S_MULT, 1)))

    mean = average(u)
    return {
        "mean": mean,
        "variance": sp.factor(average((u - mean) ** 2)),
        "third": sp.simplify(average((u - mean) ** 3)),
        "fourth": sp.factor(average((u - mean) ** 4)),
        "u": u,
        "average": average,
    }


@cache
def sde_equivalent() -> dict:
    """Per-step mean and variance of one released-code step; the matching EM levels."""
    moments = uniform_moments()
    u, average = moments["u"], moments["average"]
    zeta = sp.Symbol("zeta", real=True)
    increment = STEP_DRIFT * u + S_ADD * zeta
    step_mean = average(gaussian_expectation(increment, [zeta]))
    fluctuation = increment - step_mean
    step_variance = sp.expand(average(gaussian_expectation(fluctuation**2, [zeta])))
    drift_scale = sp.simplify(step_mean / STEP_DRIFT)
    level = sp.Symbol("level", positive=True)
    (additive_level,) = sp.solve(sp.Eq(DT * level**2, S_ADD**2), level)
    drift_variance = sp.expand(step_variance - S_ADD**2)
    drift_level_squared = drift_variance / DT
    drift_level = S_MULT * STEP_DRIFT / sp.sqrt(12 * DT)
    if sp.simplify(drift_level**2 - drift_level_squared) != 0:
        raise AssertionError("drift-proportional level does not match the variance")
    diffusion = sp.BlockMatrix(
        [
            [
                additive_level * sp.Identity(D),
                sp.DiagMatrix(S_MULT / sp.sqrt(12 * DT) * STEP_DRIFT_VECTOR),
            ]
        ]
    )
    return {
        "step_mean": step_mean,
        "step_variance": step_variance,
        "drift_scale": drift_scale,
        "additive_level": additive_level,
        "drift_level": drift_level,
        "diffusion": diffusion,
    }


def diffusion_check(d: int = 2) -> bool:
    """dt sigma sigma^T = diag(per-step variance) for explicit d."""
    equivalent = sde_equivalent()
    q = sp.Matrix(sp.symbols(f"q_0:{d}", real=True))
    sigma = evaluate(equivalent["diffusion"], {D: d, STEP_DRIFT_VECTOR: q})
    expected = sp.diag(*[equivalent["step_variance"].subs(STEP_DRIFT, entry) for entry in q])
    return (DT * sigma * sigma.T - expected).applyfunc(sp.simplify) == sp.zeros(d, d)


def generated_functions() -> list[GeneratedFunction]:
    equivalent = sde_equivalent()
    scalar = "float or (...)"
    sigma_add = Argument("sigma_add", S_ADD, scalar, "released-code additive level s_a")
    sigma_mult = Argument("sigma_mult", S_MULT, scalar, "released-code multiplicative level s_m")
    dt = Argument("dt", DT, scalar, "time step dt (= the initial per-unit step delta)")
    return [
        GeneratedFunction(
            "released_drift_scale",
            "released_noise",
            __name__,
            "Drift shrink factor E u = 1 - s_m / 2 of the released-code noise.",
            (sigma_mult,),
            equivalent["drift_scale"],
            "float or (...)",
            elementwise=True,
        ),
        GeneratedFunction(
            "released_additive_level",
            "released_noise",
            __name__,
            "SDE-equivalent additive level s_a / sqrt(dt).",
            (sigma_add, dt),
            equivalent["additive_level"],
            "float or (...)",
            elementwise=True,
        ),
        GeneratedFunction(
            "released_step_variance",
            "released_noise",
            __name__,
            "Per-step variance s_a^2 + (s_m^2 / 12) (delta f)^2 of one released-code step.",
            (
                sigma_add,
                sigma_mult,
                Argument("step_drift", STEP_DRIFT, "(..., d)", "delta o f(h, x)"),
            ),
            equivalent["step_variance"],
            "(..., d)",
            elementwise=True,
            per_batch=("sigma_add", "sigma_mult"),
        ),
        GeneratedFunction(
            "released_diffusion",
            "released_noise",
            __name__,
            "SDE-equivalent diffusion [(s_a / sqrt(dt)) I | diag(s_m delta f / sqrt(12 dt))].",
            (
                Argument(
                    "h_drift_step",
                    STEP_DRIFT_VECTOR,
                    "(..., d)",
                    "delta o f(h, x), the per-step drift",
                ),
                sigma_add,
                sigma_mult,
                dt,
            ),
            equivalent["diffusion"],
            "(..., d, 2 d)",
        ),
    ]


def derive() -> Derivation:
    from nrnn.derivations.latex import equation

    moments = uniform_moments()
    equivalent = sde_equivalent()
    u = moments["u"]
    derivation = Derivation(
        title="Reference-code noise mapping",
        source=__name__,
        summary=(
            "The released code steps h_{k+1} = h_k + (delta o u_k) o f(h_k, x_k) + s_a zeta_k, u_k "
            "~ Uniform[1 - s_m, 1] per unit, zeta_k ~ N(0, I); matched in its first two moments to "
            "an Euler--Maruyama step with delta = dt."
        ),
    )
    derivation.formulas += [
        Formula(
            "Uniform moments",
            (
                equation(rf"\mathbb{{E}}\,{sp.latex(u)}", moments["mean"]),
                equation(rf"\operatorname{{Var}}\,{sp.latex(u)}", moments["variance"]),
                equation(
                    rf"\mathbb{{E}}\,({sp.latex(u)} - \mathbb{{E}} u)^{{3}}", moments["third"]
                ),
                equation(
                    rf"\mathbb{{E}}\,({sp.latex(u)} - \mathbb{{E}} u)^{{4}}", moments["fourth"]
                ),
            ),
            "u ~ Uniform[1 - s_m, 1], 0 < s_m <= 1.",
        ),
        Formula(
            "One released-code step, per unit",
            (
                equation(r"\mathbb{E}\,[\Delta h_i]", equivalent["step_mean"]),
                equation(r"\operatorname{Var}\,[\Delta h_i]", equivalent["step_variance"]),
            ),
            "delta o f evaluated at the current state; u and zeta independent.",
        ),
        Formula(
            "SDE equivalent (first two moments of a step)",
            (
                equation(r"\text{drift scale}", equivalent["drift_scale"]),
                equation(r"\sigma_{\mathrm{add}}", equivalent["additive_level"]),
                equation(r"\sigma(h)", equivalent["diffusion"]),
            ),
            "delta = dt. The drift-proportional block is not Gaussian (uniform); moments up to the "
            "second match, the third central moment is 0 as for a Gaussian, the fourth differs "
            "(s_m^4/80 vs 3 (s_m^2/12)^2 = s_m^4/48).",
        ),
    ]
    if not diffusion_check():
        raise AssertionError("released diffusion does not reproduce the step variance")
    derivation.checks.append(
        "dt sigma sigma^T = diag(s_a^2 + (s_m^2/12)(delta f)_i^2) for the equivalent diffusion "
        "(d = 2)."
    )
    derivation.functions += generated_functions()
    return derivation
