"""The noise forms' step in symbols: :class:`NoiseSpec`, and the built-in forms.

Every noise form steps as (``nrnn.noise.StepNoise``)

    h' = h + s ∘ f(h, c) + a + h ∘ m

with s the drift step, a the additive and m the multiplicative term, each a SymPy
expression of the form's noise variables. A :class:`NoiseSpec` declares these terms (the
noise side of the step, as a :class:`derivations.drift.CellSpec` declares the drift), its
noise variables with the generated function each one's cotangent lands in, the symbols
derived from them (the released code's u), and the generated functions it defines.
:mod:`derivations.step_adjoint` derives every variable's cotangent from the spec by
reverse-mode differentiation, prints the functions into ``nrnn._generated.noise_adjoint``
and proves them against ``sympy.diff`` of the explicit step, looping over the specs.

The built-in forms (:data:`BUILT_IN`, in this order):

- :data:`NOISE_FREE`: s = Δt, no noise (the paper's form without noise);
- :func:`paper` of each Brownian layout (:mod:`derivations.brownian`): s = Δt,
  a = √Δt σ₁ ξ, m = √Δt σ₂ ξ (:data:`PAPER_PER_UNIT`) or a = √Δt σ₁ ξ_a, m = √Δt σ₂ ξ_s 1
  (:data:`PAPER_SCALAR`, ξ = [ξ_a, ξ_s]);
- :data:`RELEASED`: the released code, s = δ ∘ u with u = (1 − s_m/2) 1 + (s_m/√12) η,
  a = s_a ζ (ξ = [ζ, η]) and the learnable per-unit step δ;
- :data:`RELEASED_NOISE_FREE`: the released code without noise, s = δ ∘ u with u = 1 (the
  runtime passes u = 1 to the same ``step_size_cotangent``).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from nrnn.derivations.brownian import PER_UNIT, SCALAR, BrownianLayout
from nrnn.derivations.expansion import SYMBOLS
from nrnn.derivations.released_noise import S_ADD, S_MULT
from nrnn.derivations.topic import Argument

__all__ = [
    "BUILT_IN",
    "NOISE_FREE",
    "PAPER_PER_UNIT",
    "PAPER_SCALAR",
    "RELEASED",
    "RELEASED_NOISE_FREE",
    "CotangentFunction",
    "NoiseSpec",
    "NoiseVariable",
    "euler_step",
    "paper",
]

N = SYMBOLS.n
DT, SIGMA_ADD, SIGMA_MULT = SYMBOLS.dt, SYMBOLS.sigma_add, SYMBOLS.sigma_mult
ROOT_DT = sp.sqrt(DT)
ONES = sp.OneMatrix(N, 1)

ZETA = sp.MatrixSymbol(r"\zeta", N, 1)
ETA = sp.MatrixSymbol(r"\eta", N, 1)
STEP_SIZE = sp.MatrixSymbol(r"\delta", N, 1)
STEP_MULTIPLIER = sp.MatrixSymbol("u", N, 1)


@dataclass(frozen=True)
class NoiseVariable:
    """A noise variable of the step (a column leaf) and the generated function returning
    its cotangent: the function stacks the cotangents of the spec's variables landing in
    it, in the order the spec lists them (so a variable's first row there is the number of
    rows of those before it)."""

    symbol: sp.MatrixSymbol
    function: str


@dataclass(frozen=True)
class CotangentFunction:
    """A generated function of ``noise_adjoint`` that a spec defines: the cotangents of the
    spec's variables landing in it, stacked top to bottom, or with ``summed`` summed over
    the samples (a parameter shared by every sample, like δ)."""

    name: str
    summary: str
    returns: str
    summed: bool = False


@dataclass(frozen=True)
class NoiseSpec:
    """A noise form's step terms and everything the engine needs to derive, print and prove
    the cotangents of its noise variables.

    Attributes:
        name: the form's name in the proofs and on the formula sheet.
        title: the form in words.
        step, additive, multiplier: s, a (None: no additive term) and m (None: the step
            has no multiplicative term, h ∘ m is left out) as n x 1 expressions.
        variables: the leaves whose cotangents are derived and proved, each with the
            generated function it lands in.
        derived: (symbol, expression) pairs: a symbol of the terms standing for an
            expression of the variables (the released code's u of η); the code takes the
            symbol's value, the chain rule carries its cotangent to the variables.
        functions: the generated functions this spec defines (a spec may instead land its
            variables in a function another spec defines, as the released code without
            noise does).
        arguments: the code names of the spec's scalar and column symbols (beyond λ, h
            and f) in the generated functions.
    """

    name: str
    title: str
    step: sp.MatrixExpr
    additive: sp.MatrixExpr | None = None
    multiplier: sp.MatrixExpr | None = None
    variables: tuple[NoiseVariable, ...] = ()
    derived: tuple[tuple[sp.MatrixSymbol, sp.MatrixExpr], ...] = ()
    functions: tuple[CotangentFunction, ...] = ()
    arguments: tuple[Argument, ...] = ()

    def __post_init__(self):
        terms = [t for t in (self.step, self.additive, self.multiplier) if t is not None]
        leaves = {
            node
            for term in [*terms, *(expr for _, expr in self.derived)]
            for node in sp.preorder_traversal(term)
            if isinstance(node, sp.MatrixSymbol)
        }
        symbols = [variable.symbol for variable in self.variables]
        known = set(symbols) | {symbol for symbol, _ in self.derived}
        if leaves - known:
            raise ValueError(
                f"NoiseSpec {self.name!r}: the terms and derived expressions read "
                f"{sorted(map(str, leaves - known))}, expected only its variables and derived "
                "symbols"
            )
        for symbol in symbols:
            readers = int(any(term.has(symbol) for term in terms))
            readers += sum(expr.has(symbol) for _, expr in self.derived)
            if readers != 1:
                raise ValueError(
                    f"NoiseSpec {self.name!r}: variable {symbol} must be read by the terms or "
                    f"by one derived expression, not both or neither ({readers} readers)"
                )

    def next_state(self, state, drift) -> sp.MatrixExpr:
        """h' = h + s ∘ f + a (+ h ∘ m) for the state h and the drift value f."""
        return euler_step(state, drift, self.step, self.additive, self.multiplier)

    def derived_from(self, symbol) -> sp.MatrixSymbol | None:
        """The derived symbol whose expression reads ``symbol``, or None."""
        return next((derived for derived, expr in self.derived if expr.has(symbol)), None)


def euler_step(state, drift, step, additive=None, multiplier=None) -> sp.MatrixExpr:
    """h' = h + s ∘ f + a + h ∘ m, a term left out where its a or m is None."""
    terms = [state, sp.HadamardProduct(step, drift)]
    terms += [] if additive is None else [additive]
    terms += [] if multiplier is None else [sp.HadamardProduct(state, multiplier)]
    return sp.MatAdd(*terms)


# ------------------------------------------------------------------------ the built-in forms
PAPER_ARGUMENTS = (
    Argument("sigma_add", SIGMA_ADD, "float", "the paper's additive level"),
    Argument("sigma_mult", SIGMA_MULT, "float", "the paper's multiplicative level"),
    Argument("dt", DT, "float", "time step"),
)
STEP_SIZE_ARGUMENTS = (
    Argument("step_size", STEP_SIZE, "(n,)", "delta, the per-unit step"),
    Argument(
        "step_multiplier",
        STEP_MULTIPLIER,
        "float or (..., n)",
        "u, the uniform multiplier of delta (1 without noise)",
    ),
)

NOISE_FREE = NoiseSpec(
    name="noise-free",
    title="the paper's form without noise: s = dt",
    step=DT * ONES,
)


def paper(layout: BrownianLayout) -> NoiseSpec:
    """The paper's form with the Brownian ``layout``: s = Δt, a = √Δt σ₁ ξ_add,
    m = √Δt σ₂ ξ_mult with (ξ_add, ξ_mult) the layout's split of ξ."""
    additive, multiplicative = layout.split(N)
    function = f"noise_cotangent_{layout.name}"
    return NoiseSpec(
        name=layout.name,
        title=f"the paper's form, {layout.motions}",
        step=DT * ONES,
        additive=ROOT_DT * SIGMA_ADD * additive,
        multiplier=ROOT_DT * SIGMA_MULT * multiplicative,
        variables=tuple(NoiseVariable(xi, function) for xi in layout.variables(N)),
        functions=(
            CotangentFunction(
                function,
                f"The cotangent of {layout.variables_text} of one paper-form step.",
                f"(..., {layout.noise_dimension(N)})",
            ),
        ),
        arguments=PAPER_ARGUMENTS,
    )


PAPER_PER_UNIT = paper(PER_UNIT)
PAPER_SCALAR = paper(SCALAR)

RELEASED = NoiseSpec(
    name="released",
    title="the released code: s = delta o u, u = 1 - s_m/2 + (s_m/sqrt(12)) eta, a = s_a zeta",
    step=sp.HadamardProduct(STEP_SIZE, STEP_MULTIPLIER),
    additive=S_ADD * ZETA,
    variables=(
        NoiseVariable(ZETA, "noise_cotangent_released"),
        NoiseVariable(ETA, "noise_cotangent_released"),
        NoiseVariable(STEP_SIZE, "step_size_cotangent"),
    ),
    derived=((STEP_MULTIPLIER, (1 - S_MULT / 2) * ONES + S_MULT / sp.sqrt(12) * ETA),),
    functions=(
        CotangentFunction(
            "noise_cotangent_released",
            "The cotangent of xi = [zeta, eta] of one released-code step.",
            "(..., 2 n)",
        ),
        CotangentFunction(
            "step_size_cotangent",
            "The gradient of the released code's per-unit step delta, summed over the samples.",
            "(n,)",
            summed=True,
        ),
    ),
    arguments=(
        *STEP_SIZE_ARGUMENTS,
        Argument("released_add", S_ADD, "float", "the released code's additive level s_a"),
        Argument("released_mult", S_MULT, "float", "the released code's multiplicative level s_m"),
    ),
)

RELEASED_NOISE_FREE = NoiseSpec(
    name="released-noise-free",
    title="the released code without noise: s = delta (u = 1)",
    step=sp.HadamardProduct(STEP_SIZE, STEP_MULTIPLIER),
    variables=(NoiseVariable(STEP_SIZE, "step_size_cotangent"),),
    derived=((STEP_MULTIPLIER, ONES),),
    arguments=STEP_SIZE_ARGUMENTS,
)

BUILT_IN: tuple[NoiseSpec, ...] = (
    NOISE_FREE,
    PAPER_PER_UNIT,
    PAPER_SCALAR,
    RELEASED,
    RELEASED_NOISE_FREE,
)
"""Every built-in noise form, in the order of the proofs; their functions make up
``nrnn._generated.noise_adjoint`` in this order."""
