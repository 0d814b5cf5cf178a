"""The noise forms' symbolic specs (``derivations.noises``): every built-in spec's derived
cotangents are proved against ``sympy.diff`` of the explicit step, a spec with a wrong step
term or a wrong derived cotangent fails that proof at exactly the entries it spoils, a spec
that reads an undeclared symbol is refused, and ``--noise`` derives the fused step of a noise
form of one's own."""

import dataclasses
import importlib
import math
import sys

import pytest
import sympy as sp
import torch

from nrnn._generated import noise_adjoint
from nrnn.derivations import build, cells, noises, step_adjoint
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
    (u, uniform), *_ = noises.RELEASED.derived
    with pytest.raises(ValueError, match="expected only its variables"):
        dataclasses.replace(noises.RELEASED, derived=((u, uniform + stray),))
    variable = noises.PAPER_PER_UNIT.variables[0]
    with pytest.raises(ValueError, match="not both or neither"):
        dataclasses.replace(noises.NOISE_FREE, variables=(variable,))


JITTER_SPEC = """
import sympy as sp

from nrnn.derivations import noises
from nrnn.derivations.noises import CotangentFunction, NoiseSpec, NoiseVariable

OMEGA = sp.MatrixSymbol(r"\\omega", noises.N, 1)
NU = sp.MatrixSymbol(r"\\nu", noises.N, 1)
FUNCTION = "noise_cotangent_jitter"


def jitter():
    return NoiseSpec(
        name="jitter",
        title="A jittered step: s = dt + sqrt(dt) sigma_2 nu, a = sqrt(dt) sigma_1 omega",
        step=noises.DT * noises.ONES + noises.ROOT_DT * noises.SIGMA_MULT * NU,
        additive=noises.ROOT_DT * noises.SIGMA_ADD * OMEGA,
        variables=(NoiseVariable(OMEGA, FUNCTION), NoiseVariable(NU, FUNCTION)),
        functions=(
            CotangentFunction(FUNCTION, "The cotangent of xi = [omega, nu].", "(..., 2 n)"),
        ),
        arguments=ARGUMENTS,
    )


ARGUMENTS = noises.PAPER_ARGUMENTS
"""


def _jittered_step(state, drift, xi, sigma_add, sigma_mult, dt):
    n = state.shape[-1]
    omega, nu = xi[..., :n], xi[..., n:]
    root = math.sqrt(dt)
    return state + (dt + root * sigma_mult * nu) * drift + root * sigma_add * omega


@pytest.fixture()
def jitter_file(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "jitter_spec.py").write_text(JITTER_SPEC)
    yield tmp_path
    for name in [m for m in sys.modules if m.split(".")[0] == "jitter_formulas"]:
        del sys.modules[name]


def test_a_noise_form_of_ones_own_gets_a_derived_fused_step(jitter_file, capsys):
    """``--noise`` proves the spec with every built-in cell and writes its module; the
    generated cotangent is autograd's of the jittered step (and not of a step with another
    multiplicative level: the comparison can fail)."""
    target = f"{jitter_file / 'jitter_spec.py'}:jitter"
    out = jitter_file / "jitter_formulas"
    assert build.main(["--noise", target, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("jitter step: the derived") == len(cells.BUILT_IN)
    assert "FAILED" not in printed
    assert build.main(["--noise", target, "--out", str(out), "--check"]) == 0
    assert (out / "jitter.md").is_file() and (out / "numpy" / "noise_jitter.py").is_file()

    module = importlib.import_module("jitter_formulas.noise_jitter")
    generator = torch.Generator().manual_seed(7)
    state, drift, cotangent = (
        torch.randn(3, 4, generator=generator, dtype=torch.float64) for _ in range(3)
    )
    xi = torch.randn(3, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    levels = dict(sigma_add=0.3, sigma_mult=0.7, dt=0.2)
    found = module.noise_cotangent_jitter(cotangent=cotangent, drift=drift, **levels)
    expected = torch.autograd.grad(_jittered_step(state, drift, xi, **levels), xi, cotangent)[0]
    torch.testing.assert_close(found, expected, rtol=1e-12, atol=1e-12)
    other = levels | {"sigma_mult": 0.8}
    wrong = torch.autograd.grad(_jittered_step(state, drift, xi, **other), xi, cotangent)[0]
    assert not torch.allclose(found, wrong)


def test_a_noise_form_without_code_names_for_its_symbols_is_refused(jitter_file):
    # sigma_mult and dt without their code names
    source = JITTER_SPEC.replace("= noises.PAPER_ARGUMENTS\n", "= noises.PAPER_ARGUMENTS[:1]\n")
    (jitter_file / "jitter_spec.py").write_text(source)
    target = f"{jitter_file / 'jitter_spec.py'}:jitter"
    with pytest.raises(ValueError, match=r"expected an Argument for each"):
        build.main(["--noise", target, "--out", str(jitter_file / "jitter_formulas")])
    assert not (jitter_file / "jitter_formulas").exists()
