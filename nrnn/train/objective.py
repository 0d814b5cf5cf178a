"""The training objective and step: the loss of a batch under a registered objective, the
deterministic evaluation, the run's Adam and its (possibly captured) training step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import graphs
from ..config import RunConfig
from ..model import NoisyRNN


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
    from ..objectives import OBJECTIVES

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
