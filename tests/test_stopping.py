"""Training until it stops improving: the stopping rule on a table of histories with known
decisions, a real run that drops its learning rate and stops, exact resumption across the
plateau, the store's notion of a finished run, and the config's checks."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from nrnn import config as config_module
from nrnn import data
from nrnn.cost import Timings
from nrnn.harness import RunSpec, plan, with_threads
from nrnn.store import RunStore
from nrnn.train import PLATEAU_KEY, is_complete, load_checkpoint, plateau_decision, train


def history(*accuracies, events=()):
    """Metrics records of epochs 1.. with these validation accuracies; ``events`` are
    (epoch, "decay" | "stop") already decided."""
    marks = dict(events)
    return [
        {"epoch": e, "valid_accuracy": a} | ({PLATEAU_KEY: marks[e]} if e in marks else {})
        for e, a in enumerate(accuracies, start=1)
    ]


RULE = SimpleNamespace(stop_window=3, stop_min_gain=0.01, plateau_decays=1)

# (history, rule, decision after its last epoch)
DECISIONS = [
    # too few epochs for a window and something before it
    (history(0.5, 0.5, 0.5), RULE, None),
    # the last 3 epochs gain 0.005 < 0.01 over the best before them: a plateau, first decay
    (history(0.60, 0.70, 0.70, 0.705, 0.70), RULE, "decay"),
    # exactly the minimum gain is not a plateau (binary fractions: no rounding)
    (
        history(0.5, 0.75, 0.75, 1.0, 0.75),
        SimpleNamespace(**vars(RULE) | {"stop_min_gain": 0.25}),
        None,
    ),
    # a drop in the recent window is a plateau as well
    (history(0.9, 0.8, 0.7, 0.6), RULE, "decay"),
    # still improving
    (history(0.1, 0.2, 0.3, 0.4, 0.5), RULE, None),
    # after a decay at epoch 4, the next decision needs 3 more epochs
    (history(0.6, 0.7, 0.7, 0.7, 0.7, 0.7, events=[(4, "decay")]), RULE, None),
    (history(0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, events=[(4, "decay")]), RULE, "stop"),
    # ... and the window after a decay still compares with the best before the decay
    (history(0.6, 0.9, 0.7, 0.7, 0.8, 0.85, 0.89, events=[(4, "decay")]), RULE, "stop"),
    (history(0.6, 0.9, 0.7, 0.7, 0.8, 0.85, 0.95, events=[(4, "decay")]), RULE, None),
    # no decays allowed: the first plateau stops
    (history(0.7, 0.7, 0.7, 0.7), SimpleNamespace(**vars(RULE) | {"plateau_decays": 0}), "stop"),
    # the rule is off
    (history(0.7, 0.7, 0.7, 0.7), SimpleNamespace(**vars(RULE) | {"stop_window": 0}), None),
]


@pytest.mark.parametrize("records, rule, expected", DECISIONS)
def test_plateau_decision(records, rule, expected):
    assert plateau_decision(records, rule) == expected


def _config(epochs: int, window: int = 2, **train) -> config_module.RunConfig:
    config = config_module.default_config("digits")
    config.model.hidden_dim = 6
    config.data.train_subset, config.data.eval_subset = 96, 50
    config.data.batch_size = 32
    config.noise = dataclasses.replace(config.noise, additive=0.0, multiplicative=0.0)
    config.optim.lr_decay_every = 0
    config.train.epochs = epochs
    config.train.stop_window = window
    config.train.stop_min_gain = 0.05
    config.train.plateau_decays = 1
    for key, value in train.items():
        setattr(config.train, key, value)
    return config.validate()


def _numbers(metrics):
    return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]


def test_a_run_drops_its_learning_rate_at_a_plateau_then_stops(tmp_path):
    config = _config(epochs=60)
    result = train(config, tmp_path / "run", progress=False)
    events = [(m["epoch"], m[PLATEAU_KEY]) for m in result.metrics if PLATEAU_KEY in m]
    assert [kind for _, kind in events] == ["decay", "stop"]
    (decayed, _), (stopped, _) = events
    assert result.metrics[-1]["epoch"] == stopped < 60  # stopped before the cap
    lrs = [m["lr"] for m in result.metrics]
    assert set(lrs[:decayed]) == {config.optim.lr}
    assert lrs[decayed:] == pytest.approx(
        [config.optim.lr * config.optim.lr_decay] * len(lrs[decayed:])
    )
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["stopped"] and state["epoch"] == stopped
    assert is_complete(tmp_path / "run", config)
    # resuming a stopped run trains nothing more, whatever the cap
    again = train(config, tmp_path / "run", resume=True, progress=False)
    assert _numbers(again.metrics) == _numbers(result.metrics)
    # the negative control: the same run without the rule trains to the cap
    capped = train(_config(epochs=stopped + 2, window=0), tmp_path / "capped", progress=False)
    assert len(capped.metrics) == stopped + 2
    assert not load_checkpoint(tmp_path / "capped" / "checkpoint.pt")["stopped"]


def test_a_run_interrupted_after_its_decay_resumes_exactly(tmp_path):
    config = _config(epochs=60)
    whole = train(config, tmp_path / "whole", progress=False)
    decayed = next(m["epoch"] for m in whole.metrics if m.get(PLATEAU_KEY) == "decay")

    def interrupt(epoch, batch, loss):
        if epoch == decayed + 1 and batch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "part", progress=False, on_batch=interrupt)
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["epoch"] == decayed
    resumed = train(config, tmp_path / "part", resume=True, progress=False)
    assert _numbers(resumed.metrics) == _numbers(whole.metrics)
    for a, b in zip(resumed.model.parameters(), whole.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_store_and_the_plan_count_a_stopped_run_as_finished(tmp_path):
    """A run the rule stopped before its cap is stored: ``--plan`` says so and estimates
    nothing more for it (it used to show 'partial k/cap' and the cost of the epochs left).
    Control: the same run cut short at that epoch without the rule is partial."""
    spec = with_threads(RunSpec("rule", _config(epochs=60)), 1)  # as the plan keys it
    config = spec.config
    store = RunStore(tmp_path)
    assert not store.is_finished(config)
    train(config, store.run_dir(config), progress=False)
    assert store.is_finished(config)
    stopped = store.finished_epochs(config)
    assert stopped < config.train.epochs
    unfinished = with_threads(RunSpec("no rule", _config(epochs=60, window=0)), 1)
    cut_short = _config(epochs=stopped, window=0)
    train(cut_short, store.run_dir(unfinished.config), progress=False)
    rows = plan([spec, unfinished], store, timings=Timings(tmp_path / "timings.json"))
    assert [row.description for row in rows] == ["stored", f"partial {stopped}/60"]
    assert rows[0].remaining_seconds == 0 < rows[1].remaining_seconds


def test_added_keys_at_their_defaults_keep_old_hashes():
    config = config_module.default_config("digits")
    before = config.identity_hash()
    config.train.stop_window = 0  # the default: no change
    assert config.identity_hash() == before
    config.train.stop_window = 5
    assert config.identity_hash() != before


def test_config_checks_of_the_stopping_rule(monkeypatch):
    for key, value, message in (
        ("stop_window", -1, "train.stop_window must be an integer >= 0"),
        ("plateau_decays", -2, "train.plateau_decays must be an integer >= 0"),
        ("stop_min_gain", 1.5, "train.stop_min_gain"),
    ):
        config = config_module.default_config("digits")
        setattr(config.train, key, value)
        with pytest.raises(ValueError, match=message):
            config.validate()
    both = config_module.default_config("digits")  # ships lr_decay_every = 60
    both.train.stop_window, both.train.plateau_decays = 5, 1
    with pytest.raises(ValueError, match="two learning-rate schedules"):
        both.validate()
    both.optim.lr_decay_every = 0
    both.validate()
    no_validation = dataclasses.replace(data.info("digits"), splits=("train", "test"))
    monkeypatch.setattr(data, "info", lambda name, recipe="default": no_validation)
    with pytest.raises(ValueError, match="needs a validation split"):
        both.validate()
