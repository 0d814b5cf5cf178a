"""Every tensor the runtime package creates takes its device from its inputs.

A CPU test cannot see a tensor built on the CPU and then combined with CUDA tensors (the
``torch.eye(d)`` that ``metrics.jacobian_products`` multiplied with CUDA Jacobians failed
only on a GPU). So this test reads the source instead: every call of a torch factory in
``nrnn/`` (the generated code included, since the printer writes it) must pass ``device=``,
be moved at once (``torch.randn(..., generator=g).to(x.device)``: drawn on the CPU from a
CPU generator so a seed gives the same numbers on every device), or be listed below with
the reason a CPU tensor is meant. ``*_like`` and ``Tensor.new_*`` take the device of their
tensor and are not factories here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nrnn

PACKAGE = Path(nrnn.__file__).resolve().parent

FACTORIES = frozenset(
    {
        "arange",
        "as_tensor",
        "bernoulli",
        "empty",
        "empty_strided",
        "eye",
        "full",
        "linspace",
        "logspace",
        "multinomial",
        "normal",
        "ones",
        "poisson",
        "rand",
        "randint",
        "randn",
        "randperm",
        "range",
        "scalar_tensor",
        "sparse_coo_tensor",
        "tensor",
        "tril_indices",
        "triu_indices",
        "zeros",
    }
)
"""torch functions that create a tensor on the default device unless told otherwise."""

_INIT = (
    "parameter initialisation on the CPU (one seed gives the same weights on every device); "
    "the module is moved with .to(device)"
)
_NOISE_MATRICES = (
    "float64 matrices of the linear-SDE analysis; em_mean_square_matrix moves them to the "
    "drift matrix's device"
)
_CPU_STATISTIC = (
    "Python floats gathered into a float64 statistic on the CPU (a result, not an operand "
    "of device tensors)"
)
_CPU_FIXTURE = "a float64 fixture of the verification catalogue, built on the CPU like its model"
_CPU_DATA = "datasets are loaded and indexed on the CPU; training moves them to its device once"

ALLOWED: dict[tuple[str, str, str], str] = {
    ("cells/lipschitz.py", "LipschitzCell.__init__", "randn"): _INIT,
    ("cells/cornn.py", "CoRNNCell.__init__", "randn"): _INIT,
    ("cells/gru.py", "GRUODECell.__init__", "randn"): _INIT,
    ("noise/released.py", "ReleasedNoise.parameters", "full"): _INIT,
    ("noise/brownian.py", "_PerUnit.noise_matrices", "eye"): _NOISE_MATRICES,
    ("noise/brownian.py", "_Scalar.noise_matrices", "eye"): _NOISE_MATRICES,
    ("catalogue.py", "small_model", "rand"): _CPU_FIXTURE,
    ("catalogue.py", "random_batch", "randn"): _CPU_FIXTURE,
    ("catalogue.py", "random_batch", "randint"): _CPU_FIXTURE,
    ("catalogue.py", "linear_model", "as_tensor"): _CPU_FIXTURE,
    ("catalogue.py", "random_inputs", "randn"): _CPU_FIXTURE,
    ("data.py", "check_finite", "as_tensor"): _CPU_DATA,
    ("data.py", "authors_permutation", "randperm"): _CPU_DATA,
    ("data.py", "fixed_subset_indices", "arange"): _CPU_DATA,
    ("data.py", "fixed_subset_indices", "randperm"): _CPU_DATA,
    ("draws.py", "_signs", "arange"): (
        "a constant table built once on the CPU and cached per (dtype, device) after .to()"
    ),
    ("metrics/curvature.py", "_HessianOperator.diagonal", "tensor"): _CPU_STATISTIC,
    ("metrics/curvature.py", "hessian_trace", "tensor"): _CPU_STATISTIC,
    ("metrics/curvature.py", "_lanczos", "tensor"): (
        "the Lanczos coefficients (Python floats) on the CPU; the Ritz vector is moved back"
    ),
    ("paths.py", "_factors", "tensor"): (
        "built on the CPU to test for all ones without reading a device tensor back; "
        "moved to the device at its return"
    ),
    ("perturb.py", "salt_and_pepper", "rand"): (
        "ranks drawn on the CPU from the seed's CPU generator, moved to x's device after"
    ),
    ("perturb.py", "salt_and_pepper", "arange"): "part of the same CPU rank computation",
    ("perturb.py", "evaluate_under", "empty"): (
        "a sentinel whose device (the CPU) is the answer for a model without parameters"
    ),
    ("stability/bounds.py", "em_almost_sure_bound", "linspace"): (
        "a float64 quadrature grid, moved to the model's device where it meets the model "
        "(_em_norms, .to(step_norms))"
    ),
    ("stability/bounds.py", "em_mean_square_bound", "ones"): "moved by _em_norms (shifts.to(L))",
    ("stability/linear.py", "em_mean_square_matrix", "as_tensor"): (
        "the caller's drift matrix keeps its own device (as_tensor of a tensor does not move "
        "it); the noise matrices follow it"
    ),
    ("translation.py", "released_to_paper", "ones"): (
        "a float64 constant turned into a Python number at once"
    ),
}
"""(file under nrnn/, enclosing function, factory) -> why a CPU tensor is meant there."""


def _is_device_move(call: ast.Call) -> bool:
    """``.to(...)`` with a device: a ``device=`` keyword or a positional argument that is
    not a dtype (``x.dtype``, ``torch.float64``)."""
    if any(keyword.arg == "device" for keyword in call.keywords):
        return True
    for argument in call.args:
        is_dtype = isinstance(argument, ast.Attribute) and (
            argument.attr == "dtype"
            or (isinstance(argument.value, ast.Name) and argument.value.id == "torch")
        )
        if not is_dtype:
            return True
    return False


def factory_calls(source: str) -> list[tuple[int, str, str]]:
    """(line, enclosing function's qualified name, factory) of every ``torch.<factory>(...)``
    call in ``source`` that neither passes ``device=`` nor is moved at once by ``.to(device)``."""
    tree = ast.parse(source)
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    found = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "torch"
            and node.func.attr in FACTORIES
        ):
            continue
        if any(keyword.arg == "device" for keyword in node.keywords):
            continue
        parent = parents.get(node)
        grandparent = parents.get(parent) if parent is not None else None
        if (
            isinstance(parent, ast.Attribute)
            and parent.attr == "to"
            and isinstance(grandparent, ast.Call)
            and _is_device_move(grandparent)
        ):
            continue
        names, scope = [], parents.get(node)
        while scope is not None:
            if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.append(scope.name)
            scope = parents.get(scope)
        found.append((node.lineno, ".".join(reversed(names)) or "<module>", node.func.attr))
    return found


def scan_package() -> list[tuple[str, int, str, str]]:
    """Every unlisted factory call without a device in the runtime package."""
    return [
        (relative, line, function, factory)
        for path in sorted(PACKAGE.rglob("*.py"))
        for relative in [path.relative_to(PACKAGE).as_posix()]
        for line, function, factory in factory_calls(path.read_text(encoding="utf-8"))
    ]


def test_every_factory_call_of_the_runtime_package_takes_a_device():
    unlisted = [
        f"nrnn/{path}:{line} {function}: torch.{factory}(...) without device="
        for path, line, function, factory in scan_package()
        if (path, function, factory) not in ALLOWED
    ]
    assert not unlisted, (
        "tensors created without a device (pass device= from an input, or move at once with "
        ".to(x.device); list a meant CPU tensor in ALLOWED with its reason):\n"
        + "\n".join(unlisted)
    )


def test_every_allowlist_entry_is_still_used():
    """An entry whose call has gone would let a new one in the same function pass."""
    used = {(path, function, factory) for path, _, function, factory in scan_package()}
    assert set(ALLOWED) <= used, sorted(set(ALLOWED) - used)


def test_the_scanner_flags_a_factory_without_a_device_and_passes_the_device_forms():
    planted = """
import torch

def products(jacobians):
    identity = torch.eye(4, dtype=jacobians.dtype)
    scale = torch.tensor([1.0, 2.0])
    return identity, scale

def fine(x, generator):
    a = torch.zeros(3, device=x.device)
    b = torch.zeros_like(x)
    c = x.new_zeros(3)
    d = torch.randn(3, generator=generator).to(x.device)
    e = torch.randn(3, generator=generator).to(x)
    return a, b, c, d, e

def moved_in_dtype_only(x):
    return torch.ones(3).to(x.dtype)
"""
    assert factory_calls(planted) == [
        (5, "products", "eye"),
        (6, "products", "tensor"),
        (18, "moved_in_dtype_only", "ones"),
    ]
