"""The fused recurrence (``nrnn.fused``) against the op-by-op reference path.

- The same states bit for bit and the same gradients to float64 round-off, on
  hypothesis-drawn cells, noises, sizes, lengths, replayed or absent ``xi`` and outputs
  (final state, logits or the whole path), the fused path verifiably taken.
- ``torch.autograd.gradcheck`` (first derivatives of every input) and ``gradgradcheck``
  (the second derivative, recomputed on the reference path) on small sizes.
- Which path runs: the reference path when asked for, for a torch-only cell, without a
  gradient and under torch.func transforms.
- Training: the same seed gives the same run and a resumed run continues bit for bit.
"""

from __future__ import annotations

import collections
import copy
import types

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from nrnn import Noise, NoisyRNN, ReleasedNoise, fused, noise_laplacian
from nrnn import config as config_module
from nrnn.catalogue import CELLS, make_noise
from nrnn.cells import Cell
from nrnn.metrics import hessian_trace
from nrnn.train import build_model, train

DTYPE = torch.float64
NOISES = ("diagonal", "scalar", "released", "paper-quiet", "released-quiet")
ROUND_OFF = dict(rtol=1e-10, atol=1e-13)


def _noise(name: str, level: float):
    if name == "paper-quiet":
        return Noise()
    if name == "released-quiet":
        return ReleasedNoise()
    return make_noise(name, level)


def _model(cell: str, noise: str, hidden: int, *, seed=0, level=0.4, recurrence="fused"):
    torch.manual_seed(seed)
    model = NoisyRNN(
        2,
        hidden,
        3,
        dt=0.3,
        noise=_noise(noise, level),
        cell=CELLS[cell](hidden),
        recurrence=recurrence,
    ).to(DTYPE)
    step_size = model.noise_parameters.get("step_size")
    if step_size is not None:  # a non-uniform per-unit step
        with torch.no_grad():
            step_size.mul_(0.5 + torch.rand(step_size.shape, dtype=DTYPE))
    return model


class Spy:
    """Counts the calls of the fused recurrence."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = fused.FusedRecurrence.apply

        def apply(*arguments):
            self.calls += 1
            return original(*arguments)

        monkeypatch.setattr(fused.FusedRecurrence, "apply", apply)


def _outputs(model, x, xi, y, output: str):
    if output == "logits":
        value = model(x, xi)
        return value, F.cross_entropy(value, y)
    value = model.trajectory(x, xi) if output == "path" else model.final_state(x, xi)
    weights = torch.linspace(-1.0, 1.0, value.numel(), dtype=DTYPE).view_as(value)
    return value, (weights * value).sum()


@settings(deadline=None)
@given(
    cell=st.sampled_from(sorted(CELLS)),
    noise=st.sampled_from(NOISES),
    hidden=st.integers(1, 4),
    batch=st.integers(1, 3),
    steps=st.integers(1, 9),
    replay=st.booleans(),
    output=st.sampled_from(("logits", "final", "path")),
    seed=st.integers(0, 2**16),
)
def test_fused_gradients_equal_the_reference_path(
    cell, noise, hidden, batch, steps, replay, output, seed
):
    """Same forward bits; every gradient (parameters, input, replayed noise) to round-off."""
    models = {
        name: _model(cell, noise, hidden, seed=seed, recurrence=name)
        for name in ("fused", "reference")
    }
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, 2, generator=generator, dtype=DTYPE)
    y = torch.randint(0, 3, (batch,), generator=generator)
    xi = None
    if replay:
        width = models["fused"].noise_dim
        xi = models["fused"].noise.sample((batch, steps, width), dtype=DTYPE, device="cpu")
    results = {}
    for name, model in models.items():
        model.train(mode=replay)  # without a replayed xi: evaluation, the noise is off
        inputs = [x.clone().requires_grad_()]
        inputs += [] if xi is None else [xi.clone().requires_grad_()]
        value, loss = _outputs(model, inputs[0], None if xi is None else inputs[1], y, output)
        assert model.uses_fused_recurrence(inputs) == (name == "fused")
        wrt = [*inputs, *model.parameters()]
        results[name] = value, torch.autograd.grad(loss, wrt, allow_unused=True)
    (value, gradients), (expected_value, expected) = results["fused"], results["reference"]
    assert torch.equal(value, expected_value)
    for gradient, reference in zip(gradients, expected, strict=True):
        if reference is None:
            assert gradient is None or not gradient.any()
        else:
            torch.testing.assert_close(gradient, reference, **ROUND_OFF)


@pytest.mark.parametrize("noise", ["diagonal", "scalar", "released"])
def test_a_seed_draws_the_same_noise_on_both_paths(noise, monkeypatch):
    """Training mode, no replayed xi: the model draws the noise itself. After the same
    seed both paths give the same logits bit for bit (the same draws), and the generator
    is left in the same state (nothing more was drawn)."""
    spy = Spy(monkeypatch)
    x = torch.randn(3, 5, 2, dtype=DTYPE)
    logits, after = {}, {}
    for name in ("fused", "reference"):
        model = _model("lipschitz", noise, 3, seed=4, recurrence=name).train()
        torch.manual_seed(11)
        logits[name] = model(x)
        after[name] = torch.randn(4, dtype=DTYPE)
        logits[name].sum().backward()
    assert spy.calls == 1
    assert torch.equal(logits["fused"], logits["reference"])
    assert torch.equal(after["fused"], after["reference"])
    torch.manual_seed(12)
    assert not torch.equal(model(x), logits["reference"])  # a different seed, other draws


def test_the_fused_path_is_taken_when_a_gradient_is_wanted(monkeypatch):
    spy = Spy(monkeypatch)
    model = _model("lipschitz", "diagonal", 3)
    x = torch.randn(2, 4, 2, dtype=DTYPE)
    with torch.no_grad():
        model(x)  # no gradient: the reference loop (the same bits, no saved states)
    assert spy.calls == 0
    model(x).sum().backward()
    assert spy.calls == 1 and model.cell.M_W.grad is not None
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model(x)  # nothing requires a gradient
    assert spy.calls == 1
    model(x.requires_grad_())  # a gradient of the input only (adversarial attacks)
    assert spy.calls == 2


@pytest.mark.parametrize("noise", ["diagonal", "scalar", "released", "released-quiet"])
@pytest.mark.parametrize("cell", ["lipschitz", "antisymmetric", "cornn", "gru"])
def test_gradcheck(cell, noise, monkeypatch):
    """Finite differences of the logits in x, the replayed noise and every parameter."""
    spy = Spy(monkeypatch)
    model = _model(cell, noise, 2, seed=1, level=0.5)
    names = [name for name, _ in model.named_parameters()]
    x = torch.randn(2, 3, 2, dtype=DTYPE, requires_grad=True)
    xi = None
    if noise != "reference-quiet":
        xi = model.noise.sample((2, 3, model.noise_dim), dtype=DTYPE, device="cpu")
        xi.requires_grad_()

    def logits(x, xi, *parameters):
        values = dict(zip(names, parameters, strict=True))
        return torch.func.functional_call(model, values, (x, xi))

    inputs = (x, xi, *(p.detach().clone().requires_grad_() for p in model.parameters()))
    assert torch.autograd.gradcheck(logits, inputs)
    assert spy.calls > 0


@pytest.mark.parametrize("noise", ["scalar", "released"])
def test_second_derivatives_recompute_the_reference_path(noise):
    """create_graph=True differentiates the reference path: gradgradcheck, and the noise
    Laplacian and Hessian trace equal the reference path's to round-off."""
    model = _model("gru", noise, 2, seed=2, level=0.5)
    x = torch.randn(2, 3, 2, dtype=DTYPE, requires_grad=True)
    xi = model.noise.sample((2, 3, model.noise_dim), dtype=DTYPE, device="cpu")
    xi.requires_grad_()
    assert torch.autograd.gradgradcheck(lambda x, xi: model(x, xi), (x, xi))
    reference = copy.deepcopy(model)
    reference.recurrence = "reference"
    y = torch.tensor([0, 2])
    data = x.detach()
    torch.testing.assert_close(
        noise_laplacian(model, data, y), noise_laplacian(reference, data, y), **ROUND_OFF
    )
    trace = hessian_trace(model, data, y, method="exact").value
    assert trace == pytest.approx(hessian_trace(reference, data, y, method="exact").value)


def test_torch_func_transforms_use_the_reference_path(monkeypatch):
    """torch.func.jvp runs op by op; its directional derivative is the fused gradient's
    projection."""
    spy = Spy(monkeypatch)
    model = _model("cornn", "diagonal", 2)
    x = torch.randn(2, 4, 2, dtype=DTYPE)
    xi = torch.randn(2, 4, model.noise_dim, dtype=DTYPE)
    direction = torch.randn_like(xi)
    _, slope = torch.func.jvp(lambda xi: model(x, xi), (xi,), (direction,))
    assert spy.calls == 0
    xi.requires_grad_()
    (gradient,) = torch.autograd.grad(model(x, xi).sum(), xi)
    assert spy.calls == 1
    torch.testing.assert_close((gradient * direction).sum(), slope.sum(), **ROUND_OFF)


class TorchOnlyCell(Cell):
    """f(h, c) = −h + tanh(W h) ⊙ c, without generated formulas."""

    name = "torch-only"

    def __init__(self, hidden_dim: int) -> None:
        super().__init__(
            hidden_dim, state_dim=hidden_dim, output_dim=hidden_dim, drive_dim=hidden_dim
        )
        self.W = torch.nn.Parameter(torch.randn(hidden_dim, hidden_dim) / hidden_dim)

    def drift_parameters(self):
        return (self.W,)

    def drift(self, state, drive, parameters):
        (W,) = parameters
        return -state + torch.tanh(state @ W.T) * drive


def test_a_torch_only_cell_and_the_reference_choice_run_op_by_op(monkeypatch):
    spy = Spy(monkeypatch)
    x = torch.randn(2, 4, 2)
    own = NoisyRNN(2, 3, 2, cell=TorchOnlyCell(3), noise=Noise(0.1, 0.1))
    own(x).sum().backward()
    assert own.cell.W.grad is not None and not fused.supports(own.cell, own.noise)
    chosen = NoisyRNN(2, 3, 2, recurrence="reference")
    chosen(x).sum().backward()
    assert spy.calls == 0 and chosen.recurrence == "reference"
    with pytest.raises(ValueError, match="recurrence must be one of"):
        NoisyRNN(2, 3, 2, recurrence="fast")


def test_the_step_products_are_used_when_the_formulas_declare_them(monkeypatch):
    """The capability is the generated ``HAS_STEP_VJP``, not inferred from the functions: the
    same module without the declaration (an older generation) runs op by op."""
    cell = CELLS["cornn"](3)
    formulas = cell.formulas
    assert formulas is not None and formulas.HAS_STEP_VJP is True and cell.has_step_vjp
    undeclared = types.ModuleType("undeclared")
    undeclared.__dict__.update(
        {name: value for name, value in vars(formulas).items() if name != "HAS_STEP_VJP"}
    )
    assert hasattr(undeclared, "step_vjp_multiplicative")
    monkeypatch.setattr(type(cell), "formulas", undeclared)
    assert not cell.has_step_vjp and not fused.supports(cell, Noise(0.1, 0.1))


def test_drift_parameters_without_formula_names_are_refused_with_a_message():
    model = NoisyRNN(2, 3, 2, noise=Noise(0.1, 0.1))
    named = model.cell.drift_parameters()
    x = torch.randn(2, 4, 2)
    plain = tuple(named)
    model.cell.drift_parameters = lambda: plain  # type: ignore[method-assign]
    with pytest.raises(TypeError, match=r"drift_parameters\(\) must return a NamedTuple"):
        model(x).sum().backward()
    renamed = collections.namedtuple("Renamed", ["first", "second"])(*named)
    model.cell.drift_parameters = lambda: renamed  # type: ignore[method-assign]
    with pytest.raises(TypeError, match="not arguments of the generated step_vjp"):
        model(x).sum().backward()
    model.recurrence = "reference"
    model(x).sum().backward()  # the op-by-op path takes any tuple


# ------------------------------------------------------------------------------ training
def _run_config(**model_overrides) -> config_module.RunConfig:
    config = config_module.default_config("digits")
    config.data.train_subset, config.data.eval_subset, config.data.batch_size = 96, 50, 32
    config.model.hidden_dim = 6
    config.train.epochs = 2
    noise = {"kind": "released", "additive": 0.1, "multiplicative": 0.1}
    return config_module.from_dict({"noise": noise, "model": model_overrides}, config).validate()


def _numbers(result) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "seconds"} for m in result.metrics]


def _state(result) -> dict:
    return {name: value.clone() for name, value in result.model.state_dict().items()}


def test_training_is_fused_reproducible_and_resumes_exactly(tmp_path, monkeypatch):
    """The same seed gives the same run bit for bit; a run stopped after one epoch and
    resumed equals the uninterrupted one bit for bit; all of it on the fused path, whose
    run differs from the reference path's by round-off only."""
    spy = Spy(monkeypatch)
    first = train(_run_config(), tmp_path / "first", progress=False)
    assert spy.calls > 0
    again = train(_run_config(), tmp_path / "again", progress=False)
    config = _run_config()
    config.train.epochs = 1
    train(config, tmp_path / "resumed", progress=False)
    resumed = train(_run_config(), tmp_path / "resumed", resume=True, progress=False)
    for other in (again, resumed):
        assert _numbers(other) == _numbers(first)
        for name, value in _state(first).items():
            assert torch.equal(_state(other)[name], value), name
    calls = spy.calls
    reference = train(_run_config(recurrence="reference"), tmp_path / "ref", progress=False)
    assert spy.calls == calls
    for name, value in _state(first).items():
        torch.testing.assert_close(_state(reference)[name], value, rtol=0, atol=1e-5)


def test_the_recurrence_key_is_checked_and_left_out_of_the_hash_at_its_default():
    config = _run_config()
    assert build_model(config).recurrence == "fused"
    assert "recurrence" not in config.canonical_dict()["model"]
    other = _run_config(recurrence="reference")
    assert other.identity_hash() != config.identity_hash()
    assert build_model(other).recurrence == "reference"
    with pytest.raises(ValueError, match="model.recurrence must be one of"):
        _run_config(recurrence="fast")
