"""verification/stability.py and its reference values (nrnn.catalogue): a tiny smoke run,
(slow) the quick profile."""

import json
import math

import numpy as np
import pytest

from nrnn import catalogue
from nrnn.verification import stability as claim5
from nrnn.verification.core import run_module


def test_em_scalar_exponent_expansion_in_dt():
    """E log|1 + a dt + s√dt ξ|/dt = a − s²/2 + dt(−a²/2 + a s² − 3s⁴/4) + O(dt²)."""
    a, s = 0.4, 0.9
    for dt in (1e-3, 1e-4):
        leading = a - s**2 / 2 + dt * (-(a**2) / 2 + a * s**2 - 0.75 * s**4)
        assert catalogue.em_scalar_exponent(a, s, dt) == pytest.approx(leading, abs=20 * dt**2)


def test_em_scalar_exponent_without_noise_and_complex_eigenvalues():
    assert catalogue.em_scalar_exponent(0.3, 0.0, 0.01) == pytest.approx(math.log(1.003) / 0.01)
    assert catalogue.em_scalar_exponent(0.5 + 2j, 0.0, 0.01) == pytest.approx(
        math.log(abs(1 + 0.01 * (0.5 + 2j))) / 0.01
    )
    # Rotation leaves the noisy exponent almost unchanged: a − s²/2 + O(dt).
    assert catalogue.em_scalar_exponent(0.5 + 2j, 1.0, 1e-3) == pytest.approx(0.0, abs=5e-3)


def test_linear_model_separation_is_the_linear_system():
    drift = np.array([[0.1, 2.0], [-0.5, -0.3]])
    model = catalogue.linear_model(drift, 0.7, "scalar", 0.01)
    A, W = model.matrices()
    np.testing.assert_allclose(A.detach().numpy(), drift)
    assert float(W.detach().abs().max()) == 0.0


def test_finite_time_allowance_is_zero_for_normal_matrices():
    assert catalogue.finite_time_allowance(np.array([[0.5, -2.0], [2.0, 0.5]]), 10.0) < 1e-12
    assert catalogue.finite_time_allowance(np.array([[0.3, 4.0], [0.0, -1.0]]), 10.0) > 0.05


def test_tiny_run_produces_every_check():
    checks = claim5.run(claim5.SMOKE)
    assert [check.name for check in checks] == [
        "scalar_closed_form",
        "matrix_scalar_noise",
        "mean_square_opposite",
        "em_second_moments",
        "per_unit_linear",
        "rnn_bound",
        "rnn_pathwise_bound",
        "rnn_stabilisation",
        "cell_bounds",
    ]
    for check in checks:
        assert check.claim == 5 and check.criterion
        assert 0.0 <= check.false_failure <= claim5.FALSE_FAILURE
        json.dumps(check.to_json(), allow_nan=False)
    # The deterministic inequality holds at any size.
    assert checks[6].passed
    # Every cell is measured; the gated one says it has no closed-form bound.
    cells = {case["cell"]: case for case in checks[8].details["cases"]}
    assert set(cells) == {"lipschitz", "cornn", "gru"}
    assert "no closed-form bound is available for the gru cell" in cells["gru"]["no_bound"]
    assert cells["cornn"]["em_bound"] <= cells["cornn"]["kappa"] + 1e-9


@pytest.mark.slow
def test_quick_profile_passes():
    report = run_module(claim5.EXPERIMENT, "quick")
    failed = [check["name"] for check in report["checks"] if not check["passed"]]
    assert not failed, failed
