"""The paper's figures and tables, one module per figure.

Each figure module listed in :data:`FIGURES` defines

    TITLE: str                                   one line, shown by ``nrnn figures --list``
    make(context: FigureContext) -> list[Path]   compute (cached) and write its files

and writes every figure as PNG and PDF (with :mod:`paper_figures.style`) together with its
data as CSV or JSON, so tests can check results without looking at pixels. Adding a figure
means adding one module and one line here.

Trained models are shared between figures through :mod:`paper_figures.runs`: a grid of
named model variants, trained once per configuration hash under a cache directory.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

MODES = ("quick", "full")

FIGURES: dict[str, str] = {
    "expansion": "nrnn.figures.expansion",
    "trained_metrics": "nrnn.figures.trained_metrics",
    "stabilisation": "nrnn.figures.stabilisation",
    "robustness": "nrnn.figures.robustness",
}
"""Figure name -> module path, in the order ``nrnn figures`` makes them."""


@dataclass(frozen=True)
class FigureContext:
    """What every figure module receives.

    Attributes:
        mode: ``"quick"`` (small sizes for 2 CPU cores) or ``"full"`` (the paper's sizes).
        out_dir: where figures, tables and data files go.
        cache_dir: root of the cached training runs (shared by all figures).
        jobs: worker processes for training and evaluation.
        progress: show progress bars.
        datasets: the datasets to use, or None for the figure's default for ``mode``.
    """

    mode: str = "quick"
    out_dir: Path = Path("paper_figures/output")
    cache_dir: Path = Path(".cache/runs")
    jobs: int = 1
    progress: bool = True
    datasets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) or self.jobs < 1:
            raise ValueError(f"jobs must be a positive integer, got {self.jobs!r}")


def figure_module(name: str) -> ModuleType:
    """The module of figure ``name`` (imported on demand)."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; expected one of {sorted(FIGURES)}")
    return importlib.import_module(FIGURES[name])


__all__ = ["FIGURES", "MODES", "FigureContext", "figure_module"]
