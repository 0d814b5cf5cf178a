"""Cross-entropy derivatives, the readout pull-back and the released-code noise mapping."""

import pytest
import sympy as sp

from nrnn.derivations.activation import TANH, tanh_derivative
from nrnn.derivations.cross_entropy import explicit_check, indexed_derivatives, readout_pullback
from nrnn.derivations.released_noise import (
    S_ADD,
    S_MULT,
    STEP_DRIFT,
    diffusion_check,
    sde_equivalent,
    uniform_moments,
)


def test_tanh_derivatives_in_terms_of_tanh():
    assert sp.expand(tanh_derivative(1) - (1 - TANH**2)) == 0
    assert sp.expand(tanh_derivative(2) - (-2 * TANH * (1 - TANH**2))) == 0


@pytest.mark.parametrize("classes", [2, 3])
def test_cross_entropy_forms(classes):
    assert explicit_check(classes)


def test_indexed_entries():
    gradient, hessian, (j, k, y, p) = indexed_derivatives()
    assert sp.expand(gradient - (p[j] - sp.KroneckerDelta(j, y))) == 0
    assert sp.expand(hessian - (sp.KroneckerDelta(j, k) * p[j] - p[j] * p[k])) == 0


def test_readout_pullback():
    gradient, hessian, (V, logits_grad, logits_hessian) = readout_pullback()
    assert gradient == V.T * logits_grad
    assert hessian == V.T * logits_hessian * V


def test_uniform_moments_and_mapping():
    moments = uniform_moments()
    assert sp.simplify(moments["mean"] - (1 - S_MULT / 2)) == 0
    assert sp.simplify(moments["variance"] - S_MULT**2 / 12) == 0
    assert moments["third"] == 0
    equivalent = sde_equivalent()
    assert (
        sp.simplify(equivalent["step_variance"] - (S_ADD**2 + S_MULT**2 * STEP_DRIFT**2 / 12)) == 0
    )
    assert diffusion_check(1) and diffusion_check(3)
