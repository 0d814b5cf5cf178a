"""The Lipschitz RNN cell (and the Antisymmetric RNN as its special case).

    A = (1−β)(M_A + M_Aᵀ) + β(M_A − M_Aᵀ) − γ_A I,   W likewise from M_W, γ_W
    f(h, x) = A h + φ(W h + U x + b)

with φ a smooth activation (tanh by default, see ``nrnn.activations``). The Antisymmetric
RNN is β = 1 for W and no A h term (``antisymmetric=True``: there is no ``M_A``). The
drive of a step is c = U x_k + b (the model's input map); the state is h (n = d).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from .. import activations, contract, options
from .._generated import cell_lipschitz as _formulas
from ..activations import ACTIVATIONS, Activation
from .base import Cell, Point, StabilitySplit

__all__ = [
    "INIT_DIVISORS",
    "LipschitzCell",
    "LipschitzOptions",
    "LipschitzParameters",
    "lipschitz_matrix",
]

INIT_DIVISORS = ("sqrt-hidden", "hidden")
"""How ``init_std`` is divided for the hidden matrices: by √d (default) or d (released code)."""


class LipschitzParameters(NamedTuple):
    """A and W, each (d, d); A is zero for the antisymmetric baseline."""

    a_matrix: torch.Tensor
    w_matrix: torch.Tensor


def lipschitz_matrix(raw: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """(1−β)(M + Mᵀ) + β(M − Mᵀ) − γ I for a square ``raw`` = M of shape (d, d)."""
    identity = torch.eye(raw.shape[-1], dtype=raw.dtype, device=raw.device)
    transposed = raw.transpose(-1, -2)
    return (1 - beta) * (raw + transposed) + beta * (raw - transposed) - gamma * identity


def _plus_product(term: torch.Tensor, rows: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """term + rows @ matrix: one ``addmm`` when every operand is a plain batch of rows."""
    if rows.dim() == 2 and term.shape == (rows.shape[0], matrix.shape[1]):
        return torch.addmm(term, rows, matrix)
    return rows @ matrix + term


class LipschitzCell(Cell[LipschitzParameters]):
    """f(h, x) = A h + φ(W h + U x + b).

    Args:
        hidden_dim: d.
        beta: β ∈ [0, 1], the weight of the skew-symmetric part of A and W.
        gamma_a, gamma_w: the diagonal shifts γ_A, γ_W.
        antisymmetric: the Antisymmetric RNN: β = 1 for W and no A h term (``beta`` and
            ``gamma_a`` are then not used; there is no ``M_A``).
        init_std: M_A and M_W start with entries N(0, (init_std / √d)²), or with
            ``init_divisor="hidden"`` N(0, (init_std / d)²) as in the authors' released code.
        init_divisor: ``"sqrt-hidden"`` (default) or ``"hidden"``, see ``init_std``.
        activation: φ, a name in ``nrnn.activations.ACTIVATIONS``.

    Parameters: ``M_W`` and ``M_A`` (d, d), drawn in that order.
    """

    name = "lipschitz"
    formulas: ClassVar[ModuleType | None] = _formulas

    def __init__(
        self,
        hidden_dim: int,
        *,
        beta: float = 0.75,
        gamma_a: float = 0.001,
        gamma_w: float = 0.001,
        antisymmetric: bool = False,
        init_std: float = 1.0,
        init_divisor: str = "sqrt-hidden",
        activation: str = "tanh",
    ) -> None:
        super().__init__(
            hidden_dim, state_dim=hidden_dim, output_dim=hidden_dim, drive_dim=hidden_dim
        )
        beta = contract.real("beta", beta, minimum=0, maximum=1)
        self.antisymmetric = bool(antisymmetric)
        self.beta = 1.0 if self.antisymmetric else beta
        self.gamma_a = contract.real("gamma_a", gamma_a)
        self.gamma_w = contract.real("gamma_w", gamma_w)
        init_std = contract.real("init_std", init_std)
        contract.choice("init_divisor", init_divisor, INIT_DIVISORS)
        self.activation = activations.get(activation)

        d = hidden_dim
        scale = init_std / (d if init_divisor == "hidden" else math.sqrt(d))
        self.M_W = nn.Parameter(torch.randn(d, d) * scale)
        if self.antisymmetric:
            self.register_parameter("M_A", None)
        else:
            self.M_A = nn.Parameter(torch.randn(d, d) * scale)

    def matrices(self) -> LipschitzParameters:
        """(A, W), each (d, d). A is zero for the antisymmetric baseline."""
        W = lipschitz_matrix(self.M_W, self.beta, self.gamma_w)
        if self.antisymmetric:
            return LipschitzParameters(torch.zeros_like(W), W)
        return LipschitzParameters(lipschitz_matrix(self.M_A, self.beta, self.gamma_a), W)

    # ------------------------------------------------------------------ dynamics
    def drift_parameters(self) -> LipschitzParameters:
        return self.matrices()

    def drift(
        self, state: torch.Tensor, drive: torch.Tensor, parameters: LipschitzParameters
    ) -> torch.Tensor:
        """A h + φ(W h + c): state, drive c = U x + b (..., d) -> (..., d)."""
        return self.drift_terms(state, drive, parameters)[0]

    def drift_terms(
        self, state: torch.Tensor, drive: torch.Tensor, parameters: LipschitzParameters
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(A h + φ(z), {"phi": z}) with z = W h + c; each product and its sum one
        ``addmm`` for a batch of rows (batch, d)."""
        A, W = parameters
        pre_activation = _plus_product(drive, state, W.T)
        if self.antisymmetric:
            return self.activation.value(pre_activation), {"phi": pre_activation}
        return _plus_product(self.activation.value(pre_activation), state, A.T), {
            "phi": pre_activation
        }

    def activation_uses(self) -> dict[str, Activation]:
        return {"phi": self.activation}

    def linearisation(
        self, states: torch.Tensor, drives: torch.Tensor, parameters: LipschitzParameters
    ) -> Point:
        """Adds the pre-activation z = W h + c with φ'(z) and φ''(z)."""
        z = states @ parameters.w_matrix.T + drives
        return super().linearisation(states, drives, parameters) | {
            "z": z,
            "phi_slope": self.activation.prime(z),
            "phi_curvature": self.activation.second(z),
        }

    def stability_split(self, parameters: LipschitzParameters) -> StabilitySplit:
        """L = A, ρ = sup|φ'| ‖W‖₂ (φ(W h + c) is that Lipschitz in h)."""
        A, W = parameters
        return StabilitySplit(A, self.activation.lipschitz * torch.linalg.matrix_norm(W, ord=2))

    # --------------------------------------------------------------- derivatives
    def formula_arguments(self, point: Point, parameters: LipschitzParameters) -> dict[str, Any]:
        return point | {
            "a_matrix": parameters.a_matrix,
            "w_matrix": parameters.w_matrix,
            "phi": self.activation.value,
        }

    def per_unit_step_jacobians(
        self, parameters: LipschitzParameters, steps: torch.Tensor
    ) -> Callable[[Point], torch.Tensor]:
        """I + diag(s)(A + diag(φ'(z)) W) = the generated J of the row-scaled matrices
        diag(s) A and diag(s) W with Δt = 1 (scaled once for every point)."""
        rows = steps[:, None]
        A, W = parameters
        scaled_a, scaled_w = rows * A, rows * W
        return lambda point: _formulas.step_jacobian(scaled_a, scaled_w, point["phi_slope"], 1.0)

    def differential(
        self, point: Point, parameters: LipschitzParameters, rows: torch.Tensor
    ) -> torch.Tensor:
        """F y = A y + φ'(z) ⊙ (W y) for rows y (batch, d) or (batch, K, d), without F."""
        return self._differential(point, parameters, rows)[0]

    def _differential(
        self, point: Point, parameters: LipschitzParameters, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        slope = point["phi_slope"] if rows.ndim == 2 else point["phi_slope"][:, None, :]
        w_rows = rows @ parameters.w_matrix.T
        return rows @ parameters.a_matrix.T + slope * w_rows, w_rows

    def probe_terms(
        self, point: Point, parameters: LipschitzParameters, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(F y, the mean over probes of φ''(z) ⊙ (W y)²) for rows y (batch, K, d)."""
        differential, w_rows = self._differential(point, parameters, rows)
        return differential, point["phi_curvature"] * w_rows.pow(2).mean(1)

    def extra_repr(self) -> str:
        return (
            f"hidden_dim={self.hidden_dim}, beta={self.beta}, "
            f"gamma_a={self.gamma_a}, gamma_w={self.gamma_w}, "
            f"antisymmetric={self.antisymmetric}, activation={self.activation.name!r}"
        )


@dataclass(frozen=True)
class LipschitzOptions(options.Options):
    """The options of :class:`LipschitzCell` (``[model.cell] kind = "lipschitz"``)."""

    beta: float = options.real(0.75, minimum=0, maximum=1)
    gamma_a: float = options.real(0.001)
    gamma_w: float = options.real(0.001)
    antisymmetric: bool = options.flag(False)
    init_std: float = options.real(1.0, minimum=0)
    init_divisor: str = options.choice("sqrt-hidden", INIT_DIVISORS)
    activation: str = options.choice("tanh", tuple(ACTIVATIONS))
