"""Training objectives by name (``train.objective`` of a run config).

- ``noise``: cross-entropy with the model's noise on (the noisy RNN);
- ``clean``: cross-entropy with the noise off (the deterministic baseline);
- ``explicit``: noise off, plus the explicit regularizer (q + r)/2 of the model's noise,
  computed by ``train.regularizer_method`` (``nrnn.regularizer.METHODS``) with
  ``train.probes`` probes.

An :class:`Objective` gives the mean loss of a batch and what a step of it costs relative
to a noisy step (for the harness's schedule and ``nrnn.cost``). :func:`register_objective`
adds one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .model import NoisyRNN
from .registry import Registry
from .regularizer import METHODS, RegularizerMethod, explicit_regularizer

__all__ = ["OBJECTIVES", "Objective", "register_objective"]

Loss = Callable[[NoisyRNN, torch.Tensor, torch.Tensor, Any], torch.Tensor]
"""``loss(model, x, y, train)``: the mean loss of a batch x (batch, M, p), y (batch,);
``train`` the run's ``[train]`` section (``regularizer_method``, ``probes``)."""


@dataclass(frozen=True)
class Objective:
    """One training objective.

    Attributes:
        name: ``train.objective`` of a run config.
        loss: see :data:`Loss`; it sets the model's mode (noise on in training mode).
        regularized: the loss computes the explicit regularizer with
            ``train.regularizer_method``.
    """

    name: str
    loss: Loss
    regularized: bool = False

    def method(self, train: Any) -> RegularizerMethod | None:
        """The regularizer method a step of this objective computes, or None."""
        return METHODS.get(train.regularizer_method) if self.regularized else None

    def relative_cost(self, train: Any, state_dim: int) -> float:
        """The cost of one step relative to a noisy step, for a state of ``state_dim``."""
        method = self.method(train)
        return 1.0 if method is None else method.relative_cost(state_dim)


OBJECTIVES: Registry[Objective] = Registry("objective")


def register_objective(name: str, loss: Loss, *, regularized: bool = False) -> Objective:
    """Register a training objective (see :class:`Objective`) and return it."""
    return OBJECTIVES.register(Objective(name, loss, regularized))


def _noise(model: NoisyRNN, x: torch.Tensor, y: torch.Tensor, train: Any) -> torch.Tensor:
    model.train()
    return F.cross_entropy(model(x), y)


def _clean(model: NoisyRNN, x: torch.Tensor, y: torch.Tensor, train: Any) -> torch.Tensor:
    model.eval()  # the model has no dropout or batch norm: eval only turns the noise off
    return F.cross_entropy(model(x), y)


def _explicit(model: NoisyRNN, x: torch.Tensor, y: torch.Tensor, train: Any) -> torch.Tensor:
    model.eval()
    expansion = explicit_regularizer(
        model, x, y, method=train.regularizer_method, probes=train.probes
    )
    return (expansion.loss + 0.5 * (expansion.q + expansion.r)).mean()


register_objective("noise", _noise)
register_objective("clean", _clean)
register_objective("explicit", _explicit, regularized=True)
