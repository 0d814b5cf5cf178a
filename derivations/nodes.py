"""Matrix-expression nodes the derivations need beyond SymPy's own.

SymPy's matrix expressions (``MatrixSymbol``, ``MatMul``, ``Transpose``, ``DiagMatrix``,
``DiagonalOf``, ``HadamardProduct``, ``KroneckerProduct``, ``Trace``, ``BlockMatrix``,
``Identity``) carry the derivations. These few nodes add what is specific to the model
(activations are :class:`derivations.drift.Applied`):

- :class:`NoiseJacobian` -- ``sigma'(h)[direction]``, the derivative of the diffusion matrix
  along a (random) direction, for a generic smooth diffusion;
- :class:`Softmax` -- the softmax vector of a logit vector;
- :class:`StackSum` -- ``sum_i expr(B_i)`` over a stack of matrices ``B_1 .. B_n`` that the
  expression names by one representative symbol ``B``;
- :class:`ColumnBlock` and :class:`BlockColumn` -- block ``i`` of ``k`` equal blocks of a
  column, and a column made of blocks (the coRNN state h = (y, z));
- :class:`SampleSum` -- the sum over every sample of a per-sample column or outer product
  (a parameter shared by the batch and the time steps collects its gradient this way).

The printers in :mod:`derivations.codegen` and :mod:`derivations.latex` and the evaluator in
:mod:`derivations.explicit` know each of them.
"""

from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixExpr

__all__ = ["BlockColumn", "ColumnBlock", "NoiseJacobian", "SampleSum", "Softmax", "StackSum"]


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


class ColumnBlock(MatrixExpr):
    """Block ``index`` of ``count`` equal blocks of a column: rows ``index·b .. (index+1)·b``
    of ``column`` (a ``count·b`` x 1 column), shape ``rows`` x 1 with ``rows`` = b.

    ``P column`` for a selection P = [0 .. I .. 0] (block ``index``): the printers write it
    as a slice, so no product with a selection matrix is computed.
    """

    def __new__(cls, column, index, count, rows):
        return super().__new__(cls, column, *(sp.sympify(v) for v in (index, count, rows)))

    @property
    def column(self):
        return self.args[0]

    @property
    def index(self) -> int:
        return int(self.args[1])

    @property
    def count(self) -> int:
        return int(self.args[2])

    @property
    def shape(self):
        return (self.args[3], sp.Integer(1))


class BlockColumn(MatrixExpr):
    """The column of ``rows`` entries made of the columns ``blocks`` stacked top to bottom."""

    def __new__(cls, rows, *blocks):
        return super().__new__(cls, sp.sympify(rows), *blocks)

    @property
    def blocks(self):
        return self.args[1:]

    @property
    def shape(self):
        return (self.args[0], sp.Integer(1))


class SampleSum(MatrixExpr):
    """The sum over the samples (every batch and time step) of a per-sample expression: a
    column, or an outer product ``left right^T`` of per-sample columns (or a sum of them)."""

    def __new__(cls, summand):
        return super().__new__(cls, summand)

    @property
    def summand(self):
        return self.args[0]

    @property
    def shape(self):
        return self.args[0].shape
