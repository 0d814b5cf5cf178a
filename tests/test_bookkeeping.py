"""Bookkeeping that could swap or reuse results silently: the outcomes of
``nrnn.harness.ensure_runs`` belong to the spec at their position whatever order the runs
finish in, every field of a run's config and of a run task changes its store key, and the
trained-model comparisons pair runs by (objective, seed), not by position."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from nrnn.backends import LocalBackend
from nrnn.config import RunConfig, from_dict
from nrnn.figures import runs
from nrnn.figures.robustness import RobustnessTask
from nrnn.harness import EvaluationTask, RunOutcome, RunSpec, ensure_runs, execute, with_threads
from nrnn.store import RunStore
from nrnn.verification import trained
from nrnn.workflow.harness import RunStatus

DATASET = "digits-rows"


def spec(name: str, seed: int, epochs: int = 1, hidden: int = 4, subset: int = 64) -> RunSpec:
    size = runs.Size(
        hidden_dim=hidden, epochs=epochs, seeds=(seed,), train_subset=subset, eval_subset=32
    )
    (only,) = runs.grid([DATASET], ["lipschitz"], size)
    return RunSpec(name, only.config)


@dataclass(frozen=True)
class IdentityTask:
    """A task whose result says which run it ran on (picklable for worker processes); it
    waits ``delay`` seconds first, to make one run finish after another."""

    delay: float = 0.0
    name: str = "identity"

    def key(self) -> str:
        return "v1"

    def passes(self, config: RunConfig) -> tuple[int, int]:
        return 0, 0

    def __call__(self, model, config: RunConfig, run_dir: Path) -> dict:
        time.sleep(self.delay)
        return {
            "seed": config.train.seed,
            "hidden_dim": model.hidden_dim,
            "epochs": config.train.epochs,
            "run_dir": run_dir.name,
        }


class ReversedBackend:
    """A conforming backend that reports every run in the reverse of its submission order
    (``map`` may call ``finished`` in any order)."""

    name = "reversed"

    def map(self, jobs, finished) -> None:
        outcomes = [execute(job) for job in jobs]
        for position in reversed(range(len(jobs))):
            finished(position, outcomes[position])


def assert_outcomes_belong_to(outcomes: list[RunOutcome], specs: list[RunSpec], store) -> None:
    assert len(outcomes) == len(specs)
    for outcome, requested in zip(outcomes, specs, strict=True):
        assert outcome.spec.name == requested.name
        assert outcome.spec.config.to_dict() == with_threads(requested, 1).config.to_dict()
        assert outcome.run_dir == store.run_dir(outcome.spec.config)
        assert outcome.result == {
            "seed": requested.seed,
            "hidden_dim": requested.config.model.hidden_dim,
            "epochs": requested.config.train.epochs,
            "run_dir": outcome.run_dir.name,
        }


def test_outcomes_come_back_in_request_order_when_runs_finish_in_reverse(tmp_path):
    """Three runs, the middle one stored before: the backend reports the other two in
    reverse order; each outcome still belongs to the spec at its position."""
    store = RunStore(tmp_path)
    specs = [spec("a", 0), spec("b", 1, hidden=5), spec("c", 2, hidden=6)]
    ensure_runs(specs[1:2], store, LocalBackend(1), task=IdentityTask(), progress=False)
    outcomes = ensure_runs(specs, store, ReversedBackend(), task=IdentityTask(), progress=False)
    assert [o.status for o in outcomes] == ["trained", "stored", "trained"]
    assert_outcomes_belong_to(outcomes, specs, store)


def test_two_workers_finishing_out_of_order_keep_request_order(tmp_path):
    """Two runs on 2 worker processes, the first requested held back 4 s in its task: the
    second finishes first (checked from the task files), and the outcomes still come back
    in request order, each with its own spec and result. The slow run is also the larger
    one, so the harness submits it first (largest first) and the completion order differs
    from the submission order as well as from the request order."""
    store = RunStore(tmp_path)
    specs = [spec("slow", 0, hidden=5), spec("fast", 1)]

    def task(chosen: RunSpec) -> IdentityTask:
        return IdentityTask(delay=4.0 if chosen.name == "slow" else 0.0)

    outcomes = ensure_runs(specs, store, LocalBackend(2), task=task, progress=False)
    assert_outcomes_belong_to(outcomes, specs, store)
    written = [
        store.task_path(o.spec.config, "identity", "v1").stat().st_mtime_ns for o in outcomes
    ]
    assert written[1] < written[0], "the fast run should have finished first"


# ------------------------------------------------------------------------------- keys
def changed(value):
    """A different value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 1.5 + 0.25
    if isinstance(value, str):
        return value + "-changed"
    if isinstance(value, tuple):
        return (*value, value[-1] if value else 0)
    if value is None:
        return 1
    raise TypeError(f"no changed value for {value!r}")


ALTERNATIVES = {"tanh": "arctan", "sqrt-hidden": "hidden", "diagonal": "scalar"}
"""Another valid value of the options checked when they are made (a cell's, a noise's)."""


def every_config_field(config: RunConfig):
    """(section, key path) of every value of the config's content (``to_dict``) but the
    names of the cell and the noise form (``kind``), which choose them."""
    for section, values in config.to_dict().items():
        for name, value in values.items():
            if isinstance(value, dict):
                yield from ((section, (name, key)) for key in value if key != "kind")
            elif name != "kind":
                yield section, (name,)


def value_at(config: RunConfig, section: str, path: tuple):
    value = config.to_dict()[section]
    for key in path:
        value = value[key]
    return value


def with_field(config: RunConfig, section: str, path, value) -> RunConfig:
    path = (path,) if isinstance(path, str) else path
    for key in reversed(path):
        value = {key: value}
    return from_dict({section: value}, from_dict(config.to_dict()))


def with_changed_field(config: RunConfig, section: str, path: tuple) -> RunConfig:
    """The config with the value at ``path`` changed to another valid one."""
    value = value_at(config, section, path)
    candidates = [ALTERNATIVES.get(value, changed(value))] if isinstance(value, str) else []
    candidates += [changed(value)] if not isinstance(value, str) else []
    if isinstance(value, float):
        candidates.append(value * 0.5 + 0.01)
    for candidate in candidates:
        try:
            return with_field(config, section, path, candidate)
        except ValueError:
            continue
    raise AssertionError(f"no valid changed value for {section}.{'.'.join(path)} = {value!r}")


@pytest.mark.parametrize("dataset", ["digits", "ecg5000"])
def test_every_field_of_a_config_changes_its_store_key(tmp_path, dataset):
    """Generic over the config's content (the options of its cell and noise form included),
    so a key added later is covered; the run identity hash (a resumable run) changes with
    every field but the epoch count."""
    store = RunStore(tmp_path)
    config = trained.run_config(trained.DatasetPlan(dataset), 3, "noise", 0.1)
    key, identity = store.key(config), config.identity_hash()
    fields = list(every_config_field(config))
    sections = [config.data, config.optim, config.train, config.model.cell, config.noise]
    assert len(fields) == sum(len(dataclasses.fields(s)) for s in sections) + 3  # hidden_dim,
    # dt and recurrence of [model]
    for section, path in fields:
        other = with_changed_field(config, section, path)
        label = f"{section}.{'.'.join(path)}"
        assert store.key(other) != key, f"{label} must change the store key"
        if (section, path) != ("train", ("epochs",)):
            assert other.identity_hash() != identity, label
    assert with_field(config, "train", "epochs", 99).identity_hash() == identity


TASKS = [
    trained.MeasureTask.for_sizes(trained.QUICK),
    EvaluationTask(subset=64),
    RobustnessTask(levels=(("white", (0.1, 0.2)),), eval_samples=50, pgd_steps=3, eval_seed=1),
]


@pytest.mark.parametrize("task", TASKS, ids=lambda task: type(task).__name__)
def test_every_field_of_a_run_task_changes_its_cached_result_file(task):
    """A task's result is stored as task-<name>-<key>.json: every field must change the
    name or the key, or a result computed with other settings would be reused."""
    before = (task.name, task.key())
    for entry in dataclasses.fields(task):
        other = dataclasses.replace(task, **{entry.name: changed(getattr(task, entry.name))})
        assert (other.name, other.key()) != before, f"{type(task).__name__}.{entry.name}"


# ----------------------------------------------------------------- paired by identity
def fake_outcome(tmp_path: Path, objective: str, seed: int, value: float) -> RunOutcome:
    """A finished run of ``objective`` and ``seed`` whose every measurement is ``value``."""
    config = trained.run_config(trained.SMOKE.datasets[0], seed, objective, 0.1)
    run_dir = tmp_path / f"{objective}-{seed}"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "seconds": 1.0}) + "\n")
    keys = {m.key for m in trained.METRICS} | {k for m in trained.METRICS for k in m.secondary}
    return RunOutcome(
        RunSpec(objective, config), run_dir, RunStatus.STORED, result=dict.fromkeys(keys, value)
    )


def test_trained_comparisons_pair_runs_by_objective_and_seed_not_by_position(tmp_path):
    """The noise run of seed s measures 2 s, its clean partner 3 s: every pair differs by
    −s. The outcomes in reverse order give the same comparisons."""
    sizes = dataclasses.replace(trained.SMOKE, seeds=(1, 2, 3, 4))
    outcomes = [
        fake_outcome(tmp_path, objective, seed, factor * seed)
        for objective, factor in (("clean", 3.0), ("noise", 2.0))
        for seed in sizes.seeds
    ]
    forward = trained._dataset_checks(DATASET, sizes, outcomes, log=lambda message: None)
    backward = trained._dataset_checks(DATASET, sizes, outcomes[::-1], log=lambda message: None)
    assert [c.measured for c in forward] == [c.measured for c in backward]
    for check in forward:
        assert check.details["per_seed"] == {
            "clean": [3.0, 6.0, 9.0, 12.0],
            "noise": [2.0, 4.0, 6.0, 8.0],
        }
        runs_by_label = check.details["runs"]
        assert runs_by_label["noise/seed3"]["run_dir"].endswith("noise-3")
