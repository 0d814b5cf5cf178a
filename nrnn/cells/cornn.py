"""The coupled oscillatory RNN (coRNN, Rusch & Mishra 2021) as a first-order system.

    y'' = φ(W y + 𝒲 y' + c) − γ y − ε y'     ⇔     h = (y, z):  y' = z,
                                                  z' = φ(W y + 𝒲 z + c) − γ y − ε z

The state is h = (y, z) ∈ R^{2d} and the noise acts on all of it; the readout sees the
position y. The drive of a step is c = V x_k + b (the model's input map). γ > 0 restores
and ε > 0 damps; they are fixed numbers, not trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from .. import activations, contract, options
from .._generated import cell_cornn as _formulas
from ..activations import ACTIVATIONS, Activation
from .base import Cell, Point, StabilitySplit

__all__ = ["CoRNNCell", "CoRNNOptions", "CoRNNParameters"]


class CoRNNParameters(NamedTuple):
    """W and 𝒲 (d, d); γ and ε (floats)."""

    w_matrix: torch.Tensor
    velocity_matrix: torch.Tensor
    gamma: float
    epsilon: float


class CoRNNCell(Cell[CoRNNParameters]):
    """f(y, z) = (z, φ(W y + 𝒲 z + c) − γ y − ε z).

    Args:
        hidden_dim: d (the state has n = 2d entries).
        gamma, epsilon: the restoring and damping constants γ, ε (finite numbers).
        activation: φ, a name in ``nrnn.activations.ACTIVATIONS``.
        init_std: W and 𝒲 start with entries N(0, (init_std / √d)²).

    Parameters: ``W`` and ``V`` (= 𝒲), (d, d), drawn in that order.
    """

    name = "cornn"
    formulas: ClassVar[ModuleType | None] = _formulas

    def __init__(
        self,
        hidden_dim: int,
        *,
        gamma: float = 2.7,
        epsilon: float = 4.7,
        activation: str = "tanh",
        init_std: float = 1.0,
    ) -> None:
        hidden_dim = contract.integer("hidden_dim", hidden_dim)
        super().__init__(
            hidden_dim, state_dim=2 * hidden_dim, output_dim=hidden_dim, drive_dim=hidden_dim
        )
        self.gamma = contract.real("gamma", gamma)
        self.epsilon = contract.real("epsilon", epsilon)
        self.activation = activations.get(activation)
        scale = contract.real("init_std", init_std) / math.sqrt(hidden_dim)
        self.W = nn.Parameter(torch.randn(hidden_dim, hidden_dim) * scale)
        self.V = nn.Parameter(torch.randn(hidden_dim, hidden_dim) * scale)

    def drift_parameters(self) -> CoRNNParameters:
        return CoRNNParameters(self.W, self.V, self.gamma, self.epsilon)

    def _pre_activation(
        self, state: torch.Tensor, drive: torch.Tensor, parameters: CoRNNParameters
    ) -> torch.Tensor:
        d = self.hidden_dim
        position, velocity = state[..., :d], state[..., d:]
        return position @ parameters.w_matrix.T + velocity @ parameters.velocity_matrix.T + drive

    def drift(
        self, state: torch.Tensor, drive: torch.Tensor, parameters: CoRNNParameters
    ) -> torch.Tensor:
        """(z, φ(W y + 𝒲 z + c) − γ y − ε z): state (..., 2d), drive (..., d) -> (..., 2d)."""
        return self.drift_terms(state, drive, parameters)[0]

    def drift_terms(
        self, state: torch.Tensor, drive: torch.Tensor, parameters: CoRNNParameters
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(f, {"phi": a}) with a = W y + 𝒲 z + c."""
        d = self.hidden_dim
        position, velocity = state[..., :d], state[..., d:]
        pre_activation = self._pre_activation(state, drive, parameters)
        force = self.activation.value(pre_activation)
        acceleration = force - parameters.gamma * position - parameters.epsilon * velocity
        return torch.cat([velocity, acceleration], dim=-1), {"phi": pre_activation}

    def activation_uses(self) -> dict[str, Activation]:
        return {"phi": self.activation}

    def linearisation(
        self, states: torch.Tensor, drives: torch.Tensor, parameters: CoRNNParameters
    ) -> Point:
        """Adds a = W y + 𝒲 z + c with φ'(a) and φ''(a)."""
        a = self._pre_activation(states, drives, parameters)
        return super().linearisation(states, drives, parameters) | {
            "phi_slope": self.activation.prime(a),
            "phi_curvature": self.activation.second(a),
        }

    def selections(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """P_y = [I 0] and P_z = [0 I], (d, 2d) each, in ``like``'s dtype and device."""
        identity = torch.eye(self.hidden_dim, dtype=like.dtype, device=like.device)
        zero = torch.zeros_like(identity)
        return torch.cat([identity, zero], dim=1), torch.cat([zero, identity], dim=1)

    def formula_arguments(self, point: Point, parameters: CoRNNParameters) -> dict[str, Any]:
        select_position, select_velocity = self.selections(parameters.w_matrix)
        return (
            point
            | parameters._asdict()
            | {
                "select_position": select_position,
                "select_velocity": select_velocity,
                "phi": self.activation.value,
            }
        )

    def stability_split(self, parameters: CoRNNParameters) -> StabilitySplit:
        """L = [[0, I], [−γ I, −ε I]], ρ = sup|φ'| ‖[W 𝒲]‖₂."""
        W = parameters.w_matrix
        identity = torch.eye(self.hidden_dim, dtype=W.dtype, device=W.device)
        linear = torch.cat(
            [
                torch.cat([torch.zeros_like(identity), identity], dim=1),
                torch.cat([-parameters.gamma * identity, -parameters.epsilon * identity], dim=1),
            ]
        )
        weights = torch.cat([W, parameters.velocity_matrix], dim=1)
        rho = self.activation.lipschitz * torch.linalg.matrix_norm(weights, ord=2)
        return StabilitySplit(linear, rho)

    def extra_repr(self) -> str:
        return (
            f"hidden_dim={self.hidden_dim}, gamma={self.gamma}, epsilon={self.epsilon}, "
            f"activation={self.activation.name!r}"
        )


@dataclass(frozen=True)
class CoRNNOptions(options.Options):
    """The options of :class:`CoRNNCell` (``[model.cell] kind = "cornn"``)."""

    gamma: float = options.real(2.7)
    epsilon: float = options.real(4.7)
    activation: str = options.choice("tanh", tuple(ACTIVATIONS))
    init_std: float = options.real(1.0, minimum=0)
