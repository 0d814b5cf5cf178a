"""The small-noise expansion check (claims 1–2): remainder order and the ε² coefficient.

With every noise variable scaled by ε, E ℓ_ε = ℓ + ε² (q + r)/2 + O(ε⁴). The figure shows
the numbers measured by the ``expansion`` verification module (``verification/expansion.py``):

(a) the remainder |E ℓ_ε − ℓ − ε² (q + r)/2| against ε on log-log axes for each small case
    whose E ℓ_ε is computed exactly by tensor Gauss quadrature, with the fitted log-log
    slope and ε⁴ and ε³ reference lines (the paper states ε³; the remainder is ε⁴);
(b) the predicted ε² coefficient (q + r)/2 of ``nrnn.explicit_regularizer`` against its
    Monte Carlo estimate on real sequences (Richardson combination of antithetic,
    common-random-number paths at ε and 2ε), ± 1.96 standard errors, with the identity line;
    the exact quadrature coefficients of the small cases are shown too;
(c) the Monte Carlo difference in standard errors, with the check's Bonferroni tolerance.

Data source. The figure reads ``report.json`` of the verification (``verification/`` by
default) when it holds the ``expansion`` module at the profile of the figure mode
(quick → quick, full → full) with every field the figure needs; otherwise it runs that
module (``verification.core.run_module``) and merges the result into the report, so
``make reproduce`` (``nrnn verify --quick`` first) never computes it twice.

Files written into the output directory:

    expansion.json       the plotted numbers: per-case remainders, fitted slopes and
                         intercepts; per-sequence predictions, estimates, standard errors
    expansion.md         two tables: remainder slopes, and ε² coefficients
    expansion.png/.pdf   the three panels
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nrnn.verification.core import find_check, report_figure

from . import style

TITLE = "Small-noise expansion: O(eps^4) remainder and eps^2 coefficient vs Monte Carlo"

REMAINDER_CHECK = "quadrature_remainder_order"
COEFFICIENT_CHECK = "quadrature_coefficient"
MONTE_CARLO_CHECK = "monte_carlo_coefficient"


# ------------------------------------------------------------------------------ summary
def _has(mapping, keys: tuple[str, ...]) -> bool:
    return isinstance(mapping, dict) and all(key in mapping for key in keys)


def usable_report(module_report: dict) -> bool:
    """Whether an ``expansion`` module report holds every field :func:`summarise` reads."""
    try:
        remainder = find_check(module_report, REMAINDER_CHECK)["details"]
        coefficient = find_check(module_report, COEFFICIENT_CHECK)["details"]
        monte_carlo = find_check(module_report, MONTE_CARLO_CHECK)["details"]
    except KeyError:
        return False
    rows = [
        row for case in monte_carlo.get("cases", {}).values() for row in case.get("sequences", [])
    ]
    return (
        _has(remainder, ("epsilons", "cases"))
        and _has(coefficient, ("cases",))
        and _has(module_report.get("sizes"), ("monte_carlo_epsilon",))
        and all(
            _has(case, ("remainder", "slope", "one_sign")) for case in remainder["cases"].values()
        )
        and all(
            _has(case, ("epsilon2_coefficient", "half_q_plus_r", "relative_error"))
            for case in coefficient["cases"].values()
        )
        and bool(rows)
        and all(_has(row, ("estimate", "stderr", "half_q_plus_r", "z")) for row in rows)
    )


def fit_power_law(epsilons: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Least-squares (slope, intercept) of log|values| against log ε (both (n,))."""
    slope, intercept = np.polyfit(np.log(epsilons), np.log(np.abs(values)), 1)
    return float(slope), float(intercept)


def summarise(module_report: dict) -> dict:
    """The plotted numbers (the JSON written) from an ``expansion`` module report.

    Returns a dict with
        remainder: epsilons (n,), slope_range, and cases: one dict per quadrature case with
            case, remainder (n,), slope and intercept of the log-log fit, one_sign,
            slope_reported (the verification's own fit) and half_q_plus_r;
        coefficient: monte_carlo (one row per sequence: case, sequence, predicted, estimate,
            stderr, z), quadrature (one row per case: case, predicted, estimate),
            z_tolerance, epsilon, level, paths;
        checks: check name -> passed, for the checks shown.
    """
    if not usable_report(module_report):
        raise ValueError(
            "the expansion module report lacks the remainder, quadrature or "
            "Monte Carlo coefficient details this figure plots"
        )
    remainder = find_check(module_report, REMAINDER_CHECK)
    coefficient = find_check(module_report, COEFFICIENT_CHECK)
    monte_carlo = find_check(module_report, MONTE_CARLO_CHECK)
    epsilons = np.array(remainder["details"]["epsilons"], dtype=float)
    exact = coefficient["details"]["cases"]
    cases = []
    for label, case in remainder["details"]["cases"].items():
        values = np.array(case["remainder"], dtype=float)
        slope, intercept = fit_power_law(epsilons, values)
        cases.append(
            {
                "case": label,
                "remainder": values.tolist(),
                "slope": slope,
                "intercept": intercept,
                "slope_reported": float(case["slope"]),
                "one_sign": bool(case["one_sign"]),
                "sign": "negative" if values[-1] < 0 else "positive",
                "half_q_plus_r": float(exact[label]["half_q_plus_r"]) if label in exact else None,
            }
        )
    rows = []
    for label, case in monte_carlo["details"]["cases"].items():
        for index, row in enumerate(case["sequences"]):
            rows.append(
                {
                    "case": label,
                    "sequence": index,
                    "steps": case.get("steps"),
                    "predicted": float(row["half_q_plus_r"]),
                    "estimate": float(row["estimate"]),
                    "stderr": float(row["stderr"]),
                    "z": float(row["z"]),
                }
            )
    quadrature = [
        {
            "case": label,
            "predicted": float(case["half_q_plus_r"]),
            "estimate": float(case["epsilon2_coefficient"]),
            "relative_error": float(case["relative_error"]),
        }
        for label, case in exact.items()
    ]
    sizes = module_report["sizes"]
    return {
        "figure": "expansion",
        "profile": module_report["profile"],
        "report_finished": module_report.get("finished"),
        "remainder": {
            "epsilons": epsilons.tolist(),
            "slope_range": remainder["tolerance"]["slope_range"],
            "quadrature_level": sizes.get("quadrature_level"),
            "quadrature_dt": sizes.get("quadrature_dt"),
            "cases": cases,
        },
        "coefficient": {
            "monte_carlo": rows,
            "quadrature": quadrature,
            "z_tolerance": float(monte_carlo["tolerance"]["z"]),
            "false_failure": float(monte_carlo["false_failure"]),
            "epsilon": sizes["monte_carlo_epsilon"],
            "level": sizes.get("monte_carlo_level"),
            "paths": monte_carlo["details"].get("paths_per_sequence"),
        },
        "checks": {
            check["name"]: bool(check["passed"]) for check in (remainder, coefficient, monte_carlo)
        },
    }


# -------------------------------------------------------------------------------- plot
def _plot_remainder(ax, remainder: dict) -> None:
    epsilons = np.array(remainder["epsilons"])
    smallest = math.inf
    for index, case in enumerate(remainder["cases"]):
        look = style.series_style(index)
        values = np.abs(np.array(case["remainder"]))
        negative = case["sign"] == "negative"
        ax.loglog(
            epsilons,
            values,
            linestyle="none",
            color=look["color"],
            marker=look["marker"],
            markerfacecolor="none" if negative else look["color"],
            label=f"{case['case']}: slope {case['slope']:.2f}"
            + (" (remainder < 0)" if negative else ""),
        )
        ax.loglog(
            epsilons,
            np.exp(case["intercept"]) * epsilons ** case["slope"],
            color=look["color"],
            linewidth=1.0,
        )
        smallest = min(smallest, float((values / epsilons**4).min()))
    anchor = smallest / 4 * epsilons[0] ** 4  # below every case at the smallest ε
    ax.loglog(
        epsilons,
        anchor * (epsilons / epsilons[0]) ** 4,
        "k--",
        linewidth=1.2,
        label="∝ ε⁴ (reference)",
    )
    ax.loglog(
        epsilons,
        anchor * (epsilons / epsilons[0]) ** 3,
        "k:",
        linewidth=1.2,
        label="∝ ε³ (the paper's stated order)",
    )
    ax.set_xlabel("noise scale ε (noise = ε × the model's σ)")
    ax.set_ylabel(r"$|\,\mathrm{E}\,\ell_\varepsilon - \ell - \varepsilon^2 (q + r)/2\,|$")
    ax.set_title("(a) remainder after the ε² term\n(exact Gauss quadrature, small models)")
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=2,
        fontsize=7,
        title="hidden d, steps M, noise form: fitted log-log slope",
        title_fontsize=7,
    )


def _case_colours(rows: list[dict]) -> dict[str, dict]:
    names = list(dict.fromkeys(row["case"] for row in rows))
    return {name: style.series_style(index + 4) for index, name in enumerate(names)}


def _plot_coefficients(ax, coefficient: dict) -> None:
    z = style.error_bar_z()
    rows = coefficient["monte_carlo"]
    looks = _case_colours(rows)
    for name, look in looks.items():
        mine = [row for row in rows if row["case"] == name]
        ax.errorbar(
            [r["predicted"] for r in mine],
            [r["estimate"] for r in mine],
            yerr=[z * r["stderr"] for r in mine],
            linestyle="none",
            capsize=2.5,
            color=look["color"],
            marker=look["marker"],
            label=name,
        )
    exact = coefficient["quadrature"]
    ax.plot(
        [r["predicted"] for r in exact],
        [r["estimate"] for r in exact],
        linestyle="none",
        marker="x",
        color="#000000",
        label="exact (quadrature, cases of (a))",
    )
    values = [r["predicted"] for r in rows + exact] + [r["estimate"] for r in rows + exact]
    low, high = min(values), max(values)
    pad = 0.08 * (high - low or 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], "k-", linewidth=0.8, label="identity")
    ax.set_xlabel("predicted ε² coefficient (q + r)/2")
    ax.set_ylabel("measured ε² coefficient")
    ax.set_title(
        f"(b) regularizer prediction vs Monte Carlo\n(± {z:.2f} SE; "
        f"{coefficient['paths']} antithetic pairs per sequence)"
    )
    ax.legend(
        loc="upper left",
        fontsize=7,
        title="Monte Carlo (data, hidden d, noise form)",
        title_fontsize=7,
    )


def _plot_standardised(ax, coefficient: dict) -> None:
    rows = coefficient["monte_carlo"]
    looks = _case_colours(rows)
    for position, row in enumerate(rows):
        look = looks[row["case"]]
        difference = (row["estimate"] - row["predicted"]) / row["stderr"]
        ax.plot(position, difference, linestyle="none", color=look["color"], marker=look["marker"])
    tolerance = coefficient["z_tolerance"]
    for sign in (1, -1):
        ax.axhline(
            sign * tolerance,
            color="k",
            linestyle="--",
            linewidth=1.0,
            label=(
                f"check tolerance ± {tolerance:.2f} "
                f"(P(false fail) = {coefficient['false_failure']:g})"
            )
            if sign > 0
            else None,
        )
    ax.axhline(0.0, color="k", linewidth=0.6)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(
        [f"{row['case']} #{row['sequence']}" for row in rows], rotation=60, ha="right", fontsize=6
    )
    ax.set_ylabel("(estimate − prediction) / SE")
    ax.set_ylim(-1.3 * tolerance, 1.3 * tolerance)
    ax.set_title("(c) Monte Carlo difference in\nstandard errors, per sequence")
    ax.legend(loc="lower left", fontsize=7)


def plot(summary: dict, stem: Path) -> list[Path]:
    """The three panels (remainder, coefficients, standardised differences); PNG and PDF."""
    style.apply()
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, 3, figsize=(13.5, 4.4), gridspec_kw={"width_ratios": [1.15, 1.0, 0.85]}
    )
    _plot_remainder(axes[0], summary["remainder"])
    _plot_coefficients(axes[1], summary["coefficient"])
    _plot_standardised(axes[2], summary["coefficient"])
    coefficient = summary["coefficient"]
    fig.suptitle(
        r"Small-noise expansion $\mathrm{E}\,\ell_\varepsilon = \ell + \varepsilon^2 (q + r)/2"
        r" + O(\varepsilon^4)$ "
        f"(verification profile {summary['profile']}; Monte Carlo: Richardson estimate from "
        f"ε = {coefficient['epsilon']:g} and {2 * coefficient['epsilon']:g})",
        fontsize=10,
    )
    fig.tight_layout()
    return style.save(fig, stem)


# ------------------------------------------------------------------------------- tables
def markdown_report(summary: dict) -> str:
    """Two Markdown tables: remainder slopes per quadrature case, ε² coefficients."""
    remainder, coefficient = summary["remainder"], summary["coefficient"]
    epsilons = remainder["epsilons"]
    top = epsilons[-1]
    low, high = remainder["slope_range"]
    lines = [
        "# Small-noise expansion",
        "",
        "![expansion check](expansion.png)",
        "",
        f"Verification profile `{summary['profile']}` (report finished "
        f"{summary['report_finished']}). Data: `expansion.json`.",
        "",
        f"**Remainder order** (exact tensor Gauss quadrature): log-log slope of "
        f"|E ℓ_ε − ℓ − ε²(q + r)/2| over ε ∈ [{epsilons[0]:g}, {top:g}]; the claim is "
        f"ε⁴ (slope in [{low}, {high}]), the paper states ε³.",
        "",
        f"| case | fitted slope | one sign | remainder at ε = {top:g} | ε² term at ε = {top:g} |",
        "|---|---:|---|---:|---:|",
    ]
    for case in remainder["cases"]:
        term = f"{top**2 * case['half_q_plus_r']:.3e}" if case["half_q_plus_r"] is not None else "–"
        one_sign = "yes" if case["one_sign"] else "no"
        lines.append(
            f"| {case['case']} | {case['slope']:.3f} | {one_sign} | "
            f"{case['remainder'][-1]:.3e} | {term} |"
        )
    lines += [
        "",
        f"**ε² coefficient**: (q + r)/2 of `explicit_regularizer` against its Monte Carlo "
        f"estimate ({coefficient['paths']} antithetic pairs per sequence, Richardson from ε = "
        f"{coefficient['epsilon']:g} and {2 * coefficient['epsilon']:g}); tolerance "
        f"{coefficient['z_tolerance']:.2f} SE (Bonferroni, P(false fail) = "
        f"{coefficient['false_failure']:g}); and the exact quadrature coefficient of the small "
        "models.",
        "",
        "| case | sequence | (q + r)/2 | measured | SE | (measured − predicted)/SE |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in coefficient["monte_carlo"]:
        lines.append(
            f"| {row['case']} | {row['sequence']} | {row['predicted']:.5g} | "
            f"{row['estimate']:.5g} | {row['stderr']:.2g} | "
            f"{(row['estimate'] - row['predicted']) / row['stderr']:+.2f} |"
        )
    for row in coefficient["quadrature"]:
        lines.append(
            f"| {row['case']} (quadrature) | – | {row['predicted']:.6g} | "
            f"{row['estimate']:.6g} | exact | relative error "
            f"{row['relative_error']:.1e} |"
        )
    return "\n".join(lines)


def write(summary: dict, out_dir: str | Path) -> list[Path]:
    """Write expansion.json, expansion.md and expansion.png/.pdf."""
    stem = Path(out_dir) / "expansion"
    return style.save_data(stem, summary, markdown_report(summary)) + plot(summary, stem)


# ----------------------------------------------------------------------------- registry
EXPERIMENT = report_figure(
    "expansion",
    "expansion",
    TITLE,
    lambda module_report, out_dir: write(summarise(module_report), out_dir),
    usable_report,
)
