"""Measurements of trained models: loss curvature, state-Jacobian products and margins.

Every function measures the *deterministic* model (noise off): an ``nn.Module`` is put in
``eval()`` mode for the measurement and restored to its previous mode afterwards. Shapes
follow ``nrnn.NoisyRNN``: inputs ``x`` are (batch, M, p), labels ``y`` are (batch,) class
indices, logits are (batch, c), hidden states are (batch, d).

Curvature (of the mean cross-entropy loss over the given batch, with respect to every
parameter that requires a gradient, through Hessian-vector products):

- :func:`hessian_trace`: tr H, by Hutchinson's estimator with Rademacher probes (value and
  standard error) or exactly (sum of the Hessian diagonal, one HVP per parameter);
- :func:`top_hessian_eigenvalue`: λ_max(H) by Lanczos with full reorthogonalisation, with
  the residual ‖H u − θ u‖ of the returned Ritz pair.

Dynamics (``NoisyRNN`` only, along the deterministic path h̄_0 = 0, …, h̄_M):

- :func:`step_jacobians`: J_k = ∂h_{k+1}/∂h_k;
- :func:`jacobian_products`: spectral norms of Φ_{k→M} = ∂h_M/∂h_k = J_{M−1} ⋯ J_k.

Inputs (any model mapping (batch, M, p) to logits, including plain functions):

- :func:`input_output_jacobian_norm`: ‖∂logits/∂x‖_F per sample;
- :func:`empirical_margin`: the smallest input perturbation found that changes the
  prediction (DeepFool-style attack, then bisection of the radius);
- :func:`jacobian_margin_bound`: the first-order (linearised) margin.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import contract
from .model import NoisyRNN, check_model
from .montecarlo import mean_and_stderr

__all__ = [
    "TraceEstimate",
    "EigenEstimate",
    "JacobianProducts",
    "MarginResult",
    "MarginBound",
    "deterministic",
    "mean_loss",
    "hessian_trace",
    "top_hessian_eigenvalue",
    "hessian_matrix",
    "step_jacobians",
    "jacobian_products",
    "input_output_jacobian_norm",
    "logit_gap_gradients",
    "empirical_margin",
    "jacobian_margin_bound",
]

Model = Callable[[torch.Tensor], torch.Tensor]


# ------------------------------------------------------------------------ result types
@dataclass(frozen=True)
class TraceEstimate:
    """tr H of the mean loss. ``stderr`` is the Monte Carlo standard error (0 for
    ``method="exact"``; NaN for a single probe); ``samples`` is the number of probes
    (Hutchinson) or of Hessian-vector products (exact)."""

    value: float
    stderr: float
    samples: int
    method: str


@dataclass(frozen=True)
class EigenEstimate:
    """The largest (algebraic) Hessian eigenvalue estimate θ with its Ritz vector u
    (flattened over the parameters, unit norm) and residual ‖H u − θ u‖₂. For a
    symmetric H some eigenvalue lies within ``residual`` of θ."""

    value: float
    residual: float
    iterations: int
    vector: torch.Tensor


@dataclass(frozen=True)
class JacobianProducts:
    """Spectral norms of the state-Jacobian products along the deterministic path.

    ``norms[:, k]`` = ‖Φ_{k→M}‖₂ = ‖∂h_M/∂h_k‖₂, shape (batch, M+1); ``norms[:, M]`` = 1
    (the empty product). Without per-step norms only column 0 is filled and the others
    are NaN.
    """

    norms: torch.Tensor

    @property
    def full(self) -> torch.Tensor:
        """‖∂h_M/∂h_0‖₂ per sample, (batch,)."""
        return self.norms[:, 0]

    @property
    def mean_full(self) -> float:
        """‖∂h_M/∂h_0‖₂ averaged over the batch."""
        return float(self.full.mean())

    @property
    def per_step(self) -> torch.Tensor:
        """‖Φ_{k→M}‖₂ averaged over the batch, (M+1,), k = 0..M."""
        return self.norms.mean(dim=0)

    @property
    def mean_over_steps(self) -> float:
        """‖Φ_{k→M}‖₂ averaged over the batch and over k = 0..M−1."""
        return float(self.norms[:, :-1].mean())


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


class _HessianOperator:
    """v ↦ H v for the Hessian H of the mean loss w.r.t. the model's trainable parameters,
    on flat vectors of length ``dim`` (double backward through one retained graph)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.params = _parameters(model)
        loss = mean_loss(model, x, y)
        gradients = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
        # an unused parameter has zero gradient and zero Hessian rows
        self.gradients = [
            torch.zeros_like(p) if g is None else g
            for p, g in zip(self.params, gradients, strict=True)
        ]
        self.dim = sum(p.numel() for p in self.params)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device

    def _split(self, vector: torch.Tensor) -> list[torch.Tensor]:
        pieces, start = [], 0
        for p in self.params:
            pieces.append(vector[start : start + p.numel()].view_as(p))
            start += p.numel()
        return pieces

    def __call__(self, vector: torch.Tensor) -> torch.Tensor:
        vector = vector.to(dtype=self.dtype, device=self.device)
        pairs = [
            (g, v)
            for g, v in zip(self.gradients, self._split(vector), strict=True)
            if g.requires_grad
        ]
        if not pairs:
            return torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        products = torch.autograd.grad(
            [g for g, _ in pairs],
            self.params,
            grad_outputs=[v for _, v in pairs],
            retain_graph=True,
            allow_unused=True,
        )
        return torch.cat(
            [
                (torch.zeros_like(p) if hv is None else hv).reshape(-1)
                for p, hv in zip(self.params, products, strict=True)
            ]
        ).detach()

    def diagonal(self) -> torch.Tensor:
        """(H_11, …, H_PP): each gradient entry differentiated once more w.r.t. its own
        parameter (P backward passes)."""
        entries = []
        for param, gradient in zip(self.params, self.gradients, strict=True):
            flat = gradient.reshape(-1)
            if not flat.requires_grad:  # the gradient does not depend on any parameter
                entries.extend([0.0] * flat.numel())
                continue
            for i in range(flat.numel()):
                (row,) = torch.autograd.grad(flat[i], param, retain_graph=True, allow_unused=True)
                entries.append(0.0 if row is None else float(row.reshape(-1)[i]))
        return torch.tensor(entries, dtype=torch.float64)


# ------------------------------------------------------------------------------ curvature
def hessian_trace(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    probes: int = 32,
    seed: int = 0,
    method: str = "hutchinson",
) -> TraceEstimate:
    """Trace of the Hessian of the mean cross-entropy loss w.r.t. all trainable parameters.

    Args:
        model: an ``nn.Module`` mapping x (batch, M, p) to logits (batch, c); measured in
            eval mode (noise off).
        x: (batch, M, p) inputs; y: (batch,) integer labels.
        probes: Hutchinson probes (≥ 1); ignored by ``method="exact"``.
        seed: seed of the probe generator (the model's RNG is not touched).
        method: ``"hutchinson"``: mean of vᵀHv over Rademacher probes v, unbiased, with
            standard error s/√probes (s the sample standard deviation of vᵀHv);
            ``"exact"``: Σ_i H_ii, one double-backward pass per parameter (small models).
    """
    contract.choice("method", method, ("hutchinson", "exact"))
    if method == "hutchinson":
        contract.integer("probes", probes)
    operator = _HessianOperator(model, x, y)
    if method == "exact":
        return TraceEstimate(float(operator.diagonal().sum()), 0.0, operator.dim, "exact")
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(probes):
        signs = torch.randint(0, 2, (operator.dim,), generator=generator).to(operator.device)
        v = signs.to(operator.dtype) * 2 - 1
        samples.append(float(v @ operator(v)))
    values = torch.tensor(samples, dtype=torch.float64)
    if probes == 1:
        return TraceEstimate(float(values[0]), math.nan, probes, "hutchinson")
    mean, stderr = mean_and_stderr(values)
    return TraceEstimate(float(mean), float(stderr), probes, "hutchinson")


def hessian_matrix(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The full Hessian (P, P) of the mean loss over the flattened trainable parameters
    (in ``model.parameters()`` order), by P Hessian-vector products: small models only."""
    operator = _HessianOperator(model, x, y)
    identity = torch.eye(operator.dim, dtype=operator.dtype, device=operator.device)
    return torch.stack([operator(column) for column in identity], dim=1)


def top_hessian_eigenvalue(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    iterations: int = 30,
    seed: int = 0,
) -> EigenEstimate:
    """Largest algebraic eigenvalue of the loss Hessian by Lanczos with full
    reorthogonalisation (``iterations`` Hessian-vector products plus one for the residual).

    The Krylov space is started from a Gaussian vector drawn with ``seed``. After at most
    ``min(iterations, P)`` steps the largest eigenvalue θ of the tridiagonal matrix and its
    Ritz vector u are returned with the residual ‖H u − θ u‖₂ (computed with an explicit
    extra HVP). With ``iterations ≥ P`` (the number of parameters) the result is exact up
    to rounding.
    """
    contract.integer("iterations", iterations)
    operator = _HessianOperator(model, x, y)
    steps = min(iterations, operator.dim)
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(operator.dim, generator=generator, dtype=torch.float64).to(operator.device)
    basis, alphas, betas = _lanczos(operator, start / start.norm(), steps)
    tridiagonal = torch.diag(alphas)
    if len(betas):
        tridiagonal += torch.diag(betas, 1) + torch.diag(betas, -1)
    eigenvalues, eigenvectors = torch.linalg.eigh(tridiagonal)
    theta = eigenvalues[-1]
    ritz = basis.T @ eigenvectors[:, -1].to(basis.device)
    ritz = ritz / ritz.norm()
    residual = (operator(ritz).to(torch.float64) - theta * ritz).norm()
    return EigenEstimate(float(theta), float(residual), len(alphas), ritz.to(operator.dtype))


def _lanczos(
    operator: _HessianOperator, first: torch.Tensor, steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lanczos on ``operator`` from the unit vector ``first`` (float64 bookkeeping).

    Returns (basis (k, P), alphas (k,), betas (k−1,)); stops early when the Krylov space
    becomes invariant (β below 1e-10 of the largest |α|, β seen so far).
    """
    basis = [first]
    alphas: list[float] = []
    betas: list[float] = []
    for step in range(steps):
        w = operator(basis[-1]).to(torch.float64)
        alpha = float(basis[-1] @ w)
        alphas.append(alpha)
        stacked = torch.stack(basis)
        for _ in range(2):  # full reorthogonalisation, twice for numerical safety
            w = w - stacked.T @ (stacked @ w)
        beta = float(w.norm())
        scale = max([abs(a) for a in alphas] + betas + [1e-30])
        if step == steps - 1 or beta <= 1e-10 * scale:
            break
        betas.append(beta)
        basis.append(w / beta)
    return (
        torch.stack(basis),
        torch.tensor(alphas, dtype=torch.float64),
        torch.tensor(betas, dtype=torch.float64),
    )


# ------------------------------------------------------------------------------- dynamics
def step_jacobians(model: NoisyRNN, x: torch.Tensor) -> torch.Tensor:
    """J_k = ∂h_{k+1}/∂h_k along the deterministic path, shape (batch, M, n, n).

    The noise-free step is h_{k+1} = h_k + s ⊙ f(h_k, x_k) with s = dt (paper form) or the
    learned δ (released-code form), so J_k = I + diag(s) F_k with F_k the cell's drift
    Jacobian (its generated formula; for the Lipschitz cell F = A + diag(φ'(z_k)) W,
    z_k = W h̄_k + U x_k + b). Memory is batch·M·n²; use :func:`jacobian_products` for long
    sequences (it never holds more than one step).
    """
    return torch.stack(list(_iter_step_jacobians(model, x)), dim=1)


@torch.no_grad()
def _iter_step_jacobians(model: NoisyRNN, x: torch.Tensor) -> Iterator[torch.Tensor]:
    """Yield J_0, …, J_{M−1}, each (batch, n, n)."""
    check_model(model)
    x = _inputs(model, x)
    cell = model.cell
    with deterministic(model):
        states = model.trajectory(x)  # (batch, M+1, n)
        parameters = cell.drift_parameters()
        drives = model.input_drive(x)  # (batch, M, drive_dim)
    step = model.noise.evaluation_step(model.dt, model.noise_parameters)
    jacobian_at = step.jacobians(cell.derivatives(), parameters)
    linearisation = cell.linearisation(states[:, :-1], drives, parameters)
    for k in range(x.shape[1]):
        yield jacobian_at({name: value[:, k] for name, value in linearisation.items()})


@torch.no_grad()
def jacobian_products(
    model: NoisyRNN, x: torch.Tensor, *, per_step: bool = True
) -> JacobianProducts:
    """Spectral norms of Φ_{k→M} = ∂h_M/∂h_k = J_{M−1} ⋯ J_k along the deterministic path.

    Args:
        model: an ``nrnn.NoisyRNN`` (measured with noise off).
        x: (batch, M, p) inputs.
        per_step: compute ‖Φ_{k→M}‖₂ for every k (batch·M SVDs of d×d); otherwise only
            ‖Φ_{0→M}‖₂ = ‖∂h_M/∂h_0‖₂.
    Returns:
        :class:`JacobianProducts` with ``norms`` (batch, M+1).
    """
    jacobians = list(_iter_step_jacobians(model, x))
    batch, d = jacobians[0].shape[0], jacobians[0].shape[-1]
    steps = len(jacobians)
    dtype, device = jacobians[0].dtype, jacobians[0].device
    norms = torch.full((batch, steps + 1), math.nan, dtype=dtype, device=device)
    norms[:, steps] = 1.0
    product = torch.eye(d, dtype=dtype, device=device).expand(batch, d, d)
    for k in range(steps - 1, -1, -1):
        product = product @ jacobians[k]
        if per_step or k == 0:
            norms[:, k] = torch.linalg.matrix_norm(product, ord=2)
    return JacobianProducts(norms)


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
