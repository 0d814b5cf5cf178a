"""Continuous-time moment ODEs: matrix route, componentwise Itô route, closed forms."""

import pytest
import sympy as sp

from nrnn.derivations.continuous import componentwise_check, moment_odes, ornstein_uhlenbeck_check
from nrnn.derivations.expansion import SYMBOLS


def _zero(expr):
    value = sp.expand(expr)
    return value == 0 or isinstance(value, sp.ZeroMatrix)


def test_moment_odes_reach_the_design_formulas():
    odes = moment_odes()
    s = SYMBOLS
    assert _zero(odes.covariance_rhs - (s.F * s.C + s.C * s.F.T + s.Sigma * s.Sigma.T))
    assert _zero(odes.mean_rhs - (s.F * s.m + s.v / 2))


def test_discrete_recursion_is_an_euler_step_of_the_odes():
    odes = moment_odes()
    s = SYMBOLS
    assert _zero(odes.covariance_consistency - s.dt * s.F * s.C * s.F.T)
    assert _zero(odes.mean_consistency)


@pytest.mark.parametrize("d, r", [(1, 1), (1, 2), (2, 2), (2, 3), (3, 3)])
def test_componentwise_ito_agrees(d, r):
    assert componentwise_check(d, r)


def test_ornstein_uhlenbeck_closed_form():
    closed_form, agrees = ornstein_uhlenbeck_check()
    assert agrees
    theta, s, t = sp.symbols("theta s t", positive=True)
    assert sp.simplify(closed_form.subs(t, 0)) == 0
    assert sp.limit(closed_form, t, sp.oo) == s**2 / (2 * theta)
