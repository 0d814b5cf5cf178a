"""Training: reproducibility, exact resumption, divergence, checkpoints and config errors."""

import dataclasses
import json

import pytest
import torch

import nrnn.train as training
from nrnn import Noise
from nrnn import config as config_module
from nrnn.cli import main as cli_main
from nrnn.train import CheckpointError, TrainingDivergedError, load_model, train


def small_config(**train_overrides) -> config_module.RunConfig:
    """A run of a few seconds: digits row by row, 16 hidden units, noise on."""
    config = config_module.default_config("digits-rows")
    config.model.hidden_dim = 16
    config.noise = Noise(0.1, 0.1)
    config.data.batch_size = 128
    config.train.epochs = 2
    for key, value in train_overrides.items():
        setattr(config.train, key, value)
    return config


def parameters(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.state_dict().items()}


def assert_same_parameters(first, second):
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_same_seed_same_run_and_different_seed_differs(tmp_path):
    one = train(small_config(), tmp_path / "a", progress=False)
    two = train(small_config(), tmp_path / "b", progress=False)
    other = train(small_config(seed=1), tmp_path / "c", progress=False)
    assert_same_parameters(parameters(one.model), parameters(two.model))
    assert not torch.equal(one.model.M_W, other.model.M_W)
    assert [m["test_accuracy"] for m in one.metrics] == [m["test_accuracy"] for m in two.metrics]


def test_resume_continues_exactly(tmp_path):
    straight = train(small_config(epochs=3), tmp_path / "straight", progress=False)

    class Interrupt(Exception):
        pass

    def interrupt(epoch, batch, loss):
        if epoch == 2 and batch == 3:
            raise Interrupt

    run_dir = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        train(small_config(epochs=3), run_dir, progress=False, on_batch=interrupt)
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = train(small_config(epochs=3), run_dir, resume=True, progress=False)
    assert_same_parameters(parameters(straight.model), parameters(resumed.model))
    assert [m["epoch"] for m in resumed.metrics] == [1, 2, 3]
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_learning_rate_follows_the_step_schedule(tmp_path):
    """lr = lr₀ γ^⌊(epoch − 1)/every⌋: with every = 2 and γ = 0.5 the five epochs train at
    lr₀ × (1, 1, 1/2, 1/2, 1/4)."""
    config = small_config(epochs=5)
    config.data.train_subset, config.data.eval_subset = 128, 32
    config.optim.lr_decay_every, config.optim.lr_decay = 2, 0.5
    result = train(config, tmp_path / "run", progress=False)
    rates = [record["lr"] / config.optim.lr for record in result.metrics]
    assert rates == pytest.approx([1, 1, 0.5, 0.5, 0.25], rel=1e-12)


def test_finished_run_extends_with_more_epochs(tmp_path):
    straight = train(small_config(epochs=3), tmp_path / "straight", progress=False)
    train(small_config(epochs=2), tmp_path / "extended", progress=False)
    extended = train(small_config(epochs=3), tmp_path / "extended", resume=True, progress=False)
    assert_same_parameters(parameters(straight.model), parameters(extended.model))


def test_existing_checkpoint_without_resume_is_refused(tmp_path):
    train(small_config(epochs=1), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="already holds a checkpoint"):
        train(small_config(epochs=1), tmp_path, progress=False)


def test_divergence_stops_with_epoch_and_batch_and_keeps_checkpoint(tmp_path, monkeypatch):
    original = training.objective_loss
    calls = {"count": 0}

    def poisoned(model, x, y, objective, **options):
        loss = original(model, x, y, objective, **options)
        calls["count"] += 1
        return loss * float("nan") if calls["count"] == 12 else loss  # 10 batches per epoch

    monkeypatch.setattr(training.objective, "objective_loss", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"epoch 2, batch 2 of 10;.*epoch 1"):
        train(small_config(epochs=3), tmp_path, progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_resume_without_checkpoint_is_refused_unless_asked_to_start(tmp_path, capsys):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(small_config(epochs=1), tmp_path / "typo", resume=True, progress=False)
    assert not (tmp_path / "typo").exists()
    started = train(
        small_config(epochs=1), tmp_path / "new", resume=True, start_if_missing=True, progress=False
    )
    assert [m["epoch"] for m in started.metrics] == [1]
    assert (
        cli_main(["train", "--dataset", "digits-rows", "--out", str(tmp_path / "x"), "--resume"])
        == 2  # a usage error (nrnn.exitcodes.USAGE)
    )
    assert "nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_objective_growth_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    original = training.objective_loss
    calls = {"count": 0}

    def exploding(model, x, y, objective, **options):
        calls["count"] += 1
        loss = original(model, x, y, objective, **options)
        return loss * 1e4 if calls["count"] > 20 else loss  # epoch 3 onward (10 batches each)

    monkeypatch.setattr(training.objective, "objective_loss", exploding)
    config = small_config(epochs=4)
    with pytest.raises(TrainingDivergedError, match=r"diverged at epoch 3: .* 100 × its best"):
        train(config, tmp_path, progress=False)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 2
    config.train.divergence_factor = 0.0  # the check can be turned off
    calls["count"] = 0
    result = train(config, tmp_path / "unchecked", progress=False)
    assert [m["epoch"] for m in result.metrics] == [1, 2, 3, 4]


def test_events_record_starts_and_resumptions(tmp_path):
    train(small_config(epochs=1), tmp_path, progress=False)
    train(small_config(epochs=2), tmp_path, resume=True, progress=False)
    events = training.read_events(tmp_path)
    assert [(e["event"], e["from_epoch"]) for e in events] == [("start", 0), ("resume", 1)]


def test_subsets_and_the_authors_initialisation(tmp_path):
    config = small_config(epochs=1)
    config.data.train_subset = 300
    config.data.eval_subset = 50
    config.model.cell = dataclasses.replace(config.model.cell, init_divisor="hidden")
    subset = training.load_split(config, "train", 300)
    assert len(subset) == 300
    whole = training.load_split(config, "train")
    chosen = training.fixed_subset_indices(len(whole), 300)
    assert torch.equal(subset.tensors[0], whole.tensors[0][chosen])
    assert torch.equal(chosen, training.fixed_subset_indices(len(whole), 300))  # fixed
    result = train(config, tmp_path, progress=False)
    assert result.metrics[0]["epoch"] == 1  # 3 batches of 128 from 300 sequences


def test_auto_device_is_cpu_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present; auto picks it")
    assert training.resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="no CUDA device"):
        training.resolve_device("cuda")


def test_corrupt_checkpoint(tmp_path):
    train(small_config(epochs=1), tmp_path, progress=False)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        train(small_config(epochs=2), tmp_path, resume=True, progress=False)


def test_mismatched_checkpoint_names_the_differing_keys(tmp_path):
    train(small_config(epochs=1), tmp_path, progress=False)
    other = small_config(epochs=2)
    other.model.hidden_dim = 8
    with pytest.raises(CheckpointError, match="model.hidden_dim: checkpoint 16 vs config 8"):
        train(other, tmp_path, resume=True, progress=False)


def test_load_model_restores_the_trained_model(tmp_path):
    result = train(small_config(epochs=1), tmp_path, progress=False)
    model, config = load_model(tmp_path)
    assert config.to_dict() == small_config(epochs=1).to_dict()
    x = torch.randn(3, 8, 8)
    torch.testing.assert_close(model(x), result.model(x))


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.objective='sgd'", "train.objective must be one of"),
        ("noise.form='ito'", "noise.form must be one of"),
        ("noise.kind='ito'", "noise.kind must be one of"),
        ("data.batch_size=0", "data.batch_size must be an integer >= 1"),
        ("optim.lr=-1", "optim.lr must be a finite number > 0"),
        ("optim.lr=inf", "optim.lr must be a finite number > 0, got inf"),
        ("optim.lr=nan", "optim.lr must be a finite number > 0, got nan"),
        ("optim.lr_decay=-1", r"optim.lr_decay must be in \(0, 1\]"),
        ("optim.lr_decay=0", r"optim.lr_decay must be in \(0, 1\]"),
        ("optim.lr_decay=2", r"optim.lr_decay must be in \(0, 1\]"),
        ("optim.weight_decay=-0.1", "optim.weight_decay must be a finite number >= 0"),
        ("optim.grad_clip=inf", "optim.grad_clip must be a finite number >= 0"),
        ("model.hidden_dim=-4", "model.hidden_dim must be an integer >= 1"),
        ("model.hidden_dim=0", "model.hidden_dim must be an integer >= 1"),
        ("model.dt=0", "model.dt must be a finite number > 0"),
        ("model.beta=1.5", r"model.beta must be in \[0, 1\]"),
        ("model.cell.beta=1.5", r"model.cell.beta must be in \[0, 1\]"),
        ("noise.additive=-0.1", "noise.additive must be a finite number >= 0"),
        ("noise.brownian='full'", "noise.brownian must be one of"),
        ("train.seed=-1", "train.seed must be an integer >= 0"),
        ("train.epochs=0", "train.epochs must be an integer >= 1"),
        ("data.recipe='paper'", "data.recipe must be one of"),
        ("data.recipe='authors'", "recipe='authors' exists for mnist-pixels, pmnist-pixels only"),
        ("model.init_divisor='d'", "model.init_divisor must be one of"),
        ("model.cell.init_divisor='d'", "model.cell.init_divisor must be one of"),
        ("train.device='tpu'", "train.device must be cpu, cuda, cuda:N or auto"),
        ("train.divergence_factor=0.5", "train.divergence_factor must be 0"),
    ],
)
def test_bad_config_values(override, message):
    """Refused when read (a cell option, a noise level) or when validated (the rest)."""
    with pytest.raises(ValueError, match=message):
        config_module.from_dict(config_module.parse_override(override), small_config()).validate()


@pytest.mark.parametrize(
    "override,message",
    [
        ("modell.hidden_dim=3", r"unknown config section \[modell\]"),
        ("model.hiden_dim=3", "unknown config key model.hiden_dim"),
        ("model.hidden_dim=3.5", "model.hidden_dim must be of type int"),
        ("model.hidden_dim", "override must look like section.key=value"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ValueError, match=message):
        config_module.from_dict(config_module.parse_override(override), small_config())


def test_cli_train_with_toml_and_overrides(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text(
        '[data]\nname = "digits-rows"\nbatch_size = 128\n[model]\nhidden_dim = 8\n'
        "[train]\nepochs = 1\n"
    )
    code = cli_main(
        [
            "train",
            "--config",
            str(path),
            "--set",
            "noise.additive=0.2",
            "--seed",
            "3",
            "--out",
            str(tmp_path / "run"),
            "--quiet",
        ]
    )
    assert code == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["noise"]["additive"] == 0.2 and saved["train"]["seed"] == 3
    assert saved["model"]["hidden_dim"] == 8
    assert json.loads(capsys.readouterr().out)["epoch"] == 1


def test_cli_reports_bad_input_clearly(tmp_path, capsys):
    assert cli_main(["train", "--dataset", "mnist_rows", "--out", str(tmp_path)]) == 2
    assert "Did you mean 'mnist-rows'" in capsys.readouterr().err
    assert cli_main(["train", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
