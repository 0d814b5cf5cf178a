"""The one-step rules of the small-noise expansion, the engine that derives each cell's
Jacobian and curvature, and the brute-force proofs for small sizes."""

import pytest
import sympy as sp

from nrnn.derivations import cells
from nrnn.derivations.brownian import LAYOUTS, PER_UNIT
from nrnn.derivations.brute_force import Problem, expand_loss, prove, recursion_value
from nrnn.derivations.differentials import differentiate, linear_form, quadratic_expectation, terms
from nrnn.derivations.drift import Activation
from nrnn.derivations.expansion import SYMBOLS, one_step_rules


def _zero(expr):
    value = sp.expand(expr)
    return value == 0 or isinstance(value, sp.ZeroMatrix)


def test_rules_reach_the_design_formulas():
    rules = one_step_rules()
    s = SYMBOLS
    assert _zero(rules.step_jacobian - (sp.Identity(s.n) + s.dt * s.F))
    assert _zero(rules.covariance_step - (s.J * s.C * s.J.T + s.dt * s.Sigma * s.Sigma.T))
    assert _zero(rules.mean_step - (s.J * s.m + s.dt / 2 * s.v))
    assert _zero(rules.first_order_mean_step - s.J * s.mu)
    assert _zero(rules.q_term - 2 * s.grad.T * s.m)
    assert rules.r_term == sp.Trace(s.hess * s.C)
    assert rules.loss_first_order == 0 or isinstance(rules.loss_first_order, sp.ZeroMatrix)


def test_lipschitz_cell_reaches_the_design_formulas():
    """F = A + diag(φ'(z)) W and v = φ''(z) ∘ diagvec(W C Wᵀ)."""
    spec = cells.lipschitz()
    formulas = cells.derive_formulas(spec)
    A, W = (entry.symbol for entry in spec.symbols[:2])
    slope, curvature = (p[0] for p in formulas.points if p[1] in ("phi_slope", "phi_curvature"))
    assert _zero(formulas.drift_jacobian - (A + sp.DiagMatrix(slope) * W))
    expected = sp.HadamardProduct(curvature, sp.DiagonalOf(W * formulas.covariance * W.T))
    assert terms(formulas.curvature) == terms(expected)


def test_engine_on_a_product_of_activations():
    """f = σ(a h) ∘ tanh(b h) (d = 1 symbols): F and v by hand."""
    d = sp.Symbol("d", integer=True, positive=True)
    h, y = sp.MatrixSymbol("h", d, 1), sp.MatrixSymbol("y", d, 1)
    C, Wa, Wb = sp.MatrixSymbol("C", d, d), sp.MatrixSymbol("P", d, d), sp.MatrixSymbol("Q", d, d)
    u, g = Activation("u", "sigmoid")(Wa * h), Activation("g", "tanh")(Wb * h)
    f = sp.HadamardProduct(u, g)
    first = terms(differentiate(f, h, y))
    jacobian = sp.MatAdd(*[c * linear_form(m, y) for c, m in first])
    expected = (
        sp.DiagMatrix(sp.HadamardProduct(u.derivative(), g)) * Wa
        + sp.DiagMatrix(sp.HadamardProduct(u, g.derivative())) * Wb
    )
    assert terms(jacobian - expected) == []
    second = terms(differentiate(sp.MatAdd(*[c * m for c, m in first]), h, y))
    v = sp.MatAdd(*[c * quadratic_expectation(m, y, C) for c, m in second])
    cross = sp.HadamardProduct(u.derivative(), g.derivative(), sp.DiagonalOf(Wa * C * Wb.T))
    expected_v = (
        sp.HadamardProduct(u.derivative().derivative(), g, sp.DiagonalOf(Wa * C * Wa.T))
        + 2 * cross
        + sp.HadamardProduct(u, g.derivative().derivative(), sp.DiagonalOf(Wb * C * Wb.T))
    )
    assert terms(v - expected_v) == []


def test_a_cubic_term_is_refused():
    d = sp.Symbol("d", integer=True, positive=True)
    y = sp.MatrixSymbol("y", d, 1)
    with pytest.raises(NotImplementedError):
        quadratic_expectation(sp.HadamardProduct(y, y, y), y, sp.MatrixSymbol("C", d, d))


PROOFS = [
    (spec, d, steps, layout)
    for spec in cells.BUILT_IN
    for d, steps in spec().proof_cases
    for layout in LAYOUTS
]


def _id(value) -> str:
    return getattr(value, "__name__", None) or getattr(value, "name", None) or str(value)


@pytest.mark.parametrize("spec,d,steps,layout", PROOFS, ids=_id)
def test_brute_force_small_sizes(spec, d, steps, layout):
    result = prove(spec(), cells.derive_formulas(spec()), d, steps, layout)
    assert result.first_order_zero and result.third_order_zero and result.second_order_matches


LARGER = [(cells.lipschitz, 3, 3), (cells.coupled_oscillator, 2, 3), (cells.gated, 3, 2)]


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS, ids=_id)
@pytest.mark.parametrize("spec,d,steps", LARGER, ids=_id)
def test_brute_force_larger_sizes(spec, d, steps, layout):
    """About 10-30 s each (the GRU-ODE at d = 2, M = 3 takes longer than 6 min)."""
    assert prove(spec(), cells.derive_formulas(spec()), d, steps, layout).proved


@pytest.mark.parametrize("spec", cells.BUILT_IN, ids=lambda s: s.__name__)
def test_proof_detects_a_wrong_rule(spec):
    """Negative control: dropping the mean correction (Q) breaks the eps^2 identity."""
    spec = spec()
    formulas = cells.derive_formulas(spec)
    problem = Problem(spec, 1, 2, PER_UNIT)
    brute = expand_loss(spec, 1, 2, PER_UNIT)[2]
    value = recursion_value(spec, formulas, 1, 2, PER_UNIT)
    gradient_symbols = [
        problem.loss_derivative(tuple(int(j == i) for j in range(problem.n)))
        for i in range(problem.n)
    ]
    without_q = value.subs({g: 0 for g in gradient_symbols})
    assert brute - problem.poly(value) == 0
    assert brute - problem.poly(without_q) != 0


def test_zeroth_and_first_order_of_a_single_step():
    # d = 1, one step from h_0 = 0: E l(h_1) = l + eps^2 dt sigma_1^2 l'' / 2 + O(eps^4).
    spec = cells.lipschitz()
    coefficients = expand_loss(spec, 1, 1, PER_UNIT)
    problem = Problem(spec, 1, 1, PER_UNIT)
    expected = problem.poly(
        problem.sqrt_dt**2 * SYMBOLS.sigma_add**2 * problem.loss_derivative((2,)) / 2
    )
    assert coefficients[2] - expected == 0
    assert coefficients[1] == 0 and coefficients[3] == 0
