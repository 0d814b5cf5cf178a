"""Every cell with every noise form, driven by the reference catalogue (nrnn.catalogue):
exact replay of the noise, the explicit regularizer against its two oracles (the autograd
noise Laplacian and exact Gauss quadrature), the torch.func route, the stability tools,
state dicts, and a cell that has no generated code at all."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from nrnn import Noise, NoisyRNN, ReleasedNoise, explicit_regularizer, noise_laplacian, quadrature
from nrnn import stability as stability_tools
from nrnn.catalogue import CELLS, MODEL_CASES, NOISE_FORMS, ModelCase
from nrnn.cells import AutodiffDerivatives, Cell, CoRNNCell, GRUODECell, LipschitzCell

DTYPE = torch.float64
IDS = {"ids": lambda case: case.label}


# ------------------------------------------------------------------------ the model
@pytest.mark.parametrize("case", MODEL_CASES, **IDS)
def test_given_noise_replays_exactly_and_sets_the_width(case):
    model, x, _ = case.build()
    n = model.state_dim
    widths = {"diagonal": n, "scalar": n + 1, "released": 2 * n}  # the built-in forms
    width = widths.get(case.noise, model.noise_dim)
    assert model.noise_dim == width
    xi = torch.randn(*x.shape[:2], width, dtype=DTYPE, generator=torch.Generator().manual_seed(1))
    model.train()
    first = model(x, xi)
    model.eval()
    assert torch.equal(first, model(x, xi))
    path = model.trajectory(x, xi)
    assert path.shape == (x.shape[0], x.shape[1] + 1, n) and torch.all(path[:, 0] == 0)
    torch.testing.assert_close(model.logits(path[:, -1]), first, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"xi must have shape \(batch, M, r\)"):
        model(x, xi[..., :-1])


def test_state_sizes_and_readout_of_the_built_in_cells():
    assert NoisyRNN(2, 3, 4, cell=CoRNNCell(3)).state_dim == 6
    cornn = NoisyRNN(2, 3, 4, cell=CoRNNCell(3), noise=Noise(0.1, 0.1))
    assert cornn.readout.in_features == 3 and cornn.input.out_features == 3  # reads y
    gru = NoisyRNN(2, 3, 4, cell=GRUODECell(3))
    assert gru.state_dim == 3 and gru.input.out_features == 9  # drives of u, r and g


@pytest.mark.parametrize("name", sorted(CELLS))
def test_state_dicts_round_trip(name):
    torch.manual_seed(0)
    model = NoisyRNN(2, 3, 4, cell=CELLS[name](3), noise=ReleasedNoise(0.1, 0.2))
    torch.manual_seed(1)
    other = NoisyRNN(2, 3, 4, cell=CELLS[name](3), noise=ReleasedNoise(0.1, 0.2))
    other.load_state_dict(model.state_dict())
    x = torch.randn(2, 5, 2)
    assert torch.equal(model.eval()(x), other.eval()(x))


def test_cell_and_model_arguments_are_checked():
    with pytest.raises(ValueError, match="cell must have hidden_dim=4, got 3"):
        NoisyRNN(2, 4, 3, cell=CoRNNCell(3))
    with pytest.raises(ValueError, match="beta configure the default Lipschitz cell"):
        NoisyRNN(2, 3, 3, cell=GRUODECell(3), beta=0.5)
    with pytest.raises(TypeError, match="cell must be an nrnn.cells.Cell"):
        NoisyRNN(2, 3, 3, cell=torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="activation must be one of"):
        LipschitzCell(3, activation="relu")
    with pytest.raises(ValueError, match="gamma must be a finite number"):
        CoRNNCell(3, gamma=math.inf)


# -------------------------------------------------------------- the regularizer's oracles
@pytest.mark.parametrize("case", MODEL_CASES, **IDS)
def test_regularizer_equals_the_noise_laplacian(case):
    """q + r (generated formulas) = Δ_ξ ℓ at ξ = 0 (autograd through the model)."""
    model, x, y = case.build()
    expansion = explicit_regularizer(model, x, y)
    laplacian = noise_laplacian(model, x, y)
    scale = laplacian.abs().max().item()
    torch.testing.assert_close(
        (expansion.q + expansion.r).detach(), laplacian, rtol=1e-9, atol=1e-9 * scale
    )


@pytest.mark.parametrize("case", MODEL_CASES, **IDS)
def test_torch_func_route_equals_the_generated_formulas(case):
    """Both methods, values and gradients: derivatives="autodiff" (torch.func) and the
    generated code agree (the probes share their generator)."""
    model, x, y = case.build()
    for method in ("exact", "probe"):
        results = []
        for route in ("formulas", "autodiff"):
            generator = torch.Generator().manual_seed(3)
            expansion = explicit_regularizer(
                model, x, y, method=method, probes=3, generator=generator, derivatives=route
            )
            gradients = torch.autograd.grad(expansion.regularizer.sum(), model.parameters())
            results.append((torch.stack(list(expansion)), gradients))
        (values, gradients), (values_auto, gradients_auto) = results
        torch.testing.assert_close(values_auto, values, rtol=1e-10, atol=1e-12)
        for auto, formula in zip(gradients_auto, gradients, strict=True):
            torch.testing.assert_close(auto, formula, rtol=1e-9, atol=1e-12)


QUADRATURE_CASES = [
    ModelCase(cell, noise, hidden=hidden, steps=2, batch=1, dt=0.3, level=0.5, seed=5)
    for cell, hidden in (("lipschitz", 2), ("cornn", 1), ("gru", 2), ("lipschitz-arctan", 1))
    for noise in NOISE_FORMS
]


@pytest.mark.parametrize("case", QUADRATURE_CASES, **IDS)
def test_regularizer_is_the_eps2_coefficient_of_the_exact_expectation(case):
    """E ℓ_ε by tensor Gauss quadrature (exact to the degree that matters): the remainder
    E ℓ_ε − ℓ − ε² (q + r)/2 is O(ε⁴): over ε = 0.1 and 0.05 it shrinks 16-fold (within 15 %),
    and (E ℓ_ε − ℓ)/ε² → (q + r)/2 with the ε² error the remainder predicts."""
    model, x, y = case.build()
    rule = quadrature.noise_rule(model, case.steps, nodes=3)
    with torch.no_grad():
        expansion = explicit_regularizer(model, x, y)
        loss, half = expansion.loss.item(), expansion.regularizer.item()
        epsilons = (0.1, 0.05, 0.025)
        remainders = [
            quadrature.expected_loss(model, x, y, rule, eps).item() - loss - eps**2 * half
            for eps in epsilons
        ]
    ratios = [r / eps**4 for r, eps in zip(remainders, epsilons, strict=True)]
    assert abs(ratios[1] - ratios[0]) <= 0.15 * abs(ratios[0]), ratios
    assert abs(ratios[2] - ratios[1]) <= 0.15 * abs(ratios[1]), ratios
    assert abs(remainders[-1]) <= 2 * abs(ratios[0]) * epsilons[-1] ** 4 + 1e-14


# ------------------------------------------------------------ a cell with no formulas
class SineCell(Cell):
    """f(h, c) = −h + sin(W h) ⊙ tanh(c): a torch drift and nothing else."""

    name = "sine"

    def __init__(self, hidden_dim: int) -> None:
        super().__init__(
            hidden_dim, state_dim=hidden_dim, output_dim=hidden_dim, drive_dim=hidden_dim
        )
        self.W = torch.nn.Parameter(torch.randn(hidden_dim, hidden_dim) / hidden_dim**0.5)

    def drift_parameters(self):
        return (self.W,)

    def drift(self, state, drive, parameters):
        (W,) = parameters
        return -state + torch.sin(state @ W.T) * torch.tanh(drive)


@pytest.mark.parametrize("noise", ["diagonal", "scalar", "released"])
def test_a_cell_without_formulas_gets_its_regularizer_from_torch_func(noise):
    torch.manual_seed(4)
    noises = {
        "diagonal": Noise(0.4, 0.5),
        "scalar": Noise(0.4, 0.5, "scalar"),
        "released": ReleasedNoise(0.1, 0.5),
    }
    model = NoisyRNN(2, 3, 3, dt=0.3, cell=SineCell(3), noise=noises[noise]).double()
    x = torch.randn(3, 4, 2, dtype=DTYPE)
    y = torch.tensor([0, 2, 1])
    assert isinstance(model.cell.derivatives(), AutodiffDerivatives)
    expansion = explicit_regularizer(model, x, y)
    laplacian = noise_laplacian(model, x, y)
    torch.testing.assert_close(
        (expansion.q + expansion.r).detach(), laplacian, rtol=1e-9, atol=1e-12
    )
    expansion.expected_loss.sum().backward()
    assert model.cell.W.grad is not None and model.cell.W.grad.abs().sum() > 0
    with pytest.raises(stability_tools.NoClosedFormBound, match="no closed-form bound"):
        stability_tools.contraction_rate(model)
    estimate = stability_tools.lyapunov_exponent(model, x[:1], paths=3, seed=0, steps=6)
    assert math.isfinite(estimate.exponent)


WRONG_DRIFTS = {
    "(1, 3)": lambda drift: drift.mean(0, keepdim=True),  # broadcast silently before
    "()": lambda drift: drift.sum(),  # broadcast silently before
    "(4, 4)": lambda drift: torch.cat([drift, drift[:, :1]], -1),  # a raw broadcasting error
}


@pytest.mark.parametrize("shape", list(WRONG_DRIFTS))
def test_a_drift_of_the_wrong_shape_is_refused_naming_the_cell(shape):
    """Own cells: a drift that returns (1, n) or a scalar was broadcast into wrong numbers
    without a word; a wrong width failed inside torch without naming the cell."""

    class BrokenCell(SineCell):
        def drift(self, state, drive, parameters):
            return WRONG_DRIFTS[shape](super().drift(state, drive, parameters))

    torch.manual_seed(0)
    model = NoisyRNN(2, 3, 3, dt=0.3, cell=BrokenCell(3), noise=Noise(0.1, 0.1))
    x = torch.randn(4, 5, 2)
    expected = rf"BrokenCell.drift returned {re.escape(shape)} for a state of shape \(4, 3\)"
    for mode in (model.train, model.eval):
        mode()
        with pytest.raises(ValueError, match=expected):
            model(x)
    model.cell = SineCell(3)
    assert model(x).shape == (4, 3)  # the same model with a right drift runs


def test_the_fused_recurrence_checks_the_drift_shape_too(monkeypatch):
    torch.manual_seed(0)
    model = NoisyRNN(2, 3, 3, dt=0.3, noise=Noise(0.1, 0.1))
    x = torch.randn(4, 5, 2)
    assert model.uses_fused_recurrence([x.requires_grad_()])
    drift_terms = model.cell.drift_terms

    def squeezed(state, drive, parameters):
        drift, saved = drift_terms(state, drive, parameters)
        return drift.mean(0, keepdim=True), saved

    monkeypatch.setattr(model.cell, "drift_terms", squeezed)
    with pytest.raises(ValueError, match=r"LipschitzCell.drift returned \(1, 3\)"):
        model(x)


# ------------------------------------------------------------------------ stability
def _kappa(cell_name: str, model) -> float:
    """λ_max(sym L) + ρ with numpy from the cell's matrices, written out per cell."""
    import numpy as np

    parameters = [
        p.detach().double().numpy() if torch.is_tensor(p) else p
        for p in model.cell.drift_parameters()
    ]
    if cell_name == "cornn":
        W, V, gamma, epsilon = parameters
        d = W.shape[0]
        L = np.block([[np.zeros((d, d)), np.eye(d)], [-gamma * np.eye(d), -epsilon * np.eye(d)]])
        rho = np.linalg.norm(np.hstack([W, V]), 2)
    else:
        L, W = parameters
        rho = model.cell.activation.lipschitz * np.linalg.norm(W, 2)
    return float(np.linalg.eigvalsh((L + L.T) / 2).max() + rho)


@pytest.mark.parametrize("name", ["lipschitz", "antisymmetric", "lipschitz-arctan", "cornn"])
def test_contraction_rates_and_bounds_where_a_split_exists(name):
    torch.manual_seed(2)
    model = NoisyRNN(2, 3, 2, dt=0.1, cell=CELLS[name](3), noise=Noise(0.2, 0.9, "scalar"))
    kappa = stability_tools.contraction_rate(model).item()
    assert kappa == pytest.approx(_kappa(name, model), abs=1e-5)
    assert stability_tools.almost_sure_bound(model).item() == pytest.approx(
        kappa - 0.9**2 / 2, abs=1e-5
    )
    x = torch.randn(1, 40, 2)
    estimate = stability_tools.lyapunov_exponent(model, x, paths=8, seed=1)
    assert math.isfinite(estimate.exponent)


def test_the_gated_cell_says_plainly_that_it_has_no_bound():
    model = NoisyRNN(2, 3, 2, cell=GRUODECell(3), noise=Noise(0.2, 0.9, "scalar"))
    for bound in (stability_tools.contraction_rate, stability_tools.almost_sure_bound):
        with pytest.raises(stability_tools.NoClosedFormBound, match="gru cell"):
            bound(model)
    estimate = stability_tools.linearised_lyapunov_exponent(
        model, torch.randn(1, 30, 2), paths=4, seed=0, count=2
    )
    assert estimate.spectrum.shape == (2,) and torch.isfinite(estimate.spectrum).all()


# ------------------------------------------------------------------ input contract
def test_non_finite_noise_is_refused():
    model = NoisyRNN(2, 3, 2, noise=Noise(0.1, 0.1))
    xi = torch.zeros(2, 4, 3)
    xi[0, 1, 2] = math.nan
    with pytest.raises(ValueError, match="xi contains NaN or inf"):
        model(torch.zeros(2, 4, 2), xi)


def test_a_lossy_cast_of_the_input_warns_once_per_call_site():
    model = NoisyRNN(2, 3, 2)
    x = torch.zeros(2, 4, 2, dtype=torch.float64)
    with pytest.warns(
        UserWarning, match="x has dtype torch.float64 but the model computes in torch.float32"
    ):
        model(x)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            model(x)  # one call site
    assert len([w for w in caught if "computes in torch.float32" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(x.float())  # no cast, no warning
        model.double()(torch.zeros(2, 4, 2))  # float32 into float64 loses nothing


def test_the_loss_on_the_noise_free_path_uses_the_cell_readout():
    """For the coRNN the readout sees y only: the loss equals the cross-entropy of the
    evaluation-mode logits, and changing the velocity block of h_M does not move it."""
    model, x, y = ModelCase("cornn", "diagonal").build()
    expansion = explicit_regularizer(model, x, y)
    torch.testing.assert_close(
        expansion.loss, F.cross_entropy(model.eval()(x), y, reduction="none")
    )
    state = model.final_state(x)
    moved = state.clone()
    moved[:, model.hidden_dim :] += 1.0
    assert torch.equal(model.logits(state), model.logits(moved))
