"""The keys of stored runs never change: configs written by older code (the flat layout)
load and give the keys their stores hold them under.

``tests/data/store_configs/<dataset>/<key>/config.json`` are copies of ``config.json`` files
of trained stores (the quick-profile store, the pixel-MNIST medium store) and configs of the
other built-in cells and noise options keyed by the code before the tagged unions (issue
20); each directory is named by the run's store key (``nrnn.store.RunStore.key``), and
``identity_hashes.json`` holds the run identity of each (``RunConfig.identity_hash``, the
run directory of ``nrnn train``)."""

import json
from pathlib import Path

import pytest

from nrnn import canonical
from nrnn.config import RunConfig, from_dict
from nrnn.store import CODE_VERSION, RunStore

DATA = Path(__file__).parent / "data"
STORED = DATA / "store_configs"
CONFIGS = sorted(STORED.glob("*/*/config.json"))
IDENTITIES = json.loads((STORED / "identity_hashes.json").read_text())


def test_the_fixtures_cover_the_built_in_cells_and_noise_forms():
    contents = [json.loads(path.read_text()) for path in CONFIGS]
    assert len(contents) == len(IDENTITIES) >= 10
    assert {c["model"].get("cell", "lipschitz") for c in contents} >= {"lipschitz", "cornn", "gru"}
    assert {c["noise"]["form"] for c in contents} == {"paper", "reference"}
    assert {c["noise"]["brownian"] for c in contents} == {"diagonal", "scalar"}
    assert {c["train"]["objective"] for c in contents} == {"noise", "clean", "explicit"}
    assert {c["data"]["recipe"] for c in contents} == {"default", "authors"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_a_stored_config_keeps_its_store_key_and_identity(path, tmp_path):
    config = from_dict(json.loads(path.read_text()))
    key = path.parent.name
    assert CODE_VERSION == 4
    assert RunStore(tmp_path).key(config) == key
    assert config.identity_hash() == IDENTITIES[f"{path.parent.parent.name}/{key}"]
    # the tagged layout the config is written in today reads back to the same keys
    again = from_dict(config.to_dict())
    assert RunStore(tmp_path).key(again) == key and again.to_dict() == config.to_dict()


def test_the_legacy_run_keeps_the_identity_its_checkpoint_holds():
    import torch

    state = torch.load(DATA / "legacy_run" / "checkpoint.pt", weights_only=True)
    config = from_dict(json.loads((DATA / "legacy_run" / "config.json").read_text()))
    assert config.identity_hash() == state["config_hash"]


def test_a_changed_canonicalisation_fails_here(monkeypatch, tmp_path):
    """Negative control: leaving a default key in (as if ADDED_KEYS lost one) changes keys."""
    path = CONFIGS[0]
    config = from_dict(json.loads(path.read_text()))
    monkeypatch.setitem(canonical.ADDED_KEYS, "model", ("cell",))
    assert RunStore(tmp_path).key(config) != path.parent.name


def test_a_cell_without_old_keys_has_a_layout_no_old_config_can_have():
    """A cell registered later is canonicalised as ``cell = {kind, options}``, which no flat
    config holds (its ``cell`` was a name), so its keys never meet a stored run's."""
    config = RunConfig()
    flat = canonical.canonical_dict(config)
    assert "cell" not in flat["model"] and flat["model"]["beta"] == 0.75
    assert flat["noise"] == canonical.LEGACY_NOISE
