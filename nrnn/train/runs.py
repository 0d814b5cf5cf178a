"""The files of a run directory: how far its checkpoint got and whether its metrics cover
it, setting a damaged run aside, the trained model, the request a directory can satisfy,
the events and metrics JSON-lines files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..config import RunConfig
from ..files import write_text_atomic
from ..model import NoisyRNN
from .checkpoint import load_checkpoint
from .errors import CheckpointError, DamagedRunError
from .factory import build_model


def finished_epochs(run_dir: str | Path) -> int:
    """The last epoch saved in the run's checkpoint (0 if it has none); a damaged checkpoint
    raises :class:`DamagedRunError`."""
    return _progress_of(run_dir)[0]


def is_complete(run_dir: str | Path, config: RunConfig) -> bool:
    """Whether the run in ``run_dir`` is done: its checkpoint holds the last epoch of
    ``config.train.epochs`` or says the stopping rule stopped it, and ``metrics.jsonl``
    covers every epoch of it. Damage raises :class:`DamagedRunError`."""
    return verified_progress(run_dir, config)[1]


def verified_progress(run_dir: str | Path, config: RunConfig) -> tuple[int, bool]:
    """(:func:`verified_epochs`, :func:`is_complete`) from one read of the checkpoint and
    of the metrics. Damage raises :class:`DamagedRunError`."""
    epoch, stopped = _progress_of(run_dir)
    covering_metrics(run_dir, epoch)
    return epoch, stopped or epoch >= config.train.epochs


def _progress_of(run_dir: str | Path) -> tuple[int, bool]:
    path = Path(run_dir) / "checkpoint.pt"
    if not path.exists():
        return 0, False
    state = load_checkpoint(path)
    return state["epoch"], bool(state.get("stopped", False))


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
    from ..config import from_dict

    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    config = from_dict(state["config"])
    model = build_model(config)
    model.load_state_dict(state["model"])
    model.eval()
    return model, config


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


def _append_event(run_dir: Path, event: dict) -> None:
    """Add one line to ``events.jsonl`` (rewritten atomically), with the time."""
    path = run_dir / "events.jsonl"
    previous = path.read_text() if path.exists() else ""
    write_text_atomic(path, previous + json.dumps({**event, "time": time.time()}) + "\n")


def read_events(run_dir: str | Path) -> list[dict]:
    """The starts and resumptions recorded in a run directory's ``events.jsonl``."""
    return _read_json_lines(Path(run_dir) / "events.jsonl")


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
