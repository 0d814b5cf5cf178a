"""The vector–Jacobian product of one Euler–Maruyama step: the fused recurrence's backward.

Every noise form steps as (``nrnn.noise.StepNoise``)

    h' = h + s ∘ f(h, c) + a + h ∘ m

with s the drift step, a the additive and m the multiplicative term of the step's noise
variables. For a cotangent λ of h', :func:`derivations.adjoint.reverse` gives, for any
cell (drift f written as a :class:`derivations.drift.CellSpec`):

- the adjoint recursion λ_h = λ + Fᵀ(s ∘ λ) (+ m ∘ λ), without forming F;
- the cotangent of every drive c (passed back to the input map);
- the gradient of every matrix parameter P as Σ over the samples of outer products l rᵀ,
  returned as its factor pairs (l, r): the fused recurrence adds lᵀr of each step into
  the gradient in place (one ``addmm``, no temporary), ``outer_sum`` sums a pair at once.

These are printed into the cell's generated module (``step_vjp`` and
``step_vjp_multiplicative``, rows layout, see :mod:`derivations.codegen`). Each noise form
declares how (s, a, m) come from its noise variables as a
:class:`derivations.noises.NoiseSpec` (the built-in ones: :data:`derivations.noises.BUILT_IN`).
The same reverse pass through a spec's terms (the drift value f held fixed) gives its noise
variables' cotangents and δ's gradient (:func:`noise_outputs`, printed into
``nrnn._generated.noise_adjoint``).

:func:`prove` checks the composition for explicit small sizes of a cell and a noise spec:
with every parameter, state, drive, noise variable and the cotangent free symbols and
every activation a generic smooth function, λᵀ ∂h'/∂x computed by ``sympy.diff`` of the
explicit step equals the derived expressions, entry by entry, for every input x.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import sympy as sp

from nrnn.derivations import noises
from nrnn.derivations.adjoint import (
    blocks_as_slices,
    matrix_gradient,
    reverse,
    with_point_symbols,
)
from nrnn.derivations.drift import CellSpec, point_symbol
from nrnn.derivations.expansion import SYMBOLS
from nrnn.derivations.explicit import evaluate
from nrnn.derivations.nodes import BlockColumn, SampleSum
from nrnn.derivations.noises import NoiseSpec, euler_step
from nrnn.derivations.topic import Argument, Derivation, Formula, GeneratedFunction

__all__ = [
    "StepProof",
    "cell_step_functions",
    "cell_step_outputs",
    "derive",
    "derive_noise",
    "noise_cotangents",
    "noise_functions",
    "noise_outputs",
    "prove",
]

N = SYMBOLS.n


def _column(name: str, rows=N) -> sp.MatrixSymbol:
    return sp.MatrixSymbol(name, rows, 1)


@dataclass(frozen=True)
class StepSymbols:
    """The symbols of one step for a state of ``rows`` entries."""

    rows: sp.Basic

    @property
    def cotangent(self):
        return _column(r"\lambda", self.rows)

    @property
    def step(self):
        return _column("s", self.rows)

    @property
    def additive(self):
        return _column("a", self.rows)

    @property
    def multiplier(self):
        return _column("m", self.rows)

    @property
    def drift(self):
        return _column("f", self.rows)


# ------------------------------------------------------------------------ cell side
def _drives(spec: CellSpec) -> list:
    """The drive columns of a drift (every column symbol but the state)."""
    return [
        e for e in spec.symbols if isinstance(e.symbol, sp.MatrixSymbol) and e.symbol.shape[1] == 1
    ]


def _parameters(spec: CellSpec) -> list:
    """The matrix parameters of a drift (every matrix symbol but the constants)."""
    constants = {symbol for symbol, _ in spec.constants}
    return [
        e
        for e in spec.symbols
        if isinstance(e.symbol, sp.MatrixSymbol)
        and e.symbol.shape[1] != 1
        and e.symbol not in constants
    ]


@cache
def cell_step_outputs(spec: CellSpec, multiplicative: bool):
    """(outputs, intermediates) of the step's VJP for a cell: ``state`` (λ_h), every drive's
    code name (its cotangent) and every matrix parameter's (its gradient, summed over the
    samples); the drift cotangent s ∘ λ and each activation argument's cotangent named."""
    symbols = StepSymbols(spec.state_dimension)
    multiplier = symbols.multiplier if multiplicative else None
    step = euler_step(spec.state, spec.drift, symbols.step, symbols.additive, multiplier)
    drives, parameters = _drives(spec), _parameters(spec)
    found = reverse(
        step,
        symbols.cotangent,
        [spec.state, *(e.symbol for e in drives)],
        [e.symbol for e in parameters],
    )
    selections = {symbol: (index, count) for symbol, index, count in spec.selections}

    def tidy(expr, state=False):
        return blocks_as_slices(with_point_symbols(expr), selections, spec.state if state else None)

    outputs = [("state", tidy(found.columns[spec.state], state=True))]
    outputs += [(e.name, tidy(found.columns[e.symbol])) for e in drives]
    outputs += [(e.name, tidy(matrix_gradient(found.pairs[e.symbol]))) for e in parameters]
    drift_cotangent = sp.HadamardProduct(symbols.cotangent, symbols.step)
    intermediates = [(drift_cotangent, "drift_cotangent")]
    for use in spec.applied():
        # the cotangent reaching the argument of φ: φ'(a) ∘ (what reaches φ(a))
        for node in sp.preorder_traversal(sp.Tuple(*(e for _, e in outputs))):
            if (
                isinstance(node, sp.HadamardProduct)
                and node.args[0] == point_symbol(use.derivative())
                and len(node.args) == 2
            ):
                intermediates.append((node, f"{use.label}_cotangent"))
                break
    return tuple(outputs), tuple(intermediates)


def cell_step_functions(spec: CellSpec, arguments: dict) -> list[GeneratedFunction]:
    """``step_vjp`` and ``step_vjp_multiplicative`` of a cell (rows layout); ``arguments``
    maps the cell's symbols to their :class:`Argument` (``derivations.cells``)."""
    symbols = StepSymbols(spec.state_dimension)
    n = str(spec.state_dimension)
    extra = {
        symbols.cotangent: Argument(
            "cotangent", symbols.cotangent, f"(..., {n})", "lambda, the cotangent of h'"
        ),
        symbols.step: Argument(
            "step", symbols.step, f"float or (..., {n})", "s, the step's drift step"
        ),
        symbols.multiplier: Argument(
            "multiplier",
            symbols.multiplier,
            f"(..., {n}) or (..., 1)",
            "m, the step's multiplicative noise term",
        ),
    }
    unbatched = {
        symbol: Argument(a.name, symbol, a.shape.replace("(..., ", "("), a.description)
        for symbol, a in arguments.items()
        if isinstance(symbol, sp.MatrixSymbol) and symbol.shape[1] != 1
    }
    known = {**arguments, **unbatched, **extra}
    functions = []
    for multiplicative, name, step in (
        (False, "step_vjp", "h' = h + s o f(h, c) + a"),
        (True, "step_vjp_multiplicative", "h' = h + s o f(h, c) + a + h o m"),
    ):
        outputs, intermediates = cell_step_outputs(spec, multiplicative)
        used = {
            node
            for _, expr in outputs
            for node in sp.preorder_traversal(expr)
            if isinstance(node, (sp.MatrixSymbol, sp.Symbol))
        }
        functions.append(
            GeneratedFunction(
                name=name,
                module=f"cell_{spec.name}",
                source=__name__,
                summary=f"{spec.title}: the vector-Jacobian product of one step {step}.",
                arguments=tuple(a for symbol, a in known.items() if symbol in used),
                expr=outputs[0][1],
                returns=(
                    "a dict: 'state' (..., n), the cotangent of h; each drive's name, its "
                    "cotangent (..., d); each matrix parameter's name, the factor pairs "
                    "((l, r), ...) of its gradient, the sum over the pairs and every sample "
                    "of l r^T (rows (..., m) and (..., k); ``outer_sum`` of a pair sums it)"
                ),
                notes=(
                    "Rows layout: a column is a row (..., n), the matrices are shared by every "
                    "sample (unbatched). The fused recurrence calls it once per step, from the "
                    "last step back."
                ),
                layout="rows",
                outputs=outputs,
                intermediates=intermediates,
            )
        )
    return functions


# ----------------------------------------------------------------------- noise side
NOISE_STEP = StepSymbols(N)
"""λ and f of the noise side (the drift value f held fixed)."""


def noise_cotangents(noise: NoiseSpec) -> dict[sp.MatrixSymbol, sp.MatrixExpr]:
    """The cotangent of every variable of ``noise`` in one step, the drift value f held
    fixed: reverse-mode through h' = h + s ∘ f + a + h ∘ m to the variables the terms read
    and to the derived symbols, then through each derived symbol's expression to the
    variables it reads."""
    direct = [v.symbol for v in noise.variables if noise.derived_from(v.symbol) is None]
    found = reverse(
        noise.next_state(SYMBOLS.h, NOISE_STEP.drift),
        NOISE_STEP.cotangent,
        [*direct, *(symbol for symbol, _ in noise.derived)],
    ).columns
    cotangents = {symbol: found[symbol] for symbol in direct}
    for symbol, expr in noise.derived:
        reads = [v.symbol for v in noise.variables if expr.has(v.symbol)]
        cotangents |= reverse(expr, found[symbol], reads).columns
    return cotangents


@cache
def noise_outputs(specs: tuple[NoiseSpec, ...] = noises.BUILT_IN) -> dict[str, sp.MatrixExpr]:
    """Every function the noise ``specs`` define, by name, in their order: the cotangents
    of the variables landing in it stacked top to bottom (or summed over the samples)."""
    outputs = {}
    for spec in specs:
        cotangents = noise_cotangents(spec) if spec.functions else {}
        for function in spec.functions:
            landing = [v.symbol for v in spec.variables if v.function == function.name]
            blocks = [cotangents[symbol] for symbol in landing]
            expr = (
                blocks[0]
                if len(blocks) == 1
                else BlockColumn(sum(symbol.shape[0] for symbol in landing), *blocks)
            )
            outputs[function.name] = SampleSum(expr) if function.summed else expr
    return outputs


def noise_functions(
    specs: tuple[NoiseSpec, ...] = noises.BUILT_IN, module: str = "noise_adjoint"
) -> list[GeneratedFunction]:
    """The functions the noise ``specs`` define, printed into ``module``."""
    n = "(..., n)"
    arguments = {
        NOISE_STEP.cotangent: Argument(
            "cotangent", NOISE_STEP.cotangent, n, "lambda, the cotangent of h'"
        ),
        SYMBOLS.h: Argument("state", SYMBOLS.h, n, "h, the state the step starts from"),
        NOISE_STEP.drift: Argument(
            "drift", NOISE_STEP.drift, n, "f(h, c), the drift at that state"
        ),
    }
    for spec in specs:
        for argument in spec.arguments:
            arguments.setdefault(argument.symbol, argument)
    outputs = noise_outputs(specs)
    functions = []
    for spec in specs:
        for function in spec.functions:
            expr = outputs[function.name]
            used = {node for node in sp.preorder_traversal(expr)} | expr.free_symbols
            unnamed = {
                node
                for node in used
                if isinstance(node, (sp.Symbol, sp.MatrixSymbol)) and node not in arguments
            } - {N}  # n, the state's size, is a shape
            if unnamed:
                raise ValueError(
                    f"NoiseSpec {spec.name!r}: {function.name} reads "
                    f"{sorted(map(str, unnamed))}, expected an Argument for each in its "
                    "arguments (their code names)"
                )
            functions.append(
                GeneratedFunction(
                    name=function.name,
                    module=module,
                    source=__name__,
                    summary=function.summary,
                    arguments=tuple(a for symbol, a in arguments.items() if symbol in used),
                    expr=expr,
                    returns=function.returns,
                    layout="rows",
                )
            )
    return functions


def derive() -> Derivation:
    from nrnn.derivations.latex import equation

    derivation = Derivation(
        title="Fused recurrence: the vector-Jacobian product of one step",
        source=__name__,
        summary=(
            "Every noise form steps as h' = h + s o f(h, c) + a + h o m. Reverse-mode "
            "differentiation of this expression (a sum passes the cotangent to its terms, a "
            "product c X_1 ... X_k passes c (X_1 ... X_{i-1})^T lambda (X_{i+1} ... X_k)^T to "
            "X_i, an entrywise product multiplies by the other factors, an activation by its "
            "derivative) gives the backward pass of backpropagation through time one step at a "
            "time; the cells' sections list their own terms (step_vjp)."
        ),
    )
    symbols = NOISE_STEP
    derivation.formulas.append(
        Formula(
            "Adjoint recursion of one step",
            (
                equation(
                    r"\lambda_{h}",
                    sp.MatAdd(
                        symbols.cotangent,
                        sp.MatMul(
                            sp.Transpose(sp.MatrixSymbol("F", N, N)),
                            sp.HadamardProduct(symbols.step, symbols.cotangent),
                        ),
                        sp.HadamardProduct(symbols.multiplier, symbols.cotangent),
                    ),
                ),
            ),
            "lambda is the cotangent of h' = h + s o f + a + h o m, F = D_h f at (h, c); the "
            "cells' step_vjp apply F^T without forming it.",
        )
    )
    outputs = noise_outputs()
    derivation.formulas.append(
        Formula(
            "Cotangents of the noise variables and of delta",
            tuple(
                equation(rf"\text{{{name.replace('_', ' ')}}}", expr)
                for name, expr in outputs.items()
            ),
            "Paper form: s = dt, a = sqrt(dt) sigma_1 xi, m = sqrt(dt) sigma_2 xi (per unit) or "
            "a = sqrt(dt) sigma_1 xi_a, m = sqrt(dt) sigma_2 xi_s 1 (scalar); released code: "
            "s = delta o u, u = 1 - s_m/2 + (s_m/sqrt(12)) eta, a = s_a zeta. f is the drift "
            "at the step's state.",
        )
    )
    derivation.functions += noise_functions()
    return derivation


def noise_module(noise: NoiseSpec) -> str:
    """The name of the generated module of a noise form of one's own: ``noise_<name>``."""
    module = f"noise_{noise.name}"
    if not module.isidentifier():
        raise ValueError(
            f"NoiseSpec name {noise.name!r}: expected letters, digits and _ only (it names "
            f"the generated module {module})"
        )
    return module


def derive_noise(noise: NoiseSpec, cells: Iterable[CellSpec]) -> Derivation:
    """A noise form of one's own: its step terms and its variables' cotangents on the
    formula sheet, the functions it defines printed into :func:`noise_module`, and the
    proofs of the step with each of ``cells`` (at the cell's ``step_proof_size``)."""
    from nrnn.derivations.latex import equation

    if not noise.functions:
        raise ValueError(f"NoiseSpec {noise.name!r} defines no functions: nothing to generate")
    module = noise_module(noise)
    derivation = Derivation(
        title=f"Noise form: {noise.name}",
        source=__name__,
        summary=f"{noise.title}.",
    )
    terms = [("s", noise.step), ("a", noise.additive), ("m", noise.multiplier)]
    derivation.formulas += [
        Formula(
            "Step terms",
            tuple(equation(name, expr) for name, expr in terms if expr is not None)
            + tuple(equation(symbol, expr) for symbol, expr in noise.derived),
            "h' = h + s o f(h, c) + a + h o m with the noise variables "
            + ", ".join(str(v.symbol) for v in noise.variables)
            + ("; the code takes each derived symbol's value" if noise.derived else "")
            + ".",
        ),
        Formula(
            "Cotangents of the noise variables",
            tuple(
                equation(rf"\text{{{name.replace('_', ' ')}}}", expr)
                for name, expr in noise_outputs((noise,)).items()
            ),
            "lambda is the cotangent of h', f the drift at the step's state; derived by "
            "reverse-mode differentiation of the step (derivations.adjoint).",
        ),
    ]
    for cell in cells:
        result = prove(cell, cell.step_proof_size, noise)
        if not result.proved:
            raise AssertionError(result.statement())
        derivation.checks.append(result.statement())
    derivation.functions += noise_functions((noise,), module)
    return derivation


# ---------------------------------------------------------------------------- proofs
@dataclass(frozen=True)
class StepProof:
    cell: str
    d: int
    noise: str
    inputs: int
    mismatches: tuple[str, ...]

    @property
    def proved(self) -> bool:
        return not self.mismatches

    def statement(self) -> str:
        verdict = "proved" if self.proved else f"FAILED at {', '.join(self.mismatches)}"
        return (
            f"{self.cell}, d={self.d}, {self.noise} step: the derived vector-Jacobian product "
            f"equals lambda^T dh'/dx by sympy.diff for all {self.inputs} inputs x: {verdict}."
        )


def _explicit_column(name: str, rows: int) -> sp.Matrix:
    return sp.Matrix(rows, 1, lambda i, _: sp.Symbol(f"{name}_{i}"))


def _explicit_matrix(symbol, sizes: dict, constants: dict, d: int):
    if symbol in constants:
        return sp.Matrix(constants[symbol](d))
    if not isinstance(symbol, sp.MatrixSymbol):
        return symbol
    rows, cols = (int(sp.sympify(n).xreplace(sizes)) for n in symbol.shape)
    name = "".join(ch for ch in symbol.name if ch.isalnum())
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i}_{j}"))


def _explicit_noise(noise: NoiseSpec, n: int, d: int) -> dict:
    """Explicit values of the variables of ``noise`` (free symbols) and of its derived
    symbols, for a state of ``n`` entries."""
    values: dict = {N: n}
    for variable in noise.variables:
        values[variable.symbol] = _explicit_matrix(variable.symbol, {N: n}, {}, d)
    for symbol, expr in noise.derived:
        values[symbol] = evaluate(expr, values)
    return values


def _activation_values(spec: CellSpec, bindings: dict, d: int):
    """Each activation use's explicit argument, and the symbols standing for φ, φ' there."""
    points, functions = {}, {}
    for use in spec.applied():
        argument = evaluate(use.argument, bindings)
        rows = argument.rows
        value = _explicit_column(f"{use.label}v", rows)
        slope = _explicit_column(f"{use.label}s", rows)
        points[point_symbol(use)] = value
        points[point_symbol(use.derivative())] = slope
        functions[use.label] = (argument, value, slope)
    return points, functions


def _normalise(expr, functions: dict):
    """Derivatives of the generic activations at their arguments -> slope symbols, their
    values -> value symbols."""

    def slope(applied, argument):
        label_argument, _, slopes = functions[applied.func.__name__]
        return slopes[list(label_argument).index(argument)]

    at_points = {  # φ'(ξ) at ξ = a, how sympy.diff writes φ'(a) for a compound a
        node: slope(node.expr.expr, node.point[0])
        for node in expr.atoms(sp.Subs)
        if isinstance(node.expr, sp.Derivative)
    }
    expr = expr.xreplace(at_points)
    direct = {  # dφ(x)/dx for a bare symbol x
        node: slope(node.expr, node.expr.args[0])
        for node in expr.atoms(sp.Derivative)
        if isinstance(node.expr, sp.core.function.AppliedUndef)
    }
    values = {}
    for label, (argument, value, _) in functions.items():
        function = sp.Function(label)
        values.update({function(a): value[i] for i, a in enumerate(argument)})
    return expr.xreplace(direct).xreplace(values)


@cache
def prove(spec: CellSpec, d: int, noise: NoiseSpec) -> StepProof:
    """The derived step VJP of the cell ``spec`` and the cotangents of the variables of
    ``noise`` against ``sympy.diff`` of the explicit step."""
    sizes = dict(spec.sizes(d))
    n = int(sp.sympify(spec.state_dimension).xreplace(sizes))
    constants = dict(spec.constants)
    bindings = dict(sizes)
    for entry in spec.symbols:
        bindings[entry.symbol] = _explicit_matrix(entry.symbol, sizes, constants, d)
    state = _explicit_column("h", n)
    bindings[spec.state] = state
    for use in spec.applied():
        bindings[sp.Symbol(use.label)] = sp.Function(use.label)
    values = _explicit_noise(noise, n, d)
    drift = evaluate(spec.drift, bindings)
    noise_step = evaluate(noise.step, values)
    multiplicative = noise.multiplier is not None
    step = state + noise_step.multiply_elementwise(drift)
    if noise.additive is not None:
        step += evaluate(noise.additive, values)
    if multiplicative:
        multiplier = evaluate(noise.multiplier, values)
        step += state.multiply_elementwise(multiplier)
    cotangent = _explicit_column("lam", n)
    objective = (cotangent.T * step)[0, 0]

    points, functions = _activation_values(spec, bindings, d)
    symbols = StepSymbols(spec.state_dimension)
    derived_bindings = bindings | points | {symbols.cotangent: cotangent, symbols.step: noise_step}
    if multiplicative:
        derived_bindings[symbols.multiplier] = multiplier
    outputs, _ = cell_step_outputs(spec, multiplicative)
    expected = {}  # input name -> (explicit variables, derived explicit value)
    for name, expr in outputs:
        derived = evaluate(expr, derived_bindings)
        if name == "state":
            variables = state
        else:
            symbol = next(e.symbol for e in spec.symbols if e.name == name)
            variables = bindings[symbol]
        expected[name] = (variables, derived)
    noise_bindings = values | {
        NOISE_STEP.cotangent: cotangent,
        SYMBOLS.h: state,
        NOISE_STEP.drift: drift,
    }
    generated = noise_outputs() | noise_outputs((noise,))
    rows_before: dict[str, int] = {}  # generated function -> rows of the blocks placed
    for variable in noise.variables:
        explicit = values[variable.symbol]
        first = rows_before.get(variable.function, 0)
        rows_before[variable.function] = first + explicit.rows
        value = evaluate(generated[variable.function], noise_bindings)
        expected[str(variable.symbol)] = (explicit, value[first : first + explicit.rows, :])
    mismatches, inputs = [], 0
    for name, (variables, derived) in expected.items():
        for index in range(len(variables)):
            inputs += 1
            exact = _normalise(sp.diff(objective, variables[index]), functions)
            difference = sp.expand(exact - _normalise(derived[index], functions))
            if difference != 0:
                mismatches.append(f"{name}[{index}]")
    return StepProof(spec.name, d, noise.name, inputs, tuple(mismatches))
