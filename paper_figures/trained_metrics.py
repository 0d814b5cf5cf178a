"""What noise does to trained models (claims 6–8): Hessian trace, κ, ‖Φ‖ and input margin.

For each dataset the ``trained`` verification module (``verification/trained.py``) trains
three models per seed from the same initialisation and mini-batch order, differing only in
the objective: ``clean`` (no noise), ``noise`` (the noisy RNN) and ``explicit`` (noise off,
loss + the explicit regularizer of the same noise), and measures each with noise off:

- the Hutchinson trace of the Hessian of the training loss (claim 6: flatter minima);
- κ = λ_max(sym A) + ‖W‖₂ and ‖Φ_{0→M}‖₂ = ‖∂h_M/∂h_0‖₂ (claim 7: more stable dynamics);
- the mean empirical ℓ2 input margin, misclassified sequences counting 0 (claim 8).

One figure per dataset, one panel per metric: every seed's value (points; a thin line joins
the three models of one seed, which are paired), the mean over seeds (bar), and in the panel
title the one-sided paired t test p value of each treated objective against ``clean`` in the
claimed direction (as in the verification report).

Data source. The figure reads ``report.json`` of the verification (``verification/`` by
default) when it holds the ``trained`` module at the profile of the figure mode; otherwise
it runs that module (which caches its trained runs) and merges the result into the report.

Files written into the output directory:

    trained_metrics.json          per dataset: per-seed values and means of every plotted
                                  metric and objective, the paired tests
    trained_metrics.csv           dataset, objective, seed, quantity, value: every quantity
                                  the verification measured
    trained_metrics.md            per dataset: means ± sd, paired differences and p values
    trained_metrics_<d>.png/.pdf  the panels of dataset <d>
"""

from __future__ import annotations

import math
from pathlib import Path

from nrnn.verification.core import report_figure
from nrnn.verification.trained import BASELINE, OBJECTIVES

from . import style

TITLE = (
    "Trained models: Hessian trace, kappa, Lyapunov exponent, Jacobian product and input "
    "margin by objective"
)

OBJECTIVE_ORDER = OBJECTIVES

METRIC_LABELS = {
    "hessian_trace": (
        "Hessian trace (claim 6)",
        r"$\mathrm{tr}\,\nabla^2_\theta L$ (training loss)",
    ),
    "kappa": (
        "contraction rate κ (claim 7)",
        r"$\kappa = \lambda_{\max}(\mathrm{sym}\,A) + \|W\|_2$ (per unit time)",
    ),
    "lyapunov": (
        "Lyapunov exponent along data (claim 7)",
        r"finite-time exponent $\frac{1}{T}\log\frac{|\delta h_T|}{|\delta h_0|}$, test mean",
    ),
    "phi_full": (
        "Jacobian product ‖Φ‖ (claim 7)",
        r"$\|\Phi\| = \|\partial h_M / \partial h_0\|_2$, mean over test set",
    ),
    "margin": ("input margin (claim 8)", r"$\ell_2$ input margin (test mean, misclassified = 0)"),
}
"""metric key -> (panel title, y-axis label); other keys fall back to the key itself."""


# ------------------------------------------------------------------------------ parsing
def parse_check_name(name: str) -> tuple[str, str, str] | None:
    """(metric, dataset, treated) of a comparison check name
    ``"<metric>.<dataset>.<treated>_vs_clean"``; None for any other check."""
    parts = name.split(".")
    suffix = f"_vs_{BASELINE}"
    if len(parts) != 3 or not parts[2].endswith(suffix):
        return None
    return parts[0], parts[1], parts[2].removesuffix(suffix)


def _split_run_key(key: str) -> tuple[str, int]:
    """("noise", 2) from the measurement key "noise/seed2"."""
    objective, _, seed = key.partition("/seed")
    if not seed.isdigit():
        raise ValueError(f"unexpected measurement key {key!r}; expected '<objective>/seed<n>'")
    return objective, int(seed)


def usable_report(module_report: dict) -> bool:
    """Whether a ``trained`` module report holds at least one comparison with its
    per-run measurements and paired test, and no run that failed (a ``training.*`` check of
    a report written before failed runs stopped the command: its tables would lack runs)."""
    checks = module_report.get("checks", [])
    if any(check.get("name", "").startswith("training.") for check in checks):
        return False
    for check in checks:
        details = check.get("details", {})
        if (
            parse_check_name(check.get("name", ""))
            and "measurements" in details
            and "test" in details
        ):
            return True
    return False


def _metric_order(found: set[str]) -> list[str]:
    from nrnn.verification.trained import METRICS

    known = [metric.key for metric in METRICS if metric.key in found]
    return known + sorted(found - set(known))


def summarise(module_report: dict) -> dict:
    """The plotted numbers (the JSON written) from a ``trained`` module report.

    Returns figure, profile, report_finished, noise_level and datasets: one dict per dataset
    with objectives, seeds, measurements (objective -> seed -> every measured quantity),
    metrics (one dict per compared metric: key, title, ylabel, claim, relation ("<" or ">":
    the claimed direction of treated vs clean),
    values (objective -> {"seeds", "values", "mean"}), tests (treated objective -> the
    paired test and verdict)).
    """
    if not usable_report(module_report):
        raise ValueError(
            "the trained module report holds no comparison with measurements; "
            "run `nrnn verify trained` again"
        )
    datasets: dict[str, dict] = {}
    for check in module_report["checks"]:
        parsed = parse_check_name(check["name"])
        if parsed is None:
            continue
        metric, dataset, treated = parsed
        entry = datasets.setdefault(dataset, _empty_dataset())
        for key, values in check["details"]["measurements"].items():
            objective, seed = _split_run_key(key)
            entry["measurements"].setdefault(objective, {})[seed] = values
        test = dict(
            check["details"]["test"],
            verdict=check["details"].get("verdict"),
            passed=bool(check["passed"]),
        )
        entry["tests"].setdefault(metric, {})[treated] = test
        entry["claims"][metric] = (check["claim"], _relation(check["tolerance"].get("claimed", "")))
    return {
        "figure": "trained_metrics",
        "profile": module_report["profile"],
        "report_finished": module_report.get("finished"),
        "noise_level": module_report.get("sizes", {}).get("noise_level"),
        "datasets": [_dataset_summary(name, entry) for name, entry in datasets.items()],
    }


def _empty_dataset() -> dict:
    return {"measurements": {}, "tests": {}, "claims": {}}


def _dataset_summary(dataset: str, entry: dict) -> dict:
    measurements = entry["measurements"]
    objectives = [o for o in OBJECTIVE_ORDER if o in measurements]
    objectives += sorted(set(measurements) - set(objectives))
    seeds = sorted({seed for runs in measurements.values() for seed in runs})
    metrics = []
    for key in _metric_order(set(entry["tests"])):
        title, ylabel = METRIC_LABELS.get(key, (key, key))
        values = {}
        for objective in objectives:
            runs = measurements[objective]
            mine = [seed for seed in seeds if seed in runs and key in runs[seed]]
            numbers = [float(runs[seed][key]) for seed in mine]
            finite = [v for v in numbers if math.isfinite(v)]
            values[objective] = {
                "seeds": mine,
                "values": numbers,
                "mean": sum(finite) / len(finite) if finite else math.nan,
                "sd": _sd(finite),
            }
        claim, relation = entry["claims"][key]
        metrics.append(
            {
                "key": key,
                "title": title,
                "ylabel": ylabel,
                "claim": claim,
                "relation": relation,
                "values": values,
                "tests": entry["tests"][key],
            }
        )
    return {
        "dataset": dataset,
        "objectives": objectives,
        "seeds": seeds,
        "measurements": {
            o: {str(s): v for s, v in runs.items()} for o, runs in measurements.items()
        },
        "metrics": metrics,
    }


def _sd(values: list[float]) -> float:
    if len(values) < 2:
        return math.nan
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


# -------------------------------------------------------------------------------- plot
def _format_p(value) -> str:
    p = float(value)
    if not math.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def _relation(claimed: str) -> str:
    """'<' or '>' from the verification's tolerance text "noise < clean" / "noise > clean"."""
    if ">" in claimed:
        return ">"
    if "<" in claimed:
        return "<"
    raise ValueError(f"cannot read the claimed direction from {claimed!r}")


def panel_title(metric: dict) -> str:
    """The metric's title and one line per treated objective: p(treated ≶ clean) = ...
    (one-sided paired t test in the claimed direction)."""
    relation = metric["relation"]
    lines = [metric["title"]]
    for treated, test in metric["tests"].items():
        lines.append(
            f"p({treated} {relation} clean) = {_format_p(test['p_t_one_sided'])}  (n = {test['n']})"
        )
    return "\n".join(lines)


def _plot_metric(ax, metric: dict, objectives: list[str], seeds: list[int]) -> None:
    positions = {objective: index for index, objective in enumerate(objectives)}
    for seed in seeds:  # thin grey line: the paired runs of one seed
        xs, ys = [], []
        for objective in objectives:
            entry = metric["values"][objective]
            if seed in entry["seeds"]:
                xs.append(positions[objective])
                ys.append(entry["values"][entry["seeds"].index(seed)])
        ax.plot(xs, ys, color="#BBBBBB", linewidth=0.8, zorder=1)
    for index, objective in enumerate(objectives):
        entry = metric["values"][objective]
        look = style.objective_style(objective, index)
        ax.plot(
            [positions[objective]] * len(entry["values"]),
            entry["values"],
            linestyle="none",
            marker=look["marker"],
            color=look["color"],
            alpha=0.85,
            zorder=3,
        )
        ax.plot(
            [positions[objective] - 0.22, positions[objective] + 0.22],
            [entry["mean"]] * 2,
            color=look["color"],
            linewidth=2.6,
            alpha=0.6,
            zorder=2,
        )
    values = [v for entry in metric["values"].values() for v in entry["values"] if math.isfinite(v)]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")
    ax.set_xticks(range(len(objectives)))
    ax.set_xticklabels([style.OBJECTIVE_LABELS.get(o, o).replace(" ", "\n", 1) for o in objectives])
    ax.set_xlim(-0.5, len(objectives) - 0.5)
    ax.set_ylabel(metric["ylabel"])
    ax.set_title(panel_title(metric), fontsize=9)


def _legend_handles(objectives: list[str]):
    from matplotlib.lines import Line2D

    handles = []
    for index, objective in enumerate(objectives):
        look = style.objective_style(objective, index)
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker=look["marker"],
                color=look["color"],
                label=f"{style.OBJECTIVE_LABELS.get(objective, objective)}: one point per seed",
            )
        )
    handles.append(Line2D([], [], color="#555555", linewidth=2.6, label="mean over seeds"))
    handles.append(
        Line2D([], [], color="#BBBBBB", linewidth=0.8, label="runs with the same seed (paired)")
    )
    return handles


def plot(summary: dict, dataset: dict, stem: Path) -> list[Path]:
    """One panel per metric for one dataset (a row of panels); PNG and PDF."""
    style.apply()
    import matplotlib.pyplot as plt

    metrics = dataset["metrics"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 3.9), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        _plot_metric(ax, metric, dataset["objectives"], dataset["seeds"])
    noise = summary["noise_level"]
    level = f"σ₁ = σ₂ = {noise:g}" if noise is not None else "the configured noise"
    trained = {
        "clean": "clean",
        "noise": f"with noise ({level})",
        "explicit": "with the explicit regularizer of that noise",
    }
    ways = [trained.get(name, name) for name in dataset["objectives"]]
    ways = ", ".join(ways[:-1]) + " or " + ways[-1] if len(ways) > 1 else ways[0]
    fig.suptitle(
        f"{dataset['dataset']}: models trained {ways}, measured noise off; "
        f"{len(dataset['seeds'])} seeds; p: one-sided paired t test over seeds in the claimed "
        "direction",
        fontsize=9.5,
    )
    fig.legend(
        handles=_legend_handles(dataset["objectives"]),
        loc="lower center",
        ncol=len(dataset["objectives"]) + 2,
        fontsize=7.5,
    )
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return style.save(fig, stem)


# ------------------------------------------------------------------------------- tables
def _mean_sd(entry: dict) -> str:
    if not entry["values"]:
        return "–"
    text = f"{entry['mean']:.4g}"
    return text + (f" ± {entry['sd']:.2g}" if math.isfinite(entry["sd"]) else "")


def markdown_dataset(summary: dict, dataset: dict) -> str:
    """The table of one dataset: means ± sd per objective, paired differences, p values."""
    objectives = dataset["objectives"]
    treated = [o for o in objectives if o != BASELINE]
    header = (
        ["metric"]
        + [f"{o} (mean ± sd)" for o in objectives]
        + [f"{o} − clean (± SE), p_t, p_sign" for o in treated]
    )
    lines = [
        f"## {dataset['dataset']}",
        "",
        f"![trained metrics on {dataset['dataset']}](trained_metrics_{dataset['dataset']}.png)",
        "",
        "| " + " | ".join(header) + " |",
        "|---|" + "---:|" * (len(header) - 1),
    ]
    for metric in dataset["metrics"]:
        claimed = f"{', '.join(metric['tests'])} {metric['relation']} clean"
        cells = [f"{metric['title']} [{claimed}]"]
        cells += [_mean_sd(metric["values"][o]) for o in objectives]
        for objective in treated:
            test = metric["tests"].get(objective)
            if test is None:
                cells.append("–")
                continue
            cells.append(
                f"{float(test['mean_difference']):+.3g} ± "
                f"{float(test['se_difference']):.2g}, "
                f"{_format_p(test['p_t_one_sided'])}, "
                f"{_format_p(test['p_sign_one_sided'])} ({test['verdict']})"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(summary: dict) -> str:
    parts = [
        "# Trained models: curvature, stability and margins",
        "",
        f"Verification `trained`, profile `{summary['profile']}` (report finished "
        f"{summary['report_finished']}). Seeds are paired: the models of one seed share "
        "the initialisation and the mini-batch order. p_t: one-sided paired t test, p_sign: "
        "exact one-sided sign test, both in the claimed direction shown in brackets. "
        "Data: `trained_metrics.json`, `trained_metrics.csv`.",
        "",
    ]
    for dataset in summary["datasets"]:
        parts += [markdown_dataset(summary, dataset), ""]
    return "\n".join(parts)


CSV_COLUMNS = ("dataset", "objective", "seed", "quantity", "value")


def _write_csv(summary: dict, path: Path) -> Path:
    rows = [
        [dataset["dataset"], objective, seed, quantity, value]
        for dataset in summary["datasets"]
        for objective, runs in dataset["measurements"].items()
        for seed, values in sorted(runs.items(), key=lambda item: int(item[0]))
        for quantity, value in values.items()
    ]
    return style.save_csv(path, CSV_COLUMNS, rows)


def write(summary: dict, out_dir: str | Path) -> list[Path]:
    """Write trained_metrics.json/.csv/.md and one PNG + PDF per dataset."""
    out_dir = Path(out_dir)
    json_path, md_path = style.save_data(
        out_dir / "trained_metrics", summary, markdown_report(summary)
    )
    paths = [json_path, _write_csv(summary, out_dir / "trained_metrics.csv"), md_path]
    for dataset in summary["datasets"]:
        paths += plot(summary, dataset, out_dir / f"trained_metrics_{dataset['dataset']}")
    return paths


# ----------------------------------------------------------------------------- registry
EXPERIMENT = report_figure(
    "trained_metrics",
    "trained",
    TITLE,
    lambda module_report, out_dir: write(summarise(module_report), out_dir),
    usable_report,
)
