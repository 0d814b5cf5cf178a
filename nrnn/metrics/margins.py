"""Input-space sensitivity and margins of any model mapping inputs to logits: the
input-output Jacobian, the empirical margin (DeepFool-style attack, then bisection) and
the first-order margin bound."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import contract
from ._base import Model, _check_logits, _inputs, deterministic


@dataclass(frozen=True)
class MarginResult:
    """Empirical input-space margins, one per sample.

    ``margin`` (batch,): the norm of the smallest prediction-changing perturbation found
    (0 for misclassified samples, NaN where the attack found none); ``perturbation``
    (batch, M, p) realises it (zero for misclassified samples and failures);
    ``found`` (batch,) bool: a flipping perturbation was found or the sample was already
    misclassified; ``correct`` (batch,) bool: the clean prediction equals the label.
    """

    margin: torch.Tensor
    perturbation: torch.Tensor
    found: torch.Tensor
    correct: torch.Tensor
    norm: str


@dataclass(frozen=True)
class MarginBound:
    """First-order margins, one per sample (0 for misclassified samples).

    ``estimate`` = min_{j≠y} (z_y − z_j) / ‖∇_x (z_y − z_j)‖_* (the distance to the
    linearised decision boundary; ‖·‖_* is the dual norm: ℓ2 for ``norm="l2"``, ℓ1 for
    ``norm="linf"``); ``lower`` = (z_y − max_{j≠y} z_j) / (√2 ‖∂z/∂x‖_F) ≤ ``estimate``
    (ℓ2 only; NaN for other norms).
    """

    estimate: torch.Tensor
    lower: torch.Tensor
    correct: torch.Tensor


# --------------------------------------------------------------------------------- inputs
def _logits(model: Model, x: torch.Tensor) -> torch.Tensor:
    with deterministic(model):
        return model(x)


def input_output_jacobian_norm(model: Model, x: torch.Tensor) -> torch.Tensor:
    """‖∂logits/∂x‖_F per sample, (batch,): the Frobenius norm of the (c, M·p) Jacobian of
    one sample's logits with respect to its whole input sequence (c backward passes; the
    samples of a batch must not interact, as in any RNN)."""
    contract.function("model", model)
    x = _inputs(model, x).detach().requires_grad_(True)
    logits = _logits(model, x)
    if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"the model must return logits (batch, c), got {tuple(logits.shape)}")
    squared = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for c in range(logits.shape[1]):
        (grad,) = torch.autograd.grad(logits[:, c].sum(), x, retain_graph=True)
        squared += grad.flatten(1).pow(2).sum(1)
    return squared.sqrt().detach()


def logit_gap_gradients(
    model: Model, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logit gaps and their input gradients.

    Returns (gaps (batch, c), gradients (batch, c, M, p), logits (batch, c)) with
    gaps[:, j] = z_y − z_j and gradients[:, j] = ∇_x (z_y − z_j) (zero in column y).
    """
    contract.function("model", model)
    x = _inputs(model, x)
    y = contract.labels(y, x.shape[0]).to(x.device)
    x = x.detach().requires_grad_(True)
    logits = _logits(model, x)
    _check_logits(logits, y)
    classes = logits.shape[1]
    per_class = torch.stack(
        [
            torch.autograd.grad(logits[:, c].sum(), x, retain_graph=c < classes - 1)[0]
            for c in range(classes)
        ],
        dim=1,
    )  # (batch, c, M, p)
    rows = torch.arange(len(y), device=x.device)
    gaps = logits[rows, y].unsqueeze(1) - logits
    gradients = per_class[rows, y].unsqueeze(1) - per_class
    return gaps.detach(), gradients.detach(), logits.detach()


def _dual_norm(gradients: torch.Tensor, norm: str) -> torch.Tensor:
    """Dual norm over the last two axes: ℓ2 for ℓ2 perturbations, ℓ1 for ℓ∞."""
    flat = gradients.flatten(-2)
    return flat.norm(dim=-1) if norm == "l2" else flat.abs().sum(-1)


def _perturbation_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """‖δ‖ over a whole sequence: δ (batch, M, p) -> (batch,)."""
    flat = delta.flatten(1)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().amax(dim=1)


def _linearised_step(
    gaps: torch.Tensor, gradients: torch.Tensor, y: torch.Tensor, norm: str
) -> torch.Tensor:
    """The DeepFool step to the nearest linearised boundary, (batch, M, p)."""
    ratio = gaps.abs() / (_dual_norm(gradients, norm) + 1e-12)
    rows = torch.arange(len(y), device=ratio.device)
    ratio[rows, y] = math.inf
    nearest = ratio.argmin(dim=1)
    direction = -gradients[rows, nearest]  # moving along −∇(z_y − z_j) shrinks the gap
    if norm == "l2":
        unit = direction / (direction.flatten(1).norm(dim=1).view(-1, 1, 1) + 1e-12)
    else:
        unit = direction.sign()
    return (ratio[rows, nearest] + 1e-6).view(-1, 1, 1) * unit


def _predicts(model: Model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return _logits(model, x).argmax(dim=1)


def _deepfool(
    model: Model, x: torch.Tensor, y: torch.Tensor, *, norm: str, iterations: int, overshoot: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepFool iterations from x (batch, M, p) for correctly classified samples.

    Returns (perturbation (batch, M, p), flipped (batch,) bool)."""
    total = torch.zeros_like(x)
    flipped = torch.zeros(len(y), dtype=torch.bool, device=x.device)
    for _ in range(iterations):
        active = ~flipped
        if not active.any():
            break
        current = x[active] + (1 + overshoot) * total[active]
        gaps, gradients, logits = logit_gap_gradients(model, current, y[active])
        now_flipped = logits.argmax(dim=1) != y[active]
        index = active.nonzero().squeeze(1)
        flipped[index[now_flipped]] = True
        still = ~now_flipped
        if still.any():
            step = _linearised_step(gaps[still], gradients[still], y[active][still], norm)
            total[index[still]] += step
    final = x + (1 + overshoot) * total
    flipped |= _predicts(model, final) != y
    return (1 + overshoot) * total, flipped


def _grow_until_flipped(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    delta: torch.Tensor,
    flipped: torch.Tensor,
    *,
    growth_steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For samples not yet flipped, try 2δ, 4δ, … along the attack direction."""
    delta = delta.clone()
    for _ in range(growth_steps):
        pending = ~flipped
        if not pending.any():
            break
        delta[pending] *= 2.0
        flipped[pending] = _predicts(model, x[pending] + delta[pending]) != y[pending]
    return delta, flipped


def _bisect_radius(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    direction: torch.Tensor,
    high: torch.Tensor,
    *,
    steps: int,
) -> torch.Tensor:
    """Smallest radius t ∈ (0, high] along unit ``direction`` (batch, M, p) with a changed
    prediction, by bisection (the prediction at radius ``high`` must differ from y).
    Returns the upper end (a radius that flips the prediction), (batch,)."""
    low = torch.zeros_like(high)
    for _ in range(steps):
        middle = 0.5 * (low + high)
        changed = _predicts(model, x + middle.view(-1, 1, 1) * direction) != y
        high = torch.where(changed, middle, high)
        low = torch.where(changed, low, middle)
    return high


def empirical_margin(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    norm: str = "l2",
    iterations: int = 50,
    overshoot: float = 0.02,
    bisection_steps: int = 30,
    growth_steps: int = 10,
) -> MarginResult:
    """Per sample, the norm of the smallest perturbation found that changes the prediction.

    Method: DeepFool (repeated steps to the nearest linearised decision boundary
    z_y − z_j = 0, with ``overshoot``) until the prediction changes; if it has not after
    ``iterations`` steps, the perturbation is doubled up to ``growth_steps`` times. The
    radius along the perturbation's direction is then bisected (``bisection_steps``) to
    the smallest radius (to relative precision 2^−steps) at which the prediction still
    differs. The returned perturbation always changes the prediction, so each margin is
    an *upper bound* on the exact distance to the decision boundary (equal to it for a
    linear classifier). Misclassified samples get margin 0; samples for which no
    flipping perturbation was found get NaN and ``found`` False.

    Args:
        model: maps (batch, M, p) to logits (batch, c); an ``nn.Module`` is measured in
            eval mode (noise off). Samples must not interact within a batch.
        x: (batch, M, p); y: (batch,) labels.
        norm: ``"l2"`` (over the whole sequence) or ``"linf"`` (largest absolute entry);
            2 and ``math.inf`` are accepted as their spellings.
    """
    contract.function("model", model)
    norm = contract.norm(norm)
    contract.integer("iterations", iterations)
    contract.integer("bisection_steps", bisection_steps)
    contract.integer("growth_steps", growth_steps, minimum=0)
    overshoot = contract.real("overshoot", overshoot, minimum=0, maximum=1)
    x = _inputs(model, x).detach()
    y = contract.labels(y, x.shape[0]).to(x.device)
    with torch.no_grad():
        logits = _logits(model, x)
    _check_logits(logits, y)
    correct = logits.argmax(dim=1) == y

    margin = torch.zeros(len(y), dtype=x.dtype, device=x.device)
    perturbation = torch.zeros_like(x)
    found = ~correct
    if correct.any():
        xc, yc = x[correct], y[correct]
        delta, flipped = _deepfool(
            model, xc, yc, norm=norm, iterations=iterations, overshoot=overshoot
        )
        delta, flipped = _grow_until_flipped(
            model, xc, yc, delta, flipped, growth_steps=growth_steps
        )
        radius = _perturbation_norm(delta, norm)
        sub_margin = torch.full_like(radius, math.nan)
        sub_delta = torch.zeros_like(xc)
        if flipped.any():
            direction = delta[flipped] / radius[flipped].view(-1, 1, 1)
            best = _bisect_radius(
                model, xc[flipped], yc[flipped], direction, radius[flipped], steps=bisection_steps
            )
            sub_margin[flipped] = best
            sub_delta[flipped] = best.view(-1, 1, 1) * direction
        index = correct.nonzero().squeeze(1)
        margin[index] = sub_margin
        perturbation[index] = sub_delta
        found[index] = flipped
    return MarginResult(margin.detach(), perturbation.detach(), found, correct, norm)


def jacobian_margin_bound(
    model: Model, x: torch.Tensor, y: torch.Tensor, *, norm: str = "l2"
) -> MarginBound:
    """First-order margins from the input Jacobian at x, per sample.

    ``estimate`` = min_{j≠y} (z_y − z_j) / ‖∇_x (z_y − z_j)‖_*: the distance from x to the
    boundary of the linearised classifier's region of class y (‖·‖_* the dual norm of
    ``norm``). It is exact for a linear classifier; for a nonlinear model it is a
    first-order estimate, neither a guaranteed lower nor upper bound.
    ``lower`` = (z_y − max_{j≠y} z_j) / (√2 ‖∂z/∂x‖_F) (ℓ2 only), which is ≤ ``estimate``
    because ‖∇(z_y − z_j)‖₂ = ‖(e_y − e_j)ᵀ ∂z/∂x‖₂ ≤ √2 ‖∂z/∂x‖₂ ≤ √2 ‖∂z/∂x‖_F.
    Both are 0 for misclassified samples.
    """
    contract.function("model", model)
    norm = contract.norm(norm)
    x = _inputs(model, x).detach()
    y = contract.labels(y, x.shape[0]).to(x.device)
    gaps, gradients, logits = logit_gap_gradients(model, x, y)
    rows = torch.arange(len(y), device=x.device)
    ratio = gaps / (_dual_norm(gradients, norm) + 1e-30)
    ratio[rows, y] = math.inf
    correct = logits.argmax(dim=1) == y
    estimate = torch.where(correct, ratio.min(dim=1).values, torch.zeros_like(ratio[:, 0]))
    if norm == "l2":
        gap = gaps.clone()
        gap[rows, y] = math.inf
        frobenius = input_output_jacobian_norm(model, x)
        lower = gap.min(dim=1).values / (math.sqrt(2.0) * frobenius + 1e-30)
        lower = torch.where(correct, lower, torch.zeros_like(lower))
    else:
        lower = torch.full_like(estimate, math.nan)
    return MarginBound(estimate, lower, correct)
