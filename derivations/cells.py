"""Every cell's formulas, derived from its SymPy drift, and the built-in cells.

For a drift f written as a :class:`derivations.drift.CellSpec`, :func:`derive_formulas`
obtains symbolically (:mod:`derivations.differentials`), with y a direction and C a
covariance:

- ``drift_differential``: ∇f[y] (the linear response's drift, applied to probe rows);
- ``drift_jacobian``: F with ∇f[y] = F y; ``step_jacobian``: J = I + Δt F;
- ``drift_second_differential``: ∇²f[y, y];
- ``curvature``: v = E ∇²f[δ, δ] for δ ~ (0, C), in matrix products and diagvec(P C Qᵀ);

every activation derivative φ^(j)(a) at the path replaced by a named argument (``label``,
``label_slope``, ``label_curvature``), so the code takes the values the runtime cell
computes once per path. :func:`derive_cell` prints them into ``nrnn._generated.cell_<name>``
(with the drift itself, its activations passed as callables), lists them on the formula
sheet and proves by brute force (:mod:`derivations.brute_force`) that the one-step rules
with this J and v give the ε² coefficient of E ℓ and that the odd orders vanish.

The built-in cells: :func:`lipschitz` (f = A h + φ(W h + c)), :func:`coupled_oscillator`
(coRNN: y'' = φ(W y + 𝒲 y' + c) − γ y − ε y' as a first-order system in h = (y, z = y'))
and :func:`gated` (the GRU-ODE cell f = (1 − u) ∘ (g − h) with sigmoid gates u, r and
g = tanh(U_g (r ∘ h) + c_g): its curvature has products of activation derivatives).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import sympy as sp

from nrnn.derivations import noises
from nrnn.derivations.brownian import LAYOUTS
from nrnn.derivations.brute_force import prove
from nrnn.derivations.differentials import (
    assemble,
    differentiate,
    linear_form,
    quadratic_expectation,
    terms,
)
from nrnn.derivations.drift import Activation, Applied, CellSpec, Symbol, point_name, point_symbol
from nrnn.derivations.expansion import SYMBOLS
from nrnn.derivations.step_adjoint import cell_step_functions, cell_step_outputs
from nrnn.derivations.step_adjoint import prove as prove_step
from nrnn.derivations.topic import Argument, Derivation, Formula, GeneratedFunction

__all__ = [
    "ACTIVATION_POINTS",
    "BUILT_IN",
    "HAS_STEP_VJP",
    "activation_points",
    "built_in",
    "CellFormulas",
    "coupled_oscillator",
    "derive_all",
    "derive_cell",
    "derive_formulas",
    "gated",
    "lipschitz",
]

D = sp.Symbol("d", integer=True, positive=True)
N = sp.Symbol("n", integer=True, positive=True)


@dataclass(frozen=True)
class CellFormulas:
    """The derived expressions of one cell (activation derivatives as point symbols)."""

    spec: CellSpec
    direction: sp.MatrixSymbol
    covariance: sp.MatrixSymbol
    dt: sp.Symbol
    drift_differential: sp.MatrixExpr
    drift_second_differential: sp.MatrixExpr
    drift_jacobian: sp.MatrixExpr
    step_jacobian: sp.MatrixExpr
    curvature: sp.MatrixExpr
    points: tuple[tuple[sp.MatrixSymbol, str, str], ...]  # (symbol, code name, description)


@cache
def derive_formulas(spec: CellSpec) -> CellFormulas:
    """∇f[y], F, J, ∇²f[y, y] and v of a drift (see the module docstring)."""
    n = spec.state_dimension
    direction = sp.MatrixSymbol("y", n, 1)
    covariance = sp.MatrixSymbol("C", n, n)
    first = terms(differentiate(spec.drift, spec.state, direction))
    second = terms(differentiate(assemble(first, (n, 1)), spec.state, direction))
    jacobian = assemble([(c, linear_form(m, direction)) for c, m in first], (n, n))
    curvature = assemble(
        [(c, quadratic_expectation(m, direction, covariance)) for c, m in second], (n, 1)
    )
    expressions = [assemble(first, (n, 1)), assemble(second, (n, 1)), jacobian, curvature]
    uses = {
        node
        for expr in expressions
        for node in sp.preorder_traversal(expr)
        if isinstance(node, Applied)
    }
    replacement = {use: point_symbol(use) for use in uses}
    first, second, jacobian, curvature = (e.xreplace(replacement) for e in expressions)
    words = {0: "", 1: "first derivative of ", 2: "second derivative of "}
    points = tuple(
        (
            point_symbol(use),
            point_name(use),
            f"{words[use.order]}the activation {use.function} at the path ({use.label})",
        )
        for use in sorted(uses, key=lambda use: (use.label, use.order))
    )
    return CellFormulas(
        spec=spec,
        direction=direction,
        covariance=covariance,
        dt=SYMBOLS.dt,
        drift_differential=first,
        drift_second_differential=second,
        drift_jacobian=jacobian,
        step_jacobian=sp.MatAdd(sp.Identity(n), sp.MatMul(SYMBOLS.dt, jacobian)),
        curvature=curvature,
        points=points,
    )


# ------------------------------------------------------------------------- printing
def _shape(symbol, spec: CellSpec) -> str:
    if not isinstance(symbol, sp.MatrixSymbol):
        return "float or (...)"
    rows, cols = (str(size) for size in symbol.shape)
    return f"(..., {rows})" if cols == "1" else f"(..., {rows}, {cols})"


def _arguments(formulas: CellFormulas) -> dict:
    """Every argument a cell's functions can take, by symbol, in signature order."""
    spec = formulas.spec
    arguments = {
        spec.state: Argument(spec.state_name, spec.state, _shape(spec.state, spec), "state h")
    }
    for entry in spec.symbols:
        arguments[entry.symbol] = Argument(entry.name, entry.symbol, entry.shape, entry.description)
    for use in spec.applied():
        arguments[sp.Symbol(use.label)] = Argument(
            use.label,
            sp.Symbol(use.label),
            "callable",
            f"the activation {use.label} (entrywise; {use.function} in the built-in cells)",
        )
    for symbol, name, description in formulas.points:
        arguments[symbol] = Argument(name, symbol, _shape(symbol, spec), description)
    arguments[formulas.covariance] = Argument(
        "covariance", formulas.covariance, _shape(formulas.covariance, spec), "covariance C"
    )
    arguments[formulas.direction] = Argument(
        "direction", formulas.direction, _shape(formulas.direction, spec), "direction y (rows)"
    )
    arguments[formulas.dt] = Argument("dt", formulas.dt, "float or (...)", "time step")
    return arguments


def _used(expr, arguments: dict) -> tuple:
    """The arguments an expression uses, in signature order (callables for activations)."""
    present = {s for s in expr.free_symbols} | {
        node for node in sp.preorder_traversal(expr) if isinstance(node, sp.MatrixSymbol)
    }
    present |= {
        sp.Symbol(node.label) for node in sp.preorder_traversal(expr) if isinstance(node, Applied)
    }
    return tuple(argument for symbol, argument in arguments.items() if symbol in present)


def generated_functions(formulas: CellFormulas) -> list[GeneratedFunction]:
    spec = formulas.spec
    module = f"cell_{spec.name}"
    arguments = _arguments(formulas)
    n = str(spec.state_dimension)
    entries = [
        ("drift", "The drift f(h, c).", spec.drift, f"(..., {n})", "The cell's definition."),
        (
            "drift_jacobian",
            "Drift Jacobian F = D_h f on the path.",
            formulas.drift_jacobian,
            f"(..., {n}, {n})",
            "",
        ),
        (
            "step_jacobian",
            "Euler--Maruyama step Jacobian J = I + dt F.",
            formulas.step_jacobian,
            f"(..., {n}, {n})",
            "",
        ),
        (
            "curvature",
            "Curvature v = E D^2 f[delta, delta] for delta with covariance C.",
            formulas.curvature,
            f"(..., {n})",
            "",
        ),
        (
            "drift_differential",
            "D f[y] = F y along a direction y, without forming F.",
            formulas.drift_differential,
            f"(..., {n})",
            "",
        ),
        (
            "drift_second_differential",
            "D^2 f[y, y] along a direction y.",
            formulas.drift_second_differential,
            f"(..., {n})",
            "",
        ),
    ]
    functions = [
        GeneratedFunction(
            name=name,
            module=module,
            source=__name__,
            summary=f"{spec.title}: {summary}",
            arguments=_used(expr, arguments),
            expr=expr,
            returns=returns,
            notes=notes,
        )
        for name, summary, expr, returns, notes in entries
    ]
    return functions + cell_step_functions(spec, arguments)


# ------------------------------------------------------------------------- the sheet
def derive_cell(spec: CellSpec) -> Derivation:
    """The formulas, generated functions and brute-force proofs of one cell."""
    from nrnn.derivations.latex import equation

    formulas = derive_formulas(spec)
    derivation = Derivation(
        title=f"Cell: {spec.title}",
        source=__name__,
        summary=spec.summary,
    )
    h, y = spec.state, formulas.direction
    derivation.formulas += [
        Formula("Drift", (equation(sp.Symbol("f(h, c)"), spec.drift),), spec.assumptions),
        Formula(
            "First and second differential along y",
            (
                equation(r"\nabla f[y]", formulas.drift_differential),
                equation(r"\nabla^{2} f[y, y]", formulas.drift_second_differential),
            ),
            "Differentiated symbolically (sum, product and chain rules); primes are the "
            "activations' derivatives at the path.",
        ),
        Formula(
            "Drift Jacobian",
            (equation("F", formulas.drift_jacobian),),
            f"Read off from D f[y] = F y; {h} on the path.",
        ),
        Formula(
            "Curvature of the mean correction",
            (equation(r"v = \mathbb{E}\, \nabla^{2} f[\delta, \delta]", formulas.curvature),),
            "delta with covariance C: E (P delta) o (Q delta) = diagvec(P C Q^T) term by term; "
            f"{y} stands for delta in the differentials above.",
        ),
    ]
    if spec.split is not None:
        linear, nonlinear = spec.split
        derivation.formulas.append(
            Formula(
                "Split for the stability bounds",
                (equation("L", linear), equation("N(h)", nonlinear)),
                f"f = L h + N(h) (checked by expansion); {spec.split_note} The contraction rate is "
                "kappa = lambda_max(sym L) + rho (section Stability).",
            )
        )
        difference = terms(sp.MatAdd(spec.drift, -linear * h, -nonlinear))
        if difference:
            raise AssertionError(f"{spec.name}: f - L h - N(h) = {difference}, not 0")
        derivation.checks.append(f"{spec.name}: f = L h + N(h) for the split above (expanded).")
    else:
        derivation.formulas.append(
            Formula(
                "Stability",
                ("\\text{no closed-form one-sided Lipschitz bound}",),
                spec.split_note,
            )
        )
    for d, steps in spec.proof_cases:
        for layout in LAYOUTS:
            result = prove(spec, formulas, d, steps, layout)
            if not result.proved:
                raise AssertionError(result.statement())
            derivation.checks.append(result.statement())
    derivation.formulas.append(_step_formula(spec))
    for noise in noises.BUILT_IN:
        step_result = prove_step(spec, spec.step_proof_size, noise)
        if not step_result.proved:
            raise AssertionError(step_result.statement())
        derivation.checks.append(step_result.statement())
    derivation.functions += generated_functions(formulas)
    derivation.constants[f"cell_{spec.name}"] = {
        ACTIVATION_POINTS: activation_points(spec, derivation.functions),
        # generated_functions always appends the step products (cell_step_functions).
        HAS_STEP_VJP: True,
    }
    return derivation


ACTIVATION_POINTS = "ACTIVATION_POINTS"
"""The constant of a generated cell module that declares its activation arguments."""

HAS_STEP_VJP = "HAS_STEP_VJP"
"""The constant of a generated cell module that declares whether it has the
vector-Jacobian products of one step (the fused recurrence's backward pass needs them)."""


def activation_points(spec: CellSpec, functions: list[GeneratedFunction]) -> dict:
    """Every argument of ``functions`` that is an activation derivative at the path, by name:
    (the activation use's label, the derivative's order: 0 value, 1 slope, 2 curvature).
    The runtime cell computes these from its pre-activations (``Cell.step_point``)."""
    used = {argument.name for function in functions for argument in function.arguments}
    points = {}
    for use in spec.applied():
        applied = use
        for order in range(3):
            if point_name(applied) in used:
                points[point_name(applied)] = (use.label, order)
            applied = applied.derivative()
    return dict(sorted(points.items()))


def _step_formula(spec: CellSpec) -> Formula:
    """The fused recurrence's step: the cotangents of one step h' = h + s o f + a + h o m."""
    from nrnn.derivations.latex import equation, latex

    outputs, _ = cell_step_outputs(spec, True)
    names = {"state": r"\lambda_{h}"} | {
        entry.name: rf"\bar{{{latex(entry.symbol)}}}" for entry in spec.symbols
    }
    lines = tuple(equation(names[name], expr) for name, expr in outputs)
    return Formula(
        "Vector-Jacobian product of one step (fused recurrence)",
        lines,
        "lambda is the cotangent of h' = h + s o f(h, c) + a + h o m; primes are the activations' "
        "derivatives at (h, c); a matrix's gradient is summed over the samples. Derived by "
        "reverse-mode differentiation of the step (derivations.adjoint).",
    )


# ---------------------------------------------------------------------- the built-in cells
BUILT_IN: list[Callable[[], CellSpec]] = []
"""The specs ``nrnn derive`` builds into ``nrnn._generated.cell_<name>``, in the order they
were registered with :func:`built_in`: one per registered cell with generated formulas
(``nrnn.cells.CELLS``)."""


def built_in(spec: Callable[[], CellSpec]) -> Callable[[], CellSpec]:
    """Register a function returning a built-in cell's spec (a decorator): ``nrnn derive``
    derives it into ``nrnn/_generated/cell_<name>.py``, the module the cell's class names
    as its ``formulas``."""
    BUILT_IN.append(spec)
    return spec


def _matrix(name, rows, cols, code, description) -> Symbol:
    symbol = sp.MatrixSymbol(name, rows, cols)
    shape = "(..., d)" if cols == 1 else f"(..., {rows}, {cols})"
    return Symbol(symbol, code, description, shape)


def _selection(d: int, block: int) -> sp.Matrix:
    """[I 0] (block 0) or [0 I] (block 1), d x 2d."""
    blocks = [sp.zeros(d, d), sp.zeros(d, d)]
    blocks[block] = sp.eye(d)
    return sp.Matrix.hstack(*blocks)


@built_in
@cache
def lipschitz() -> CellSpec:
    """f = A h + φ(W h + c): the Lipschitz RNN (A = 0: the Antisymmetric RNN)."""
    h = sp.MatrixSymbol("h", D, 1)
    A = _matrix("A", D, D, "a_matrix", "the matrix A")
    W = _matrix("W", D, D, "w_matrix", "the recurrent matrix W")
    c = _matrix("c", D, 1, "drive", "the drive c = U x + b")
    phi = Activation("phi", "tanh", r"\varphi")
    activation = phi(W.symbol * h + c.symbol)
    return CellSpec(
        name="lipschitz",
        title="Lipschitz RNN",
        summary="f(h, c) = A h + phi(W h + c) with A, W from the (1 - beta, beta) symmetric and "
        "skew parts and the shifts gamma_A, gamma_W; A = 0 gives the Antisymmetric RNN.",
        state=h,
        drift=A.symbol * h + activation,
        symbols=(A, W, c),
        sizes=lambda d: {D: d},
        assumptions=(
            "phi smooth (tanh, arctan or the sigmoid); c = U x_k + b is the drive of step k."
        ),
        split=(A.symbol, activation),
        split_note="rho = sup|phi'| ||W||_2 (phi(W h + c) is that Lipschitz in h).",
        proof_cases=((1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)),
        state_name="state",
    )


@built_in
@cache
def coupled_oscillator() -> CellSpec:
    """coRNN (Rusch & Mishra 2021) as a first-order system in h = (y, z = y')."""
    h = sp.MatrixSymbol("h", N, 1)
    P_y = sp.MatrixSymbol("P_y", D, N)
    P_z = sp.MatrixSymbol("P_z", D, N)
    W = _matrix("W", D, D, "w_matrix", "the position weights W")
    V = _matrix(r"\mathcal{W}", D, D, "velocity_matrix", "the velocity weights 𝒲")
    c = _matrix("c", D, 1, "drive", "the drive c = V x + b")
    gamma = sp.Symbol(r"\gamma", real=True)
    epsilon = sp.Symbol(r"\epsilon", real=True)
    phi = Activation("phi", "tanh", r"\varphi")
    y, z = P_y * h, P_z * h
    activation = phi(W.symbol * y + V.symbol * z + c.symbol)
    drift = P_y.T * z + P_z.T * (activation - gamma * y - epsilon * z)
    linear = P_y.T * P_z - gamma * P_z.T * P_y - epsilon * P_z.T * P_z
    return CellSpec(
        name="cornn",
        title="Coupled oscillatory RNN (coRNN)",
        summary="y'' = phi(W y + calW y' + c) - gamma y - epsilon y', written as the first-order "
        "system h = (y, z): y' = z, z' = phi(W y + calW z + c) - gamma y - epsilon z; noise on the "
        "whole state.",
        state=h,
        drift=drift,
        symbols=(
            W,
            V,
            c,
            Symbol(gamma, "gamma", "the restoring constant gamma", "float or (...)"),
            Symbol(epsilon, "epsilon", "the damping constant epsilon", "float or (...)"),
            Symbol(P_y, "select_position", "P_y = [I 0], y = P_y h", "(..., d, n)"),
            Symbol(P_z, "select_velocity", "P_z = [0 I], z = P_z h", "(..., d, n)"),
        ),
        sizes=lambda d: {D: d, N: 2 * d},
        constants=((P_y, lambda d: _selection(d, 0)), (P_z, lambda d: _selection(d, 1))),
        assumptions="n = 2d; P_y = [I 0] and P_z = [0 I] select y and z (the formulas hold for any "
        "matrices P_y, P_z); the readout sees y.",
        split=(linear, P_z.T * activation),
        split_note="rho = sup|phi'| ||[W calW]||_2 (P_z^T has orthonormal columns).",
        proof_cases=((1, 1), (1, 2), (1, 3), (2, 1), (2, 2)),
        selections=((P_y, 0, 2), (P_z, 1, 2)),
    )


@built_in
@cache
def gated() -> CellSpec:
    """The GRU-ODE cell: f = (1 − u) ∘ (g − h)."""
    h = sp.MatrixSymbol("h", D, 1)
    U_u = _matrix("U_u", D, D, "update_matrix", "the update gate's recurrent weights U_u")
    U_r = _matrix("U_r", D, D, "reset_matrix", "the reset gate's recurrent weights U_r")
    U_g = _matrix("U_g", D, D, "candidate_matrix", "the candidate's recurrent weights U_g")
    c_u = _matrix("c_u", D, 1, "update_drive", "the update gate's drive W_u x + b_u")
    c_r = _matrix("c_r", D, 1, "reset_drive", "the reset gate's drive W_r x + b_r")
    c_g = _matrix("c_g", D, 1, "candidate_drive", "the candidate's drive W_g x + b_g")
    u = Activation("u", "sigmoid")(U_u.symbol * h + c_u.symbol)
    r = Activation("r", "sigmoid")(U_r.symbol * h + c_r.symbol)
    g = Activation("g", "tanh")(U_g.symbol * sp.HadamardProduct(r, h) + c_g.symbol)
    drift = sp.HadamardProduct(sp.OneMatrix(D, 1) - u, g - h)
    return CellSpec(
        name="gru",
        title="GRU-ODE (gated)",
        summary="f(h, c) = (1 - u) o (g - h), u = sigmoid(U_u h + c_u), r = sigmoid(U_r h + c_r), "
        "g = tanh(U_g (r o h) + c_g): the drift multiplies activations, so its curvature has "
        "products of activation derivatives.",
        state=h,
        drift=drift,
        symbols=(U_u, U_r, U_g, c_u, c_r, c_g),
        sizes=lambda d: {D: d},
        assumptions="The GRU-ODE of De Brouwer et al. (2019); the drives come from one affine map "
        "of the input (width 3d).",
        split=None,
        split_note="The gates multiply the state (u o h, r o h), so no bound of the form "
        "e^T (f(h) - f(h')) <= kappa |e|^2 uniform in h is derived: measure exponents instead.",
        proof_cases=((1, 1), (1, 2), (1, 3), (2, 1), (2, 2)),
    )


def derive_all() -> list[Derivation]:
    """One derivation per built-in cell (:data:`BUILT_IN`)."""
    return [derive_cell(spec()) for spec in BUILT_IN]
