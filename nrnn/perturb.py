"""Input perturbations for robustness experiments: random noise and adversarial attacks.

Every perturbation maps inputs ``x`` of shape (batch, M, p) to perturbed inputs of the same
shape, dtype and device, and leaves ``x`` itself untouched. A level of 0 returns an exact
copy of ``x``.

Random perturbations (``seed``: an int or a ``torch.Generator``; the noise is drawn on the
CPU from that generator, so a seed reproduces the same perturbation on any device):

- ``white_noise``:           x + level · ξ,                    ξ ~ N(0, 1) per entry
- ``multiplicative_noise``:  x ⊙ (1 + level · ξ),              ξ ~ N(0, 1) per entry
- ``salt_and_pepper``:       in each sample, round(level · M · p) entries chosen at random are
                             set to ``low`` (the first half) or ``high`` (the rest)

Adversarial perturbations maximise the cross-entropy of ``model(x)`` against the labels
``y``, with the model in eval mode (its noise off), under a budget ``level`` on the
perturbation δ of each *whole sequence* (δ of shape (M, p) per sample):

- ``norm="linf"``:  max_{k,j} |δ_kj| ≤ level
- ``norm="l2"``:    (Σ_{k,j} δ_kj²)^{1/2} ≤ level

- ``fgsm``: one step to the budget's boundary along the gradient g = ∇_x loss:
  δ = level · sign(g) (L∞) or δ = level · g / ‖g‖₂ (L2). For a linear classifier this is
  the exact maximiser of the linearised loss.
- ``pgd``: projected gradient ascent from a random point of the ball; it returns, per
  sample, the iterate with the highest loss seen (the clean input included), so its loss is
  never below the clean loss.

No clipping to a data range is applied: the perturbed sequences may leave the range of the
data (the datasets here are not all bounded).

``PERTURBATIONS`` maps a name to a :class:`Perturbation` with one calling convention for
all, and :func:`evaluate_under` measures a model's accuracy under one at several levels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from . import contract
from .metrics import deterministic

NORMS = contract.NORMS

Seed = int | torch.Generator
"""A seed of the random draws: an int, or a CPU ``torch.Generator`` used as it is."""


# ---------------------------------------------------------------------------- checks
def _check_labels(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return contract.labels(y, x.shape[0]).to(x.device)


def _standard_normal(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """N(0, 1) of x's shape, drawn on the CPU from ``generator``, on x's device and dtype."""
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


# ----------------------------------------------------------------- random perturbations
def _gaussian_perturbation(
    x: torch.Tensor,
    level: float,
    seed: Seed,
    combine: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``combine(x, level · ξ)`` with ξ ~ N(0, 1) per entry from ``seed``; a copy at level 0."""
    x = contract.sequences(x)
    level = contract.real("level", level, minimum=0)
    generator = contract.generator(seed)
    if level == 0:
        return x.clone()
    return combine(x, level * _standard_normal(x, generator))


def white_noise(x: torch.Tensor, level: float, seed: Seed = 0) -> torch.Tensor:
    """Additive Gaussian noise: x + level · ξ, ξ ~ N(0, 1) per entry; x (batch, M, p)."""
    return _gaussian_perturbation(x, level, seed, lambda x, noise: x + noise)


def multiplicative_noise(x: torch.Tensor, level: float, seed: Seed = 0) -> torch.Tensor:
    """Multiplicative Gaussian noise: x ⊙ (1 + level · ξ), ξ ~ N(0, 1); x (batch, M, p)."""
    return _gaussian_perturbation(x, level, seed, lambda x, noise: x * (1 + noise))


def salt_and_pepper(
    x: torch.Tensor,
    level: float,
    seed: Seed = 0,
    low: float | None = None,
    high: float | None = None,
) -> torch.Tensor:
    """Set a fraction ``level`` of each sample's entries to ``low`` or ``high``.

    In each sample of x (batch, M, p), n = round(level · M · p) entries are chosen uniformly
    at random without replacement; the first n // 2 become ``low`` ("pepper") and the other
    n − n // 2 become ``high`` ("salt").

    Args:
        level: the fraction in [0, 1].
        low, high: the two values; default the min and max of ``x``. Pass the data set's
            range to make the result independent of the batch.
    """
    x = contract.sequences(x)
    level = contract.real("level", level, minimum=0, maximum=1)
    generator = contract.generator(seed)
    low = float(x.min()) if low is None else contract.real("low", low)
    high = float(x.max()) if high is None else contract.real("high", high)
    if low > high:
        raise ValueError(f"low must be <= high, got low={low}, high={high}")
    batch = x.shape[0]
    entries = x[0].numel()
    count = int(math.floor(level * entries + 0.5))
    if count == 0:
        return x.clone()
    # The rank of each entry in a random order: ranks below count are hit.
    order = torch.rand((batch, entries), generator=generator).argsort(dim=1)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(entries).expand(batch, entries))
    rank = rank.reshape(x.shape).to(x.device)
    out = x.clone()
    out[rank < count // 2] = low
    out[(rank >= count // 2) & (rank < count)] = high
    return out


# ------------------------------------------------------------- adversarial perturbations
def _loss_and_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample cross-entropy (batch,) and its gradient with respect to x (batch, M, p)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        losses = F.cross_entropy(model(x), y, reduction="none")
        (gradient,) = torch.autograd.grad(losses.sum(), x)
    return losses.detach(), gradient


@torch.no_grad()
def _losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y, reduction="none")


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each sample over (M, p): (batch, M, p) -> (batch, 1, 1)."""
    return t.flatten(1).norm(dim=1).view(-1, 1, 1)


def _ascent_direction(gradient: torch.Tensor, norm: str) -> torch.Tensor:
    """The unit-budget step maximising the linearised loss: sign(g) or g/‖g‖₂ (0 if g = 0)."""
    if norm == "linf":
        return gradient.sign()
    length = _per_sample_norm(gradient)
    return torch.where(length > 0, gradient / length.clamp_min(1e-30), torch.zeros_like(gradient))


def _project(delta: torch.Tensor, level: float, norm: str) -> torch.Tensor:
    """The closest point of the budget ball {‖δ‖ ≤ level} to δ, per sample."""
    if norm == "linf":
        return delta.clamp(-level, level)
    length = _per_sample_norm(delta)
    return delta * torch.clamp(level / length.clamp_min(1e-30), max=1.0)


def _random_start(
    x: torch.Tensor, level: float, norm: str, generator: torch.Generator
) -> torch.Tensor:
    """A uniform random point of the budget ball, per sample: (batch, M, p)."""
    if norm == "linf":
        uniform = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        return (2 * uniform - 1) * level
    direction = _standard_normal(x, generator)
    direction = direction / _per_sample_norm(direction).clamp_min(1e-30)
    dimension = x[0].numel()
    radius = torch.rand((x.shape[0], 1, 1), generator=generator, dtype=x.dtype).to(x.device)
    return direction * level * radius ** (1.0 / dimension)


def fgsm(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, level: float, norm: str = "linf"
) -> torch.Tensor:
    """Fast gradient (sign) method: x + level · sign(g) (L∞) or x + level · g/‖g‖₂ (L2).

    Args:
        model: a classifier mapping (batch, M, p) to logits (batch, c); evaluated in eval mode
            (its mode is restored afterwards).
        x: inputs (batch, M, p); y: labels (batch,) int64.
        level: the budget per sample, over the whole sequence, in ``norm``.
    Returns:
        perturbed inputs (batch, M, p). Entries with a zero gradient (L∞) or samples with a
        zero gradient (L2) are left unchanged.
    """
    model = contract.module(model)
    x = contract.sequences(x)
    y = _check_labels(y, x)
    level = contract.real("level", level, minimum=0)
    norm = contract.norm(norm)
    if level == 0:
        return x.clone()
    with deterministic(model):
        _, gradient = _loss_and_gradient(model, x, y)
    return (x + level * _ascent_direction(gradient, norm)).detach()


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    level: float,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    seed: Seed = 0,
    random_start: bool = True,
) -> torch.Tensor:
    """Projected gradient ascent on the cross-entropy inside the budget ball.

    δ₀ is uniform in the ball (``random_start``) or 0; then ``steps`` times
    δ ← Π(δ + step_size · direction(∇ loss(x + δ))), with direction sign(g) (L∞) or
    g/‖g‖₂ (L2) and Π the projection onto {‖δ‖ ≤ level}. Returns, per sample, the point
    with the highest loss among x and all iterates.

    Args:
        model, x, y, level, norm: as for :func:`fgsm`.
        steps: number of gradient steps (≥ 1).
        step_size: the step length in ``norm``; default 2.5 · level / steps.
        seed: int or CPU ``torch.Generator`` for the random start.
    Returns:
        perturbed inputs (batch, M, p), each within ``level`` of x in ``norm``.
    """
    model = contract.module(model)
    x = contract.sequences(x)
    y = _check_labels(y, x)
    level = contract.real("level", level, minimum=0)
    norm = contract.norm(norm)
    contract.integer("steps", steps)
    if step_size is None:
        step_size = 2.5 * level / steps
    else:
        step_size = contract.real("step_size", step_size, minimum=0)
    generator = contract.generator(seed)
    if level == 0:
        return x.clone()
    x = x.detach()
    with deterministic(model):
        best, best_loss = x.clone(), _losses(model, x, y)
        delta = _random_start(x, level, norm, generator) if random_start else torch.zeros_like(x)
        for _ in range(steps):
            losses, gradient = _loss_and_gradient(model, x + delta, y)
            best, best_loss = _keep_better(best, best_loss, x + delta, losses)
            delta = _project(delta + step_size * _ascent_direction(gradient, norm), level, norm)
        best, _ = _keep_better(best, best_loss, x + delta, _losses(model, x + delta, y))
    return best


def _keep_better(
    best: torch.Tensor,
    best_loss: torch.Tensor,
    candidate: torch.Tensor,
    candidate_loss: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, the candidate where its loss is higher, else the best so far."""
    better = candidate_loss > best_loss
    mask = better.view(-1, *([1] * (best.ndim - 1)))
    return torch.where(mask, candidate, best), torch.where(better, candidate_loss, best_loss)


# -------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Perturbation:
    """A named perturbation with one calling convention for all.

    ``apply(model, x, y, level, generator, data_range)`` -> perturbed x (batch, M, p), where
    ``data_range`` = (low, high) of the data set (used by salt and pepper).
    """

    name: str
    label: str  # for figures and tables
    symbol: str  # the level's symbol, e.g. "σ" or "ε"
    adversarial: bool
    apply: Callable[..., torch.Tensor]
    gradient_steps: int = 0
    """Gradients of the loss an application takes per sequence (0: a random perturbation)."""
    with_steps: Callable[[int], Perturbation] | None = None
    """For an iterative attack: the same attack with another number of steps."""

    def iterations(self, steps: int) -> Perturbation:
        """The attack with ``steps`` steps if it is iterative (PGD), else itself."""
        return self if self.with_steps is None else self.with_steps(steps)


def _white(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    level: float,
    generator: torch.Generator,
    data_range: tuple[float, float],
) -> torch.Tensor:
    return white_noise(x, level, generator)


def _multiplicative(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    level: float,
    generator: torch.Generator,
    data_range: tuple[float, float],
) -> torch.Tensor:
    return multiplicative_noise(x, level, generator)


def _salt_and_pepper(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    level: float,
    generator: torch.Generator,
    data_range: tuple[float, float],
) -> torch.Tensor:
    low, high = data_range
    return salt_and_pepper(x, level, generator, low=low, high=high)


def _fgsm(norm: str) -> Callable[..., torch.Tensor]:
    def apply(
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        level: float,
        generator: torch.Generator,
        data_range: tuple[float, float],
    ) -> torch.Tensor:
        return fgsm(model, x, y, level, norm=norm)

    return apply


def _pgd(norm: str, steps: int = 10) -> Callable[..., torch.Tensor]:
    def apply(
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        level: float,
        generator: torch.Generator,
        data_range: tuple[float, float],
    ) -> torch.Tensor:
        return pgd(model, x, y, level, norm=norm, steps=steps, seed=generator)

    return apply


def pgd_perturbation(norm: str, steps: int) -> Perturbation:
    """A PGD registry entry with ``steps`` steps (named ``pgd-<norm>``)."""
    norm = contract.norm(norm)
    contract.integer("steps", steps)
    label = f"PGD ({'L∞' if norm == 'linf' else 'L2'}, {steps} steps)"
    return Perturbation(
        f"pgd-{norm}",
        label,
        "ε",
        True,
        _pgd(norm, steps),
        gradient_steps=steps,
        with_steps=functools.partial(pgd_perturbation, norm),
    )


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation("white", "white noise", "σ", False, _white),
        Perturbation("multiplicative", "multiplicative noise", "σ", False, _multiplicative),
        Perturbation("salt-and-pepper", "salt and pepper", "α", False, _salt_and_pepper),
        Perturbation("fgsm-linf", "FGSM (L∞)", "ε", True, _fgsm("linf"), 1),
        Perturbation("fgsm-l2", "FGSM (L2)", "ε", True, _fgsm("l2"), 1),
        *(pgd_perturbation(norm, 10) for norm in NORMS[::-1]),
    )
}
"""Every perturbation by name. PGD here takes 10 steps of 2.5 · level / 10 from a random start;
call :func:`pgd_perturbation` for other step counts."""


def get(perturbation: str | Perturbation) -> Perturbation:
    """The registry entry for a name (or the given :class:`Perturbation`)."""
    if isinstance(perturbation, Perturbation):
        return perturbation
    if perturbation not in PERTURBATIONS:
        raise ValueError(
            f"unknown perturbation {perturbation!r}; expected one of {sorted(PERTURBATIONS)}"
        )
    return PERTURBATIONS[perturbation]


def evaluate_under(
    model: nn.Module,
    dataset: TensorDataset,
    perturbation: str | Perturbation,
    levels: Iterable[float],
    seed: int = 0,
    batch_size: int = 500,
    *,
    data_range: tuple[float, float] | None = None,
) -> dict[float, float]:
    """Accuracy of ``model`` (eval mode) on ``dataset`` perturbed at each level.

    Args:
        model: a classifier (batch, M, p) -> logits (batch, c).
        dataset: a ``TensorDataset(inputs (N, M, p), labels (N,))``.
        perturbation: a name in ``PERTURBATIONS`` or a :class:`Perturbation`.
        levels: the levels to evaluate (each ≥ 0; 0 gives the clean accuracy).
        seed: the random perturbations at every level use the same generator state
            (common random numbers: the same ξ scaled by the level), reseeded per level.
        batch_size: samples per forward pass.
        data_range: (low, high) for salt and pepper; default the min and max of the inputs.
    Returns:
        {level: accuracy in [0, 1]} in the order of ``levels``.
    """
    model = contract.module(model)
    entry = get(perturbation)
    inputs, labels = dataset.tensors[:2]
    contract.integer("batch_size", batch_size)
    levels = [contract.real("level", level, minimum=0) for level in levels]
    if data_range is None:
        data_range = (float(inputs.min()), float(inputs.max()))
    device = next(model.parameters(), torch.empty(0)).device
    accuracies: dict[float, float] = {}
    with deterministic(model):
        for level in levels:
            generator = contract.generator(seed)
            correct = 0
            for start in range(0, len(labels), batch_size):
                x = inputs[start : start + batch_size].to(device)
                y = labels[start : start + batch_size].to(device)
                perturbed = entry.apply(model, x, y, level, generator, data_range)
                with torch.no_grad():
                    correct += int((model(perturbed).argmax(-1) == y).sum())
            accuracies[level] = correct / len(labels)
    return accuracies


__all__ = [
    "NORMS",
    "PERTURBATIONS",
    "Perturbation",
    "evaluate_under",
    "fgsm",
    "get",
    "multiplicative_noise",
    "pgd",
    "pgd_perturbation",
    "salt_and_pepper",
    "white_noise",
]
