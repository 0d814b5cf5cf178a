"""The derived vector–Jacobian product of one Euler–Maruyama step (``derivations.adjoint``,
``derivations.step_adjoint``) and its generated code: the proofs hold and can fail, the
generated torch and numpy functions equal autograd of one step for every cell and every
shape of the step's terms, and the code computes shared terms once and no product with a
selection matrix."""

import importlib
import inspect
import math

import numpy as np
import pytest
import sympy as sp
import torch

from nrnn._generated import _helpers, cell_cornn, cell_lipschitz, noise_adjoint
from nrnn._generated.numpy import noise_adjoint as np_noise_adjoint
from nrnn.catalogue import CELLS
from nrnn.derivations import cells, noises, step_adjoint

SPECS = {spec().name: spec for spec in cells.BUILT_IN}
TOLERANCE = dict(rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("noise", noises.BUILT_IN, ids=lambda noise: noise.name)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_step_vjp_is_proved_at_d_1(name, noise):
    """d = 2 is proved by ``nrnn derive``; d = 1 here (a different explicit instance)."""
    result = step_adjoint.prove(SPECS[name](), 1, noise)
    assert result.proved, result.statement()
    assert result.inputs > 0


def test_the_proof_fails_for_a_wrong_vjp(monkeypatch):
    """Dropping the m ∘ λ term of the state's cotangent must be caught."""
    original = step_adjoint.cell_step_outputs

    def wrong(spec, multiplicative):
        outputs, intermediates = original(spec, multiplicative)
        state = outputs[0][1]
        kept = [t for t in state.args if not isinstance(t, sp.HadamardProduct)]
        return ((("state", sp.MatAdd(*kept)),) + outputs[1:]), intermediates

    monkeypatch.setattr(step_adjoint, "cell_step_outputs", wrong)
    result = step_adjoint.prove.__wrapped__(cells.lipschitz(), 1, noises.PAPER_PER_UNIT)
    assert not result.proved and result.mismatches == ("state[0]",)


def _twin(module):
    return importlib.import_module(f"nrnn._generated.numpy.{module.__name__.split('.')[-1]}")


def _call(function, arguments, numpy=False):
    names = inspect.signature(function).parameters
    picked = {name: arguments[name] for name in names}
    if numpy:
        picked = {
            k: v.detach().numpy() if isinstance(v, torch.Tensor) else v for k, v in picked.items()
        }
    return function(**picked)


def _tensor(value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.as_tensor(np.asarray(value))


STEP_KINDS = ("float", "per-unit", "per-sample")
MULTIPLIERS = (None, "per-unit", "scalar")


@pytest.mark.parametrize("multiplier_kind", MULTIPLIERS)
@pytest.mark.parametrize("step_kind", STEP_KINDS)
@pytest.mark.parametrize("name", sorted(CELLS))
def test_generated_step_vjp_is_autograd_of_one_step(name, step_kind, multiplier_kind):
    """λᵀ ∂h'/∂(h, c, matrices) of h' = h + s ⊙ f(h, c) + a + h ⊙ m by autograd of the
    cell's torch drift, against the generated step_vjp (torch and numpy)."""
    torch.manual_seed(3)
    cell = CELLS[name](3).double()
    batch, n = 4, cell.state_dim
    parameters = cell.drift_parameters()
    state = torch.randn(batch, n, dtype=torch.float64, requires_grad=True)
    drive = torch.randn(batch, cell.drive_dim, dtype=torch.float64, requires_grad=True)
    step = {
        "float": 0.3,
        "per-unit": torch.rand(n, dtype=torch.float64),
        "per-sample": torch.rand(batch, n, dtype=torch.float64),
    }[step_kind]
    multiplier = {
        None: None,
        "per-unit": 0.2 * torch.randn(batch, n, dtype=torch.float64),
        "scalar": 0.2 * torch.randn(batch, 1, dtype=torch.float64),
    }[multiplier_kind]
    cotangent = torch.randn(batch, n, dtype=torch.float64)
    following = state + step * cell.drift(state, drive, parameters)
    if multiplier is not None:
        following = following + state * multiplier
    trained = {
        field: value
        for field, value in parameters._asdict().items()
        if isinstance(value, torch.Tensor) and value.requires_grad
    }
    expected = torch.autograd.grad(following, [state, drive, *trained.values()], cotangent)

    point = cell.linearisation(state.detach(), drive.detach(), parameters)
    arguments = cell.formula_arguments(point, parameters) | {
        "cotangent": cotangent,
        "step": step,
        "multiplier": multiplier,
    }
    function = "step_vjp" if multiplier is None else "step_vjp_multiplicative"
    for numpy in (False, True):
        module = _twin(cell.formulas) if numpy else cell.formulas
        found = _call(getattr(module, function), arguments, numpy=numpy)
        helpers = _twin(_helpers) if numpy else _helpers
        drive_parts = [_tensor(found[part]) for part in cell.drive_parts]
        actual = [_tensor(found["state"]), torch.cat(drive_parts, -1)]
        # a matrix's gradient comes as factor pairs (l, r): Σ over pairs and samples of l rᵀ
        actual += [
            _tensor(sum(helpers.outer_sum(left, right) for left, right in found[field]))
            for field in trained
        ]
        for value, reference in zip(actual, expected, strict=True):
            torch.testing.assert_close(value, reference, **TOLERANCE)


def _paper_step(state, drift, xi, sigma_add, sigma_mult, dt, scalar):
    n = state.shape[-1]
    if scalar:
        additive, multiplier = xi[..., :n], xi[..., n:]
    else:
        additive = multiplier = xi
    root = math.sqrt(dt)
    return state + dt * drift + root * sigma_add * additive + state * root * sigma_mult * multiplier


def _released_step(state, drift, xi, step_size, s_a, s_m):
    n = state.shape[-1]
    uniform = 1 - s_m / 2 + s_m / math.sqrt(12) * xi[..., n:]
    return state + step_size * uniform * drift + s_a * xi[..., :n]


@pytest.mark.parametrize("form", ["diagonal", "scalar", "released", "released-noise-free"])
def test_generated_noise_cotangents_are_autograd_of_the_step(form):
    generator = torch.Generator().manual_seed(5)
    batch, n = 3, 4

    def draw(*shape, grad=False):
        return torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=grad)

    state, drift, cotangent = draw(batch, n), draw(batch, n), draw(batch, n)
    width = {"diagonal": n, "scalar": n + 1}.get(form, 2 * n)
    xi, step_size = draw(batch, width, grad=True), draw(n, grad=True)
    levels = dict(sigma_add=0.3, sigma_mult=0.7, dt=0.2, released_add=0.1, released_mult=0.6)
    arguments = levels | {"cotangent": cotangent, "state": state, "drift": drift}
    arguments |= {"step_size": step_size.detach()}
    if form in ("diagonal", "scalar"):
        following = _paper_step(state, drift, xi, 0.3, 0.7, 0.2, scalar=form == "scalar")
        expected = {"xi": torch.autograd.grad(following, xi, cotangent)[0]}
        found = {"xi": f"noise_cotangent_{form}"}
    elif form == "released":
        following = _released_step(state, drift, xi, step_size, 0.1, 0.6)
        expected = dict(
            zip(
                ("xi", "step_size"),
                torch.autograd.grad(following, (xi, step_size), cotangent),
                strict=True,
            )
        )
        uniform = 1 - 0.6 / 2 + 0.6 / math.sqrt(12) * xi.detach()[..., n:]
        arguments["step_multiplier"] = uniform
        found = {"xi": "noise_cotangent_released", "step_size": "step_size_cotangent"}
    else:
        following = state + step_size * drift
        expected = {"step_size": torch.autograd.grad(following, step_size, cotangent)[0]}
        arguments["step_multiplier"] = 1.0
        found = {"step_size": "step_size_cotangent"}
    for key, function in found.items():
        for module, numpy in ((noise_adjoint, False), (np_noise_adjoint, True)):
            value = _tensor(_call(getattr(module, function), arguments, numpy))
            torch.testing.assert_close(value, expected[key], **TOLERANCE)


def test_the_code_computes_shared_terms_once_and_slices_blocks():
    """s ⊙ λ is computed once per step; the coRNN's blocks are slices, not products with
    its selection matrices."""
    lipschitz = inspect.getsource(cell_lipschitz.step_vjp_multiplicative)
    assert lipschitz.count("cotangent * step") == 1
    assert lipschitz.count(" @ ") == 2  # A^T and W^T applied to rows, nothing else
    oscillator = inspect.getsource(cell_cornn.step_vjp_multiplicative)
    assert "select_" not in oscillator.split('"""')[-1]
    assert "block(" in oscillator
