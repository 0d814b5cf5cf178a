"""Config keys for the cells: run hashes unchanged, per-cell keys checked, every shipped
cell config builds its cell."""

from pathlib import Path

import pytest
import torch

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
    from nrnn import Noise, NoisyRNN

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
