"""The package's modules import each other without cycles (function-level imports
included): data flows one way, derivations -> generated code -> nrnn -> verification ->
figures, and inside each package along layers (docs/design.md)."""

import ast
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


def test_the_runtime_never_imports_sympy_or_the_layers_above_it():
    for name, path in modules().items():
        if not name.startswith("nrnn.") or name.split(".")[1] in (
            "derivations",
            "verification",
            "figures",
            "benchmarks",
        ):
            continue
        targets = imports(name, path, set(modules()) | {"sympy"})
        tree = ast.parse(path.read_text())
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
        upper = {t for t in targets if t.split(".")[1:2] in (["verification"], ["figures"])}
        if name not in ("nrnn.cli",):
            assert not upper, (name, upper)
