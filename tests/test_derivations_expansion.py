"""The one-step rules of the small-noise expansion and the brute-force proofs for small sizes."""

import pytest
import sympy as sp

from nrnn.derivations.brute_force import (
    DEFAULT_CASES,
    FULL_CASES,
    Problem,
    expand_loss,
    prove,
    recursion_value,
)
from nrnn.derivations.expansion import SYMBOLS, one_step_rules
from nrnn.derivations.nodes import ActivationDerivative


def _zero(expr):
    value = sp.expand(expr)
    return value == 0 or isinstance(value, sp.ZeroMatrix)


def test_rules_reach_the_design_formulas():
    rules = one_step_rules()
    s = SYMBOLS
    tanh_prime = ActivationDerivative(1, s.z)
    assert _zero(rules.drift_jacobian - (s.A + sp.DiagMatrix(tanh_prime) * s.W))
    assert _zero(
        rules.step_jacobian - (sp.Identity(s.d) + s.dt * (s.A + sp.DiagMatrix(tanh_prime) * s.W))
    )
    assert _zero(rules.covariance_step - (s.J * s.C * s.J.T + s.dt * s.Sigma * s.Sigma.T))
    assert rules.contraction == sp.HadamardProduct(
        ActivationDerivative(2, s.z), sp.DiagonalOf(s.W * s.C * s.W.T)
    )
    assert _zero(rules.mean_step - (s.J * s.m + s.dt / 2 * s.v))
    assert _zero(rules.first_order_mean_step - s.J * s.mu)
    assert _zero(rules.q_term - 2 * s.grad.T * s.m)
    assert rules.r_term == sp.Trace(s.hess * s.C)
    assert rules.loss_first_order == 0 or isinstance(rules.loss_first_order, sp.ZeroMatrix)


@pytest.mark.parametrize("case", DEFAULT_CASES, ids=lambda c: f"d{c[0]}-M{c[1]}-{c[2]}")
def test_brute_force_small_sizes(case):
    result = prove(*case)
    assert result.first_order_zero
    assert result.third_order_zero
    assert result.second_order_matches


@pytest.mark.slow
@pytest.mark.parametrize(
    "case",
    [c for c in FULL_CASES if c not in DEFAULT_CASES],
    ids=lambda c: f"d{c[0]}-M{c[1]}-{c[2]}",
)
def test_brute_force_larger_sizes(case):
    assert prove(*case).proved


@pytest.mark.parametrize("form", ["diagonal", "scalar"])
def test_proof_detects_a_wrong_rule(form):
    """Negative control: dropping the mean correction (Q) breaks the eps^2 identity."""
    d, steps = 2, 2
    problem = Problem(d, steps, form)
    brute = expand_loss(d, steps, form)[2]
    value = recursion_value(d, steps, form)
    # Recompute without the Q part: replace grad l by 0 in the recursion value.
    gradient_symbols = [
        problem.loss_derivative(tuple(int(j == i) for j in range(d))) for i in range(d)
    ]
    without_q = value.subs({g: 0 for g in gradient_symbols})
    assert brute - problem.poly(value) == 0
    assert brute - problem.poly(without_q) != 0


def test_zeroth_and_first_order_of_a_single_step():
    # d = 1, one step from h_0 = 0: E l(h_1) = l + eps^2 dt sigma_1^2 l'' / 2 + O(eps^4).
    coefficients = expand_loss(1, 1, "diagonal")
    problem = Problem(1, 1, "diagonal")
    expected = problem.poly(
        problem.sqrt_dt**2 * SYMBOLS.sigma_add**2 * problem.loss_derivative((2,)) / 2
    )
    assert coefficients[2] - expected == 0
    assert coefficients[1] == 0 and coefficients[3] == 0
