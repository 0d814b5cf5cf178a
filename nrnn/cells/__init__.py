"""Recurrent cells: the drift f(h, x) of the noisy RNN, with its parameters and derivatives.

- :class:`LipschitzCell`: f = A h + φ(W h + c), the paper's model (the default);
  ``antisymmetric=True`` gives the Antisymmetric RNN;
- :class:`CoRNNCell`: the coupled oscillator y'' = φ(W y + 𝒲 y' + c) − γ y − ε y' in
  h = (y, y');
- :class:`GRUODECell`: the gated drift (1 − u) ⊙ (g − h).

Write your own by subclassing :class:`Cell` (see ``nrnn.cells.base`` and the README):
with a torch drift alone the derivatives come from ``torch.func``; with a SymPy drift run
through ``nrnn derive`` they come from generated code.
"""

from typing import Any

from .autodiff import AutodiffDerivatives
from .base import DERIVATIVE_ROUTES, Cell, StabilitySplit
from .cornn import CoRNNCell
from .gru import GRUODECell
from .lipschitz import INIT_DIVISORS, LipschitzCell, lipschitz_matrix

CELL_TYPES = {"lipschitz": LipschitzCell, "cornn": CoRNNCell, "gru": GRUODECell}
"""The built-in cells by name (``model.cell`` of a run config)."""


def build(name: str, hidden_dim: int, **options: Any) -> Cell[Any]:
    """The built-in cell ``name`` of size ``hidden_dim`` (weights from torch's RNG)."""
    from .. import contract

    return CELL_TYPES[contract.choice("cell", name, tuple(CELL_TYPES))](hidden_dim, **options)


__all__ = [
    "CELL_TYPES",
    "DERIVATIVE_ROUTES",
    "INIT_DIVISORS",
    "AutodiffDerivatives",
    "Cell",
    "CoRNNCell",
    "GRUODECell",
    "LipschitzCell",
    "StabilitySplit",
    "build",
    "lipschitz_matrix",
]
