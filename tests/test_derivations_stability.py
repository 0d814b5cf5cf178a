"""Exponent bounds, closed forms and the Euler--Maruyama mean-square operator."""

import pytest
import sympy as sp

from nrnn.derivations.brownian import PER_UNIT, SCALAR
from nrnn.derivations.expansion import SYMBOLS
from nrnn.derivations.stability import (
    KAPPA,
    commuting_solution_check,
    distance_corrections,
    em_operator_check,
    exponent_bounds,
    geometric_brownian_motion,
    oscillator_linear_rate,
    quartic_share_bounds,
    scalar_em_limit,
    symmetric_part_check,
)

SIGMA = SYMBOLS.sigma_mult
D = SYMBOLS.n


def test_bounds():
    bounds = exponent_bounds()
    assert sp.simplify(bounds["almost_sure_scalar"] - (KAPPA - SIGMA**2 / 2)) == 0
    assert (
        sp.simplify(
            bounds["almost_sure_diagonal"] - (KAPPA + SIGMA**2 * (sp.Rational(1, 2) - 1 / D))
        )
        == 0
    )
    assert sp.simplify(bounds["mean_square"] - (KAPPA + SIGMA**2 / 2)) == 0


def test_per_unit_bound_is_weaker_except_in_one_dimension():
    bounds = exponent_bounds()
    gap = sp.simplify(bounds["almost_sure_diagonal"] - bounds["almost_sure_scalar"])
    assert gap.subs(D, 1) == 0
    for size in (2, 3, 10):
        assert gap.subs(D, size).subs(SIGMA, 1) > 0
    assert bounds["almost_sure_diagonal"].subs(D, 2) == KAPPA


@pytest.mark.parametrize("d", [1, 2, 3])
def test_scalar_brownian_correction_is_constant(d):
    corrections = distance_corrections(SCALAR, d)
    assert sp.simplify(corrections["log_correction"] + SIGMA**2) == 0
    assert sp.simplify(corrections["martingale_rate"] - 4 * SIGMA**2) == 0
    assert sp.simplify(corrections["square_correction"] - SIGMA**2) == 0


@pytest.mark.parametrize("d", [2, 3])
def test_per_unit_correction_and_share(d):
    corrections = distance_corrections(PER_UNIT, d)
    share = corrections["share"]
    assert sp.simplify(corrections["log_correction"] - SIGMA**2 * (1 - 2 * share)) == 0
    assert sp.simplify(corrections["martingale_rate"] - 4 * SIGMA**2 * share) == 0
    assert quartic_share_bounds(d)
    equal = {e: 1 for e in corrections["state"]}
    assert share.subs(equal) == sp.Rational(1, d)


def test_closed_forms():
    a, s = sp.symbols("a s", real=True)
    gbm = geometric_brownian_motion()
    assert sp.simplify(gbm["almost_sure"] - (a - s**2 / 2)) == 0
    assert sp.simplify(gbm["mean_square"] - (2 * a + s**2)) == 0
    assert commuting_solution_check()
    assert symmetric_part_check()
    assert sp.simplify(scalar_em_limit() - (2 * a + s**2)) == 0


@pytest.mark.parametrize("d, n", [(1, 1), (2, 1), (2, 2), (3, 2), (2, 3)])
def test_em_mean_square_operator(d, n):
    assert em_operator_check(d, n)


def test_oscillator_linear_rate_is_the_top_eigenvalue_of_sym_l():
    rate, agrees, (gamma, epsilon) = oscillator_linear_rate()
    assert agrees
    # No restoring mismatch (gamma = 1): sym L = diag(0, -epsilon) per unit, top eigenvalue 0.
    assert sp.simplify(rate.subs({gamma: 1, epsilon: sp.Rational(3, 2)})) == 0
    assert rate.subs({gamma: 3, epsilon: 0}) == 1  # sym L = [[0, -1], [-1, 0]]
