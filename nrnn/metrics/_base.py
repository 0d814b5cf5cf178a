"""What every measurement shares: argument checks, the deterministic (noise-off) model,
the mean loss. Shapes as in :mod:`nrnn.metrics`."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .. import contract

Model = Callable[[torch.Tensor], torch.Tensor]
"""A model: a module or a function from inputs (batch, M, p) to logits (batch, c)."""


# ------------------------------------------------------------------------- validation
def _inputs(model: Model, x: torch.Tensor) -> torch.Tensor:
    """Checked sequences x (batch, M, p) in the dtype and device of the model's parameters."""
    x = contract.sequences(x)
    reference = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    return x if reference is None else contract.as_model_dtype(x, reference)


def _check_logits(logits: torch.Tensor, y: torch.Tensor) -> None:
    if logits.ndim != 2 or logits.shape[0] != y.shape[0]:
        raise ValueError(
            f"the model must return logits of shape (batch, classes) = ({y.shape[0]}, c), "
            f"got {tuple(logits.shape)}"
        )
    if logits.shape[1] < 2:
        raise ValueError(f"need at least 2 classes, the model returns {logits.shape[1]}")
    contract.labels(y, y.shape[0], logits.shape[1])


# ------------------------------------------------------------------------------ helpers
@contextlib.contextmanager
def deterministic(model: Model) -> Iterator[None]:
    """Evaluate ``model`` with noise off: ``eval()`` inside, previous mode restored after."""
    if not isinstance(model, nn.Module):
        yield
        return
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _parameters(model: nn.Module) -> list[nn.Parameter]:

    params = [p for p in contract.module(model).parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameters that require a gradient")
    return params


def mean_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the deterministic model on (x (batch, M, p), y (batch,))."""
    contract.function("model", model)
    x = _inputs(model, x)
    y = contract.labels(y, x.shape[0]).to(x.device)
    with deterministic(model):
        logits = model(x)
    _check_logits(logits, y)
    return F.cross_entropy(logits, y)
