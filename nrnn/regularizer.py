"""The explicit regularizer of the noisy RNN: E ℓ ≈ loss + (q + r)/2.

Along the deterministic path h̄_k (every noise variable ξ set to 0), with
z_k = W h̄_k + U x_k + b, J_k the Jacobian of one step and Σ_k the diffusion at h̄_k, the
generated recursions (``nrnn._generated.expansion``, derived in ``derivations/``) are

    C_0 = 0,  C_{k+1} = J_k C_k J_kᵀ + Δt Σ_k Σ_kᵀ            (covariance of the linear response)
    m_0 = 0,  m_{k+1} = J_k m_k + (Δt/2) v_k,  v_{k,i} = tanh''(z_{k,i}) (W C_k Wᵀ)_ii
    q = Q = 2 ∇ℓᵀ m_M,   r = R = tr(∇²ℓ C_M)

and E ℓ(h_M) = ℓ(h̄_M) + (q + r)/2 + O(ε⁴) when all noise is scaled by ε. For the
cross-entropy ∇ℓ = Vᵀ(p − e_y) and ∇²ℓ = Vᵀ(diag p − ppᵀ)V; the code works with the c
logits instead of the d hidden units: Q = 2 (p − e_y)ᵀ (V m_M) and R = tr((diag p − ppᵀ)
V C_M Vᵀ), the same numbers at a c-dimensional cost.

Two methods:

- ``exact`` propagates C: O(M d³) per sequence (batched matrix products). Long, wide
  problems are run in segments that are recomputed in the backward pass (gradient
  checkpointing), so memory stays O(√M · batch · d²) instead of O(M · batch · d²).
- ``probe`` propagates K random linear-response paths y_{k+1} = J_k y_k + √Δt Σ_k ξ_k
  (ξ_k standard normal) and uses C ≈ (1/K) Σ y yᵀ in v and in R: O(M d² K). Because v and R
  are linear in C and every ξ_k is independent of y_k, q and r are unbiased, and so are
  their parameter gradients (the ξ_k do not depend on the parameters). J and Σ are
  applied without forming them (``_jacobian_rows`` and ``_noise_rows``; the tests check
  both against the generated dense matrices).

Noise forms:

- ``Noise`` (paper): J_k = I + Δt (A + diag tanh'(z_k) W), Σ_k = σ(h̄_k) of the Brownian mode.
- ``ReferenceNoise`` (released code): the step is h + δ ⊙ u ⊙ f(h) + s_a ζ with u = (1 − s_m/2)
  + (s_m/√12) η. Setting ξ = [ζ, η] = 0 gives the *mean path* h̄_{k+1} = h̄_k + δ(1 − s_m/2) ⊙
  f(h̄_k), which is therefore the deterministic path here: ``loss`` is the loss along it (not
  along the evaluation path h + δ ⊙ f). Its Jacobian is J_k = I + diag(δ(1 − s_m/2)) F_k, the
  contraction enters the mean with the per-unit step δ(1 − s_m/2) in place of Δt, and
  Σ_k = ``reference_diffusion``(δ ⊙ f(h̄_k)) so that Δt Σ_k Σ_kᵀ = s_a² I + (s_m²/12) diag(δ ⊙ f)².

``noise_laplacian`` (in ``nrnn.oracle``, re-exported here) is the independent autograd
oracle: q + r equals the Laplacian of the loss in ξ at ξ = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ._generated.activation import tanh_prime, tanh_second
from ._generated.cross_entropy import cross_entropy_grad, cross_entropy_hessian
from ._generated.expansion import (
    covariance_step,
    diffusion_diagonal,
    diffusion_scalar,
    mean_contraction,
    mean_step,
    q_term,
    r_term,
    step_jacobian,
)
from ._generated.reference_noise import reference_diffusion, reference_drift_scale
from .model import NoisyRNN
from .noise import Noise, ReferenceNoise

__all__ = [
    "Expansion",
    "METHODS",
    "explicit_regularizer",
    "check_inputs",
    "DeterministicPath",
    "deterministic_path",
]

METHODS = ("exact", "probe")

CHECKPOINT_BYTES = 256 * 2**20
"""``exact`` recomputes segments in the backward pass when the tensors it keeps for the
backward pass (about ``SAVED_PER_STEP`` (batch, d, d) tensors per step) would take more
memory than this."""
SAVED_PER_STEP = 7


class Expansion(NamedTuple):
    """The small-noise expansion of the expected loss, each entry (batch,).

    ``loss`` is ℓ(h̄_M) on the deterministic path, ``q`` = Q = 2∇ℓᵀm_M and ``r`` = R =
    tr(∇²ℓ C_M); E ℓ ≈ loss + (q + r)/2.
    """

    loss: torch.Tensor
    q: torch.Tensor
    r: torch.Tensor

    @property
    def regularizer(self) -> torch.Tensor:
        """(q + r)/2, (batch,)."""
        return 0.5 * (self.q + self.r)

    @property
    def expected_loss(self) -> torch.Tensor:
        """loss + (q + r)/2, (batch,): the second-order approximation of E ℓ."""
        return self.loss + self.regularizer


# ------------------------------------------------------------------------ validation
def _check_probes(probes) -> int:
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"probes must be an integer >= 1, got {probes!r}")
    return probes


def check_inputs(model, x, y, *, probes=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate (model, x, y[, probes]); return x in the model's dtype and y as int64.

    Raises TypeError for a wrong type and ValueError for a wrong shape, a non-finite
    input or a label outside 0 .. classes − 1.
    """
    if not isinstance(model, NoisyRNN):
        raise TypeError(f"model must be an nrnn.NoisyRNN, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 3 or x.shape[0] < 1 or x.shape[1] < 1 or x.shape[2] != model.input_dim:
        raise ValueError(
            f"x must have shape (batch, M, {model.input_dim}) with batch, M >= 1, "
            f"got {tuple(x.shape)}"
        )
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise ValueError(f"y must hold integer class indices, got dtype {y.dtype}")
    if tuple(y.shape) != (x.shape[0],):
        raise ValueError(f"y must have shape (batch,) = ({x.shape[0]},), got {tuple(y.shape)}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= model.num_classes):
        raise ValueError(
            f"y must lie in 0 .. {model.num_classes - 1}, got values in "
            f"{int(y.min())} .. {int(y.max())}"
        )
    if probes is not None:
        _check_probes(probes)
    reference = model.M_W
    x = x.to(dtype=reference.dtype, device=reference.device)
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    return x, y.to(device=reference.device, dtype=torch.int64)


# ------------------------------------------------------------------ the deterministic path
@dataclass(frozen=True)
class DeterministicPath:
    """What the recursions need from the noise-free path of a batch (M steps).

    Per-step tensors are time-major tuples (iterate them; never index a whole sequence
    inside the loop).

    Attributes:
        logits: V h̄_M + c, (batch, c).
        pre_activations: z_k = W h̄_k + U x_k + b, M × (batch, d).
        tanh_slopes, tanh_curvatures: tanh'(z_k) and tanh''(z_k), M × (batch, d).
        diffusion_points: M × (batch, d): where the diffusion is evaluated: h̄_k (paper)
            or δ ⊙ f(h̄_k) (reference).
        a_matrix, w_matrix: A and W, (d, d).
        step: the Euler step per unit: Δt (float, paper) or δ(1 − s_m/2) ((d,), reference).
        noise: the model's noise; dt: the model's Δt.
        is_reference: the noise is ``ReferenceNoise``.
    """

    logits: torch.Tensor
    pre_activations: tuple[torch.Tensor, ...]
    tanh_slopes: tuple[torch.Tensor, ...]
    tanh_curvatures: tuple[torch.Tensor, ...]
    diffusion_points: tuple[torch.Tensor, ...]
    a_matrix: torch.Tensor
    w_matrix: torch.Tensor
    step: float | torch.Tensor
    noise: Noise | ReferenceNoise
    dt: float
    is_reference: bool

    def diffusion(self, point: torch.Tensor) -> torch.Tensor:
        """Σ_k (batch, d, r) from the generated diffusion of the noise form."""
        noise = self.noise
        if self.is_reference:
            return reference_diffusion(point, noise.additive, noise.multiplicative, self.dt)
        generated = diffusion_diagonal if noise.brownian == "diagonal" else diffusion_scalar
        return generated(point, noise.additive, noise.multiplicative)

    def jacobian_arguments(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(a, w, dt) with ``step_jacobian(a, w, z, dt)`` = J_k.

        For a per-unit step s, I + diag(s)(A + diag(t) W) = I + (diag(s) A) + diag(t)(diag(s) W),
        so the generated J takes the row-scaled matrices and dt = 1.
        """
        if self.is_reference:
            scale = self.step[:, None]
            return scale * self.a_matrix, scale * self.w_matrix, 1.0
        return self.a_matrix, self.w_matrix, self.step

    def contraction_scale(self):
        """The factor of v in the generated ``mean_step`` with ``jacobian_arguments``' dt."""
        return self.step if self.is_reference else 1.0


def deterministic_path(model: NoisyRNN, x: torch.Tensor) -> DeterministicPath:
    """The path with every noise variable at zero, through the model's own step."""
    batch, steps, _ = x.shape
    zero_noise = x.new_zeros(batch, steps, model.noise_dim)
    states = model.trajectory(x, zero_noise)  # (batch, M+1, d)
    A, W = model.matrices()
    drives = model.input_drive(x)
    previous = states[:, :-1]
    z = previous @ W.T + drives  # (batch, M, d)
    if model.is_reference:
        points = model.step_size * model.drift(previous, drives, A, W)
        step = model.step_size * reference_drift_scale(model.noise.multiplicative)
    else:
        points, step = previous, model.dt

    def time_major(tensor):
        return tensor.transpose(0, 1).unbind(0)

    return DeterministicPath(
        logits=model.readout(states[:, -1]),
        pre_activations=time_major(z),
        tanh_slopes=time_major(tanh_prime(z)),
        tanh_curvatures=time_major(tanh_second(z)),
        diffusion_points=time_major(points),
        a_matrix=A,
        w_matrix=W,
        step=step,
        noise=model.noise,
        dt=model.dt,
        is_reference=model.is_reference,
    )


# ------------------------------------------------------------------------- exact
def _exact_segment(path: DeterministicPath, covariance, mean, *per_step):
    """Advance (C, m) over the steps of one segment; ``per_step`` = (z_k...) + (points...)."""
    half = len(per_step) // 2
    a, w, dt = path.jacobian_arguments()
    scale = path.contraction_scale()
    for z, point in zip(per_step[:half], per_step[half:]):
        jacobian = step_jacobian(a, w, z, dt)
        contraction = scale * mean_contraction(covariance, path.w_matrix, z)
        mean = mean_step(mean, jacobian, contraction, dt)
        covariance = covariance_step(covariance, jacobian, path.diffusion(point), path.dt)
    return covariance, mean


def exact_moments(path: DeterministicPath) -> tuple[torch.Tensor, torch.Tensor]:
    """(m_M (batch, d), C_M (batch, d, d)) from the generated recursions."""
    batch, d = path.pre_activations[0].shape
    steps = len(path.pre_activations)
    covariance = path.logits.new_zeros(batch, d, d)
    mean = path.logits.new_zeros(batch, d)
    needs_grad = torch.is_grad_enabled() and path.logits.requires_grad
    stored = SAVED_PER_STEP * steps * batch * d * d * covariance.element_size()
    segment = math.ceil(math.sqrt(steps)) if needs_grad and stored > CHECKPOINT_BYTES else steps
    for start in range(0, steps, segment):
        per_step = (
            *path.pre_activations[start : start + segment],
            *path.diffusion_points[start : start + segment],
        )
        if segment < steps:
            covariance, mean = checkpoint(
                _exact_segment, path, covariance, mean, *per_step, use_reentrant=False
            )
        else:
            covariance, mean = _exact_segment(path, covariance, mean, *per_step)
    return mean, covariance


# ------------------------------------------------------------------------- probes
def _jacobian_rows(path: DeterministicPath, tanh_slope, rows):
    """Apply J_k to every row: rows (batch, n, d) -> (rows J_kᵀ, rows Wᵀ).

    J_k y = y + s ⊙ (A y + tanh'(z_k) ⊙ (W y)) with s the per-unit step: the generated
    ``step_jacobian`` applied without forming the (batch, d, d) matrix. W y is returned
    too (the contraction needs it). ``rows`` may also be (batch, d) (one row per sample).
    """
    slope = tanh_slope if rows.ndim == 2 else tanh_slope[:, None, :]
    w_rows = rows @ path.w_matrix.T
    return rows + path.step * (rows @ path.a_matrix.T + slope * w_rows), w_rows


def _unit_gains(path: DeterministicPath) -> tuple[torch.Tensor, ...]:
    """Per-unit diffusion entries for every step: M × (batch, d, n).

    Each form's σ acts unit by unit, so the generated diffusion evaluated on a one-unit
    state gives unit i's row of Σ restricted to its non-zero columns: diagonal n = 1
    (ξ_i); scalar n = 2 (ξ_i, the shared ξ_d); reference n = 2 (ζ_i, η_i).
    """
    points = torch.stack(path.diffusion_points)  # (M, batch, d)
    gains = path.diffusion(points[..., None])  # (M, batch, d, 1, n)
    return gains[..., 0, :].unbind(0)


def _unit_noise(path: DeterministicPath, xi: torch.Tensor) -> torch.Tensor:
    """The noise variables (..., r) arranged as the columns of ``_unit_gains``: (..., d, n)."""
    d = path.pre_activations[0].shape[-1]
    if path.is_reference:
        return xi.unflatten(-1, (2, d)).transpose(-1, -2)
    if path.noise.brownian == "diagonal":
        return xi[..., None]
    return torch.stack([xi[..., :d], xi[..., d:].expand_as(xi[..., :d])], dim=-1)


def _noise_rows(path: DeterministicPath, gains, xi):
    """√Δt Σ_k ξ for probe noise xi (batch, K, r) -> (batch, K, d), without forming Σ_k."""
    return math.sqrt(path.dt) * (gains[:, None] * _unit_noise(path, xi)).sum(-1)


def probe_moments(path: DeterministicPath, probes: int, generator=None):
    """(m̂_M (batch, d), Y_M (batch, K, d)): the mean correction driven by the probe
    estimate Ĉ_k = (1/K) Σ y yᵀ at every step, and the K linear-response paths at step M."""
    batch, d = path.pre_activations[0].shape
    width = path.noise.noise_dim(d)
    mean = path.logits.new_zeros(batch, d)
    paths = path.logits.new_zeros(batch, probes, d)
    steps = zip(path.tanh_slopes, path.tanh_curvatures, _unit_gains(path))
    for tanh_slope, tanh_curvature, gains in steps:
        propagated, w_paths = _jacobian_rows(path, tanh_slope, paths)
        # v = tanh''(z) ⊙ diag(W Ĉ Wᵀ): the generated mean_contraction of the probe
        # covariance, O(d K) instead of O(d³); then the generated mean_step J m + (s/2) v.
        contraction = tanh_curvature * w_paths.pow(2).mean(1)
        mean = _jacobian_rows(path, tanh_slope, mean)[0] + 0.5 * path.step * contraction
        xi = torch.randn(
            batch, probes, width, generator=generator, dtype=paths.dtype, device=paths.device
        )
        paths = propagated + _noise_rows(path, gains, xi)
    return mean, paths


# --------------------------------------------------------------------------- public
def explicit_regularizer(
    model: NoisyRNN,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    method: str = "exact",
    probes: int = 8,
    generator: torch.Generator | None = None,
) -> Expansion:
    """The expansion E ℓ ≈ loss + (q + r)/2 of the model's noise, per sample.

    Args:
        model: the noisy RNN; its noise (``Noise`` in either Brownian mode, or
            ``ReferenceNoise``) sets the regularizer. Its train/eval mode does not matter.
        x: inputs (batch, M, p).
        y: class indices (batch,).
        method: ``"exact"`` (covariance recursion, O(M d³)) or ``"probe"`` (``probes``
            random linear-response paths, O(M d² K), unbiased for q and r).
        probes: K, for ``"probe"``.
        generator: the torch generator of the probes (default: the global one).

    Returns:
        ``Expansion(loss, q, r)``, each (batch,), differentiable with respect to every
        parameter. For ``ReferenceNoise``, ``loss`` is along the mean path (see the module
        docstring). A model without noise gives q = r = 0.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    x, y = check_inputs(model, x, y, probes=probes)
    path = deterministic_path(model, x)
    loss = F.cross_entropy(path.logits, y, reduction="none")
    if model.noise.is_zero:
        zero = torch.zeros_like(loss)
        return Expansion(loss, zero, zero)

    readout = model.readout.weight  # V, (c, d)
    if method == "exact":
        mean, covariance = exact_moments(path)
        logit_covariance = readout @ covariance @ readout.T
    else:
        mean, paths = probe_moments(path, probes, generator)
        logit_paths = paths @ readout.T  # (batch, K, c)
        logit_covariance = logit_paths.transpose(1, 2) @ logit_paths / probes
    onehot = F.one_hot(y, model.num_classes).to(path.logits.dtype)
    q = q_term(cross_entropy_grad(path.logits, onehot), mean @ readout.T)
    r = r_term(cross_entropy_hessian(path.logits), logit_covariance)
    return Expansion(loss, q, r)


def __getattr__(name: str):
    # ``noise_laplacian`` lives in nrnn.oracle, which imports this module.
    if name == "noise_laplacian":
        from .oracle import noise_laplacian

        return noise_laplacian
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
