"""The noisy RNN: a Lipschitz RNN whose Euler–Maruyama step injects noise into the hidden state.

Hidden state h ∈ R^d, inputs x_0..x_{M−1} ∈ R^p, step dt:

    A = (1−β)(M_A + M_Aᵀ) + β(M_A − M_Aᵀ) − γ_A I,   W likewise from M_W, γ_W
    f(h, x) = A h + tanh(W h + U x + b)
    h_{k+1} = h_k + dt f(h_k, x_k) + √dt σ(h_k) ξ_k,   h_0 = 0
    logits = V h_M + c

With ``ReferenceNoise`` the step is the released code's instead (see ``nrnn.noise``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .noise import Noise, ReferenceNoise

INIT_DIVISORS = ("sqrt-hidden", "hidden")
"""How ``init_std`` is divided for the hidden matrices: by √d (default) or d (released code)."""


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_finite(name: str, value, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        expected = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{name} must be {expected}, got {value}")
    return value


def lipschitz_matrix(raw: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """(1−β)(M + Mᵀ) + β(M − Mᵀ) − γ I for a square ``raw`` = M of shape (d, d)."""
    identity = torch.eye(raw.shape[-1], dtype=raw.dtype, device=raw.device)
    transposed = raw.transpose(-1, -2)
    return (1 - beta) * (raw + transposed) + beta * (raw - transposed) - gamma * identity


class NoisyRNN(nn.Module):
    """Noisy Lipschitz RNN classifier.

    Args:
        input_dim: p, features per time step.
        hidden_dim: d.
        num_classes: c.
        dt: the Euler–Maruyama step (> 0).
        beta: β ∈ [0, 1], the weight of the skew-symmetric part of A and W.
        gamma_a, gamma_w: the diagonal shifts γ_A, γ_W.
        noise: ``Noise`` (paper form) or ``ReferenceNoise`` (released-code form).
        antisymmetric: the Antisymmetric RNN baseline: β = 1 for W and no A h term
            (``beta`` and ``gamma_a`` are then not used; there is no ``M_A``).
        init_std: M_A and M_W start with entries N(0, (init_std / √d)²), or with
            ``init_divisor="hidden"`` N(0, (init_std / d)²) as in the authors' released code.
        init_divisor: ``"sqrt-hidden"`` (default) or ``"hidden"``, see ``init_std``.

    Parameters: ``M_A`` and ``M_W`` (d, d), ``input`` (Linear p → d: U, b),
    ``readout`` (Linear d → c: V, c) and, for ``ReferenceNoise``, ``step_size`` (d,) = δ.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        num_classes: int,
        *,
        dt: float = 0.01,
        beta: float = 0.75,
        gamma_a: float = 0.001,
        gamma_w: float = 0.001,
        noise: Noise | ReferenceNoise = Noise(),
        antisymmetric: bool = False,
        init_std: float = 1.0,
        init_divisor: str = "sqrt-hidden",
    ) -> None:
        super().__init__()
        self.input_dim = _check_positive_int("input_dim", input_dim)
        self.hidden_dim = _check_positive_int("hidden_dim", hidden_dim)
        self.num_classes = _check_positive_int("num_classes", num_classes)
        self.dt = _check_finite("dt", dt, positive=True)
        beta = _check_finite("beta", beta)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {beta}")
        self.antisymmetric = bool(antisymmetric)
        self.beta = 1.0 if self.antisymmetric else beta
        self.gamma_a = _check_finite("gamma_a", gamma_a)
        self.gamma_w = _check_finite("gamma_w", gamma_w)
        if not isinstance(noise, (Noise, ReferenceNoise)):
            raise TypeError(
                f"noise must be nrnn.Noise or nrnn.ReferenceNoise, got {type(noise).__name__}"
            )
        self.noise = noise
        init_std = _check_finite("init_std", init_std)
        if init_divisor not in INIT_DIVISORS:
            raise ValueError(f"init_divisor must be one of {INIT_DIVISORS}, got {init_divisor!r}")

        d = hidden_dim
        scale = init_std / (d if init_divisor == "hidden" else math.sqrt(d))
        self.M_W = nn.Parameter(torch.randn(d, d) * scale)
        if self.antisymmetric:
            self.register_parameter("M_A", None)
        else:
            self.M_A = nn.Parameter(torch.randn(d, d) * scale)
        self.input = nn.Linear(input_dim, d)
        self.readout = nn.Linear(d, num_classes)
        if isinstance(noise, ReferenceNoise):
            self.step_size = nn.Parameter(torch.full((d,), self.dt))
        else:
            self.register_parameter("step_size", None)

    # ----------------------------------------------------------------- structure
    @property
    def noise_dim(self) -> int:
        """r, noise variables per step."""
        return self.noise.noise_dim(self.hidden_dim)

    @property
    def is_reference(self) -> bool:
        return isinstance(self.noise, ReferenceNoise)

    def matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, W), each (d, d). A is zero for the antisymmetric baseline."""
        W = lipschitz_matrix(self.M_W, self.beta, self.gamma_w)
        if self.antisymmetric:
            return torch.zeros_like(W), W
        return lipschitz_matrix(self.M_A, self.beta, self.gamma_a), W

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        """U x_k + b for every step: x (batch, M, p) -> (batch, M, d)."""
        return self.input(x)

    def drift(self, h, drive, A, W) -> torch.Tensor:
        """f(h, x) = A h + tanh(W h + U x + b): h, drive (batch, d) -> (batch, d)."""
        pre_activation = h @ W.T + drive
        if self.antisymmetric:
            return torch.tanh(pre_activation)
        return h @ A.T + torch.tanh(pre_activation)

    # ------------------------------------------------------------- validation
    def _prepare(self, x: torch.Tensor, xi: torch.Tensor | None, draw_noise: bool):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 3 or x.shape[-1] != self.input_dim or x.shape[1] < 1:
            raise ValueError(
                f"x must have shape (batch, M, {self.input_dim}) with M >= 1, got {tuple(x.shape)}"
            )
        reference = self.M_W
        x = x.to(dtype=reference.dtype, device=reference.device)
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf")
        batch, steps, _ = x.shape
        expected = (batch, steps, self.noise_dim)
        if xi is not None:
            if not isinstance(xi, torch.Tensor) or tuple(xi.shape) != expected:
                got = tuple(xi.shape) if isinstance(xi, torch.Tensor) else type(xi).__name__
                raise ValueError(f"xi must have shape (batch, M, r) = {expected}, got {got}")
            xi = xi.to(dtype=reference.dtype, device=reference.device)
        elif draw_noise and self.training and not self.noise.is_zero:
            xi = self.noise.sample(expected, dtype=reference.dtype, device=reference.device)
        return x, xi

    # ---------------------------------------------------------------- dynamics
    def noise_terms(self, xi: torch.Tensor | None):
        """Split the noise variables into what one step adds and multiplies.

        Paper form: h_{k+1} = h_k + dt f + additive_k + h_k ⊙ multiplier_k, with
        additive_k = √dt σ₁ ξ_k[:d] and multiplier_k = √dt σ₂ ξ_k (diagonal) or √dt σ₂ ξ_k[d]
        (scalar). Released-code form: h_{k+1} = h_k + δ ⊙ multiplier_k ⊙ f + additive_k with
        multiplier_k = u_k = 1 − s_m/2 + (s_m/√12) η_k and additive_k = s_a ζ_k.

        Args:
            xi: (..., r) noise variables, or None for a noise-free step.
        Returns:
            (additive, multiplier), each (..., d) (the scalar multiplier (..., 1)), or None.
        """
        if xi is None:
            return None, None
        d = self.hidden_dim
        noise = self.noise
        if self.is_reference:
            s_m = noise.multiplicative
            multiplier = (1.0 - s_m / 2) + (s_m / math.sqrt(12.0)) * xi[..., d:]
            return noise.additive * xi[..., :d], multiplier
        root_dt = math.sqrt(self.dt)
        multiplier = xi if noise.brownian == "diagonal" else xi[..., d:]
        return root_dt * noise.additive * xi[..., :d], root_dt * noise.multiplicative * multiplier

    def euler_step(self, h, drive, A, W, additive=None, multiplier=None) -> torch.Tensor:
        """One step h_k -> h_{k+1} from ``noise_terms`` (None: no noise); h, drive (batch, d)."""
        f = self.drift(h, drive, A, W)
        if self.is_reference:
            step = self.step_size if multiplier is None else self.step_size * multiplier
            h_next = h + step * f
        else:
            h_next = h + self.dt * f
            if multiplier is not None:
                h_next = h_next + h * multiplier
        return h_next if additive is None else h_next + additive

    def _run(self, x, xi, keep_path: bool):
        x, xi = self._prepare(x, xi, draw_noise=True)
        A, W = self.matrices()
        # Precompute every per-step tensor time-major and iterate over unbind(0): slicing a
        # whole-sequence tensor inside the loop makes the backward pass quadratic in M.
        drives = self.input_drive(x).transpose(0, 1).unbind(0)
        steps = len(drives)
        additive, multiplier = self.noise_terms(None if xi is None else xi.transpose(0, 1))
        additive = additive.unbind(0) if additive is not None else [None] * steps
        multiplier = multiplier.unbind(0) if multiplier is not None else [None] * steps
        h = x.new_zeros(x.shape[0], self.hidden_dim)
        path = [h]
        for drive, add_k, mult_k in zip(drives, additive, multiplier):
            h = self.euler_step(h, drive, A, W, add_k, mult_k)
            if keep_path:
                path.append(h)
        return torch.stack(path, dim=1) if keep_path else h

    def final_state(self, x: torch.Tensor, xi: torch.Tensor | None = None) -> torch.Tensor:
        """h_M (batch, d) without keeping the path (cheaper for Monte Carlo)."""
        return self._run(x, xi, keep_path=False)

    def trajectory(self, x: torch.Tensor, xi: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states: x (batch, M, p), xi (batch, M, r) -> (batch, M+1, d), h_0 included."""
        return self._run(x, xi, keep_path=True)

    def forward(self, x: torch.Tensor, xi: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, c) from x (batch, M, p).

        Noise is drawn when the module is in training mode and its noise is non-zero; a
        given ``xi`` (batch, M, r) is used in either mode.
        """
        return self.readout(self._run(x, xi, keep_path=False))

    def extra_repr(self) -> str:
        return (
            f"input_dim={self.input_dim}, hidden_dim={self.hidden_dim}, "
            f"num_classes={self.num_classes}, dt={self.dt}, beta={self.beta}, "
            f"gamma_a={self.gamma_a}, gamma_w={self.gamma_w}, noise={self.noise}, "
            f"antisymmetric={self.antisymmetric}"
        )
