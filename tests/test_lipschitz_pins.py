"""The restructure keeps the Lipschitz model's results bitwise: every pin of
``tests/lipschitz_pins.py`` equals the digest recorded with the code before it, and a
checkpoint written by that code loads and resumes exactly."""

import json

import pytest
import torch

from nrnn import NoisyRNN

import lipschitz_pins as pins_module

RECORDED = json.loads(pins_module.PINS.read_text())

same_build = pytest.mark.skipif(
    RECORDED["environment"] != pins_module.environment(),
    reason=f"pins recorded on {RECORDED['environment']}, bits differ on another build or CPU",
)


@same_build
def test_every_result_of_the_lipschitz_model_is_unchanged():
    current = pins_module.compute()
    assert current.keys() == RECORDED["pins"].keys()
    changed = sorted(name for name in current if current[name] != RECORDED["pins"][name])
    assert not changed, f"results changed: {changed}"


def test_state_dicts_written_by_the_old_code_load_with_their_keys():
    """Keys M_A, M_W, input.*, readout.*, step_size load into the default model."""
    saved = torch.load(pins_module.LEGACY_STATE_DICTS, weights_only=True)
    models = pins_module.legacy_state_dicts()
    x, _ = pins_module._batch(torch.float32)
    for name, state in saved.items():
        assert {"M_W", "input.weight", "readout.weight"} <= state.keys()
        model = models[name]
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.zero_()
        model.load_state_dict(state)
        fresh = pins_module.legacy_state_dicts()[name]
        torch.testing.assert_close(model.eval()(x), fresh.eval()(x), rtol=0, atol=0)


def test_a_bad_legacy_state_dict_still_fails_loudly():
    saved = torch.load(pins_module.LEGACY_STATE_DICTS, weights_only=True)["diagonal"]
    del saved["M_W"]
    with pytest.raises(RuntimeError, match="M_W"):
        NoisyRNN(2, 4, 3).load_state_dict(saved)
