"""The layer list of docs/design.md is the import graph of ``nrnn``: every module (a
subpackage counts as one) is in exactly one layer and imports, at any depth, only modules
of its own layer or of the layers listed before it."""

import re
from pathlib import Path

import pytest
from test_imports import imports, modules

DESIGN = Path(__file__).resolve().parent.parent / "docs" / "design.md"


def documented_layers(text: str) -> dict[str, int]:
    """Module -> its layer's position, from the ```layers block (one layer per line: its
    name, then its modules)."""
    (block,) = re.findall(r"^```layers\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    layers: dict[str, int] = {}
    for position, line in enumerate(block.strip().splitlines()):
        for module in line.split()[1:]:
            assert module not in layers, f"{module} is in two layers"
            layers[module] = position
    return layers


def unit(name: str) -> str:
    """The documented unit of an ``nrnn`` module: ``nrnn.cells.base`` -> ``cells``."""
    return name.split(".")[1]


def runtime_graph() -> dict[str, set[str]]:
    """Unit -> the units it imports (the package ``nrnn`` itself, which re-exports, aside)."""
    found = modules()
    known = set(found)
    graph: dict[str, set[str]] = {}
    for name, path in found.items():
        if name == "nrnn" or unit(name) in ("derivations", "verification", "figures", "benchmarks"):
            continue
        targets = {unit(t) for t in imports(name, path, known) if t != "nrnn"}
        graph.setdefault(unit(name), set()).update(targets - {unit(name)})
    return graph


def violations(layers: dict[str, int], graph: dict[str, set[str]]) -> list[str]:
    """What contradicts the layers: undocumented or vanished units, upward imports."""
    found = [f"{u} is in no layer" for u in sorted(set(graph) - set(layers))]
    found += [f"{u} is documented but is no module" for u in sorted(set(layers) - set(graph))]
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            if source in layers and target in layers and layers[target] > layers[source]:
                found.append(f"{source} imports {target}, a layer above it")
    return found


def test_the_documented_layers_are_the_import_graph():
    graph = runtime_graph()
    assert {"contract", "cells", "noise", "model", "train", "workflow"} <= set(graph)
    assert violations(documented_layers(DESIGN.read_text()), graph) == []


def test_a_wrong_layer_list_is_caught():
    """Negative controls: an upward import, a module left out, a module that is gone."""
    layers = documented_layers(DESIGN.read_text())
    graph = runtime_graph()
    upward = {**graph, "contract": graph["contract"] | {"train"}}
    assert violations(layers, upward) == ["contract imports train, a layer above it"]
    missing = {k: v for k, v in layers.items() if k != "metrics"}
    assert violations(missing, graph) == ["metrics is in no layer"]
    assert violations({**layers, "gone": 0}, graph) == ["gone is documented but is no module"]
    with pytest.raises(AssertionError, match="contract is in two layers"):
        documented_layers("```layers\na contract\nb contract\n```\n")
