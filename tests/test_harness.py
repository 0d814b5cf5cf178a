"""The experiment harness: the store of trained runs, running on the local backend (resume,
reuse, failures, the same numbers whatever --jobs), the plan and its cost estimates."""

import json
import sys

import pytest
import torch

import nrnn.cost as cost
import nrnn.store as store_module
import nrnn.train as training
import nrnn.train.keys as keys
from nrnn.backends import LocalBackend, make_backend
from nrnn.cost import Timings
from nrnn.figures import runs
from nrnn.harness import (
    EvaluationTask,
    PlanState,
    RunSpec,
    ensure_runs,
    execute,
    format_plan,
    make_jobs,
    plan,
    stored_outcome,
    with_threads,
)
from nrnn.store import RunStore

DATASET = "digits-rows"


def tiny_specs(epochs: int = 2, seeds=(0,), variants=("lipschitz",)) -> list[RunSpec]:
    size = runs.Size(hidden_dim=8, epochs=epochs, seeds=seeds, train_subset=256, eval_subset=64)
    return runs.grid([DATASET], variants, size)


ACCURACY = EvaluationTask(subset=64)
"""A cheap deterministic task: the accuracy of the trained model on 64 test sequences."""


# --------------------------------------------------------------------------- store
def test_store_key_covers_the_whole_config_and_the_code_version(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    (spec,) = tiny_specs()
    key = store.key(spec.config)
    assert store.run_dir(spec.config) == tmp_path / DATASET / key
    for section, name, value in (
        ("train", "epochs", 3),
        ("train", "threads", 2),
        ("train", "seed", 1),
        ("optim", "lr", 0.5),
        ("data", "recipe", "authors"),
        ("noise", "additive", 0.3),
    ):
        copy = _with(spec.config, section, name, value)
        assert store.key(copy) != key, f"{section}.{name} must change the key"
    assert store.key(_with(spec.config, "train", "epochs", 2)) == key  # same value
    monkeypatch.setattr(keys, "CODE_VERSION", keys.CODE_VERSION + 1)
    assert store.key(spec.config) != key


def _as_toml(tables: dict, prefix: str = "") -> str:
    """A config's nested dicts as TOML (JSON scalars are TOML scalars)."""
    lines = [f"[{prefix}]"] if prefix else []
    lines += [f"{k} = {json.dumps(v)}" for k, v in tables.items() if not isinstance(v, dict)]
    for name, table in tables.items():
        if isinstance(table, dict):
            lines.append(_as_toml(table, f"{prefix}.{name}" if prefix else name))
    return "\n".join(lines) + "\n"


def _with(config, section, name, value):
    from nrnn.config import from_dict

    return from_dict({section: {name: value}}, from_dict(config.to_dict()))


def test_a_longer_run_continues_from_the_stored_shorter_one(tmp_path):
    """A run asked for with more epochs than a stored one (the same config otherwise)
    continues from it: the first epochs are not trained again, and the result is the run
    trained from scratch, to the bit. The control: another seed starts from scratch."""
    store = RunStore(tmp_path / "store")
    backend = LocalBackend(1)
    (short,) = [with_threads(s, 1) for s in tiny_specs(epochs=2)]
    (long,) = [with_threads(s, 1) for s in tiny_specs(epochs=3)]
    ensure_runs([short], store, backend, progress=False)
    (row,) = plan([long], store)
    assert row.state is PlanState.PARTIAL and row.finished_epochs == 2
    (outcome,) = ensure_runs([long], store, backend, progress=False)
    assert outcome.status == "trained"
    assert any(f"continued from {store.key(short.config)}" in note for note in outcome.notes)
    events = training.read_events(store.run_dir(long.config))
    assert [(e["event"], e["from_epoch"]) for e in events] == [("start", 0), ("resume", 2)]

    scratch = RunStore(tmp_path / "scratch")
    ensure_runs([long], scratch, backend, progress=False)

    def content(run_store):  # every tensor's bits and every value (not the zip's layout)
        return training.load_checkpoint(run_store.run_dir(long.config) / "checkpoint.pt")

    assert content(store)["digest"] == content(scratch)["digest"]
    assert content(store)["epoch"] == 3

    def untimed(run_store):
        metrics = training.read_metrics(run_store.run_dir(long.config))
        return [{k: v for k, v in m.items() if k != "seconds"} for m in metrics]

    assert untimed(store) == untimed(scratch)

    other_seed = _with(long.config, "train", "seed", 1)
    assert store.shorter_run(other_seed) is None
    assert store.shorter_run(long.config) is None  # its own run has begun


def test_a_run_trained_by_nrnn_train_is_the_one_the_experiments_reuse(tmp_path, capsys):
    """``nrnn train`` trains into the experiments' store under the same key (before, it
    wrote runs/<dataset>/<another hash>, which no experiment looked at)."""
    from nrnn.cli import main

    (spec,) = tiny_specs(epochs=1)
    spec = with_threads(spec, 1)
    config_file = tmp_path / "run.toml"
    config_file.write_text(_as_toml(spec.config.to_dict()))
    store = RunStore(tmp_path / "store")
    argv = ["train", "--config", str(config_file), "--store", str(store.root), "--no-progress"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["run_dir"] == str(store.run_dir(spec.config))
    assert store.is_finished(spec.config)
    (outcome,) = ensure_runs([spec], store, LocalBackend(1), task=ACCURACY, progress=False)
    assert outcome.status == "stored"  # found, not trained again
    # the control: a config one value away is another run, which the harness trains
    other = _with(spec.config, "train", "seed", 1)
    assert not store.is_finished(other)


# ----------------------------------------------------------------------- execution
def test_ensure_runs_resumes_a_partial_run_and_then_reuses_it(tmp_path):
    store = RunStore(tmp_path)
    (spec,) = tiny_specs(epochs=2)
    spec = with_threads(spec, 1)
    run_dir = store.run_dir(spec.config)
    # The same run interrupted after epoch 1 of 2: its checkpoint holds epoch 1.
    interrupted = _with(spec.config, "train", "epochs", 1)
    training.train(interrupted, run_dir, progress=False)
    epoch_one = (run_dir / "metrics.jsonl").read_text().splitlines()[0]

    backend = LocalBackend(1)
    (outcome,) = ensure_runs([spec], store, backend, task=ACCURACY, progress=False)
    assert outcome.status == "trained" and store.is_finished(spec.config)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and lines[0] == epoch_one  # resumed, epoch 1 not redone
    events = training.read_events(run_dir)
    assert [(e["event"], e["from_epoch"]) for e in events] == [("start", 0), ("resume", 1)]
    assert outcome.result == ACCURACY(training.load_model(run_dir)[0], spec.config, run_dir)
    assert json.loads((run_dir / "labels.json").read_text()) == [spec.label]

    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    (again,) = ensure_runs([spec], store, backend, task=ACCURACY, progress=False)
    assert again.status == "stored" and again.task_cached and again.result == outcome.result
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamps

    # Both checks that a run is stored: the driver's, before it submits a job, and the
    # worker's, under the run's lease (a run another process finished in between).
    (job,) = make_jobs([spec], store, ACCURACY, threads_per_run=1)
    stored = stored_outcome(job)
    assert stored is not None and stored.task_cached and stored.result == outcome.result
    direct = execute(job)
    assert direct.status == "stored", direct.message
    assert direct.task_cached and direct.result == outcome.result
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_failed_run_is_reported_not_raised(tmp_path, monkeypatch):
    def diverge(*args, **kwargs):
        raise training.TrainingDivergedError("loss is nan at epoch 1, batch 1 of 2")

    monkeypatch.setattr(training, "train", diverge)
    messages = []
    (outcome,) = ensure_runs(
        tiny_specs(), RunStore(tmp_path), LocalBackend(1), progress=False, log=messages.append
    )
    assert outcome.status == "failed" and "TrainingDivergedError" in outcome.message
    assert any("failed" in message for message in messages)


def test_the_same_numbers_whatever_the_number_of_workers(tmp_path):
    """Every run trains on one thread, so --jobs changes where runs execute, not their
    numbers: bitwise equal parameters and task results with 1 and 2 worker processes."""
    specs = tiny_specs(epochs=2, seeds=(0, 1), variants=("lipschitz", "paper-high"))
    serial_store, parallel_store = RunStore(tmp_path / "serial"), RunStore(tmp_path / "parallel")
    serial = ensure_runs(specs, serial_store, LocalBackend(1), task=ACCURACY, progress=False)
    parallel = ensure_runs(specs, parallel_store, LocalBackend(2), task=ACCURACY, progress=False)
    assert [o.status for o in parallel] == ["trained"] * len(specs)
    for one, two in zip(serial, parallel, strict=True):
        assert one.result == two.result
        assert one.run_dir.name == two.run_dir.name  # the same store key
        first = training.load_model(one.run_dir)[0].state_dict()
        second = training.load_model(two.run_dir)[0].state_dict()
        assert all(torch.equal(first[name], second[name]) for name in first)
    pids = {training.read_events(o.run_dir)[0]["pid"] for o in parallel}
    assert len(pids) >= 2  # really trained in separate worker processes


def test_backend_choice_is_checked():
    with pytest.raises(ValueError, match="unknown backend .slurm.; expected one of"):
        make_backend("slurm", jobs=1)
    with pytest.raises(ValueError, match="--address is for --backend ray"):
        make_backend("local", jobs=1, address="auto")
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        LocalBackend(0)


# ----------------------------------------------------------------------------- plan
def test_plan_states_and_estimates(tmp_path):
    store = RunStore(tmp_path)
    specs = tiny_specs(epochs=2, seeds=(0, 1, 2))
    timings = Timings(tmp_path / "timings.json")
    ensure_runs(specs[:1], store, LocalBackend(1), progress=False)  # seed 0 finished
    partial = with_threads(specs[1], 1)
    training.train(
        _with(partial.config, "train", "epochs", 1), store.run_dir(partial.config), progress=False
    )  # seed 1 half done
    rows = plan(specs, store, task=ACCURACY, timings=timings)
    assert [row.state for row in rows] == [
        PlanState.TASK_TO_RUN,
        PlanState.PARTIAL,
        PlanState.TO_RUN,
    ]
    assert [row.description for row in rows] == [
        "stored, evaluation to run",
        "partial 1/2",
        "to run",
    ]
    assert "3 runs, 0 stored;" in format_plan(rows, workers=1)
    assert rows[0].remaining_seconds < rows[1].remaining_seconds < rows[2].remaining_seconds
    # one epoch remains of two: about half the cost of a fresh run (same measured rates)
    task_cost = timings.task_seconds(with_threads(specs[2], 1).config, ACCURACY)
    fresh = rows[2].remaining_seconds - task_cost
    assert rows[1].remaining_seconds - task_cost == pytest.approx(fresh / 2, rel=1e-9)
    cached = json.loads((tmp_path / "timings.json").read_text())
    assert len(cached["entries"]) == 1  # measured once, reused for every run of that shape
    text = format_plan(rows, workers=2, title="tiny")
    assert text.splitlines()[0] == "tiny" and "3 runs, 0 stored" in text
    assert all(row.label in text and row.key in text for row in rows)


def test_timings_keep_the_fastest_of_several_calls_and_renew_stale_ones(tmp_path, monkeypatch):
    """One measurement taken under load used to be cached forever; now each call adds one
    (up to cost.SAMPLES), the fastest counts, and other code or age renews the entry."""
    samples = iter(
        [{"step": 3.0, "forward": 0.3}, {"step": 1.0, "forward": 0.2}]
        + [{"step": 2.0, "forward": 0.1}, {"step": 9.0, "forward": 0.9}]
        + [{"step": 8.0, "forward": 0.8}]
    )
    monkeypatch.setattr(cost, "_measure", lambda config: next(samples))
    (spec,) = tiny_specs()
    path = tmp_path / "timings.json"
    first = Timings(path)
    assert first.measure(spec.config) == {"step": 3.0, "forward": 0.3}
    assert first.measure(spec.config) == {"step": 3.0, "forward": 0.3}  # once per instance
    assert Timings(path).measure(spec.config) == {"step": 1.0, "forward": 0.2}
    assert Timings(path).measure(spec.config) == {"step": 1.0, "forward": 0.1}
    assert Timings(path).measure(spec.config) == {"step": 1.0, "forward": 0.1}  # 3 kept
    (entry,) = json.loads(path.read_text())["entries"].values()
    assert entry["code"] == store_module.code_digest() and len(entry["samples"]) == cost.SAMPLES
    assert all({"measured", "load"} <= set(sample) for sample in entry["samples"])
    assert "measured" in Timings(path).summary() and "3-3 measurements" in Timings(path).summary()

    monkeypatch.setattr(store_module, "code_digest", lambda: "other code")
    assert Timings(path).measure(spec.config) == {"step": 9.0, "forward": 0.9}
    later = cost._now() + cost.datetime.timedelta(days=cost.MAX_AGE_DAYS + 1)
    monkeypatch.setattr(cost, "_now", lambda: later)
    assert Timings(path).measure(spec.config) == {"step": 8.0, "forward": 0.8}


CODE_DIGEST_PYTHON = (3, 11)
"""The Python version CODE_DIGEST was computed with: the digest is of ``ast.dump``, whose
text changes with the Python minor version (3.12 adds ``type_params``, 3.13 leaves empty
fields out), not with the machine."""


@pytest.mark.skipif(
    sys.version_info[:2] != CODE_DIGEST_PYTHON,
    reason=f"CODE_DIGEST is an ast.dump digest of Python {CODE_DIGEST_PYTHON}, whose "
    f"syntax-tree dump differs from Python {sys.version_info[0]}.{sys.version_info[1]}'s",
)
def test_the_code_version_was_reviewed_for_the_current_code():
    """Runs in the store are keyed by CODE_VERSION; this fails when the training or
    evaluation code changes so that a stale run can never be reused unnoticed."""
    digest = store_module.code_digest()
    assert digest == store_module.CODE_DIGEST, (
        f"the training/evaluation code changed (digest {digest}). If the change can alter "
        "the numbers a run produces, bump nrnn.train.keys.CODE_VERSION; then set "
        f"nrnn.store.CODE_DIGEST = {digest!r}"
    )


def test_the_code_digest_ignores_documentation_but_not_code(tmp_path, monkeypatch):
    source = tmp_path / "pkg"
    source.mkdir()
    module = source / "m.py"
    monkeypatch.setattr(store_module, "code_path", lambda: ["m.py"])
    monkeypatch.setattr(store_module, "__file__", str(source / "workflow" / "store.py"))
    module.write_text('"""Doc."""\ndef f(x):\n    """Doc."""\n    return x + 1\n')
    first = store_module.code_digest()
    module.write_text('"""Other doc."""\n# a comment\ndef f(x):\n    return x + 1  # same\n')
    assert store_module.code_digest() == first
    module.write_text("def f(x):\n    return x + 2\n")
    assert store_module.code_digest() != first


def test_more_threads_change_a_run_only_at_round_off(tmp_path):
    """The harness trains every run on one thread (bitwise reproducible); a run trained on
    two threads (``nrnn train`` uses all cores) sums in another order: after one epoch its
    parameters differ from the one-thread run by round-off only (stated tolerance 1e-5)."""
    (spec,) = tiny_specs(epochs=1)
    results = {}
    for threads in (1, 2):
        config = _with(spec.config, "train", "threads", threads)
        config.model.hidden_dim = 32
        results[threads] = training.train(config, tmp_path / str(threads), progress=False)
    one, two = (results[t].model.state_dict() for t in (1, 2))
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=1e-5, msg=name)
