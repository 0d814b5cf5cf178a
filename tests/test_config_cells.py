"""Config of the cells and noise forms (tagged unions): run hashes unchanged, every option
of every registered cell and noise form reaches the built model, the flat layout of older
configs still loads and is checked per cell, every shipped cell config builds its cell."""

import dataclasses
from pathlib import Path

import pytest
import torch

from nrnn import Noise, NoisyRNN, ReleasedNoise
from nrnn import config as config_module
from nrnn.cells import CELLS, CoRNNCell, GRUODECell, LipschitzCell, LipschitzOptions
from nrnn.noise import NOISE_KINDS
from nrnn.train import build_model

CONFIGS = Path(config_module.__file__).parent / "configs"
CELL_CONFIGS = sorted((CONFIGS / "cells").glob("*.toml"))
BUILT_IN_CELLS = ("lipschitz", "cornn", "gru")
BUILT_IN_NOISES = ("paper", "released")


def test_runs_cached_before_the_cells_keep_their_hash():
    """Recorded with the code before model.cell existed."""
    assert config_module.default_config("digits").identity_hash() == "04aa65dbb9ec"
    assert config_module.default_config("ecg5000").identity_hash() == "5f80f788c561"
    assert config_module.RunConfig().identity_hash() == "4f6dd5239648"


def test_a_cell_key_changes_the_hash():
    base = config_module.default_config("digits")
    other = config_module.from_dict(
        {"model": {"cell": {"kind": "gru"}}}, config_module.default_config("digits")
    )
    assert other.validate().identity_hash() != base.identity_hash()


@pytest.mark.parametrize("path", CELL_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_cell_config_builds_its_cell(path):
    config = config_module.load_toml(path).validate()
    torch.manual_seed(0)
    model = build_model(config)
    expected = {"lipschitz": LipschitzCell, "cornn": CoRNNCell, "gru": GRUODECell}
    assert type(model.cell) is expected[path.stem] and config.model.cell_kind == path.stem
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
    "model, message",
    [
        ({"cell": {"kind": "lstm"}}, r"model.cell.kind must be one of \('lipschitz'"),
        ({"cell": {"activation": "relu"}}, "model.cell.activation must be one of"),
        ({"cell": {"beta": 1.5}}, r"model.cell.beta must be in \[0, 1\]"),
        ({"cell": {"gamma": 2.0}}, r"unknown config key model.cell.gamma; expected one of \[kind"),
        ({"cell": {"init_std": "big"}}, "model.cell.init_std must be of type float"),
    ],
)
def test_cell_options_are_checked(model, message):
    with pytest.raises(ValueError, match=message):
        config_module.from_dict({"model": model}, config_module.default_config("digits"))


@pytest.mark.parametrize(
    "flat, message",
    [
        ({"cell": "lstm"}, "model.cell must be one of"),
        ({"activation": "relu"}, "model.activation must be one of"),
        ({"beta": 1.5}, r"model.beta must be in \[0, 1\]"),
        (
            {"cell": "gru", "antisymmetric": True},
            "model.antisymmetric configures the lipschitz cell",
        ),
        (
            {"cell": "gru", "activation": "arctan"},
            "model.activation configures the lipschitz, cornn",
        ),
        ({"oscillator_gamma": 1.0}, "model.oscillator_gamma configures the cornn cell"),
        ({"cell": {"kind": "gru"}, "beta": 0.5}, "with a \\[model.cell\\] table"),
    ],
)
def test_the_flat_layout_is_checked_per_cell(flat, message):
    with pytest.raises(ValueError, match=message):
        config_module.from_dict({"model": flat}, config_module.default_config("digits"))


def test_the_flat_layout_gives_the_tagged_config():
    """An older config (flat keys, the released form called "reference") and its tagged
    spelling are one config, with one hash."""
    flat = config_module.from_dict(
        {
            "model": {"cell": "cornn", "oscillator_gamma": 2.5, "init_std": 0.3},
            "noise": {"form": "reference", "additive": 0.02},
        }
    )
    tagged = config_module.from_dict(
        {
            "model": {"cell": {"kind": "cornn", "gamma": 2.5, "init_std": 0.3}},
            "noise": {"kind": "released", "additive": 0.02},
        }
    )
    assert flat.to_dict() == tagged.to_dict() and flat.identity_hash() == tagged.identity_hash()
    assert tagged.noise == ReleasedNoise(0.02, 0.0)
    assert config_module.from_dict(tagged.to_dict()).to_dict() == tagged.to_dict()
    canonical = tagged.canonical_dict()
    assert canonical["noise"] == {
        "form": "reference",
        "additive": 0.02,
        "multiplicative": 0.0,
        "brownian": "diagonal",
    }
    assert canonical["model"]["cell"] == "cornn" and canonical["model"]["oscillator_gamma"] == 2.5
    assert canonical["model"]["beta"] == 0.75  # the Lipschitz keys at their defaults


def test_a_switch_of_the_flat_cell_keeps_the_shared_keys():
    """``--set model.cell=cornn`` on a dataset default (init_std 0.5): the flat layout shared
    init_std between the cells, and keeps doing so (experiments' keys depend on it)."""
    config = config_module.from_dict(
        config_module.parse_override("model.cell=cornn"), config_module.default_config("digits")
    )
    assert config.model.cell_kind == "cornn" and config.model.cell.init_std == 0.5


def test_a_tagged_cell_table_changes_the_cell_it_holds_or_makes_a_new_one():
    base = config_module.default_config("digits")  # Lipschitz, init_std 0.5
    changed = config_module.from_dict({"model": {"cell": {"beta": 0.5}}}, base)
    assert changed.model.cell == LipschitzOptions(beta=0.5, init_std=0.5)
    fresh = config_module.from_dict({"model": {"cell": {"kind": "lipschitz"}}}, changed)
    assert fresh.model.cell == LipschitzOptions()
    nested = config_module.parse_override("model.cell.gamma=2")
    assert nested == {"model": {"cell": {"gamma": 2}}}


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


GENERAL = {
    "hidden_dim": (5, _attribute("hidden_dim", 5)),
    "dt": (0.05, _attribute("dt", 0.05)),
    "recurrence": ("reference", _attribute("recurrence", "reference")),
}
OPTIONS = {
    # (cell, "model..." key): (non-default value, what the built model must show)
    **{(cell, f"model.{key}"): shown for cell in BUILT_IN_CELLS for key, shown in GENERAL.items()},
    **{(cell, "model.cell.init_std"): (0.25, _init_scale(0.5)) for cell in BUILT_IN_CELLS},
    ("lipschitz", "model.cell.beta"): (0.3, _attribute("cell.beta", 0.3)),
    ("lipschitz", "model.cell.gamma_a"): (0.2, _attribute("cell.gamma_a", 0.2)),
    ("lipschitz", "model.cell.gamma_w"): (0.05, _attribute("cell.gamma_w", 0.05)),
    ("lipschitz", "model.cell.antisymmetric"): (
        True,
        lambda model, default: model.cell.antisymmetric and model.cell.M_A is None,
    ),
    ("lipschitz", "model.cell.init_divisor"): ("hidden", _init_scale(64**-0.5)),
    ("lipschitz", "model.cell.activation"): (
        "arctan",
        _attribute("cell.activation.name", "arctan"),
    ),
    ("cornn", "model.cell.gamma"): (1.5, _attribute("cell.gamma", 1.5)),
    ("cornn", "model.cell.epsilon"): (2.0, _attribute("cell.epsilon", 2.0)),
    ("cornn", "model.cell.activation"): ("sigmoid", _attribute("cell.activation.name", "sigmoid")),
}
NOISE_OPTIONS = {
    # (noise form, "noise.key"): (non-default value, what the built model's noise must be)
    ("paper", "noise.additive"): (0.3, Noise(0.3, 0.05, "diagonal")),
    ("paper", "noise.multiplicative"): (0.2, Noise(0.05, 0.2, "diagonal")),
    ("paper", "noise.brownian"): ("scalar", Noise(0.05, 0.05, "scalar")),
    ("released", "noise.additive"): (0.3, ReleasedNoise(0.3, 0.05)),
    ("released", "noise.multiplicative"): (0.2, ReleasedNoise(0.05, 0.2)),
}
"""On digits' shipped config: init_std 0.5, σ₁ = σ₂ = 0.05, one Brownian motion per unit."""


def _built(cell: str, overrides: dict) -> NoisyRNN:
    config = config_module.default_config("digits")
    config = config_module.from_dict({"model": {"cell": {"kind": cell, "init_std": 0.5}}}, config)
    config = config_module.from_dict(overrides, config).validate()
    torch.manual_seed(7)
    return build_model(config)


def _signature(model: NoisyRNN) -> torch.Tensor:
    """The logits of a fixed input under fixed noise variables (all 1), evaluation mode."""
    x = torch.linspace(-1, 1, 2 * 64).reshape(2, 64, 1)
    return model.eval()(x, torch.ones(2, 64, model.noise_dim))


def _nested(key: str, value):
    section, *path = key.split(".")
    for part in reversed(path):
        value = {part: value}
    return {section: value}


def test_every_option_of_every_cell_and_noise_form_is_covered():
    assert set(BUILT_IN_CELLS) <= set(CELLS.names())
    for cell in BUILT_IN_CELLS:
        options = {f.name for f in dataclasses.fields(CELLS.get(cell).options)}
        expected = {f"model.cell.{key}" for key in options} | {f"model.{key}" for key in GENERAL}
        assert {key for c, key in OPTIONS if c == cell} == expected, cell
    for form in BUILT_IN_NOISES:
        fields = {f.name for f in dataclasses.fields(NOISE_KINDS.get(form).noise_type)}
        assert {key for f, key in NOISE_OPTIONS if f == form} == {f"noise.{k}" for k in fields}
    model_keys = {f.name for f in dataclasses.fields(config_module.ModelConfig)} - {"cell"}
    assert set(GENERAL) == model_keys


@pytest.mark.parametrize("cell, key", list(OPTIONS), ids=lambda v: str(v))
def test_a_cell_option_reaches_the_built_model(cell, key):
    """Set through a config at a non-default value, the option is in the built model and
    (but for the recurrence, which changes rounding only) changes what it computes."""
    value, shows = OPTIONS[(cell, key)]
    default = _built(cell, {})
    model = _built(cell, _nested(key, value))
    assert shows(model, default), f"{key} = {value!r} did not reach the {cell} cell"
    if key.split(".")[-1] not in ("recurrence", "hidden_dim"):
        assert not torch.equal(_signature(model), _signature(default)), key


@pytest.mark.parametrize("form, key", list(NOISE_OPTIONS), ids=lambda v: str(v))
def test_a_noise_option_reaches_the_built_model(form, key):
    value, expected = NOISE_OPTIONS[(form, key)]
    name = key.split(".")[1]
    levels = {"additive": 0.05, "multiplicative": 0.05}
    default = _built("lipschitz", {"noise": {"kind": form, **levels}})
    model = _built("lipschitz", {"noise": {"kind": form, **levels, name: value}})
    assert model.noise == expected
    if name != "brownian":  # another noise width
        assert not torch.equal(_signature(model), _signature(default)), key
