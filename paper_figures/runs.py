"""A grid of trained model variants: cached by config hash, resumable, trained in parallel.

The variants are the models the paper compares (``VARIANTS``):

==================  ==========================================================================
name                model
==================  ==========================================================================
lipschitz           Lipschitz RNN: no noise, objective ``clean``
antisymmetric       Antisymmetric RNN: ``model.antisymmetric = true`` (β = 1, no A h), no noise
noisy-small         noisy RNN, paper SDE form, the released "small noise" setting translated
noisy-high          noisy RNN, paper SDE form, the released "high noise" setting translated
noisy-reference     noisy RNN in the released code's form (``noise.form = "reference"``),
                    "high noise" setting as released
explicit            noise off, trained on loss + explicit regularizer of the noisy-high noise
                    (objective ``explicit``)
==================  ==========================================================================

Translating the released settings. The authors' scripts train the noisy RNN with
``--add_noise s_a --mult_noise s_m``: s_a = 0.02, s_m = 0.02 ("small noise") and s_a = 0.05,
s_m = 0.02 ("high noise"). Their step adds s_a ζ_k (ζ_k ~ N(0, I)) to the hidden state
directly, while the paper's Euler–Maruyama step adds √Δt σ₁ ξ_k. Equal per-step noise
therefore means

    σ₁ = s_a / √Δt,        and by the same rule   σ₂ = s_m / √Δt,

at the model's step Δt (``model.dt`` of the dataset's config; 0.2 for digits and ECG5000:
σ₁ = 0.0447 / 0.112, σ₂ = 0.0447). The additive rule is the exact SDE equivalent
(see ``nrnn.noise.ReferenceNoise``). The multiplicative rule is a convention: the released
multiplicative noise scales the drift step by u ~ Uniform[1 − s_m, 1], which has no
paper-form equivalent; the rule gives the paper's σ₂ h noise the same per-step relative size
s_m. ``noisy-reference`` keeps the released form itself, with (s_a, s_m) = (0.05, 0.02).

All variants of a dataset share its shipped config (``nrnn/configs/<dataset>.toml``:
learning rate, Δt, initialisation, batch size) with the hidden size and epochs of a
:class:`Size`, so they differ only in the noise, the objective and the architecture flag.

A run lives in ``<cache_root>/<dataset>/<variant>-s<seed>-<config hash>-e<epochs>``; it is
complete when its checkpoint holds the last epoch. An incomplete run is resumed from
its checkpoint (``nrnn.train.train(..., resume=True)``). A :class:`RunTask` (for example an
evaluation) attached to the grid runs after training, in the same worker, and its result is
cached next to the checkpoint as ``<task name>-<task key>.json``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import math
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from nrnn import config as config_module
from nrnn.config import RunConfig
from nrnn.files import write_json_atomic

RELEASED_NOISE = {"small": (0.02, 0.02), "high": (0.05, 0.02)}
"""(s_a, s_m) of the authors' released training scripts: additive and multiplicative level."""


def paper_noise_levels(s_a: float, s_m: float, dt: float) -> tuple[float, float]:
    """(σ₁, σ₂) = (s_a, s_m) / √Δt: paper-form levels with the released per-step noise size."""
    return s_a / math.sqrt(dt), s_m / math.sqrt(dt)


# ---------------------------------------------------------------------------- variants
def _lipschitz(config: RunConfig) -> None:
    config.train.objective = "clean"


def _antisymmetric(config: RunConfig) -> None:
    config.train.objective = "clean"
    config.model.antisymmetric = True


def _paper_noise(setting: str) -> Callable[[RunConfig], None]:
    def configure(config: RunConfig) -> None:
        config.train.objective = "noise"
        config.noise.form = "paper"
        config.noise.additive, config.noise.multiplicative = paper_noise_levels(
            *RELEASED_NOISE[setting], config.model.dt
        )

    return configure


def _reference_noise(config: RunConfig) -> None:
    config.train.objective = "noise"
    config.noise.form = "reference"
    config.noise.additive, config.noise.multiplicative = RELEASED_NOISE["high"]


def _explicit(config: RunConfig) -> None:
    _paper_noise("high")(config)
    config.train.objective = "explicit"


@dataclass(frozen=True)
class Variant:
    """A named model of the comparison; ``configure`` edits a dataset's config in place."""

    name: str
    label: str
    configure: Callable[[RunConfig], None]
    slow: bool = False  # trained with the explicit regularizer: scheduled first


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("lipschitz", "Lipschitz RNN", _lipschitz),
        Variant("antisymmetric", "Antisymmetric RNN", _antisymmetric),
        Variant("noisy-small", "Noisy RNN, small noise", _paper_noise("small")),
        Variant("noisy-high", "Noisy RNN, high noise", _paper_noise("high")),
        Variant("noisy-reference", "Noisy RNN, released-code form", _reference_noise),
        Variant("explicit", "Explicit regularizer", _explicit, slow=True),
    )
}


# -------------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class Size:
    """How big the runs are.

    Attributes:
        hidden_dim: d.
        epochs: training epochs.
        seeds: training seeds (one run per seed per variant and dataset).
        lr_decay_fraction: the learning rate drops (by the config's ``lr_decay``) once,
            after this fraction of the epochs.
        variant_seeds: (variant, seeds) pairs that replace ``seeds`` for those variants.
    """

    hidden_dim: int
    epochs: int
    seeds: tuple[int, ...]
    lr_decay_fraction: float = 0.8
    variant_seeds: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def seeds_for(self, variant: str) -> tuple[int, ...]:
        return dict(self.variant_seeds).get(variant, self.seeds)


# The explicit objective's exact covariance recursion costs O(M d³) per sequence, about 80
# times a noisy-RNN epoch at d = 32 (≈ 12 s per epoch on one core): the quick grid trains it
# with one seed only.
QUICK = Size(hidden_dim=32, epochs=40, seeds=(0, 1, 2), variant_seeds=(("explicit", (0,)),))
FULL = Size(hidden_dim=128, epochs=100, seeds=(0, 1, 2, 3, 4), lr_decay_fraction=0.9)

DATASET_OVERRIDES: dict[str, dict] = {
    # No shipped config for the 784-step tasks: the released scripts' step and learning rate.
    "mnist-pixels": {
        "data": {"batch_size": 128},
        "model": {"dt": 0.03, "init_std": 0.5},
        "optim": {"lr": 0.003},
    },
    "pmnist-pixels": {
        "data": {"batch_size": 128},
        "model": {"dt": 0.03, "init_std": 0.5},
        "optim": {"lr": 0.003},
    },
}


def make_config(variant: str, dataset: str, seed: int, size: Size) -> RunConfig:
    """The run configuration of one variant on one dataset with one seed."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
    config = config_module.default_config(dataset)
    if dataset in DATASET_OVERRIDES:
        config = config_module.from_dict(DATASET_OVERRIDES[dataset], config)
    config.model.hidden_dim = size.hidden_dim
    config.train.epochs = size.epochs
    config.train.seed = seed
    config.train.threads = 0  # the worker sets its threads; keep the hash independent of it
    config.optim.lr_decay_every = max(1, round(size.lr_decay_fraction * size.epochs))
    config.noise.additive = config.noise.multiplicative = 0.0
    VARIANTS[variant].configure(config)
    return config.validate()


# --------------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class RunSpec:
    """One training run of the grid."""

    variant: str
    dataset: str
    seed: int
    config: RunConfig = field(compare=False, hash=False)

    def run_dir(self, cache_root: str | Path) -> Path:
        config = self.config
        name = f"{self.variant}-s{self.seed}-{config.identity_hash()}-e{config.train.epochs}"
        return Path(cache_root) / self.dataset / name


def grid(datasets: Iterable[str], variants: Iterable[str], size: Size) -> list[RunSpec]:
    """Every (dataset, variant, seed) run, datasets outermost."""
    return [
        RunSpec(variant, dataset, seed, make_config(variant, dataset, seed, size))
        for dataset in datasets
        for variant in variants
        for seed in size.seeds_for(variant)
    ]


class RunTask(Protocol):
    """Work done on a trained model in the training worker, cached in the run directory.

    ``name`` and ``key()`` name the cache file; the key must change whenever the result
    would. ``task(model, config, run_dir)`` returns a JSON-serialisable dict.
    """

    name: str

    def key(self) -> str: ...

    def __call__(self, model, config: RunConfig, run_dir: Path) -> dict: ...


def task_key(content: dict) -> str:
    """A short stable hash of a JSON-serialisable dict, for ``RunTask.key``."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass
class RunOutcome:
    """What happened to one run.

    ``status``: ``"trained"`` (trained or resumed now), ``"cached"`` (complete before) or
    ``"failed"`` (``message`` holds the error). ``result`` is the task's output (None without a task or on failure) and
    ``task_cached`` says whether it came from the cache.
    """

    spec: RunSpec
    run_dir: Path
    status: str
    message: str = ""
    result: dict | None = None
    task_cached: bool = False
    seconds: float = 0.0


def is_complete(run_dir: Path, epochs: int) -> bool:
    """Whether the run in ``run_dir`` has finished all ``epochs`` (a damaged checkpoint
    counts as unfinished: training it again reports the damage)."""
    from nrnn.train import CheckpointError, finished_epochs

    try:
        return finished_epochs(run_dir) == epochs
    except CheckpointError:
        return False


def _task_path(run_dir: Path, task: RunTask) -> Path:
    return run_dir / f"{task.name}-{task.key()}.json"


def _read_cached(spec: RunSpec, cache_root: Path, task: RunTask | None) -> RunOutcome | None:
    """The outcome of a run whose training (and task) are already cached, else None."""
    run_dir = spec.run_dir(cache_root)
    if not is_complete(run_dir, spec.config.train.epochs):
        return None
    if task is None:
        return RunOutcome(spec, run_dir, "cached")
    path = _task_path(run_dir, task)
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return RunOutcome(spec, run_dir, "cached", result=result, task_cached=True)


def execute(spec: RunSpec, cache_root: str | Path, task: RunTask | None = None) -> RunOutcome:
    """Train (or resume) one run if needed, then run the task if its result is not cached.

    Never raises for a failed run: the error is returned in the outcome.
    """
    from nrnn.train import load_model, train

    started = time.perf_counter()
    run_dir = spec.run_dir(cache_root)
    try:
        status = "cached"
        if not is_complete(run_dir, spec.config.train.epochs):
            train(spec.config, run_dir, resume=True, start_if_missing=True, progress=False)
            status = "trained"
        outcome = RunOutcome(spec, run_dir, status)
        if task is not None:
            path = _task_path(run_dir, task)
            if path.is_file():
                outcome.result, outcome.task_cached = json.loads(path.read_text()), True
            else:
                model, config = load_model(run_dir)
                outcome.result = task(model, config, run_dir)
                write_json_atomic(path, outcome.result, indent=1)
    except Exception as error:  # report, keep the other runs going
        detail = traceback.format_exc(limit=4)
        message = f"{type(error).__name__}: {error}\n{detail}"
        outcome = RunOutcome(spec, run_dir, "failed", message=message)
    outcome.seconds = time.perf_counter() - started
    return outcome


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def ensure_runs(
    specs: Iterable[RunSpec],
    cache_root: str | Path,
    *,
    jobs: int | None = None,
    task: RunTask | Callable[[RunSpec], RunTask | None] | None = None,
    progress: bool = True,
    description: str = "runs",
    log: Callable[[str], None] | None = None,
) -> list[RunOutcome]:
    """Make sure every run is trained (and its task done); return outcomes in spec order.

    Runs whose training and task results are cached are read in this process; the others go
    to ``jobs`` worker processes (default ``os.cpu_count()``; each uses one torch thread;
    ``jobs=1`` runs them here, one after the other).

    Args:
        specs: the runs, e.g. from :func:`grid`.
        cache_root: the root directory of the run cache.
        task: optional work on each trained model (see :class:`RunTask`), or a function
            giving each spec its task (e.g. one per dataset).
        progress: a progress bar over finished runs.
        log: where messages go (default: stderr).
    """
    log = log or (lambda message: print(message, file=sys.stderr))
    cache_root = Path(cache_root)
    specs = list(specs)
    jobs = jobs or os.cpu_count() or 1
    tasks = [task if task is None or hasattr(task, "key") else task(spec) for spec in specs]
    outcomes: dict[int, RunOutcome] = {}
    pending: list[int] = []
    for index, spec in enumerate(specs):
        cached = _read_cached(spec, cache_root, tasks[index])
        if cached is not None:
            outcomes[index] = cached
        else:
            pending.append(index)

    bar = _progress_bar(len(pending), description, progress)
    if pending and (jobs == 1 or len(pending) == 1):
        for index in pending:
            outcomes[index] = _in_process(specs[index], cache_root, tasks[index])
            _advance(bar, outcomes[index])
    elif pending:
        context = multiprocessing.get_context("spawn")  # fork is unsafe with torch threads
        with concurrent.futures.ProcessPoolExecutor(
            max_workers=min(jobs, len(pending)), mp_context=context, initializer=_init_worker
        ) as pool:
            # The slow explicit-objective runs first, so that they do not finish last alone.
            pending.sort(key=lambda i: not VARIANTS[specs[i].variant].slow)
            futures = {pool.submit(execute, specs[i], cache_root, tasks[i]): i for i in pending}
            for future in concurrent.futures.as_completed(futures):
                outcomes[futures[future]] = future.result()
                _advance(bar, outcomes[futures[future]])
    if bar is not None:
        bar.close()
    for outcome in outcomes.values():
        if outcome.status == "failed":
            log(f"run {outcome.run_dir} failed: {outcome.message}")
    return [outcomes[index] for index in range(len(specs))]


def _in_process(spec: RunSpec, cache_root: Path, task: RunTask | None) -> RunOutcome:
    """``execute`` with one torch thread, restoring the caller's thread count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return execute(spec, cache_root, task)
    finally:
        torch.set_num_threads(threads)


def _progress_bar(total: int, description: str, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="run", dynamic_ncols=True)


def _advance(bar, outcome: RunOutcome) -> None:
    if bar is None:
        return
    spec = outcome.spec
    bar.set_postfix_str(
        f"{spec.dataset}/{spec.variant}/s{spec.seed} {outcome.status} ({outcome.seconds:.0f}s)"
    )
    bar.update(1)


__all__ = [
    "DATASET_OVERRIDES",
    "FULL",
    "QUICK",
    "RELEASED_NOISE",
    "RunOutcome",
    "RunSpec",
    "RunTask",
    "Size",
    "VARIANTS",
    "Variant",
    "ensure_runs",
    "execute",
    "grid",
    "is_complete",
    "make_config",
    "paper_noise_levels",
    "task_key",
]
