"""One matplotlib style for every figure: Agg backend, readable sizes, fixed colours.

Each model variant keeps the same colour and marker in every figure (``variant_style``),
with the Okabe–Ito palette, which stays distinguishable for colour-blind readers and in
greyscale thanks to the markers.
"""

from __future__ import annotations

import csv
import functools
import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from nrnn.files import write_atomic, write_json_atomic, write_text_atomic

OKABE_ITO = (
    "#000000",  # black
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#0072B2",  # blue
    "#CC79A7",  # reddish purple
    "#F0E442",  # yellow
)

_VARIANT_STYLES = {
    "lipschitz": {"color": "#000000", "marker": "o", "linestyle": "-"},
    "antisymmetric": {"color": "#999999", "marker": "s", "linestyle": "--"},
    "released-clean": {"color": "#009E73", "marker": "d", "linestyle": ":"},
    "released-small": {"color": "#009E73", "marker": "^", "linestyle": "-."},
    "released-high": {"color": "#009E73", "marker": "D", "linestyle": "-"},
    "paper-clean": {"color": "#0072B2", "marker": "x", "linestyle": ":"},
    "paper-small": {"color": "#56B4E9", "marker": "^", "linestyle": "-."},
    "paper-high": {"color": "#0072B2", "marker": "v", "linestyle": "-"},
    "explicit": {"color": "#D55E00", "marker": "P", "linestyle": "--"},
}

RC: dict[str, Any] = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "figure.facecolor": "white",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "lines.markersize": 4.5,
    "legend.frameon": False,
    "pdf.fonttype": 42,  # embed TrueType: text stays editable and searchable
}


def apply() -> None:
    """Install the style in matplotlib's global rcParams."""
    plt.style.use(RC)


def variant_style(name: str, index: int = 0) -> dict:
    """Keyword arguments for ``plot`` (color, marker, linestyle) of a model variant;
    unknown names get a palette colour by ``index``."""
    if name in _VARIANT_STYLES:
        return dict(_VARIANT_STYLES[name])
    return {"color": OKABE_ITO[index % len(OKABE_ITO)], "marker": "o", "linestyle": "-"}


def save_data(stem: str | Path, data: dict, markdown: str) -> list[Path]:
    """Write a figure's data as ``<stem>.json`` (strict JSON: NaN and infinity become null)
    and its table as ``<stem>.md``, atomically; returns both paths."""
    stem = Path(stem)
    return [
        write_json_atomic(stem.with_suffix(".json"), _finite_or_none(data), indent=1),
        write_text_atomic(stem.with_suffix(".md"), markdown + "\n"),
    ]


def _finite_or_none(value):
    """``value`` with every NaN or infinite float replaced by None."""
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def save_csv(path: str | Path, header: tuple[str, ...], rows: Iterable[Iterable]) -> Path:
    """Write a figure's per-run data as CSV (``header`` then ``rows``), atomically."""
    lines = io.StringIO()
    writer = csv.writer(lines)
    writer.writerow(header)
    writer.writerows(rows)
    return write_text_atomic(path, lines.getvalue())


def save(fig, stem: str | Path) -> list[Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf`` (without time stamps, atomically) and close
    the figure."""
    stem = Path(stem)
    metadata = {
        "png": {"Software": None},
        "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
    }
    paths = [
        write_atomic(
            stem.with_suffix(f".{kind}"),
            functools.partial(fig.savefig, format=kind, metadata=metadata[kind]),
        )
        for kind in ("png", "pdf")
    ]
    plt.close(fig)
    return paths


# ------------------------------------------------------------------ additions for the
# verification figures (expansion, stabilisation, trained_metrics)
_OBJECTIVE_VARIANTS = {"clean": "lipschitz", "noise": "paper-high", "explicit": "explicit"}

OBJECTIVE_LABELS = {
    "clean": "clean (no noise)",
    "noise": "noise-trained",
    "explicit": "explicit regularizer",
}
"""Training objective (``train.objective``) -> legend label."""


def objective_style(name: str, index: int = 0) -> dict:
    """``plot`` keyword arguments of a training objective, matching the variant that trains
    with it (clean = Lipschitz RNN, noise = noisy RNN, explicit = explicit regularizer)."""
    return variant_style(_OBJECTIVE_VARIANTS.get(name, name), index)


def series_style(index: int) -> dict:
    """Colour and marker of the ``index``-th of several unnamed series (cases, systems)."""
    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    # Okabe–Ito without black (the colour of reference lines); grey, then the pale yellow last.
    palette = OKABE_ITO[1:7] + ("#999999", OKABE_ITO[7])
    return {"color": palette[index % len(palette)], "marker": markers[index % len(markers)]}


def error_bar_z() -> float:
    """The half-width of the error bars in standard errors: 1.96 (95% normal interval)."""
    return 1.959963984540054
