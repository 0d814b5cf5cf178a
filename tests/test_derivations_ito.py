"""The Itô engine and Gaussian moments on known answers."""

import sympy as sp

from nrnn.derivations.ito import (
    SDE,
    gaussian_expectation,
    gaussian_expectation_poly,
    isserlis,
    normal_moment,
    standard_normals,
)


def test_normal_moments_are_double_factorials():
    assert [normal_moment(p) for p in range(9)] == [1, 0, 1, 0, 3, 0, 15, 0, 105]


def test_gaussian_expectation_of_independent_normals():
    a, b = standard_normals(2)
    c = sp.Symbol("c")
    assert gaussian_expectation(c * a**2 * b**2 + a * b + 3 * a**4 + b**3, [a, b]) == c + 9


def test_isserlis_with_a_covariance():
    x, y = sp.symbols("x y")
    s_xx, s_xy, s_yy = sp.symbols("s_xx s_xy s_yy")
    covariance = {(x, x): s_xx, (x, y): s_xy, (y, y): s_yy}
    assert (
        sp.expand(
            gaussian_expectation(x**2 * y**2, [x, y], covariance) - (s_xx * s_yy + 2 * s_xy**2)
        )
        == 0
    )
    assert gaussian_expectation(x**3 * y, [x, y], covariance) == 3 * s_xx * s_xy
    assert isserlis([x, y, x], lambda a, b: 1) == 0


def test_polynomial_ring_expectation_matches_expression_expectation():
    a, b, c = sp.symbols("a b c")
    _, ra, rb, rc = sp.ring([a, b, c], sp.QQ)
    polynomial = (ra + 2 * rb + rc) ** 4 * (rc - ra)
    expected = gaussian_expectation(polynomial.as_expr(), [a, b])
    assert gaussian_expectation_poly(polynomial, [ra, rb]).as_expr() - expected == 0


def test_geometric_brownian_motion_log_has_drift_mu_minus_half_s_squared():
    x = sp.Symbol("x", positive=True)
    mu, s = sp.symbols("mu s", real=True)
    sde = SDE(state=(x,), drift=sp.Matrix([mu * x]), diffusion=sp.Matrix([[s * x]]))
    differential = sde.ito(sp.log(x))
    assert sp.simplify(differential.drift - (mu - s**2 / 2)) == 0
    assert sp.simplify(differential.diffusion[0, 0] - s) == 0


def test_ornstein_uhlenbeck_second_moment_and_variance():
    x, t = sp.symbols("x t", real=True)
    theta, s = sp.symbols("theta s", positive=True)
    sde = SDE(state=(x,), drift=sp.Matrix([-theta * x]), diffusion=sp.Matrix([[s]]))
    # d E x^2 / dt = E[L x^2] = -2 theta E x^2 + s^2
    assert sp.expand(sde.ito(x**2).drift - (-2 * theta * x**2 + s**2)) == 0
    second = sp.Function("P")
    solution = sp.dsolve(
        sp.Eq(second(t).diff(t), -2 * theta * second(t) + s**2), second(t), ics={second(0): 0}
    ).rhs
    assert sp.simplify(solution - s**2 * (1 - sp.exp(-2 * theta * t)) / (2 * theta)) == 0


def test_ito_product_rule_for_two_correlated_processes():
    x, y = sp.symbols("x y", real=True)
    a, b, p, q, r, u = sp.symbols("a b p q r u", real=True)
    # dX = a X dt + p dB1 + q dB2,  dY = b Y dt + r dB1 + u dB2
    sde = SDE(state=(x, y), drift=sp.Matrix([a * x, b * y]), diffusion=sp.Matrix([[p, q], [r, u]]))
    product = sde.ito(x * y)
    dx, dy = sde.ito(x), sde.ito(y)
    covariation = (sde.diffusion[0, :] * sde.diffusion[1, :].T)[0, 0]
    assert sp.expand(product.drift - (x * dy.drift + y * dx.drift + covariation)) == 0
    assert (product.diffusion - (x * dy.diffusion + y * dx.diffusion)).applyfunc(
        sp.expand
    ) == sp.zeros(1, 2)


def test_derived_ito_formula_equals_the_generator_closed_form():
    x, y, t = sp.symbols("x y t", real=True)
    sde = SDE(
        state=(x, y),
        drift=sp.Matrix([sp.sin(y), x * y]),
        diffusion=sp.Matrix([[x, 1, 0], [y**2, 0, sp.cos(x)]]),
        time=t,
    )
    phi = sp.exp(x * t) * y**3 + sp.log(1 + x**2)
    assert sp.simplify(sde.ito(phi).drift - sde.generator(phi)) == 0
