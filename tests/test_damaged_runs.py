"""A damaged run directory is detected and named, then repaired by training it again: a
truncated checkpoint, a bit flipped inside a tensor (torch.load accepts it; the checkpoint's
digest does not), a garbage line in metrics.jsonl. Checkpoints of identical runs are
byte-identical; every file is flushed to the disk before its rename; ``nrnn runs list`` and
``nrnn runs prune`` show and remove what a store holds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import nrnn.files as files
import nrnn.train as training
from nrnn import exitcodes
from nrnn.backends import LocalBackend
from nrnn.cli import main
from nrnn.exitcodes import InfrastructureError
from nrnn.figures import runs
from nrnn.harness import EvaluationTask, ensure_runs, with_threads
from nrnn.lease import Lease
from nrnn.store import RunStore

ACCURACY = EvaluationTask(subset=32)


def tiny_spec(epochs: int = 2, seed: int = 0):
    size = runs.Size(hidden_dim=8, epochs=epochs, seeds=(seed,), train_subset=64, eval_subset=32)
    (spec,) = runs.grid(["digits-rows"], ("lipschitz",), size)
    return with_threads(spec, 1)


def flip_a_bit_of_a_weight(checkpoint: Path) -> None:
    """Flip one bit inside the bytes of the recurrent weight M_W (a value changes; the file
    stays a valid archive)."""
    weight = torch.load(checkpoint, weights_only=True)["model"]["cell.M_W"]
    data = bytearray(checkpoint.read_bytes())
    at = data.find(weight.numpy().tobytes())
    assert at > 0
    data[at + 17] ^= 0x40
    checkpoint.write_bytes(bytes(data))


def truncate(checkpoint: Path) -> None:
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])


def garbage_metrics_line(checkpoint: Path) -> None:
    metrics = checkpoint.parent / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    lines[1] = "\x00\x00garbage"
    metrics.write_text("\n".join(lines) + "\n")


DAMAGE = {
    "truncated checkpoint": (truncate, "checkpoint.pt is corrupt or unreadable"),
    "bit flip": (flip_a_bit_of_a_weight, "checkpoint.pt is damaged: its content does not match"),
    "garbage metrics line": (garbage_metrics_line, "metrics.jsonl line 2 is damaged"),
}


def test_a_bit_flip_passes_torch_load_but_not_the_digest(tmp_path):
    training.train(tiny_spec().config, tmp_path, progress=False)
    path = tmp_path / "checkpoint.pt"
    training.load_checkpoint(path)  # control: the intact file loads
    flip_a_bit_of_a_weight(path)
    torch.load(path, weights_only=True)  # torch itself does not notice
    with pytest.raises(training.DamagedRunError, match="does not match its digest"):
        training.load_checkpoint(path)


def test_a_checkpoint_without_a_digest_still_loads(tmp_path):
    """Checkpoints written before the digest (format 1) are read as they are."""
    training.train(tiny_spec().config, tmp_path, progress=False)
    path = tmp_path / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state.pop("digest")
    torch.save({**state, "format": 1}, path)
    assert training.load_checkpoint(path)["epoch"] == 2


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_run_is_named_by_nrnn_train(tmp_path, capsys, damage):
    """``nrnn train --resume`` on a damaged run: one line naming the file and what to do
    (exit 4, an infrastructure failure), nothing overwritten."""
    spoil, expected = DAMAGE[damage]
    out = tmp_path / "run"
    argv = ["train", "--dataset", "digits-rows", "--epochs", "1", "--out", str(out), "--quiet"]
    argv += ["--set", "data.train_subset=32", "--set", "model.hidden_dim=4"]
    assert main(argv) == 0
    capsys.readouterr()
    if damage == "garbage metrics line":
        (out / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n')
        expected = "metrics.jsonl line 2 is damaged"
    else:
        spoil(out / "checkpoint.pt")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main([*argv[:4], "2", *argv[5:], "--resume"]) == exitcodes.INFRASTRUCTURE
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert expected in line and str(out) in line and "delete" in line
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("damage", DAMAGE)
def test_the_harness_sets_a_damaged_run_aside_and_trains_it_again(tmp_path, damage):
    """A finished run damaged afterwards: the next command (before: every later command
    failed, or a bit flip gave wrong numbers silently) trains it again from epoch 1, says
    so in one line naming the file, keeps the damaged files as ``*.damaged``, and ends with
    exactly the parameters and result of an undamaged run."""
    spoil, expected = DAMAGE[damage]
    spec = tiny_spec()
    store, clean = RunStore(tmp_path / "store"), RunStore(tmp_path / "clean")
    (reference,) = ensure_runs([spec], clean, LocalBackend(1), task=ACCURACY, progress=False)
    ensure_runs([spec], store, LocalBackend(1), progress=False)
    run_dir = store.run_dir(spec.config)
    spoil(run_dir / "checkpoint.pt")
    assert not store.is_finished(spec.config)
    messages: list[str] = []
    (outcome,) = ensure_runs(
        [spec], store, LocalBackend(1), task=ACCURACY, progress=False, log=messages.append
    )
    assert outcome.status == "trained" and outcome.result == reference.result
    (note,) = messages
    assert expected in note and "trained the run again from epoch 1" in note
    assert (run_dir / "checkpoint.pt.damaged").exists()
    events = training.read_events(run_dir)
    assert [e["event"] for e in events] == ["start", "set aside", "start"]
    first = training.load_model(reference.run_dir)[0].state_dict()
    again = training.load_model(run_dir)[0].state_dict()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert [m["epoch"] for m in training.read_metrics(run_dir)] == [1, 2]


def test_a_garbage_metrics_line_is_named_with_its_line_and_exits_4(tmp_path):
    """Reading a damaged metrics.jsonl gave "Expecting value: line 1 column 1 (char 0)"
    and no file name; now the file and line, and a command meeting it exits 4 (the
    machinery, not a claim)."""
    training.train(tiny_spec().config, tmp_path, progress=False)
    assert [m["epoch"] for m in training.read_metrics(tmp_path)] == [1, 2]  # control
    garbage_metrics_line(tmp_path / "checkpoint.pt")
    with pytest.raises(InfrastructureError, match=r"metrics.jsonl line 2 is damaged") as error:
        training.read_metrics(tmp_path)
    assert str(tmp_path) in str(error.value) and error.value.exit_code == 4


def test_metrics_one_epoch_ahead_of_the_checkpoint_are_not_damage(tmp_path):
    """Metrics are written before the checkpoint: a kill -9 between the two leaves metrics
    one epoch ahead. The run resumes from the checkpoint and rewrites that epoch."""
    config = tiny_spec(epochs=2).config
    training.train(config, tmp_path, progress=False)
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + json.dumps({"epoch": 3, "stale": True}) + "\n")
    assert training.verified_epochs(tmp_path) == 2
    config.train.epochs = 3
    result = training.train(config, tmp_path, resume=True, progress=False)
    assert result.notes == []
    assert [m["epoch"] for m in training.read_metrics(tmp_path)] == [1, 2, 3]
    assert "stale" not in training.read_metrics(tmp_path)[2]


def test_identical_runs_write_identical_checkpoints(tmp_path):
    """torch.save to a path names the archive after the file: the temporary file's random
    name ended up inside, so identical runs wrote different bytes (the control below shows
    the effect); the archive is now built in memory."""
    one = training.train(tiny_spec().config, tmp_path / "one", progress=False)
    two = training.train(tiny_spec().config, tmp_path / "two", progress=False)
    first = (one.run_dir / "checkpoint.pt").read_bytes()
    assert first == (two.run_dir / "checkpoint.pt").read_bytes()
    state = torch.load(one.run_dir / "checkpoint.pt", weights_only=True)
    torch.save(state, tmp_path / "a.pt")
    torch.save(state, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() != (tmp_path / "b.pt").read_bytes()


def test_every_write_is_flushed_to_the_disk_before_its_rename(tmp_path, monkeypatch):
    calls: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(descriptor):
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        return fsync(descriptor)

    def recording_replace(source, target):
        calls.append(("rename", str(target)))
        return replace(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    target = tmp_path / "report.json"
    files.write_json_atomic(target, {"a": 1})
    kinds = [kind for kind, _ in calls]
    assert kinds == ["fsync", "rename", "fsync"]
    assert calls[0][1].startswith(str(tmp_path / ".report.json."))  # the temporary's data
    assert calls[2][1] == str(tmp_path)  # the directory entry


def stop_at_two(epoch: int, batch: int, loss: float) -> None:
    if epoch == 2:
        raise KeyError("stop")


def test_runs_list_and_prune(tmp_path, capsys):
    """``nrnn runs list`` shows each run's state; ``prune`` removes damaged runs, runs of
    another code version and left-over temporaries, never a finished, partial or in-use
    run (``--partial`` also removes unfinished ones; ``--dry-run`` nothing)."""
    store = RunStore(tmp_path)
    finished, damaged, partial, in_use, old = (tiny_spec(seed=seed) for seed in range(5))
    ensure_runs([finished, damaged, in_use, old], store, LocalBackend(1), progress=False)
    flip_a_bit_of_a_weight(store.run_dir(damaged.config) / "checkpoint.pt")
    with pytest.raises(KeyError):  # stopped in its second epoch, as by Ctrl-C
        training.train(
            partial.config, store.run_dir(partial.config), progress=False, on_batch=stop_at_two
        )
    old_dir = store.run_dir(old.config)
    old_dir.rename(old_dir.with_name("0123456789abcdef"))  # what another CODE_VERSION left
    (store.run_dir(finished.config) / ".final.json.x1.tmp").write_text("left by kill -9")
    lease = Lease(store.run_dir(in_use.config))
    assert lease.try_acquire() is None
    try:
        assert main(["runs", "list", "--store", str(tmp_path)]) == 0
        listing = capsys.readouterr().out
        states = {line.split()[1]: line.split()[2] for line in listing.splitlines()[1:-1]}
        key = lambda spec: store.run_dir(spec.config).name  # noqa: E731
        assert states[key(finished)] == "finished" and states[key(partial)] == "partial"
        assert states[key(damaged)] == "damaged" and states["0123456789abcdef"] == "other"
        assert states[key(in_use)] == "in"  # "in use"
        assert "5 runs" in listing.splitlines()[-1]

        assert main(["runs", "prune", "--store", str(tmp_path), "--dry-run"]) == 0
        assert "3 to remove" in capsys.readouterr().out
        assert len(list(tmp_path.glob("digits-rows/*"))) == 5
        assert main(["runs", "prune", "--store", str(tmp_path)]) == 0
        assert "3 removed" in capsys.readouterr().out
        left = {p.name for p in tmp_path.glob("digits-rows/*")}
        assert left == {key(finished), key(partial), key(in_use)}
        assert files.temporaries(store.run_dir(finished.config)) == []
        assert store.is_finished(finished.config)
        assert main(["runs", "prune", "--store", str(tmp_path), "--partial"]) == 0
        assert {p.name for p in tmp_path.glob("digits-rows/*")} == {key(finished), key(in_use)}
    finally:
        lease.release()
