"""The GRU-ODE cell (De Brouwer et al. 2019): a gated drift.

    u = σ(U_u h + c_u),  r = σ(U_r h + c_r),  g = tanh(U_g (r ⊙ h) + c_g)
    f(h, c) = (1 − u) ⊙ (g − h)

The drift multiplies activations, so its curvature has products of activation
derivatives; the gates multiply the state, so no one-sided Lipschitz bound is derived
(the stability bounds say so; the measured exponents work). The drive of a step is
c = (c_u, c_r, c_g) = W x_k + b (the model's input map, width 3d).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

from .. import activations, contract, options
from .._generated import cell_gru as _formulas
from ..activations import Activation
from .base import Cell, Point

__all__ = ["GRUODECell", "GRUODEOptions", "GRUODEParameters"]

_SIGMOID, _TANH = activations.get("sigmoid"), activations.get("tanh")


class GRUODEParameters(NamedTuple):
    """U_u, U_r, U_g, each (d, d)."""

    update_matrix: torch.Tensor
    reset_matrix: torch.Tensor
    candidate_matrix: torch.Tensor


class GRUODECell(Cell[GRUODEParameters]):
    """f(h, c) = (1 − u) ⊙ (g − h) with sigmoid gates u, r and a tanh candidate g.

    Args:
        hidden_dim: d (the state has n = d entries).
        init_std: U_u, U_r, U_g start with entries N(0, (init_std / √d)²).

    Parameters: ``U_u``, ``U_r``, ``U_g``, (d, d), drawn in that order.
    """

    name = "gru"
    formulas: ClassVar[ModuleType | None] = _formulas
    drive_parts = ("update_drive", "reset_drive", "candidate_drive")

    def __init__(self, hidden_dim: int, *, init_std: float = 1.0) -> None:
        hidden_dim = contract.integer("hidden_dim", hidden_dim)
        super().__init__(
            hidden_dim, state_dim=hidden_dim, output_dim=hidden_dim, drive_dim=3 * hidden_dim
        )
        scale = contract.real("init_std", init_std) / math.sqrt(hidden_dim)
        self.U_u = nn.Parameter(torch.randn(hidden_dim, hidden_dim) * scale)
        self.U_r = nn.Parameter(torch.randn(hidden_dim, hidden_dim) * scale)
        self.U_g = nn.Parameter(torch.randn(hidden_dim, hidden_dim) * scale)

    def drift_parameters(self) -> GRUODEParameters:
        return GRUODEParameters(self.U_u, self.U_r, self.U_g)

    def _gates(
        self, state: torch.Tensor, drive: torch.Tensor, parameters: GRUODEParameters
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pre-activations (a_u, a_r, a_g), each (..., d)."""
        update_drive, reset_drive, candidate_drive = drive.chunk(3, dim=-1)
        a_u = state @ parameters.update_matrix.T + update_drive
        a_r = state @ parameters.reset_matrix.T + reset_drive
        a_g = (_SIGMOID.value(a_r) * state) @ parameters.candidate_matrix.T + candidate_drive
        return a_u, a_r, a_g

    def drift(
        self, state: torch.Tensor, drive: torch.Tensor, parameters: GRUODEParameters
    ) -> torch.Tensor:
        """(1 − u) ⊙ (g − h): state (..., d), drive (..., 3d) -> (..., d)."""
        return self.drift_terms(state, drive, parameters)[0]

    def drift_terms(
        self, state: torch.Tensor, drive: torch.Tensor, parameters: GRUODEParameters
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(f, the pre-activations {"u": a_u, "r": a_r, "g": a_g})."""
        a_u, a_r, a_g = self._gates(state, drive, parameters)
        drift = (1 - _SIGMOID.value(a_u)) * (_TANH.value(a_g) - state)
        return drift, {"u": a_u, "r": a_r, "g": a_g}

    def activation_uses(self) -> dict[str, Activation]:
        return {"u": _SIGMOID, "r": _SIGMOID, "g": _TANH}

    def linearisation(
        self, states: torch.Tensor, drives: torch.Tensor, parameters: GRUODEParameters
    ) -> Point:
        """Adds the values, slopes and curvatures of u, r and g."""
        point = super().linearisation(states, drives, parameters)
        for label, activation, argument in zip(
            ("u", "r", "g"),
            (_SIGMOID, _SIGMOID, _TANH),
            self._gates(states, drives, parameters),
            strict=True,
        ):
            point[f"{label}_value"] = activation.value(argument)
            point[f"{label}_slope"] = activation.prime(argument)
            point[f"{label}_curvature"] = activation.second(argument)
        return point

    def formula_arguments(self, point: Point, parameters: GRUODEParameters) -> dict[str, Any]:
        arguments = (
            point
            | parameters._asdict()
            | {"u": _SIGMOID.value, "r": _SIGMOID.value, "g": _TANH.value}
        )
        if "drive" in point:
            arguments |= dict(zip(self.drive_parts, point["drive"].chunk(3, dim=-1), strict=True))
        return arguments

    def extra_repr(self) -> str:
        return f"hidden_dim={self.hidden_dim}"


@dataclass(frozen=True)
class GRUODEOptions(options.Options):
    """The options of :class:`GRUODECell` (``[model.cell] kind = "gru"``)."""

    init_std: float = options.real(1.0, minimum=0)
