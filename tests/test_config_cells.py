"""Config keys for the cells: run hashes unchanged, per-cell keys checked, every shipped
cell config builds its cell."""

import dataclasses
from pathlib import Path

import pytest
import torch

from nrnn import Noise, NoisyRNN, ReferenceNoise
from nrnn import config as config_module
from nrnn.cells import CoRNNCell, GRUODECell, LipschitzCell
from nrnn.train import build_model

CELL_CONFIGS = sorted((Path(config_module.__file__).parent / "configs" / "cells").glob("*.toml"))


def test_runs_cached_before_the_cells_keep_their_hash():
    """Recorded with the code before model.cell existed."""
    assert config_module.default_config("digits").identity_hash() == "04aa65dbb9ec"
    assert config_module.default_config("ecg5000").identity_hash() == "5f80f788c561"
    assert config_module.RunConfig().identity_hash() == "4f6dd5239648"


def test_a_cell_key_changes_the_hash():
    base = config_module.default_config("digits")
    other = config_module.default_config("digits")
    other.model.cell = "gru"
    assert other.validate().identity_hash() != base.identity_hash()


@pytest.mark.parametrize("path", CELL_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_cell_config_builds_its_cell(path):
    config = config_module.load_toml(path).validate()
    torch.manual_seed(0)
    model = build_model(config)
    expected = {"lipschitz": LipschitzCell, "cornn": CoRNNCell, "gru": GRUODECell}
    assert type(model.cell) is expected[path.stem] and config.model.cell == path.stem
    assert model(torch.zeros(2, 64, 1)).shape == (2, 10)


def test_build_model_draws_the_same_default_model_as_before():
    """The Lipschitz cell built from a config is the one NoisyRNN builds by default."""
    config = config_module.default_config("digits")
    torch.manual_seed(3)
    built = build_model(config)
    torch.manual_seed(3)
    direct = NoisyRNN(1, 64, 10, dt=0.2, init_std=0.5, noise=Noise(0.05, 0.05, "diagonal"))
    for (name, a), (_, b) in zip(built.named_parameters(), direct.named_parameters(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"cell": "lstm"}, "model.cell must be one of"),
        ({"activation": "relu"}, "model.activation must be one of"),
        (
            {"cell": "gru", "antisymmetric": True},
            "model.antisymmetric configures the lipschitz cell",
        ),
        ({"cell": "gru", "activation": "arctan"}, "model.activation configures the"),
        ({"oscillator_gamma": 1.0}, "model.oscillator_gamma configures the cornn cell"),
    ],
)
def test_cell_keys_are_validated(overrides, message):
    config = config_module.default_config("digits")
    for key, value in overrides.items():
        setattr(config.model, key, value)
    with pytest.raises(ValueError, match=message):
        config.validate()


# ------------------------------------------------------- every option reaches the model
def _init_scale(factor):
    """The cell's weight matrices are ``factor`` times those of the default build."""

    def observe(model, default):
        pairs = zip(model.cell.parameters(), default.cell.parameters(), strict=True)
        return all(torch.allclose(mine, factor * theirs, rtol=1e-6) for mine, theirs in pairs)

    return observe


def _attribute(path, expected):
    def observe(model, default):
        value = model
        for name in path.split("."):
            value = getattr(value, name)
        return value == expected

    return observe


OPTIONS = {
    # (cell, "section.key"): (non-default value, what the built model must show)
    **{
        (cell, "model.hidden_dim"): (5, _attribute("hidden_dim", 5))
        for cell in config_module.CELL_KEYS
    },
    **{(cell, "model.dt"): (0.05, _attribute("dt", 0.05)) for cell in config_module.CELL_KEYS},
    **{
        (cell, "model.recurrence"): ("reference", _attribute("recurrence", "reference"))
        for cell in config_module.CELL_KEYS
    },
    **{(cell, "model.init_std"): (0.25, _init_scale(0.5)) for cell in config_module.CELL_KEYS},
    ("lipschitz", "model.beta"): (0.3, _attribute("cell.beta", 0.3)),
    ("lipschitz", "model.gamma_a"): (0.2, _attribute("cell.gamma_a", 0.2)),
    ("lipschitz", "model.gamma_w"): (0.05, _attribute("cell.gamma_w", 0.05)),
    ("lipschitz", "model.antisymmetric"): (
        True,
        lambda model, default: model.cell.antisymmetric and model.cell.M_A is None,
    ),
    ("lipschitz", "model.init_divisor"): ("hidden", _init_scale(64**-0.5)),
    ("lipschitz", "model.activation"): ("arctan", _attribute("cell.activation.name", "arctan")),
    ("cornn", "model.oscillator_gamma"): (1.5, _attribute("cell.gamma", 1.5)),
    ("cornn", "model.oscillator_epsilon"): (2.0, _attribute("cell.epsilon", 2.0)),
    ("cornn", "model.activation"): ("sigmoid", _attribute("cell.activation.name", "sigmoid")),
}
NOISE_OPTIONS = {
    # (noise form, "noise.key"): (non-default value, what the built model's noise must be)
    ("paper", "noise.additive"): (0.3, Noise(0.3, 0.05, "diagonal")),
    ("paper", "noise.multiplicative"): (0.2, Noise(0.05, 0.2, "diagonal")),
    ("paper", "noise.brownian"): ("scalar", Noise(0.05, 0.05, "scalar")),
    ("reference", "noise.additive"): (0.3, ReferenceNoise(0.3, 0.05)),
    ("reference", "noise.multiplicative"): (0.2, ReferenceNoise(0.05, 0.2)),
}
"""On digits' shipped config: init_std 0.5, σ₁ = σ₂ = 0.05, one Brownian motion per unit."""
GENERAL_KEYS = ("hidden_dim", "dt", "init_std", "recurrence")
"""Model keys of every cell (``cell`` itself chooses the cell)."""
NOT_OF_THE_REFERENCE_FORM = ("brownian",)
"""Noise keys the released-code form has no use for."""


def _built(cell: str, overrides: dict) -> NoisyRNN:
    config = config_module.default_config("digits")
    config.model.cell = cell
    config = config_module.from_dict(overrides, config).validate()
    torch.manual_seed(7)
    return build_model(config)


def _signature(model: NoisyRNN) -> torch.Tensor:
    """The logits of a fixed input under fixed noise variables (all 1), evaluation mode."""
    x = torch.linspace(-1, 1, 2 * 64).reshape(2, 64, 1)
    return model.eval()(x, torch.ones(2, 64, model.noise_dim))


def test_every_option_of_every_cell_and_noise_form_is_covered():
    for cell, own in config_module.CELL_KEYS.items():
        expected = {f"model.{key}" for key in (*own, *GENERAL_KEYS)}
        assert {key for c, key in OPTIONS if c == cell} == expected, cell
    noise_keys = {f.name for f in dataclasses.fields(config_module.NoiseConfig)} - {"form"}
    for form in config_module.NOISE_FORMS:
        expected = noise_keys - (set(NOT_OF_THE_REFERENCE_FORM) if form == "reference" else set())
        assert {key for f, key in NOISE_OPTIONS if f == form} == {f"noise.{k}" for k in expected}
    model_keys = {f.name for f in dataclasses.fields(config_module.ModelConfig)} - {"cell"}
    assert {key.removeprefix("model.") for _, key in OPTIONS} == model_keys


@pytest.mark.parametrize("cell, key", list(OPTIONS), ids=lambda v: str(v))
def test_a_cell_option_reaches_the_built_model(cell, key):
    """Set through a config at a non-default value, the option is in the built model and
    (but for the recurrence, which changes rounding only) changes what it computes."""
    value, shows = OPTIONS[(cell, key)]
    section, name = key.split(".")
    default = _built(cell, {})
    model = _built(cell, {section: {name: value}})
    assert shows(model, default), f"{key} = {value!r} did not reach the {cell} cell"
    if name not in ("recurrence", "hidden_dim"):
        assert not torch.equal(_signature(model), _signature(default)), key


@pytest.mark.parametrize("form, key", list(NOISE_OPTIONS), ids=lambda v: str(v))
def test_a_noise_option_reaches_the_built_model(form, key):
    value, expected = NOISE_OPTIONS[(form, key)]
    name = key.split(".")[1]
    default = _built("lipschitz", {"noise": {"form": form}})
    model = _built("lipschitz", {"noise": {"form": form, name: value}})
    assert model.noise == expected
    if name != "brownian":  # another noise width
        assert not torch.equal(_signature(model), _signature(default)), key
