"""The package's modules import each other without cycles (function-level imports
included): data flows one way, derivations -> generated code -> nrnn -> verification ->
figures, and inside each package along layers (docs/design.md)."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {
    "nrnn": ROOT / "nrnn",
    "nrnn.derivations": ROOT / "derivations",
    "nrnn.verification": ROOT / "verification",
    "nrnn.figures": ROOT / "paper_figures",
    "nrnn.benchmarks": ROOT / "benchmarks",
}


def modules() -> dict[str, Path]:
    found = {}
    for package, directory in PACKAGES.items():
        for path in directory.rglob("*.py"):
            if "_generated" in path.parts:
                continue
            relative = path.relative_to(directory).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def imports(name: str, path: Path, known: set) -> set:
    """Modules of the package imported anywhere in the file (explicit edges only)."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            prefix = ".".join(base[: len(base) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (prefix, node.module or "") if p)
            targets = [f"{module}.{alias.name}" for alias in node.names] + [module]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
    # An import of a submodule names its package too; that edge is the package's own.
    return {e for e in edges if not (name.startswith(e + ".") and e in PACKAGES)}


def cycles(graph: dict) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for child in graph[node]:
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_there_are_no_import_cycles():
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    # The package's __init__ re-exports its modules; they never import it back by name.
    graph["nrnn"] = {m for m in graph["nrnn"] if m.count(".") == 1}
    assert len(graph) > 40
    assert cycles(graph) == []


UPPER = ("derivations", "verification", "figures", "benchmarks")
"""The packages above the runtime: they plug into it (entry points), it never names them."""
NAMES_AN_UPPER_MODULE = re.compile(rf"^nrnn\.({'|'.join(UPPER)})(\.\w+)*(:\w+)?$")
"""A string that is a module path (or entry-point target) in an upper package."""


def upper_references(name: str, source: str) -> set[str]:
    """What the module ``name`` (its ``source``) names of the upper packages, at any depth:
    imports (absolute or relative, at module level or in a function), modules imported by
    a constant string (``importlib.import_module``, ``__import__``) and any string constant
    that is such a module's path, so that nothing reaches them by name. ``name`` of a
    package's ``__init__`` ends in ``.__init__`` (its relative imports resolve inside it)."""
    package = name.split(".")
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            targets = [node.value]
        else:
            continue
        found.update(t for t in targets if NAMES_AN_UPPER_MODULE.match(t))
    return found


def runtime_modules() -> dict[str, Path]:
    return {
        name: path
        for name, path in modules().items()
        if name == "nrnn" or name.split(".")[1] not in UPPER
    }


def test_the_runtime_never_imports_sympy_or_the_layers_above_it():
    """No exemptions: every module of the runtime, the workflow layer and its command
    included (their subcommands and experiments come through entry points)."""
    checked = runtime_modules()
    assert {"nrnn.workflow.cli", "nrnn.workflow.experiments", "nrnn.cli"} <= set(checked)
    for name, path in checked.items():
        source = path.read_text()
        tree = ast.parse(source)
        roots = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and not node.level
        }
        assert "sympy" not in roots, name
        own = name + ".__init__" if path.name == "__init__.py" else name
        assert upper_references(own, source) == set(), name


BAD_RUNTIME_MODULE = """
import importlib


def command():
    from nrnn.verification import core
    from ..figures import runs
    return importlib.import_module("nrnn.benchmarks.model_speed"), "nrnn.derivations:COMMAND"
"""


def test_a_runtime_module_naming_an_upper_package_is_found():
    """Negative control: a function-level import, a relative one, a module imported by a
    string and an entry-point string are each found; a docstring that mentions one is not."""
    assert upper_references("nrnn.workflow.cli", BAD_RUNTIME_MODULE) == {
        "nrnn.verification",
        "nrnn.verification.core",
        "nrnn.figures",
        "nrnn.figures.runs",
        "nrnn.benchmarks.model_speed",
        "nrnn.derivations:COMMAND",
    }
    clean = 'from ..store import RunStore\n"""Finds nrnn.verification through entry points."""'
    assert upper_references("nrnn.workflow.cli", clean) == set()
    package = "from .verification import core\n"  # in nrnn/__init__.py: nrnn.verification
    assert upper_references("nrnn.__init__", package) == {
        "nrnn.verification",
        "nrnn.verification.core",
    }
