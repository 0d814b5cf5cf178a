"""The noise forms' symbolic specs (``derivations.noises``): every built-in spec's derived
cotangents are proved against ``sympy.diff`` of the explicit step, a spec with a wrong step
term or a wrong derived cotangent fails that proof at exactly the entries it spoils, and a
spec that reads an undeclared symbol is refused."""

import dataclasses

import pytest
import sympy as sp

from nrnn._generated import noise_adjoint
from nrnn.derivations import cells, noises, step_adjoint
from nrnn.derivations.nodes import BlockColumn

CELL = cells.lipschitz()  # d = 1: n = 1


def _noise_entries(noise: noises.NoiseSpec, n: int) -> int:
    rows = (sp.sympify(v.symbol.shape[0]).subs(noises.N, n) for v in noise.variables)
    return int(sum(rows))


@pytest.mark.parametrize("noise", noises.BUILT_IN, ids=lambda noise: noise.name)
def test_every_built_in_noise_spec_is_proved(noise):
    result = step_adjoint.prove(CELL, 1, noise)
    assert result.proved, result.statement()
    cell_only = step_adjoint.prove(CELL, 1, noises.NOISE_FREE).inputs
    assert result.inputs == cell_only + _noise_entries(noise, 1)


def test_the_specs_define_the_generated_noise_adjoint_in_order():
    assert list(step_adjoint.noise_outputs()) == noise_adjoint.__all__


def test_a_wrong_step_term_fails_the_proof():
    """The released code's u with s_m/sqrt(3) instead of s_m/sqrt(12), proved against the
    generated cotangents: eta's entries fail, zeta's and delta's still hold."""
    u, _ = noises.RELEASED.derived[0]
    wrong_u = (1 - noises.S_MULT / 2) * noises.ONES + noises.S_MULT / sp.sqrt(3) * noises.ETA
    wrong = dataclasses.replace(noises.RELEASED, derived=((u, wrong_u),), functions=())
    right = step_adjoint.prove(CELL, 2, noises.RELEASED)
    result = step_adjoint.prove(CELL, 2, wrong)
    assert right.proved, right.statement()
    assert result.mismatches == (r"\eta[0]", r"\eta[1]")


def test_a_wrong_derived_cotangent_fails_the_proof(monkeypatch):
    """The scalar form's xi_s cotangent with its sqrt(dt) factor dropped fails at xi_s only."""
    original = step_adjoint.noise_outputs

    def wrong(specs=noises.BUILT_IN):
        outputs = dict(original(specs))
        if "noise_cotangent_scalar" in outputs:
            additive, shared = outputs["noise_cotangent_scalar"].blocks
            shared = shared.xreplace({sp.sqrt(noises.DT): 1})
            outputs["noise_cotangent_scalar"] = BlockColumn(noises.N + 1, additive, shared)
        return outputs

    monkeypatch.setattr(step_adjoint, "noise_outputs", wrong)
    result = step_adjoint.prove.__wrapped__(CELL, 1, noises.PAPER_SCALAR)
    assert result.mismatches == (r"\xi_{s}[0]",)


def test_a_spec_reading_an_undeclared_symbol_is_refused():
    stray = sp.MatrixSymbol("z", noises.N, 1)
    with pytest.raises(ValueError, match="expected only its variables"):
        dataclasses.replace(noises.PAPER_PER_UNIT, additive=stray)
    variable = noises.PAPER_PER_UNIT.variables[0]
    with pytest.raises(ValueError, match="not both or neither"):
        dataclasses.replace(noises.NOISE_FREE, variables=(variable,))
