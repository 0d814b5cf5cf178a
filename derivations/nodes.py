"""Matrix-expression nodes the derivations need beyond SymPy's own.

SymPy's matrix expressions (``MatrixSymbol``, ``MatMul``, ``Transpose``, ``DiagMatrix``,
``DiagonalOf``, ``HadamardProduct``, ``KroneckerProduct``, ``Trace``, ``BlockMatrix``,
``Identity``) carry the derivations. These few nodes add what is specific to the model
(activations are :class:`derivations.drift.Applied`):

- :class:`NoiseJacobian` -- ``sigma'(h)[direction]``, the derivative of the diffusion matrix
  along a (random) direction, for a generic smooth diffusion;
- :class:`Softmax` -- the softmax vector of a logit vector;
- :class:`StackSum` -- ``sum_i expr(B_i)`` over a stack of matrices ``B_1 .. B_n`` that the
  expression names by one representative symbol ``B``.

The printers in :mod:`derivations.codegen` and :mod:`derivations.latex` and the evaluator in
:mod:`derivations.explicit` know each of them.
"""

from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixExpr

__all__ = ["NoiseJacobian", "Softmax", "StackSum"]


class NoiseJacobian(MatrixExpr):
    """``sigma'(h_bar)[direction]``: the diffusion matrix differentiated along ``direction``.

    Shape (d, r); linear in ``direction`` (a d x 1 column).
    """

    def __new__(cls, direction, noise_dimension):
        return super().__new__(cls, direction, sp.sympify(noise_dimension))

    @property
    def direction(self):
        return self.args[0]

    @property
    def shape(self):
        return (self.args[0].shape[0], self.args[1])


class Softmax(MatrixExpr):
    """``softmax(x)`` of a column ``x``: ``exp(x_j) / sum_k exp(x_k)``."""

    def __new__(cls, logits):
        return super().__new__(cls, logits)

    @property
    def argument(self):
        return self.args[0]

    @property
    def shape(self):
        return self.args[0].shape


class StackSum(MatrixExpr):
    """``sum_i summand[B -> B_i]`` for every ``B`` in ``stacked`` (a stack of matrices)."""

    def __new__(cls, summand, *stacked):
        return super().__new__(cls, summand, *stacked)

    @property
    def summand(self):
        return self.args[0]

    @property
    def stacked(self):
        return self.args[1:]

    @property
    def shape(self):
        return self.args[0].shape
