"""A small printer from SymPy (matrix) expressions to batched torch and numpy code.

SymPy 1.14's torch printer prints transposes wrongly, turns ``Matrix`` into an
autograd-cutting ``torch.tensor`` and does not broadcast constants, so the project owns this
printer. Conventions of the generated code:

- arrays carry any leading batch dimensions: a d x d matrix is ``(..., d, d)``, a column
  vector ``(..., d)``, a scalar ``(...)`` or a Python number;
- a product of matrices is ``@``; a matrix times a vector is ``(M @ v[..., None])[..., 0]``;
  ``diag(g) M`` is ``g[..., :, None] * M``; a transpose is ``.transpose(-1, -2)`` (torch) or
  ``np.swapaxes(x, -1, -2)``; ``diagvec(P Z^T)`` is ``(P * Z).sum(-1)``;
  ``tr(P Q)`` is ``(P * Q^T).sum((-2, -1))``;
- a scalar coefficient that may be a per-batch tensor is lifted with
  ``lift(value, trailing)`` so that it broadcasts; numbers pass through;
- identities are ``torch.eye(d, dtype=x.dtype, device=x.device)`` with ``d`` read from an
  argument's shape: nothing is built with ``torch.tensor``, so autograd is intact;
- in the *rows* layout (:class:`RowPrinter`, the fused recurrence's code) a column is a row
  (..., n) and an unbatched matrix M acts on it as ``rows @ M^T`` (one matrix product for
  the whole batch); a block of a column is a slice, a column of blocks a concatenation;
  a sum over the samples of outer products Σ l rᵀ is returned as its factor pairs
  ``((l, r), ...)`` (rows (..., m) and (..., k)): the caller multiplies them, once for every
  step of a sequence (the fused recurrence) or at once;
  a function with several outputs returns a dict and computes shared subexpressions once.

One :class:`Backend` per target holds the few spellings that differ; everything else is
shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.str import StrPrinter

from nrnn.derivations.drift import Applied
from nrnn.derivations.nodes import BlockColumn, ColumnBlock, SampleSum, Softmax, StackSum
from nrnn.derivations.topic import GeneratedFunction

__all__ = [
    "Backend",
    "NUMPY",
    "TORCH",
    "render_function",
    "HELPERS_TORCH",
    "HELPERS_NUMPY",
    "RowPrinter",
]


@dataclass(frozen=True)
class Backend:
    """The spellings that differ between torch and numpy."""

    name: str
    import_line: str
    module: str
    transpose: str
    diag_embed: str
    diagonal: str
    eye: str
    softmax: str
    functions: tuple[tuple[str, str], ...]
    backend_helpers: tuple[str, ...] = ()
    last_axis_sum: str = "{0}.sum(-1, keepdim=True)"

    def function(self, name: str) -> str:
        """The spelling of an elementwise function (SymPy or activation name)."""
        return dict(self.functions)[name]


TORCH = Backend(
    name="torch",
    import_line="import torch",
    module="torch",
    transpose="{0}.transpose(-1, -2)",
    diag_embed="torch.diag_embed({0})",
    diagonal="torch.diagonal({0}, dim1=-2, dim2=-1)",
    eye="torch.eye({0}, dtype={1}.dtype, device={1}.device)",
    softmax="torch.softmax({0}, dim=-1)",
    functions=(
        ("tanh", "torch.tanh"),
        ("exp", "torch.exp"),
        ("log", "torch.log"),
        ("sigmoid", "torch.sigmoid"),
        ("atan", "torch.atan"),
        ("arctan", "torch.atan"),
    ),
)

NUMPY = Backend(
    name="numpy",
    import_line="import numpy as np",
    module="np",
    transpose="np.swapaxes({0}, -1, -2)",
    diag_embed="diag_embed({0})",
    diagonal="np.diagonal({0}, axis1=-2, axis2=-1)",
    eye="np.eye({0}, dtype={1}.dtype)",
    softmax="softmax({0})",
    functions=(
        ("tanh", "np.tanh"),
        ("exp", "np.exp"),
        ("log", "np.log"),
        ("sigmoid", "sigmoid"),
        ("atan", "np.arctan"),
        ("arctan", "np.arctan"),
    ),
    backend_helpers=("diag_embed", "softmax", "sigmoid"),
    last_axis_sum="{0}.sum(-1, keepdims=True)",
)

HELPERS_TORCH = '''
def lift(value, trailing):
    """Append ``trailing`` unit axes to a tensor so that a per-batch scalar broadcasts
    against (..., d) or (..., d, d); Python numbers pass through unchanged."""
    if isinstance(value, torch.Tensor):
        return value.reshape(value.shape + (1,) * trailing)
    return value


def hstack(blocks):
    """Concatenate (..., d, k_i) blocks along the last axis, broadcasting the batch axes."""
    batch = torch.broadcast_shapes(*(block.shape[:-2] for block in blocks))
    return torch.cat([block.expand(batch + block.shape[-2:]) for block in blocks], dim=-1)


def kron(left, right):
    """Batched Kronecker product: (..., m, n) and (..., p, q) give (..., m p, n q)."""
    product = left[..., :, None, :, None] * right[..., None, :, None, :]
    rows = left.shape[-2] * right.shape[-2]
    cols = left.shape[-1] * right.shape[-1]
    return product.reshape(product.shape[:-4] + (rows, cols))


def block(rows, index, count):
    """Block ``index`` of ``count`` equal blocks of the last axis of ``rows`` (a view)."""
    size = rows.shape[-1] // count
    return rows[..., index * size : (index + 1) * size]


def join_blocks(blocks):
    """The rows (..., k_1 + k_2 + ...) made of the blocks (..., k_i), broadcasting the batch."""
    batch = torch.broadcast_shapes(*(b.shape[:-1] for b in blocks))
    return torch.cat([b.expand(batch + b.shape[-1:]) for b in blocks], dim=-1)


def outer_sum(left, right):
    """Sum over every sample (all leading axes) of the outer products left right^T: rows
    (..., m) and (..., n) give (m, n), one matrix product."""
    flat_left = left.reshape(-1, left.shape[-1])
    return flat_left.transpose(0, 1) @ right.reshape(-1, right.shape[-1])


def sample_sum(rows):
    """Sum over every sample (all leading axes) of rows (..., n): (n,)."""
    return rows.reshape(-1, rows.shape[-1]).sum(0)
'''

# (A backslash at the end of a line continues the line: the emitted code has it as one line.)
HELPERS_NUMPY = '''
def lift(value, trailing):
    """Append ``trailing`` unit axes to an array so that a per-batch scalar broadcasts
    against (..., d) or (..., d, d); Python numbers pass through unchanged."""
    if isinstance(value, np.ndarray):
        return value.reshape(value.shape + (1,) * trailing)
    return value


def hstack(blocks):
    """Concatenate (..., d, k_i) blocks along the last axis, broadcasting the batch axes."""
    batch = np.broadcast_shapes(*(np.shape(block)[:-2] for block in blocks))
    return np.concatenate([np.broadcast_to(block, batch + np.shape(block)[-2:]) \
for block in blocks], axis=-1)


def kron(left, right):
    """Batched Kronecker product: (..., m, n) and (..., p, q) give (..., m p, n q)."""
    product = left[..., :, None, :, None] * right[..., None, :, None, :]
    rows = left.shape[-2] * right.shape[-2]
    cols = left.shape[-1] * right.shape[-1]
    return product.reshape(product.shape[:-4] + (rows, cols))


def block(rows, index, count):
    """Block ``index`` of ``count`` equal blocks of the last axis of ``rows`` (a view)."""
    size = rows.shape[-1] // count
    return rows[..., index * size : (index + 1) * size]


def join_blocks(blocks):
    """The rows (..., k_1 + k_2 + ...) made of the blocks (..., k_i), broadcasting the batch."""
    batch = np.broadcast_shapes(*(np.shape(b)[:-1] for b in blocks))
    return np.concatenate([np.broadcast_to(b, batch + np.shape(b)[-1:]) for b in blocks], axis=-1)


def outer_sum(left, right):
    """Sum over every sample (all leading axes) of the outer products left right^T: rows
    (..., m) and (..., n) give (m, n), one matrix product."""
    flat_left = left.reshape(-1, left.shape[-1])
    return flat_left.T @ right.reshape(-1, right.shape[-1])


def sample_sum(rows):
    """Sum over every sample (all leading axes) of rows (..., n): (n,)."""
    return rows.reshape(-1, rows.shape[-1]).sum(0)


def diag_embed(vector):
    """(..., d) -> (..., d, d) with the vector on the diagonal."""
    return vector[..., :, None] * np.eye(vector.shape[-1], dtype=vector.dtype)


def softmax(logits):
    """Softmax over the last axis, shifted by the maximum for numerical stability."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(z):
    """The logistic function 1 / (1 + exp(-z)), entrywise."""
    return 1.0 / (1.0 + np.exp(-z))
'''


class _ScalarPrinter(StrPrinter):
    """Scalar expressions: symbols become argument names, functions the backend's."""

    def __init__(self, names: dict, backend: Backend, helpers: set):
        super().__init__()
        self.names = names
        self.backend = backend
        self.helpers = helpers

    def _print_Symbol(self, expr):
        return self.names.get(expr, expr.name)

    def _print_Function(self, expr):
        name = type(expr).__name__
        try:
            spelled = self.backend.function(name)
        except KeyError:
            raise NotImplementedError(f"function {name}") from None
        if spelled in self.backend.backend_helpers:
            self.helpers.add(spelled)
        return f"{spelled}({self._print(expr.args[0])})"

    def _print_Pow(self, expr, rational=False):
        base, exponent = expr.args
        if exponent.is_Rational and not exponent.is_Integer:
            text = self.parenthesize(base, PRECEDENCE["Pow"], strict=False)
            if exponent < 0:
                return f"1/{text}**{float(-exponent)!r}"
            return f"{text}**{float(exponent)!r}"
        return super()._print_Pow(expr, rational=rational)


@dataclass
class _Code:
    """Printed code, what it holds, and its precedence as an operand.

    ``precedence``: "atom" (a name, call or subscript), "product" (``*``, ``@``, ``/``,
    unary minus: same Python level, left-associative) or "sum".
    """

    text: str
    kind: str  # "scalar" | "vector" | "covector" | "matrix" | "diag" | "factors"
    precedence: str = "atom"
    operator: str = ""  # the outermost binary operator of a "product": "@" or "*"


_NDIM = {"scalar": 0, "vector": 1, "covector": 1, "diag": 1, "matrix": 2}


def _kind(expr) -> str:
    if not isinstance(expr, sp.MatrixExpr):
        return "scalar"
    rows, cols = expr.shape
    if rows == 1 and cols == 1:
        return "scalar"
    if cols == 1:
        return "vector"
    if rows == 1:
        return "covector"
    return "matrix"


def _operand(code: _Code) -> str:
    """As a right operand of ``*`` / ``@`` (or anywhere a primary is needed)."""
    return code.text if code.precedence == "atom" else f"({code.text})"


def _left(code: _Code, operator: str = "*") -> str:
    """As the left operand of ``operator`` (``*`` or ``@``, same level, left-associative).

    A product needs no parentheses when it uses the same operator; a mixed ``a @ b * c`` is
    parenthesised for the reader.
    """
    if code.precedence == "sum" or (
        code.precedence == "product" and code.operator not in ("", operator)
    ):
        return f"({code.text})"
    return code.text


@dataclass
class ArrayPrinter:
    """Prints one function body; records the helpers it uses."""

    backend: Backend
    names: dict
    dimensions: dict
    reference: str | None
    helpers: set = field(default_factory=set)
    bound: dict = field(default_factory=dict)

    # -- scalars --------------------------------------------------------------------
    def scalar(self, expr) -> str:
        expr = sp.sympify(expr)
        if isinstance(expr, (sp.Trace, sp.MatrixExpr)):
            return self.array(expr).text
        if expr.has(sp.Trace):
            raise NotImplementedError("scalar expressions mixing traces")
        return _ScalarPrinter(self.names, self.backend, self.helpers).doprint(expr)

    def _scaled(self, coefficient, code: _Code) -> _Code:
        if coefficient == 1:
            return code
        if coefficient == -1:
            return _Code(f"-{_operand(code)}", code.kind, "product", "*")
        if coefficient.is_Rational:
            numerator, denominator = coefficient.p, coefficient.q
            text = _operand(code)
            if numerator != 1:
                text = f"{numerator} * {text}"
            if denominator != 1:
                text = f"{text} / {denominator}"
            return _Code(text, code.kind, "product", "*")
        factor = self.scalar(coefficient)
        trailing = _NDIM[code.kind]
        if trailing and not coefficient.is_number:
            self.helpers.add("lift")
            factor = f"lift({factor}, {trailing})"
        elif not coefficient.is_Atom:
            factor = f"({factor})"
        return _Code(f"{factor} * {_operand(code)}", code.kind, "product", "*")

    # -- arrays ---------------------------------------------------------------------
    def _diag_embed(self, text: str) -> str:
        if "diag_embed" in self.backend.backend_helpers:
            self.helpers.add("diag_embed")
        return self.backend.diag_embed.format(text)

    def array(self, expr) -> _Code:
        if expr in self.bound:
            return _Code(self.bound[expr], _kind(expr))
        handler = getattr(self, f"_print_{type(expr).__name__}", None)
        if handler is None:
            raise NotImplementedError(f"no printer for {type(expr).__name__}: {expr}")
        return handler(expr)

    def _print_MatrixSymbol(self, expr):
        return _Code(self.names[expr], _kind(expr))

    def _print_Identity(self, expr):
        if self.reference is None:
            raise NotImplementedError("identity without a tensor argument")
        size = self.dimensions[expr.rows]
        return _Code(self.backend.eye.format(size, self.reference), "matrix")

    def _print_Transpose(self, expr):
        inner = self.array(expr.arg)
        if inner.kind == "matrix":
            return _Code(self.backend.transpose.format(inner.text), "matrix")
        flipped = {"vector": "covector", "covector": "vector"}.get(inner.kind, inner.kind)
        return _Code(inner.text, flipped, inner.precedence)

    def _print_OneMatrix(self, expr):
        """The column of ones, as the number 1 (it only appears in sums, broadcasting)."""
        return _Code("1", "scalar")

    def _print_MatAdd(self, expr):
        parts = []
        for term in expr.args:
            negative = (
                isinstance(term, sp.MatMul) and term.as_coeff_matrices()[0].is_negative is True
            )
            code = self.array(-term if negative else term)
            if code.kind == "diag":
                code = _Code(self._diag_embed(code.text), "matrix")
            parts.append((negative, code))
        parts.sort(key=lambda part: part[0])  # positive terms first (stable)
        kinds = {code.kind for _, code in parts}
        kind = next((k for k in ("matrix", "vector", "covector") if k in kinds), kinds.pop())
        text = ""
        for index, (negative, code) in enumerate(parts):
            piece = code.text
            if index == 0:
                text = f"-{_left(code)}" if negative else piece
            else:
                text += f" - {_left(code)}" if negative else f" + {piece}"
        return _Code(text, kind, "sum")

    def _print_MatMul(self, expr):
        coefficient, factors = expr.as_coeff_matrices()
        codes = [self._factor(f) for f in factors]
        result = codes[0]
        for code in codes[1:]:
            result = self._product(result, code)
        if result.kind == "diag":
            result = _Code(self._diag_embed(result.text), "matrix")
        return self._scaled(coefficient, result)

    def _factor(self, expr) -> _Code:
        if isinstance(expr, sp.DiagMatrix):
            inner = self.array(expr.args[0])
            return _Code(inner.text, "diag", inner.precedence)
        return self.array(expr)

    def _product(self, left: _Code, right: _Code) -> _Code:
        a, b = _operand(left), _operand(right)
        at, times = _left(left, "@"), _left(left, "*")
        rules = {
            ("matrix", "matrix"): lambda: _Code(f"{at} @ {b}", "matrix", "product", "@"),
            ("matrix", "vector"): lambda: _Code(f"({at} @ {b}[..., None])[..., 0]", "vector"),
            ("covector", "matrix"): lambda: _Code(
                f"({a}[..., None, :] @ {b})[..., 0, :]", "covector"
            ),
            ("covector", "vector"): lambda: _Code(f"({times} * {b}).sum(-1)", "scalar"),
            ("vector", "covector"): lambda: _Code(
                f"{a}[..., :, None] * {b}[..., None, :]", "matrix", "product", "*"
            ),
            ("diag", "matrix"): lambda: _Code(f"{a}[..., :, None] * {b}", "matrix", "product", "*"),
            ("diag", "vector"): lambda: _Code(f"{times} * {b}", "vector", "product", "*"),
            ("diag", "diag"): lambda: _Code(f"{times} * {b}", "diag", "product", "*"),
            ("matrix", "diag"): lambda: _Code(
                f"{times} * {b}[..., None, :]", "matrix", "product", "*"
            ),
            ("covector", "diag"): lambda: _Code(f"{times} * {b}", "covector", "product", "*"),
        }
        if (left.kind, right.kind) not in rules:
            raise NotImplementedError(f"product of {left.kind} and {right.kind}")
        return rules[(left.kind, right.kind)]()

    def _print_DiagMatrix(self, expr):
        return _Code(self._diag_embed(self.array(expr.args[0]).text), "matrix")

    def _split_last(self, product):
        """(all factors but the last as one expression, last factor) of a coefficient-free
        product."""
        coefficient, factors = product.as_coeff_matrices()
        if coefficient != 1 or len(factors) < 2:
            return None
        head = factors[0] if len(factors) == 2 else sp.MatMul(*factors[:-1])
        return head, factors[-1]

    def _print_DiagonalOf(self, expr):
        split = self._split_last(expr.arg) if isinstance(expr.arg, sp.MatMul) else None
        if split and isinstance(split[1], sp.Transpose) and _kind(split[1]) == "matrix":
            head, last = split
            return _Code(
                f"({_left(self.array(head))} * {_operand(self.array(last.arg))}).sum(-1)", "vector"
            )
        return _Code(self.backend.diagonal.format(self.array(expr.arg).text), "vector")

    def _print_Trace(self, expr):
        split = self._split_last(expr.arg) if isinstance(expr.arg, sp.MatMul) else None
        if split:
            head, last = split
            other = (
                _operand(self.array(last.arg))
                if isinstance(last, sp.Transpose)
                else self.backend.transpose.format(self.array(last).text)
            )
            return _Code(f"({_left(self.array(head))} * {other}).sum((-2, -1))", "scalar")
        return _Code(f"{self.backend.diagonal.format(self.array(expr.arg).text)}.sum(-1)", "scalar")

    def _print_HadamardProduct(self, expr):
        codes = [self.array(arg) for arg in expr.args]
        kind = "matrix" if any(c.kind == "matrix" for c in codes) else codes[0].kind
        return _Code(
            " * ".join([_left(codes[0])] + [_operand(c) for c in codes[1:]]), kind, "product", "*"
        )

    def _print_HadamardPower(self, expr):
        base, exponent = expr.args
        return _Code(f"{_operand(self.array(base))}**{exponent}", _kind(expr))

    def _print_KroneckerProduct(self, expr):
        self.helpers.add("kron")
        codes = [self.array(arg).text for arg in expr.args]
        text = codes[0]
        for code in codes[1:]:
            text = f"kron({text}, {code})"
        return _Code(text, "matrix")

    def _print_BlockMatrix(self, expr):
        if expr.blocks.rows != 1:
            raise NotImplementedError("only one row of blocks")
        self.helpers.add("hstack")
        texts = []
        for block in expr.blocks:
            code = self.array(block)
            texts.append(f"{_operand(code)}[..., None]" if code.kind == "vector" else code.text)
        return _Code(f"hstack([{', '.join(texts)}])", "matrix")

    def _print_Applied(self, expr: Applied):
        """φ(argument) entrywise, φ an argument of the function (a callable named by the
        use's label), so one generated drift serves every activation; the derivatives of φ
        are arguments too (``derivations.cells`` replaces them by point symbols)."""
        if expr.order != 0:
            raise NotImplementedError(f"derivative {expr.order} of {expr.function} in code")
        return _Code(f"{expr.label}({self.array(expr.argument).text})", "vector")

    def _print_Softmax(self, expr: Softmax):
        if "softmax" in self.backend.backend_helpers:
            self.helpers.add("softmax")
        return _Code(self.backend.softmax.format(self.array(expr.argument).text), "vector")

    def _print_StackSum(self, expr: StackSum):
        code = self.array(expr.summand)
        axis = {"matrix": -3, "vector": -2, "scalar": -1}[code.kind]
        return _Code(f"{_operand(code)}.sum({axis})", code.kind)


def _negated(term):
    """-term of a product with a negative coefficient, without re-evaluating its factors
    (SymPy's negation would flatten nested entrywise products and lose shared ones)."""
    coefficient, factors = term.as_coeff_matrices()
    if coefficient == -1 and len(factors) == 1:
        return factors[0]
    return sp.MatMul(-coefficient, *factors)


class RowPrinter(ArrayPrinter):
    """The rows layout (see the module docstring): columns (n x 1) are rows (..., n)."""

    def _print_MatAdd(self, expr):
        parts = []
        for term in expr.args:
            negative = (
                isinstance(term, sp.MatMul) and term.as_coeff_matrices()[0].is_negative is True
            )
            parts.append((negative, self.array(_negated(term) if negative else term)))
        parts.sort(key=lambda part: part[0])  # positive terms first (stable)
        text = ""
        for index, (negative, code) in enumerate(parts):
            if index == 0:
                text = f"-{_left(code)}" if negative else code.text
            else:
                text += f" - {_left(code)}" if negative else f" + {code.text}"
        return _Code(text, "vector", "sum")

    def _print_MatMul(self, expr):
        coefficient, factors = expr.as_coeff_matrices()
        last = factors[-1]
        if isinstance(last, sp.Transpose) and _kind(last.arg) == "vector":
            raise NotImplementedError(f"an outer product outside a sum over samples: {expr}")
        if _kind(last) not in ("vector", "scalar"):
            raise NotImplementedError(f"the rows layout applies matrices to columns: {expr}")
        code = self.array(last)
        for factor in reversed(factors[:-1]):
            code = self._apply(factor, code)
        return self._scaled(coefficient, code)

    def _apply(self, factor, code: _Code) -> _Code:
        """``factor`` (a matrix, a transposed column or a column) times the column ``code``."""
        rows = _left(code, "@")
        if isinstance(factor, sp.OneMatrix):  # 1^T x: the sum of the entries
            return _Code(self.backend.last_axis_sum.format(_operand(code)), "vector")
        if isinstance(factor, sp.Transpose) and _kind(factor.arg) == "vector":
            column = self.array(factor.arg)
            product = f"({_left(column)} * {_operand(code)})"
            return _Code(self.backend.last_axis_sum.format(product), "vector")
        if _kind(factor) == "vector":  # a column times a 1 x 1 column
            return _Code(
                f"{_left(self.array(factor))} * {_operand(code)}", "vector", "product", "*"
            )
        if isinstance(factor, sp.Transpose):
            return _Code(f"{rows} @ {_operand(self.array(factor.arg))}", "vector", "product", "@")
        matrix = self.backend.transpose.format(_operand(self.array(factor)))
        return _Code(f"{rows} @ {matrix}", "vector", "product", "@")

    def _print_ColumnBlock(self, expr: ColumnBlock):
        self.helpers.add("block")
        inner = self.array(expr.column).text
        return _Code(f"block({inner}, {expr.index}, {expr.count})", "vector")

    def _print_BlockColumn(self, expr: BlockColumn):
        self.helpers.add("join_blocks")
        blocks = ", ".join(self.array(b).text for b in expr.blocks)
        return _Code(f"join_blocks([{blocks}])", "vector")

    def _print_SampleSum(self, expr: SampleSum):
        summand = expr.summand
        terms = summand.args if isinstance(summand, sp.MatAdd) else (summand,)
        if _kind(summand) == "vector":
            self.helpers.add("sample_sum")
            return _Code(f"sample_sum({self.array(summand).text})", "vector")
        pairs = []
        for term in terms:
            coefficient, factors = term.as_coeff_matrices()
            if len(factors) != 2 or not isinstance(factors[1], sp.Transpose):
                raise NotImplementedError(f"a sum over samples of {term}")
            left = self._scaled(coefficient, self.array(factors[0]))
            pairs.append(f"({left.text}, {self.array(factors[1].arg).text})")
        return _Code(f"({', '.join(pairs)},)", "factors")


def _size(expr) -> int:
    return sum(1 for _ in sp.preorder_traversal(expr))


def _shared(outputs, named: dict) -> list:
    """The compound subexpressions occurring more than once in ``outputs`` (or named),
    smallest first, so that each is printed after the ones it contains."""
    counts: dict = {}
    for expr in outputs:
        for node in sp.preorder_traversal(expr):
            if isinstance(node, sp.MatrixExpr) and not isinstance(
                node, (sp.MatrixSymbol, sp.OneMatrix, sp.Identity, sp.ZeroMatrix)
            ):
                if isinstance(node, sp.Transpose) and isinstance(node.arg, sp.MatrixSymbol):
                    continue
                if isinstance(node, sp.MatMul):
                    coefficient, factors = node.as_coeff_matrices()
                    if coefficient.is_number and all(
                        isinstance(f, sp.MatrixSymbol) for f in factors
                    ):
                        continue  # a scaled symbol: printed in place
                counts[node] = counts.get(node, 0) + 1
    chosen = [node for node, count in counts.items() if count > 1 or node in named]
    return sorted(chosen, key=lambda node: (_size(node), sp.default_sort_key(node)))


def _render_outputs(function: GeneratedFunction, printer: ArrayPrinter) -> list[str]:
    """The body of a function with several outputs: shared subexpressions, then the dict."""
    named = dict(function.intermediates)
    body, counter = [], 0
    for node in _shared([expr for _, expr in function.outputs], named):
        if node in named:
            local = named[node]
        else:
            counter += 1
            local = f"shared_{counter}"
        body.append(f"    {local} = {printer.array(node).text}")
        printer.bound[node] = local
    entries = ", ".join(f"{name!r}: {printer.array(expr).text}" for name, expr in function.outputs)
    return body + [f"    return {{{entries}}}"]


def _dimension_sources(function: GeneratedFunction) -> dict:
    """``{dimension symbol: "name.shape[axis]"}`` read from the matrix arguments."""
    sources: dict = {}
    for argument in function.arguments:
        symbol = argument.symbol
        if not isinstance(symbol, sp.MatrixSymbol):
            continue
        rows, cols = symbol.shape
        if cols == 1:
            axes = [(rows, -1)]
        elif rows == 1:
            axes = [(cols, -1)]
        else:
            axes = [(rows, -2), (cols, -1)]
        for dimension, axis in axes:
            if isinstance(dimension, sp.Symbol) and dimension not in sources:
                sources[dimension] = f"{argument.name}.shape[{axis}]"
    return sources


def _repeated_nodes(expr) -> list:
    """Nodes worth computing once (softmax, activations) that occur more than once."""
    counts: dict = {}
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (Softmax, Applied)):
            counts[node] = counts.get(node, 0) + 1
    return sorted((node for node, count in counts.items() if count > 1), key=sp.default_sort_key)


def _local_name(node, names: dict) -> str:
    if isinstance(node, Softmax):
        return "probabilities"
    if isinstance(node, Applied):
        return node.label
    raise NotImplementedError(type(node))


@dataclass(frozen=True)
class RenderedFunction:
    source: str
    helpers: frozenset


def _docstring(function: GeneratedFunction, formula: str) -> list[str]:
    lines = [f'    r"""{function.summary}', ""]
    if function.outputs:
        from nrnn.derivations.latex import latex

        lines.append("    Formulas (a dict of these entries):")
        lines += [f"    - ``{name}``: ``{latex(expr)}``" for name, expr in function.outputs]
    else:
        lines.append(f"    Formula: ``{formula}``.")
    if function.notes:
        lines += ["", f"    {function.notes}"]
    if function.arguments:
        lines += ["", "    Args:"]
    for argument in function.arguments:
        lines.append(f"        {argument.name}: {argument.shape}, {argument.description}.")
    lines += ["", "    Returns:", f"        {function.returns}.", '    """']
    return lines


def render_function(
    function: GeneratedFunction, backend: Backend, formula: str
) -> RenderedFunction:
    """Source of one generated function (``formula`` is the LaTeX for the docstring)."""
    names = {argument.symbol: argument.name for argument in function.arguments}
    matrix_arguments = [a.name for a in function.arguments if isinstance(a.symbol, sp.MatrixSymbol)]
    dimensions = _dimension_sources(function)
    printer_type = RowPrinter if function.layout == "rows" else ArrayPrinter
    printer = printer_type(
        backend=backend,
        names=names,
        dimensions={symbol: str(symbol) for symbol in dimensions},
        reference=matrix_arguments[0] if matrix_arguments else None,
    )
    body: list[str] = []
    if function.outputs:
        lines = [f"def {function.name}({', '.join(a.name for a in function.arguments)}):"]
        lines += _docstring(function, formula) + _render_outputs(function, printer)
        return RenderedFunction("\n".join(lines) + "\n", frozenset(printer.helpers))
    if function.elementwise:
        for name in function.per_batch:
            printer.helpers.add("lift")
            body.append(f"    {name} = lift({name}, 1)")
        expr = function.expr
        for call in sorted(expr.atoms(sp.Function), key=sp.default_sort_key):
            if list(sp.preorder_traversal(expr)).count(call) > 1 and call.args[0] in names:
                local = sp.Symbol(f"{type(call).__name__}_{names[call.args[0]]}")
                body.append(f"    {local} = {printer.scalar(call)}")
                expr = expr.xreplace({call: local})
        result = printer.scalar(expr)
    else:
        for node in _repeated_nodes(function.expr):
            local = _local_name(node, names)
            body.append(f"    {local} = {printer.array(node).text}")
            printer.bound[node] = local
        code = printer.array(function.expr)
        if code.kind == "diag":
            code = _Code(printer._diag_embed(code.text), "matrix")
        result = code.text
    used_dimensions = [
        symbol
        for symbol in dimensions
        if any(
            isinstance(n, sp.Identity) and n.rows == symbol
            for n in sp.preorder_traversal(function.expr)
        )
    ]
    prologue = [f"    {symbol} = {dimensions[symbol]}" for symbol in used_dimensions]
    signature = f"def {function.name}({', '.join(a.name for a in function.arguments)}):"
    lines = [signature] + _docstring(function, formula) + prologue + body + [f"    return {result}"]
    return RenderedFunction("\n".join(lines) + "\n", frozenset(printer.helpers))
