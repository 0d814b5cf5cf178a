"""The training loop: :func:`train` runs the epochs of a config, writing metrics and
checkpoints, resuming exactly, stopping on divergence or a plateau."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from .. import data, graphs
from ..config import RunConfig
from ..files import write_text_atomic
from ..interrupt import DeferredSignals
from ..model import NoisyRNN
from .checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from .errors import DamagedRunError, TrainingDivergedError
from .factory import build_model, load_split, resolve_device
from .keys import run_directory
from .objective import evaluate, make_optimizer, make_step
from .runs import _append_event, _write_metrics, check_request, covering_metrics, set_aside
from .stopping import PLATEAU_KEY, plateau_decision

T = TypeVar("T")


@dataclass
class TrainResult:
    run_dir: Path
    model: NoisyRNN
    metrics: list[dict]
    notes: list[str] = field(default_factory=list)
    """What the caller should tell the user (a damaged run set aside and started again)."""


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2**63 - 1)


def train(
    config: RunConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    start_if_missing: bool = False,
    progress: bool = True,
    on_batch: Callable[[int, int, float], None] | None = None,
    guard: Callable[[], None] | None = None,
    on_damage: str = "raise",
) -> TrainResult:
    """Train the model ``config`` describes; return the run directory, model and metrics.

    Args:
        config: the run configuration (validated here).
        run_dir: where to write; default the run's directory in the store of trained runs
            (``.cache/runs/<dataset>/<key>``, :func:`nrnn.train.keys.run_directory`).
        resume: continue from ``run_dir/checkpoint.pt``; a missing checkpoint is an error
            unless ``start_if_missing``. Without ``resume``, an existing checkpoint is an
            error (nothing is overwritten).
        start_if_missing: with ``resume``, start a fresh run when there is no checkpoint.
        progress: show a progress bar over the batches of each epoch.
        on_batch: called as ``on_batch(epoch, batch, loss)`` after every optimiser step
            (epoch and batch counted from 1; on a GPU it reads every batch's loss back).
        guard: called before anything of an epoch is written (and before the first write):
            it raises to stop the run without writing (a lost lease, ``nrnn.lease``).
        on_damage: with ``resume``, what a damaged checkpoint or metrics file does:
            ``"raise"`` a :class:`DamagedRunError` naming the file, or ``"restart"``: set the
            damaged files aside (:func:`set_aside`) and train from epoch 1 (a note in the
            result says so).

    Raises:
        TrainingDivergedError: the loss became NaN or inf, or an epoch's objective exceeded
            ``train.divergence_factor`` times the best epoch's; the last good checkpoint stays.
        CheckpointError: the checkpoint is missing (with ``resume``), corrupt, or belongs to
            another configuration.
        ValueError: an invalid config, or (with ``resume``) a checkpoint with more epochs
            than ``train.epochs``.
    """
    if on_damage not in ("raise", "restart"):
        raise ValueError(f"on_damage must be 'raise' or 'restart', got {on_damage!r}")
    config.validate()
    run_dir = Path(run_dir) if run_dir is not None else run_directory(config)
    check_request(run_dir, resume=resume, start_if_missing=start_if_missing)
    checkpoint_path = run_dir / "checkpoint.pt"
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    device = resolve_device(config.train.device)

    train_set = load_split(config, "train", config.data.train_subset)
    eval_sets: dict[str, torch.utils.data.TensorDataset] = {
        split: load_split(config, split, config.data.eval_subset)
        for split in ("valid", "test")
        if split in data.info(config.data.name).splits
    }
    learner = _Learner.build(config, device)
    history = _History()
    if resume and checkpoint_path.exists():
        history = _restore(checkpoint_path, config, learner, on_damage)

    if guard is not None:
        guard()
    _open_run_directory(run_dir, config, history, device)

    inputs, labels = (t.to(device) for t in train_set.tensors)
    eval_sets = {
        split: torch.utils.data.TensorDataset(*(t.to(device) for t in ds.tensors))
        for split, ds in eval_sets.items()
    }
    step = make_step(config, learner.model, learner.optimizer, device)
    # Reading a loss back waits for a GPU: there, once per epoch unless on_batch asks.
    read_each_batch = graphs.read_back_is_free(device) or on_batch is not None
    last_epoch = history.first_epoch - 1 if history.stopped else config.train.epochs
    for epoch in range(history.first_epoch, last_epoch + 1):
        started = time.perf_counter()
        bar, losses = _run_epoch(
            step,
            inputs,
            labels,
            epoch,
            config,
            progress=progress,
            on_batch=on_batch,
            read_each_batch=read_each_batch,
            metrics=history.metrics,
            checkpoint_path=checkpoint_path,
        )
        record = _close_epoch(epoch, losses, learner, eval_sets, history, config, checkpoint_path)
        record["seconds"] = time.perf_counter() - started
        history.metrics.append(record)
        history.stopped = record.get(PLATEAU_KEY) == "stop"
        if guard is not None:
            guard()
        _save_epoch(checkpoint_path, config, history, learner)
        if progress:
            summary = ", ".join(
                f"{k}={v:.4f}" for k, v in record.items() if k.endswith(("accuracy", "objective"))
            )
            bar.write(f"epoch {epoch}: {summary} ({record['seconds']:.1f}s)")
        if history.stopped:
            break
    if history.metrics:
        write_text_atomic(run_dir / "final.json", json.dumps(history.metrics[-1], indent=2))
    learner.model.eval()
    return TrainResult(
        run_dir=run_dir, model=learner.model, metrics=history.metrics, notes=history.notes
    )


def _save_epoch(
    checkpoint_path: Path, config: RunConfig, history: _History, learner: _Learner
) -> None:
    """Write the metrics up to the last epoch of ``history``, then its checkpoint.

    A Ctrl-C or SIGTERM in between is acted on after both; a kill -9 in between leaves
    metrics one epoch ahead of the checkpoint, which a resumption overwrites (never a saved
    epoch without metrics)."""
    with DeferredSignals() as signals:
        _write_metrics(checkpoint_path.parent, history.metrics)
        save_checkpoint(
            checkpoint_path,
            {
                "format": CHECKPOINT_FORMAT,
                "config_hash": config.identity_hash(),
                "config": config.to_dict(),
                "epoch": history.metrics[-1]["epoch"],
                "stopped": history.stopped,
                **learner.state_dict(),
            },
        )
    signals.check()


@dataclass
class _Learner:
    """The model and what updates it: the optimiser and its learning-rate schedule."""

    model: NoisyRNN
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    @classmethod
    def build(cls, config: RunConfig, device: torch.device) -> _Learner:
        """Weights drawn from ``train.seed`` (``build_model``), on ``device``."""
        torch.manual_seed(config.train.seed)
        model = build_model(config).to(device)
        optimizer = make_optimizer(config, model, device)
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer,
            step_size=config.optim.lr_decay_every or 10**9,
            gamma=config.optim.lr_decay,
        )
        return cls(model, optimizer, scheduler)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's ``model``, ``optimizer`` and ``scheduler`` entries."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


@dataclass
class _History:
    """Where a run stands: the metrics of its finished epochs, the next epoch, whether its
    stopping rule ended it, and notes for the caller."""

    metrics: list[dict] = field(default_factory=list)
    first_epoch: int = 1
    stopped: bool = False
    notes: list[str] = field(default_factory=list)


def _restore(
    checkpoint_path: Path, config: RunConfig, learner: _Learner, on_damage: str
) -> _History:
    """The history of the run whose checkpoint is ``checkpoint_path``, with its state loaded
    into ``learner``; a damaged run raises or, with ``on_damage="restart"``, is set aside
    and starts again from epoch 1."""
    run_dir = checkpoint_path.parent
    try:
        state = load_checkpoint(checkpoint_path, config)
        metrics = covering_metrics(run_dir, state["epoch"])
    except DamagedRunError as error:
        if on_damage == "raise":
            raise
        return _History(notes=[set_aside(run_dir, error.problem)])
    if state["epoch"] > config.train.epochs:
        raise ValueError(
            f"{checkpoint_path} holds {state['epoch']} finished epochs, more than the "
            f"{config.train.epochs} asked for (train.epochs): a run is never "
            f"shortened; ask for at least {state['epoch']} epochs, or train a new "
            "run elsewhere"
        )
    learner.load_state_dict(state)
    return _History(
        metrics=metrics,
        first_epoch=state["epoch"] + 1,
        stopped=bool(state.get("stopped", False)),
    )


def _open_run_directory(
    run_dir: Path, config: RunConfig, history: _History, device: torch.device
) -> None:
    """Create the run directory (or take it over): its config, the metrics so far and a
    ``start`` or ``resume`` event."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.json", json.dumps(config.to_dict(), indent=2))
    _write_metrics(run_dir, history.metrics)
    _append_event(
        run_dir,
        {
            "event": "resume" if history.first_epoch > 1 else "start",
            "from_epoch": history.first_epoch - 1,
            "pid": os.getpid(),
            "device": str(device),
            "threads": torch.get_num_threads(),
        },
    )


def _run_epoch(
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    labels: torch.Tensor,
    epoch: int,
    config: RunConfig,
    *,
    progress: bool,
    on_batch: Callable[[int, int, float], None] | None,
    read_each_batch: bool,
    metrics: list[dict],
    checkpoint_path: Path,
) -> tuple[Any, graphs.BatchLosses]:
    """One pass over the training set (``inputs`` (N, M, p), ``labels`` (N,)) in the
    epoch's seeded order; (the progress bar, the batch losses). A non-finite loss raises
    :class:`TrainingDivergedError` (``metrics``, ``checkpoint_path``: what it says is
    kept)."""
    torch.manual_seed(_epoch_seed(config.train.seed, epoch))
    order = torch.randperm(len(labels), device="cpu").to(inputs.device)
    batch_size = config.data.batch_size
    batches = range(math.ceil(len(labels) / batch_size))
    bar = _progress(batches, f"epoch {epoch}/{config.train.epochs}", progress)
    losses = graphs.BatchLosses(len(batches))
    for batch in bar:
        index = order[batch * batch_size : (batch + 1) * batch_size]
        batch_number = batch + 1
        x, y = inputs[index], labels[index]
        losses.add(step(x, y), len(y))
        if not read_each_batch:
            continue
        loss = losses.last()
        if not math.isfinite(loss):
            raise _diverged(loss, epoch, batch_number, len(batches), metrics, checkpoint_path)
        if on_batch is not None:
            on_batch(epoch, batch_number, loss)
        if progress:
            bar.set_postfix(loss=f"{losses.mean():.4f}")
    non_finite = losses.first_non_finite()
    if non_finite is not None:
        batch_number, loss = non_finite
        raise _diverged(loss, epoch, batch_number, len(batches), metrics, checkpoint_path)
    return bar, losses


def _close_epoch(
    epoch: int,
    losses: graphs.BatchLosses,
    learner: _Learner,
    eval_sets: Mapping[str, torch.utils.data.TensorDataset],
    history: _History,
    config: RunConfig,
    checkpoint_path: Path,
) -> dict:
    """The epoch's metrics record (learning rate, training objective, each evaluation
    split's metrics, the plateau decision if any); checks the objective's growth, steps
    the schedule and applies a plateau's learning-rate drop."""
    optimizer = learner.optimizer
    record = {
        "epoch": epoch,
        "lr": optimizer.param_groups[0]["lr"],
        "train_objective": losses.mean(),
    }
    for split, dataset in eval_sets.items():
        for key, value in evaluate(learner.model, dataset, config.data.eval_batch_size).items():
            record[f"{split}_{key}"] = value
    _check_growth(record, history.metrics, config, checkpoint_path)
    learner.scheduler.step()
    decision = plateau_decision([*history.metrics, record], config.train)
    if decision is not None:
        record[PLATEAU_KEY] = decision
    if decision == "decay":
        for group in optimizer.param_groups:
            group["lr"] *= config.optim.lr_decay
    return record


def _diverged(
    loss: float,
    epoch: int,
    batch_number: int,
    batches: int,
    metrics: list[dict],
    checkpoint_path: Path,
) -> TrainingDivergedError:
    """The error for a NaN or infinite loss at (epoch, batch); the last good checkpoint
    stays (no epoch with such a loss is saved)."""
    if checkpoint_path.exists():
        last = metrics[-1]["epoch"] if metrics else epoch - 1
        kept = f"the last good checkpoint (epoch {last}) is kept at {checkpoint_path}"
    else:
        kept = "no checkpoint was written yet"
    return TrainingDivergedError(
        f"loss is {loss} at epoch {epoch}, batch {batch_number} of {batches}; {kept}; "
        "try a smaller optim.lr or model.dt, or optim.grad_clip"
    )


def _check_growth(
    record: dict, metrics: list[dict], config: RunConfig, checkpoint_path: Path
) -> None:
    """Stop a run whose epoch objective grew past ``divergence_factor`` × the best so far
    (before this epoch's checkpoint is written, so the last good one stays)."""
    factor = config.train.divergence_factor
    if not factor or not metrics:
        return
    best = min(metrics, key=lambda m: m["train_objective"])
    value = record["train_objective"]
    if value > factor * best["train_objective"]:
        raise TrainingDivergedError(
            f"the training objective diverged at epoch {record['epoch']}: {value:.4g}, more than "
            f"{factor:g} × its best value {best['train_objective']:.4g} (epoch {best['epoch']}); "
            f"the last good checkpoint (epoch {metrics[-1]['epoch']}) is kept at "
            f"{checkpoint_path}. Likely cause: optim.lr ({config.optim.lr:g}) or model.dt "
            f"({config.model.dt:g}) too large; try a smaller value or optim.grad_clip "
            "(train.divergence_factor = 0 turns this check off)"
        )


def _progress(iterable: Iterable[T], description: str, enabled: bool) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=description, leave=False, dynamic_ncols=True)
