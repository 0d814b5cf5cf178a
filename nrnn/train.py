"""Training: Adam with step learning-rate decay, per-epoch JSON-lines metrics, atomic
checkpoints and exact resumption.

A run lives in a directory (by default ``runs/<dataset>/<config hash>``) holding

    config.json      the resolved configuration
    checkpoint.pt    model, optimiser and scheduler state after the last finished epoch, with
                     a digest of its content (a damaged file is detected, not used)
    metrics.jsonl    one JSON object per finished epoch (written before the checkpoint, so
                     it covers every epoch the checkpoint holds)
    events.jsonl     one JSON object per start or resumption of training (epoch, process id,
                     device, time), so an interrupted and resumed run shows where it picked
                     up; and per damaged run set aside
    final.json       the last epoch's metrics, written when the run completes

The training step (forward, backward, Adam) comes from ``nrnn.graphs``: on CUDA it is captured
in a CUDA graph (``train.cuda_graph``), and every batch's loss stays on the device until
the epoch ends, when the losses are read back once (checked finite, averaged).

With ``train.stop_window`` set, training stops when the validation accuracy stops improving
(:func:`plateau_decision`); ``train.epochs`` is then a cap. The epoch at which the rule
found a plateau carries ``"plateau": "decay" | "stop"`` in its metrics record, and the
checkpoint of the last epoch says ``"stopped": true``.

Randomness is re-seeded from (seed, epoch) at the start of every epoch, so a run resumed
from the checkpoint of epoch k continues exactly as the uninterrupted run would have.
Identical runs write byte-identical checkpoints.

:func:`train` does not lock its directory: the harness (``nrnn.harness``) and ``nrnn train``
hold the run's lease (``nrnn.lease``) around it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from . import data, graphs
from .config import RunConfig
from .exitcodes import InfrastructureError
from .files import write_bytes_atomic, write_text_atomic
from .interrupt import DeferredSignals
from .model import NoisyRNN

T = TypeVar("T")

CHECKPOINT_FORMAT = 2
"""Format 2 adds ``digest`` (:func:`state_digest`); format 1 files (no digest) still load."""
READABLE_FORMATS = (1, 2)
SUBSET_SEED = data.SUBSET_SEED
fixed_subset_indices = data.fixed_subset_indices


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or belongs to another configuration."""


class DamagedRunError(CheckpointError, InfrastructureError):
    """A run directory whose checkpoint or metrics are damaged (unreadable, failing the
    checkpoint's digest, or metrics that do not cover the checkpoint's epochs). ``problem``
    names the file and what is wrong; the message adds what to do. A failure of the
    machinery, not of a claim: a command that meets one exits 4 with the message."""

    def __init__(self, problem: str, run_dir: str | Path) -> None:
        super().__init__(
            f"{problem}; the harness sets a damaged run aside and trains it again, or delete "
            f"{run_dir} (`nrnn runs prune` removes damaged runs from a store)"
        )
        self.problem = problem


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite, or an epoch's objective grew past
    ``train.divergence_factor`` times the best epoch's."""


@dataclass
class TrainResult:
    run_dir: Path
    model: NoisyRNN
    metrics: list[dict]
    notes: list[str] = field(default_factory=list)
    """What the caller should tell the user (a damaged run set aside and started again)."""


# ---------------------------------------------------------------------------- building
def resolve_device(name: str) -> torch.device:
    """``train.device`` as a torch device: ``"auto"`` is CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"train.device={name!r} but torch sees no CUDA device; use 'auto' or 'cpu'"
        )
    return device


def load_split(config: RunConfig, split: str, subset: int = 0) -> torch.utils.data.TensorDataset:
    """One split of the config's dataset (its recipe), optionally a fixed random subset."""
    dataset = data.load(config.data.name, split, recipe=config.data.recipe)
    inputs, labels = dataset.tensors
    chosen = fixed_subset_indices(len(labels), subset)
    if len(chosen) == len(labels):
        return dataset
    return torch.utils.data.TensorDataset(inputs[chosen], labels[chosen])


def build_model(config: RunConfig) -> NoisyRNN:
    """The model a config describes, for its dataset's shapes (weights drawn from the
    current torch RNG: the cell's first, then the input map and the readout)."""
    from .canonical import cell_kind_of

    dataset = data.info(config.data.name)
    m = config.model
    cell = cell_kind_of(m.cell).build(m.hidden_dim, m.cell)
    return NoisyRNN(
        dataset.input_dim,
        m.hidden_dim,
        dataset.num_classes,
        dt=m.dt,
        noise=config.noise,
        cell=cell,
        recurrence=m.recurrence,
    )


def default_run_dir(config: RunConfig, root: str | Path = "runs") -> Path:
    return Path(root) / config.data.name / config.identity_hash()


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2**63 - 1)


# ------------------------------------------------------------------------- objectives
def objective_loss(
    model: NoisyRNN,
    x: torch.Tensor,
    y: torch.Tensor,
    objective: str,
    *,
    regularizer_method: str = "exact",
    probes: int = 8,
) -> torch.Tensor:
    """Mean training loss of a batch under the registered ``objective``
    (``nrnn.objectives``: ``noise``, ``clean`` or ``explicit``, the last with the
    regularizer's ``regularizer_method`` and ``probes``)."""
    from .objectives import OBJECTIVES

    settings = _ObjectiveSettings(regularizer_method, probes)
    return OBJECTIVES.get(objective).loss(model, x, y, settings)


@dataclass(frozen=True)
class _ObjectiveSettings:
    regularizer_method: str
    probes: int


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, dataset: torch.utils.data.TensorDataset, batch_size: int
) -> dict[str, float]:
    """Deterministic (noise off) mean loss and accuracy over a TensorDataset."""
    was_training = model.training
    model.eval()
    inputs, labels = dataset.tensors
    total_loss, correct = 0.0, 0
    for start in range(0, len(labels), batch_size):
        logits = model(inputs[start : start + batch_size])
        target = labels[start : start + batch_size]
        total_loss += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(-1) == target).sum().item()
    model.train(was_training)
    return {"loss": total_loss / len(labels), "accuracy": correct / len(labels)}


def make_optimizer(config: RunConfig, model: NoisyRNN, device: torch.device) -> torch.optim.Adam:
    """The run's Adam (``optim.lr``, ``optim.weight_decay``), capturable when the training
    step is captured (``nrnn.graphs.captures``)."""
    return torch.optim.Adam(
        model.parameters(),
        lr=config.optim.lr,
        weight_decay=config.optim.weight_decay,
        capturable=graphs.captures(config.train.cuda_graph, device),
    )


def make_step(
    config: RunConfig, model: NoisyRNN, optimizer: torch.optim.Optimizer, device: torch.device
) -> graphs.TrainingStep:
    """The run's training step on ``device``: the objective's loss, backward, clipping to
    ``optim.grad_clip`` and ``optimizer``; captured in a CUDA graph where
    ``train.cuda_graph`` says so."""
    return graphs.training_step(
        lambda x, y: objective_loss(
            model,
            x,
            y,
            config.train.objective,
            regularizer_method=config.train.regularizer_method,
            probes=config.train.probes,
        ),
        optimizer,
        grad_clip=config.optim.grad_clip,
        capture=graphs.captures(config.train.cuda_graph, device),
        batch_size=config.data.batch_size,
        device=device,
    )


# ----------------------------------------------------------------------- checkpoints
def state_digest(state: dict) -> str:
    """A SHA-256 of a checkpoint's content: every key, value and tensor (dtype, shape and
    bytes), in a canonical order; the ``digest`` entry itself is left out."""
    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().to("cpu").contiguous()
            digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            digest.update(f"D{len(value)}".encode())
            for key in sorted(value, key=lambda k: (type(k).__name__, repr(k))):
                feed(key)
                feed(value[key])
        elif isinstance(value, list | tuple):
            digest.update(f"L{len(value)}".encode())
            for item in value:
                feed(item)
        else:  # str, int, float, bool, None: repr is exact
            digest.update(f"{type(value).__name__}:{value!r};".encode())

    feed({key: value for key, value in state.items() if key != "digest"})
    return digest.hexdigest()


def save_checkpoint(path: Path, state: dict) -> None:
    """Save ``state`` with its digest, atomically (temporary file, flush, rename). The
    archive is built in memory: saved to a path, torch names the archive after the file, and
    the temporary file's random name would make identical runs' checkpoints differ."""
    buffer = io.BytesIO()
    torch.save({**state, "digest": state_digest(state)}, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(path: Path, config: RunConfig | None = None) -> dict:
    """Read a checkpoint and check its digest; with ``config``, check that it belongs to that
    configuration. A damaged file raises :class:`DamagedRunError` naming it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DamagedRunError(
            f"checkpoint {path} is corrupt or unreadable ({reason})", path.parent
        ) from None
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
        formats = " or ".join(map(str, READABLE_FORMATS))
        raise DamagedRunError(
            f"checkpoint {path} is not a noisy-rnn checkpoint of format {formats}", path.parent
        )
    if state["format"] >= 2 and state.get("digest") != state_digest(state):
        raise DamagedRunError(
            f"checkpoint {path} is damaged: its content does not match its digest", path.parent
        )
    if config is not None and state["config_hash"] != config.identity_hash():
        from .config import from_dict

        saved, wanted = _dotted(from_dict(state["config"]).to_dict()), _dotted(config.to_dict())
        differing = [
            f"{key}: checkpoint {saved.get(key)!r} vs config {value!r}"
            for key, value in wanted.items()
            if key != "train.epochs" and saved.get(key) != value
        ]
        raise CheckpointError(
            f"checkpoint {path} belongs to a different configuration: " + "; ".join(differing)
        )
    return state


def _dotted(content: dict, prefix: str = "") -> dict[str, Any]:
    """Nested config content as ``{"model.cell.gamma": value, ...}``."""
    flat: dict[str, Any] = {}
    for key, value in content.items():
        if isinstance(value, dict):
            flat |= _dotted(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def finished_epochs(run_dir: str | Path) -> int:
    """The last epoch saved in the run's checkpoint (0 if it has none); a damaged checkpoint
    raises :class:`DamagedRunError`."""
    return _progress_of(run_dir)[0]


def is_complete(run_dir: str | Path, config: RunConfig) -> bool:
    """Whether the run in ``run_dir`` is done: its checkpoint holds the last epoch of
    ``config.train.epochs`` or says the stopping rule stopped it, and ``metrics.jsonl``
    covers every epoch of it. Damage raises :class:`DamagedRunError`."""
    epoch, stopped = _progress_of(run_dir)
    covering_metrics(run_dir, epoch)
    return stopped or epoch >= config.train.epochs


def _progress_of(run_dir: str | Path) -> tuple[int, bool]:
    path = Path(run_dir) / "checkpoint.pt"
    if not path.exists():
        return 0, False
    state = load_checkpoint(path)
    return state["epoch"], bool(state.get("stopped", False))


# ----------------------------------------------------------------------- stopping rule
PLATEAU_KEY = "plateau"
"""The key of an epoch's metrics record at which the stopping rule found a plateau: its
value is ``"decay"`` (the learning rate dropped after that epoch) or ``"stop"``."""


def plateau_decision(history: list[dict], train_config: Any) -> str | None:
    """The stopping rule (``train.stop_window`` W, ``stop_min_gain`` g,
    ``plateau_decays`` P) applied after the last epoch of ``history`` (the metrics records
    so far, each with ``epoch`` and ``valid_accuracy``).

    A plateau: at least W epochs since the start or the last plateau, and the best
    validation accuracy of the last W epochs exceeds the best of all epochs before them by
    less than g. Returns None (no plateau, or the rule is off: W = 0), ``"decay"`` (a
    plateau, fewer than P decays so far: drop the learning rate) or ``"stop"``. A pure
    function of the records, so a resumed run decides as the uninterrupted one did.
    """
    window = train_config.stop_window
    if not window or not history:
        return None
    epoch = history[-1]["epoch"]
    events = [m for m in history if m.get(PLATEAU_KEY)]
    since = events[-1]["epoch"] if events else 0
    if epoch - since < window or epoch <= window:
        return None
    before = max(m["valid_accuracy"] for m in history if m["epoch"] <= epoch - window)
    recent = max(m["valid_accuracy"] for m in history if m["epoch"] > epoch - window)
    if recent - before >= train_config.stop_min_gain:
        return None
    decays = sum(1 for m in events if m[PLATEAU_KEY] == "decay")
    return "decay" if decays < train_config.plateau_decays else "stop"


def verified_epochs(run_dir: str | Path) -> int:
    """:func:`finished_epochs`, after checking that ``metrics.jsonl`` records every epoch
    1..k of the checkpoint's k. A run is finished when this equals its epochs; damage raises
    :class:`DamagedRunError`."""
    epochs = finished_epochs(run_dir)
    covering_metrics(run_dir, epochs)
    return epochs


def covering_metrics(run_dir: str | Path, epochs: int) -> list[dict]:
    """The metrics of epochs 1..``epochs`` (the file may hold one more: metrics are written
    before the checkpoint); :class:`DamagedRunError` when they are not all there."""
    records = read_metrics(run_dir)[:epochs]
    recorded = [record.get("epoch") for record in records]
    if recorded != list(range(1, epochs + 1)):
        raise DamagedRunError(
            f"{Path(run_dir) / 'metrics.jsonl'} does not record epochs 1..{epochs} of the "
            f"checkpoint (it has {_describe_epochs(recorded)})",
            run_dir,
        )
    return records


def _describe_epochs(epochs: list) -> str:
    if not epochs:
        return "none"
    if len(epochs) <= 6:
        return "epochs " + ", ".join(map(str, epochs))
    return f"{len(epochs)} records, epochs {epochs[0]}..{epochs[-1]}"


def set_aside(run_dir: str | Path, reason: str) -> str:
    """Move a damaged run's checkpoint, metrics and final metrics to ``*.damaged`` (kept
    for inspection; replacing earlier ones) so that the run starts again; return a note."""
    run_dir = Path(run_dir)
    moved = []
    for name in ("checkpoint.pt", "metrics.jsonl", "final.json"):
        path = run_dir / name
        if path.exists():
            os.replace(path, run_dir / f"{name}.damaged")
            moved.append(name)
    _append_event(run_dir, {"event": "set aside", "reason": reason, "pid": os.getpid()})
    return (
        f"{reason}; moved {', '.join(moved) or 'nothing'} to *.damaged and trained the run "
        "again from epoch 1"
    )


def load_model(run_dir: str | Path) -> tuple[NoisyRNN, RunConfig]:
    """The trained model and its config from a run directory."""
    from .config import from_dict

    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    config = from_dict(state["config"])
    model = build_model(config)
    model.load_state_dict(state["model"])
    model.eval()
    return model, config


# --------------------------------------------------------------------------- training
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
        run_dir: where to write; default ``runs/<dataset>/<config hash>``.
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
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(config)
    check_request(run_dir, resume=resume, start_if_missing=start_if_missing)
    checkpoint_path = run_dir / "checkpoint.pt"
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    device = resolve_device(config.train.device)

    train_set = load_split(config, "train", config.data.train_subset)
    eval_sets = {
        split: load_split(config, split, config.data.eval_subset)
        for split in ("valid", "test")
        if split in data.info(config.data.name).splits
    }
    torch.manual_seed(config.train.seed)
    model = build_model(config).to(device)
    optimizer = make_optimizer(config, model, device)
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer,
        step_size=config.optim.lr_decay_every or 10**9,
        gamma=config.optim.lr_decay,
    )

    metrics: list[dict] = []
    first_epoch = 1
    stopped = False
    notes: list[str] = []
    if resume and checkpoint_path.exists():
        try:
            state = load_checkpoint(checkpoint_path, config)
            metrics = covering_metrics(run_dir, state["epoch"])
        except DamagedRunError as error:
            if on_damage == "raise":
                raise
            notes.append(set_aside(run_dir, error.problem))
        else:
            if state["epoch"] > config.train.epochs:
                raise ValueError(
                    f"{checkpoint_path} holds {state['epoch']} finished epochs, more than the "
                    f"{config.train.epochs} asked for (train.epochs): a run is never "
                    f"shortened; ask for at least {state['epoch']} epochs, or train a new "
                    "run elsewhere"
                )
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            first_epoch = state["epoch"] + 1
            stopped = bool(state.get("stopped", False))

    if guard is not None:
        guard()
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.json", json.dumps(config.to_dict(), indent=2))
    _write_metrics(run_dir, metrics)
    _append_event(
        run_dir,
        {
            "event": "resume" if first_epoch > 1 else "start",
            "from_epoch": first_epoch - 1,
            "pid": os.getpid(),
            "device": str(device),
            "threads": torch.get_num_threads(),
        },
    )

    inputs, labels = (t.to(device) for t in train_set.tensors)
    eval_sets = {
        split: torch.utils.data.TensorDataset(*(t.to(device) for t in ds.tensors))
        for split, ds in eval_sets.items()
    }
    batch_size = config.data.batch_size
    step = make_step(config, model, optimizer, device)
    # Reading a loss back waits for a GPU: there, once per epoch unless on_batch asks.
    read_each_batch = graphs.read_back_is_free(device) or on_batch is not None
    last_epoch = first_epoch - 1 if stopped else config.train.epochs
    for epoch in range(first_epoch, last_epoch + 1):
        started = time.perf_counter()
        torch.manual_seed(_epoch_seed(config.train.seed, epoch))
        order = torch.randperm(len(labels), device="cpu").to(device)
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
        record = {
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train_objective": losses.mean(),
        }
        for split, dataset in eval_sets.items():
            for key, value in evaluate(model, dataset, config.data.eval_batch_size).items():
                record[f"{split}_{key}"] = value
        _check_growth(record, metrics, config, checkpoint_path)
        scheduler.step()
        decision = plateau_decision([*metrics, record], config.train)
        if decision is not None:
            record[PLATEAU_KEY] = decision
        if decision == "decay":
            for group in optimizer.param_groups:
                group["lr"] *= config.optim.lr_decay
        stopped = decision == "stop"
        record["seconds"] = time.perf_counter() - started
        metrics.append(record)
        # The epoch's metrics, then its checkpoint: a Ctrl-C or SIGTERM in between is acted
        # on after both; a kill -9 in between leaves metrics one epoch ahead of the
        # checkpoint, which a resumption overwrites (never a saved epoch without metrics).
        if guard is not None:
            guard()
        with DeferredSignals() as signals:
            _write_metrics(run_dir, metrics)
            save_checkpoint(
                checkpoint_path,
                {
                    "format": CHECKPOINT_FORMAT,
                    "config_hash": config.identity_hash(),
                    "config": config.to_dict(),
                    "epoch": epoch,
                    "stopped": stopped,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                },
            )
        signals.check()
        if progress:
            summary = ", ".join(
                f"{k}={v:.4f}" for k, v in record.items() if k.endswith(("accuracy", "objective"))
            )
            bar.write(f"epoch {epoch}: {summary} ({record['seconds']:.1f}s)")
        if stopped:
            break
    if metrics:
        write_text_atomic(run_dir / "final.json", json.dumps(metrics[-1], indent=2))
    model.eval()
    return TrainResult(run_dir=run_dir, model=model, metrics=metrics, notes=notes)


def check_request(run_dir: Path, *, resume: bool, start_if_missing: bool) -> None:
    """Refuse, before anything is written, a request the run directory cannot satisfy: a
    fresh start over an existing checkpoint, or a resumption with nothing to resume.

    Raises:
        CheckpointError: saying which, and the flag that would do otherwise.
    """
    checkpoint_path = run_dir / "checkpoint.pt"
    if checkpoint_path.exists() and not resume:
        raise CheckpointError(
            f"{run_dir} already holds a checkpoint; pass resume=True (--resume) to continue "
            "it or choose another run directory"
        )
    if resume and not checkpoint_path.exists() and not start_if_missing:
        raise CheckpointError(
            f"nothing to resume: {checkpoint_path} does not exist (is the run directory "
            "right?); start_if_missing=True (--start-if-missing) starts a fresh run instead"
        )


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


def _append_event(run_dir: Path, event: dict) -> None:
    """Add one line to ``events.jsonl`` (rewritten atomically), with the time."""
    path = run_dir / "events.jsonl"
    previous = path.read_text() if path.exists() else ""
    write_text_atomic(path, previous + json.dumps({**event, "time": time.time()}) + "\n")


def read_events(run_dir: str | Path) -> list[dict]:
    """The starts and resumptions recorded in a run directory's ``events.jsonl``."""
    return _read_json_lines(Path(run_dir) / "events.jsonl")


def _progress(iterable: Iterable[T], description: str, enabled: bool) -> Any:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=description, leave=False, dynamic_ncols=True)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The per-epoch records of a run directory's ``metrics.jsonl``; a line that is not a
    JSON object raises :class:`DamagedRunError` naming the file and the line."""
    return _read_json_lines(Path(run_dir) / "metrics.jsonl")


def _read_json_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise DamagedRunError(
                f"{path} line {number} is damaged (not a JSON object: {line[:40]!r})", path.parent
            )
        records.append(record)
    return records


def _write_metrics(run_dir: Path, metrics: list[dict]) -> None:
    write_text_atomic(run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in metrics))
