"""Recurrent cells: the drift f(h, x) of the noisy RNN, with its parameters and derivatives.

- :class:`LipschitzCell`: f = A h + φ(W h + c), the paper's model (the default);
  ``antisymmetric=True`` gives the Antisymmetric RNN;
- :class:`CoRNNCell`: the coupled oscillator y'' = φ(W y + 𝒲 y' + c) − γ y − ε y' in
  h = (y, y');
- :class:`GRUODECell`: the gated drift (1 − u) ⊙ (g − h).

Write your own by subclassing :class:`Cell` (see ``nrnn.cells.base`` and the README):
with a torch drift alone the derivatives come from ``torch.func``; with a SymPy drift run
through ``nrnn derive`` they come from generated code. Register it
(:func:`register_cell`, ``nrnn.cells.kinds``) and configs, the command line and the
catalogue of reference problems know it by name.
"""

from typing import Any

from .autodiff import AutodiffDerivatives
from .base import DERIVATIVE_ROUTES, Cell, StabilitySplit
from .cornn import CoRNNCell, CoRNNOptions
from .gru import GRUODECell, GRUODEOptions
from .kinds import CELLS, CellKind, register_cell
from .lipschitz import INIT_DIVISORS, LipschitzCell, LipschitzOptions, lipschitz_matrix

# The built-in cells, in the order the catalogue and the verification take them.
register_cell(
    "lipschitz",
    LipschitzCell,
    LipschitzOptions,
    variants={
        "lipschitz": {},
        "antisymmetric": {"antisymmetric": True, "gamma_w": 0.01},
        "lipschitz-arctan": {"activation": "arctan"},
    },
    legacy_keys={name: name for name in LipschitzOptions.__dataclass_fields__},
)
register_cell(
    "cornn",
    CoRNNCell,
    CoRNNOptions,
    legacy_keys={
        "gamma": "oscillator_gamma",
        "epsilon": "oscillator_epsilon",
        "activation": "activation",
        "init_std": "init_std",
    },
)
register_cell("gru", GRUODECell, GRUODEOptions, legacy_keys={"init_std": "init_std"})


def build(name: str, hidden_dim: int, **options: Any) -> Cell[Any]:
    """The registered cell ``name`` of size ``hidden_dim`` with the given options (weights
    from torch's RNG)."""
    kind = CELLS.get(name)
    return kind.build(hidden_dim, kind.options(**options))


__all__ = [
    "CELLS",
    "DERIVATIVE_ROUTES",
    "INIT_DIVISORS",
    "AutodiffDerivatives",
    "Cell",
    "CellKind",
    "CoRNNCell",
    "CoRNNOptions",
    "GRUODECell",
    "GRUODEOptions",
    "LipschitzCell",
    "LipschitzOptions",
    "StabilitySplit",
    "build",
    "lipschitz_matrix",
    "register_cell",
]
