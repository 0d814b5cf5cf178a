"""What a recurrent cell is: the drift f(h, x) of dh = f(h, x) dt + σ(h) dB, and its
derivatives along a path.

A cell owns its parameters, its state size n (``state_dim``) and its drift as a pure
function ``drift(state, drive, parameters)`` of the state (..., n), the drive c
(..., drive_dim) and the per-sequence ``drift_parameters()`` (a tuple of tensors, e.g. the
matrices (A, W) built from the raw weights). The input enters through the drive: the
model maps every step's input to c_k = U x_k + b (one ``nn.Linear(p, drive_dim)``, the
model's ``input``), so a cell is a function of (h, c) alone. The model's Euler step, the
explicit regularizer, the stability tools and the metrics only call these methods.

Derivatives along a path are taken at a *point*: a dict of named per-step tensors that
``linearisation(states, drives, parameters)`` computes for a whole path at once
(batch, M, ·). It always holds ``"state"`` and ``"drive"``; a cell with generated formulas
adds what they take (activation slopes and curvatures of its pre-activations). The
derivatives (the :class:`Derivatives` interface) are

- ``drift_jacobian``: F = ∂f/∂h (batch, n, n);
- ``step_jacobian``: I + Δt F; ``per_unit_step_jacobians(parameters, s)``: a function of
  the point giving I + diag(s) F (what does not depend on the point computed once);
- ``curvature``: v = E ∇²f[δ, δ] for δ ~ (0, C): vᵢ = Σⱼₖ Cⱼₖ ∂²fᵢ/∂hⱼ∂hₖ (batch, n);
- ``differential``: ∇f[y] = F y for rows y (batch, n) or (batch, K, n);
- ``probe_terms``: (F y, the mean over the K rows of ∇²f[y, y]).

A cell whose ``formulas`` module is set (generated from its SymPy drift by ``nrnn derive``)
computes them from the generated code; any other cell gets them from ``torch.func``
through :class:`nrnn.cells.autodiff.AutodiffDerivatives` (``derivatives("autodiff")``
forces that route for any cell).

The readout sees the first ``output_dim`` entries of the state (all of them unless the
cell says otherwise; the coupled oscillator reads its position y).
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import torch
from torch import nn

from .. import contract
from ..activations import Activation
from ..steps import per_unit_step
from .autodiff import AutodiffDerivatives, Point

__all__ = ["DERIVATIVE_ROUTES", "Cell", "StabilitySplit"]

DERIVATIVE_ROUTES = ("formulas", "autodiff")
"""``formulas``: the cell's generated code (torch.func when it has none); ``autodiff``:
torch.func always."""

P = TypeVar("P", bound=tuple[Any, ...])
"""A cell's drift parameters: what its ``drift_parameters()`` returns (a named tuple)."""


class Derivatives(Protocol):
    """The derivatives of a drift along a path (see the module docstring): a
    :class:`Cell` with generated formulas, or :class:`AutodiffDerivatives`. ``parameters``
    are the cell's drift parameters."""

    def drift_jacobian(self, point: Point, parameters: Any) -> torch.Tensor: ...

    def step_jacobian(self, point: Point, parameters: Any, dt: float) -> torch.Tensor: ...

    def per_unit_step_jacobians(
        self, parameters: Any, steps: torch.Tensor
    ) -> Callable[[Point], torch.Tensor]: ...

    def curvature(
        self, point: Point, parameters: Any, covariance: torch.Tensor
    ) -> torch.Tensor: ...

    def differential(self, point: Point, parameters: Any, rows: torch.Tensor) -> torch.Tensor: ...

    def probe_terms(
        self, point: Point, parameters: Any, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass(frozen=True)
class StabilitySplit:
    """A drift written as f(h) = L h + N(h) with N ρ-Lipschitz in h (for every input).

    Then eᵀ(f(h) − f(h')) ≤ (λ_max(sym L) + ρ)|e|² for e = h − h': the one-sided Lipschitz
    constant κ behind the stability bounds. ``linear``: L (n, n); ``nonlinear_lipschitz``:
    ρ (0-dim tensor).
    """

    linear: torch.Tensor
    nonlinear_lipschitz: torch.Tensor


@functools.cache
def argument_names(function: Callable[..., Any]) -> tuple[str, ...]:
    """The parameter names of a (generated) function, in order."""
    return tuple(inspect.signature(function).parameters)


def call_formula(function: Callable[..., Any], arguments: dict[str, Any]) -> Any:
    """Call a generated function with the entries of ``arguments`` it takes (by name)."""
    return function(**{name: arguments[name] for name in argument_names(function)})


class Cell(nn.Module, ABC, Generic[P]):
    """A recurrent cell (see the module docstring), generic in the type ``P`` of its drift
    parameters.

    Args:
        hidden_dim: d, the cell's size (the state has ``state_dim`` = n entries).
        state_dim: n; output_dim: entries the readout sees; drive_dim: width of the drive.
    """

    name: ClassVar[str] = "cell"
    formulas: ClassVar[ModuleType | None] = None
    drive_parts: ClassVar[tuple[str, ...]] = ("drive",)
    """The names the generated formulas give the parts of the drive, in the order they are
    concatenated along its last axis."""

    def __init__(self, hidden_dim: int, *, state_dim: int, output_dim: int, drive_dim: int) -> None:
        super().__init__()
        self.hidden_dim = contract.integer("hidden_dim", hidden_dim)
        self.state_dim = state_dim
        self.output_dim = output_dim
        self.drive_dim = drive_dim

    # ------------------------------------------------------------------ dynamics
    @abstractmethod
    def drift_parameters(self) -> P:
        """The tensors the drift uses, built once per sequence from the parameters."""

    @abstractmethod
    def drift(self, state: torch.Tensor, drive: torch.Tensor, parameters: P) -> torch.Tensor:
        """f(h, x): state (..., n), drive (..., drive_dim) -> (..., n). Pure."""

    def drift_terms(
        self, state: torch.Tensor, drive: torch.Tensor, parameters: P
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """(f(h, x), the pre-activation of every activation use by label), computed by the
        same operations as :meth:`drift`; the fused recurrence keeps the second to rebuild
        the point of each step without a matrix product. None when the cell does not say
        (the point is then recomputed by :meth:`linearisation`)."""
        return self.drift(state, drive, parameters), None

    def activation_uses(self) -> dict[str, Activation]:
        """label -> the :class:`nrnn.activations.Activation` of each activation use."""
        return {}

    def step_point(
        self,
        state: torch.Tensor,
        drive: torch.Tensor,
        pre_activations: dict[str, torch.Tensor] | None,
        parameters: P,
        names: Iterable[str],
    ) -> Point:
        """The entries ``names`` of the point of one step (batch, ·), from the
        ``pre_activations`` :meth:`drift_terms` returned (or by :meth:`linearisation`)."""
        if pre_activations is None:
            point = self.linearisation(state, drive, parameters)
            return {name: point[name] for name in names}
        uses, point = self.activation_uses(), {"state": state, "drive": drive}
        declared = self.activation_points()
        for name in names:
            if name not in point:
                label, order = declared[name]
                function = (uses[label].value, uses[label].prime, uses[label].second)[order]
                point[name] = function(pre_activations[label])
        return {name: point[name] for name in names}

    def activation_points(self) -> dict[str, tuple[str, int]]:
        """The arguments of the generated formulas that are activation derivatives at the
        path, by name: (the activation use's label, the order: 0 value, 1 slope, 2
        curvature), as the generated module declares them (``ACTIVATION_POINTS``)."""
        declared = getattr(self.formulas, "ACTIVATION_POINTS", None)
        if declared is None:
            raise TypeError(
                f"the formulas of the {self.name} cell declare no ACTIVATION_POINTS: they were "
                "generated by an older nrnn; generate them again (python -m nrnn.derivations "
                "--cell FILE.py:SPEC --out DIR)"
            )
        return declared

    @property
    def has_step_vjp(self) -> bool:
        """The generated formulas declare the vector–Jacobian products of one step
        (``HAS_STEP_VJP``; the fused recurrence needs them). Formulas generated before the
        declaration, or written by hand without it, run the op-by-op recurrence."""
        return self.formulas is not None and getattr(self.formulas, "HAS_STEP_VJP", False) is True

    def linearisation(self, states: torch.Tensor, drives: torch.Tensor, parameters: P) -> Point:
        """The point of every step: states (batch, M, n), drives (batch, M, drive_dim) ->
        named (batch, M, ·) tensors, ``"state"`` and ``"drive"`` included."""
        return {"state": states, "drive": drives}

    def output(self, state: torch.Tensor) -> torch.Tensor:
        """What the readout sees: the first ``output_dim`` entries, (..., output_dim)."""
        return state if self.output_dim == self.state_dim else state[..., : self.output_dim]

    def output_covariance(self, covariance: torch.Tensor) -> torch.Tensor:
        """The block of a state covariance (..., n, n) the readout sees."""
        k = self.output_dim
        return covariance if k == self.state_dim else covariance[..., :k, :k]

    def stability_split(self, parameters: P) -> StabilitySplit | None:
        """f = L h + N(h) with N ρ-Lipschitz, when the cell has one (None otherwise)."""
        return None

    # --------------------------------------------------------------- derivatives
    def derivatives(self, route: str = "formulas") -> Derivatives:
        """The derivatives of the drift along a path (the interface in the module
        docstring): this cell's generated formulas, or torch.func (``"autodiff"``, and
        for a cell without formulas)."""
        contract.choice("derivatives", route, DERIVATIVE_ROUTES)
        if route == "autodiff" or self.formulas is None:
            return AutodiffDerivatives(self)
        return self

    def formula_arguments(self, point: Point, parameters: P) -> dict[str, Any]:
        """The generated functions' arguments by name, from a point and the parameters."""
        raise NotImplementedError(f"the {self.name} cell has no generated formulas")

    def _formula(self, name: str, point: Point, parameters: P, **extra: Any) -> Any:
        arguments = self.formula_arguments(point, parameters) | extra
        return call_formula(getattr(self.formulas, name), arguments)

    def drift_jacobian(self, point: Point, parameters: P) -> torch.Tensor:
        return self._formula("drift_jacobian", point, parameters)

    def step_jacobian(self, point: Point, parameters: P, dt: float) -> torch.Tensor:
        return self._formula("step_jacobian", point, parameters, dt=dt)

    def per_unit_step_jacobians(
        self, parameters: P, steps: torch.Tensor
    ) -> Callable[[Point], torch.Tensor]:
        return lambda point: per_unit_step(self.drift_jacobian(point, parameters), steps)

    def curvature(self, point: Point, parameters: P, covariance: torch.Tensor) -> torch.Tensor:
        return self._formula("curvature", point, parameters, covariance=covariance)

    def differential(self, point: Point, parameters: P, rows: torch.Tensor) -> torch.Tensor:
        return self._formula(
            "drift_differential", _rows_point(point, rows), parameters, direction=rows
        )

    def probe_terms(
        self, point: Point, parameters: P, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        point = _rows_point(point, rows)
        first = self._formula("drift_differential", point, parameters, direction=rows)
        second = self._formula("drift_second_differential", point, parameters, direction=rows)
        return first, second.mean(-2)


def check_drift_shape(cell: Cell[Any], state: torch.Tensor, drift: torch.Tensor) -> None:
    """Refuse a drift of another shape than its state (batch, n), naming the cell: a
    (1, n) or 0-d drift would broadcast silently into wrong numbers, a wrong width into a
    raw broadcasting error. The recurrences call this at their first step."""
    if not isinstance(drift, torch.Tensor) or drift.shape != state.shape:
        shape = tuple(drift.shape) if isinstance(drift, torch.Tensor) else type(drift).__name__
        raise ValueError(
            f"{type(cell).__name__}.drift returned {shape} for a state of shape "
            f"{tuple(state.shape)} (batch, state_dim = {cell.state_dim}): a drift must return "
            "one value per sample and state entry, the state's shape"
        )


def _rows_point(point: Point, rows: torch.Tensor) -> Point:
    """A per-sample point (batch, ·) broadcast against rows (batch, K, n)."""
    if rows.ndim == point["state"].ndim:
        return point
    return {name: value.unsqueeze(-2) for name, value in point.items()}
