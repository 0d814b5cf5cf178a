"""The checkpoint format: the content digest, atomic saving, and loading with the checks
of format, digest and configuration."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..files import write_bytes_atomic
from .errors import CheckpointError, DamagedRunError

CHECKPOINT_FORMAT = 2
"""Format 2 adds ``digest`` (:func:`state_digest`); format 1 files (no digest) still load."""
READABLE_FORMATS = (1, 2)


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
        from ..config import from_dict

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
