"""Smooth activations by name, with the derivatives the regularizer needs.

Each activation φ comes with φ, φ' and φ'' as torch functions (the derivatives generated
from SymPy into ``nrnn._generated.activation``) and its Lipschitz constant sup |φ'|
(derived there too), which enters the contraction rate of the cells that use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import contract
from ._generated import activation as _generated

__all__ = ["ACTIVATIONS", "Activation", "get"]


@dataclass(frozen=True)
class Activation:
    """φ with its first two derivatives (entrywise, any shape) and sup |φ'|."""

    name: str
    value: Callable[[torch.Tensor], torch.Tensor]
    prime: Callable[[torch.Tensor], torch.Tensor]
    second: Callable[[torch.Tensor], torch.Tensor]
    lipschitz: float


ACTIVATIONS: dict[str, Activation] = {
    name: Activation(
        name,
        value,
        getattr(_generated, f"{name}_prime"),
        getattr(_generated, f"{name}_second"),
        float(getattr(_generated, f"{name}_lipschitz")()),
    )
    for name, value in (("tanh", torch.tanh), ("arctan", torch.atan), ("sigmoid", torch.sigmoid))
}


def get(name: str) -> Activation:
    """The activation called ``name`` (one of :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[contract.choice("activation", name, tuple(ACTIVATIONS))]
