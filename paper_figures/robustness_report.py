"""The robustness experiment's files: CSV, Markdown tables, figures, and the claim-9 page
whose verdicts the README shows (every sentence generated from the JSON outputs).

Per dataset ``<d>``:

    robustness_<d>.csv    one row per (variant, seed, perturbation, level): the accuracy
    robustness_<d>.json   the summary (``robustness_summary.summarise``)
    robustness_<d>.md     accuracy tables (mean ± std over seeds), the contrasts and the
                          translation of the released noise
    robustness_<d>.png/.pdf  accuracy and accuracy drop against level, per perturbation

and ``claim9.md``, the verdicts of every ``robustness_*.json`` in the folder.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from nrnn.files import write_text_atomic

from . import style
from .robustness_summary import direction
from .robustness_task import perturbation

CSV_COLUMNS = ("dataset", "variant", "label", "seed", "perturbation", "level", "accuracy")

TABLE_GROUPS = (
    ("random perturbations", ("white", "multiplicative", "salt-and-pepper")),
    ("adversarial perturbations", ("fgsm-linf", "pgd-linf", "fgsm-l2", "pgd-l2")),
)
"""The accuracy tables: one per group (each with the clean column), to stay readable."""

CLAIM9_PAGE = "claim9.md"


def label_and_symbol(name: str, pgd_steps: int) -> tuple[str, str]:
    entry = perturbation(name, pgd_steps)
    return entry.label, entry.symbol


def labels_of(summary: dict) -> dict[str, str]:
    """Variant name -> label; a variant standing for another's runs says whose."""
    labels = {v["name"]: v["label"] for v in summary["variants"]}
    return {
        v["name"]: v["label"]
        + (f" (= {labels[v['same_run_as']]})" if v["same_run_as"] is not None else "")
        for v in summary["variants"]
    }


def shown(summary: dict) -> list[dict]:
    """The variants with runs of their own (not those standing for another's runs)."""
    return [v for v in summary["variants"] if v["same_run_as"] is None]


# ------------------------------------------------------------------------------------ CSV
def write_csv(summary: dict, path: Path) -> Path:
    rows = []
    for v in shown(summary):
        for i, seed in enumerate(v["seeds"]):
            head = [summary["dataset"], v["name"], v["label"], seed]
            rows.append([*head, "clean", 0.0, v["clean"]["per_seed"][i]])
            for name, p in v["perturbations"].items():
                for level, accuracy in zip(p["levels"], p["per_seed"][i], strict=True):
                    rows.append([*head, name, level, accuracy])
    return style.save_csv(path, CSV_COLUMNS, rows)


# ------------------------------------------------------------------------------- Markdown
def _percent(mean: float, std: float, seeds: int) -> str:
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if seeds > 1 else "")


def points(comparison: dict) -> str:
    """A paired difference in percentage points with its 95 % interval."""
    text = f"{100 * comparison['mean_difference']:+.1f}"
    interval = comparison["ci95"]
    if interval is not None:
        text += f" [{100 * interval[0]:+.1f}, {100 * interval[1]:+.1f}]"
    return text


def variant_label(variant: dict, all_seeds: list[int]) -> str:
    """The variant's label, with its seeds when it has fewer than the others."""
    label = variant["label"]
    if len(variant["seeds"]) != len(all_seeds):
        plural = "s" if len(variant["seeds"]) > 1 else ""
        label += f" (seed{plural} {', '.join(map(str, variant['seeds']))})"
    return label


def markdown_table(summary: dict, perturbations: tuple[str, ...] | None = None) -> str:
    """Rows: models; columns: clean accuracy and each level of ``perturbations`` (default
    all), mean ± std over seeds in %. The best mean of each column is in bold."""
    settings = summary["settings"]
    columns: list[tuple[str, str | None, int | None]] = [("Clean", None, None)]
    for name, values in settings["levels"].items():
        if perturbations is not None and name not in perturbations:
            continue
        label, symbol = label_and_symbol(name, settings["pgd_steps"])
        columns += [(f"{label} {symbol}={level:g}", name, i) for i, level in enumerate(values)]

    def mean_std(v, name, i):
        if name is None:
            return v["clean"]["mean"], v["clean"]["std"]
        p = v["perturbations"][name]
        return p["mean"][i], p["std"][i]

    rows = shown(summary)
    best = [max((mean_std(v, n, i)[0] for v in rows), default=None) for _, n, i in columns]
    lines = [
        "| Model | " + " | ".join(c[0] for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for v in rows:
        cells = []
        for (_, name, i), top in zip(columns, best, strict=True):
            mean, std = mean_std(v, name, i)
            text = _percent(mean, std, len(v["seeds"]))
            cells.append(f"**{text}**" if top is not None and mean == top else text)
        lines.append(f"| {variant_label(v, settings['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def training_table(summary: dict) -> str:
    """Per model: noise, tuning, epochs trained (min–max over seeds), how many runs the
    stopping rule stopped, and the last validation accuracy."""
    lines = [
        "| Model | noise (form: additive / multiplicative) | Δt | lr | epochs (min–max) | "
        "stopped by the rule | validation accuracy (%) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for v in shown(summary):
        noise, training = v["noise"], v["training"]
        level = (
            "none"
            if noise["additive"] == noise["multiplicative"] == 0
            else f"{noise['additive']:.4g} / {noise['multiplicative']:.4g}"
        )
        form = noise["form"]
        if noise["learnable_step"]:
            form += ", learnable δ"
        valid = [a for a in training["valid_accuracy"] if a is not None]
        accuracy = _percent(*_mean_std(valid), len(valid)) if valid else "–"
        lines.append(
            f"| {v['label']} | {form}: {level} | {v['dt']:g} | {v['lr']:g} | "
            f"{min(training['epochs'])}–{max(training['epochs'])} | "
            f"{sum(training['stopped'])} of {len(training['stopped'])} | {accuracy} |"
        )
    return "\n".join(lines)


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def contrast_table(summary: dict, kind: str) -> str:
    """One row per contrast of ``kind`` ("twin" or "lipschitz"): the clean difference and,
    per perturbation, the paired difference of mean accuracy drops (points, 95 % CI; ▲
    the model loses less, ▼ more), and the verdict."""
    settings = summary["settings"]
    names = list(settings["levels"])
    labels = labels_of(summary)
    header = [label_and_symbol(n, settings["pgd_steps"])[0] for n in names]
    lines = [
        "| Model | against | clean | " + " | ".join(header) + " | verdict |",
        "|---|---|---:|" + "---:|" * len(names) + "---|",
    ]
    marks = {1: " ▲", -1: " ▼", 0: ""}
    for c in summary["contrasts"]:
        if c["kind"] != kind:
            continue
        cells = [
            points(c["perturbations"][n]["mean_drop"]) + marks[c["perturbations"][n]["direction"]]
            for n in names
        ]
        lines.append(
            f"| {labels[c['variant']]} | {labels[c['reference']]} | {points(c['clean'])} | "
            + " | ".join(cells)
            + f" | {c['verdict']} |"
        )
    return "\n".join(lines)


def translation_text(summary: dict) -> list[str]:
    """The released settings' paper-form translation and its measured size."""
    translation = summary.get("translation") or {}
    if not translation:
        return []
    lines = [
        "*The released noise in the paper's form* (``nrnn.translation.released_to_paper``): "
        "σ₁ = s_a/√Δt exactly; σ₂ = 0, because the released multiplier's noise "
        "(s_m²/12)(δ f)² per step is proportional to the drift step, not to the state. "
        "Measured at initialisation on test sequences (logit noise: tr Cov of the logits "
        "over the training noise, same weights, ± one standard error); the released model "
        "trains with the mean step δ (1 − s_m/2) and evaluates with δ, which the paper form "
        "has no counterpart of: the last column gives the released model the mean step Δt, "
        "so that the two differ in their noise alone:",
        "",
        "| setting | s_a / s_m | Δt | σ₁ | variance left out / kept | logit noise, matched ÷ "
        "released | with σ₂ = s_m/√Δt instead | matched ÷ released at the same mean step |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for setting, entry in translation.items():
        measured = entry["measured"]
        lines.append(
            f"| {setting} | {entry['released_additive']:g} / {entry['released_multiplicative']:g}"
            f" | {entry['dt']:g} | {entry['paper_additive']:.4g} | "
            f"{measured['dropped_variance_share']:.2g} | "
            f"{measured['matched_ratio']:.3f} ± {measured['matched_ratio_se']:.3f} | "
            f"{measured['convention_ratio']:.2f} ± {measured['convention_ratio_se']:.2f} | "
            f"{measured['matched_same_step_ratio']:.3f} ± "
            f"{measured['matched_same_step_ratio_se']:.3f} |"
        )
    return lines


def markdown_report(summary: dict) -> str:
    """A caption, the training table, the accuracy tables, the contrasts and the
    translation."""
    settings = summary["settings"]
    stopping = settings["stopping"]
    rule = (
        f"trained until the best validation accuracy of the last {stopping['stop_window']} "
        f"epochs gained less than {100 * stopping['stop_min_gain']:g} points "
        f"({stopping['plateau_decays']} learning-rate drop ×0.1 at the first such plateau), "
        f"at most {settings['epoch_cap']} epochs"
        if stopping["stop_window"]
        else f"{settings['epoch_cap']} epochs"
    )
    parts = [
        f"**{summary['dataset']}**: test accuracy (%) clean and under input perturbations, "
        f"mean ± std over seeds {settings['seeds']}; hidden {settings['hidden_dim']}, {rule}; "
        f"{settings['eval_sequences']} test sequences (best mean in bold)."
        + (
            " Every run with " + ", ".join(f"`{o}`" for o in settings["overrides"]) + "."
            if settings.get("overrides")
            else ""
        ),
        "",
        training_table(summary),
    ]
    aliases = [v for v in summary["variants"] if v["same_run_as"] is not None]
    labels = {v["name"]: v["label"] for v in summary["variants"]}
    if aliases:
        parts += [
            "",
            "; ".join(
                f"{v['label']}: the same configuration as the {labels[v['same_run_as']]} "
                "on this dataset (trained once)"
                for v in aliases
            )
            + ".",
        ]
    for title, names in TABLE_GROUPS:
        if any(name in settings["levels"] for name in names):
            parts += ["", f"*{title.capitalize()}*", "", markdown_table(summary, names)]
    intro = (
        "paired by seed: clean is the difference of clean accuracy; each perturbation "
        "column is the difference of accuracy drops (perturbed − clean, mean over its "
        "levels) in percentage points with its 95 % confidence interval; ▲: the model loses "
        "significantly less accuracy, ▼: more"
    )
    for kind, title in (
        ("twin", "Against its noise-free twin"),
        ("lipschitz", "Against the Lipschitz RNN"),
    ):
        if any(c["kind"] == kind for c in summary["contrasts"]):
            parts += ["", f"*{title}* ({intro}):", "", contrast_table(summary, kind)]
    translation = translation_text(summary)
    if translation:
        parts += ["", *translation]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- claim 9
def claim9_page(summaries: list[dict]) -> str:
    """The verdicts of claim 9, generated from the robustness summaries: per dataset, each
    noisy model against its twin (the causal contrast) and against the Lipschitz RNN (the
    paper's), with the perturbations whose 95 % interval excludes zero."""
    lines = [
        "| dataset | model | against | clean accuracy, points [95 % CI] | loses less under "
        "| loses more under | verdict |",
        "|---|---|---|---:|---|---|---|",
    ]
    sentences = []
    for summary in summaries:
        labels = labels_of(summary)
        noisy = {v["name"] for v in summary["variants"] if v["control"] is not None}
        pgd = summary["settings"]["pgd_steps"]
        for c in summary["contrasts"]:
            if c["variant"] not in noisy:
                continue
            more = ", ".join(label_and_symbol(n, pgd)[0] for n in c["more_robust"]) or "–"
            less = ", ".join(label_and_symbol(n, pgd)[0] for n in c["less_robust"]) or "–"
            lines.append(
                f"| {summary['dataset']} | {labels[c['variant']]} | {labels[c['reference']]} "
                f"| {points(c['clean'])} | {more} | {less} | {c['verdict']} |"
            )
            if c["kind"] == "twin":
                sentences.append(_sentence(summary, c, labels, pgd))
    notes = [
        "",
        "Verdicts: *holds*: the model loses significantly less accuracy than the model it is "
        "compared with under at least half of the perturbations and significantly more under "
        "none; *partly*: under fewer than half; *mixed*: less under some and more under "
        "others; *opposite*: more under some, less under none; *not shown*: no difference "
        "resolved. Each interval is a paired 95 % t interval over the seeds, not adjusted for "
        "the number of comparisons.",
    ]
    return "\n".join(["\n".join(lines), *notes, "", *sentences]).rstrip() + "\n"


def _sentence(summary: dict, c: dict, labels: dict, pgd: int) -> str:
    """One generated sentence: what the CI-resolved differences of a twin contrast say."""
    dataset, model, twin = summary["dataset"], labels[c["variant"]], labels[c["reference"]]
    clean = c["clean"]
    if clean["ci95"] is not None and direction(clean) != 0:
        cost = f"clean accuracy {points(clean)} points"
    else:
        cost = f"no resolved clean-accuracy difference ({points(clean)} points)"
    parts = []
    for key, what in (("more_robust", "loses less"), ("less_robust", "loses more")):
        names = c[key]
        if names:
            detail = ", ".join(
                f"{label_and_symbol(n, pgd)[0]} {points(c['perturbations'][n]['mean_drop'])}"
                for n in names
            )
            parts.append(f"{what} accuracy under {detail}")
    body = "; ".join(parts) if parts else "no perturbation resolves a difference in accuracy drop"
    return (
        f"- {dataset}, {model} vs {twin} ({len(c['seeds'])} seeds): {body}; {cost}. "
        f"Verdict: {c['verdict']}."
    )


def write_claim9(out_dir: Path) -> Path:
    """``claim9.md`` from every ``robustness_*.json`` in ``out_dir`` (sorted by name)."""
    summaries = [
        json.loads(path.read_text()) for path in sorted(Path(out_dir).glob("robustness_*.json"))
    ]
    path = Path(out_dir) / CLAIM9_PAGE
    write_text_atomic(path, claim9_page([s for s in summaries if "contrasts" in s]))
    return path


# --------------------------------------------------------------------------------- plots
def plot(summary: dict, stem: Path) -> list[Path]:
    """Two rows of panels per perturbation: accuracy (%) against level (level 0 = clean),
    and the accuracy drop from clean; mean ± std band over seeds."""
    style.apply()
    import matplotlib.pyplot as plt

    settings = summary["settings"]
    names = list(settings["levels"])
    columns = len(names)
    fig, axes = plt.subplots(2, columns, figsize=(2.3 * columns, 4.8), squeeze=False)
    variants = shown(summary)
    for column, name in enumerate(names):
        label, symbol = label_and_symbol(name, settings["pgd_steps"])
        for index, v in enumerate(variants):
            look = style.variant_style(v["name"], index)
            p = v["perturbations"][name]
            x = [0.0, *p["levels"]]
            per_seed = [
                [clean, *row]
                for clean, row in zip(v["clean"]["per_seed"], p["per_seed"], strict=True)
            ]
            for row, transform in ((0, lambda r: r), (1, lambda r: [a - r[0] for a in r])):
                values = [transform(seed) for seed in per_seed]
                mean = [100 * sum(c) / len(c) for c in zip(*values, strict=True)]
                spread = [100 * _mean_std(list(c))[1] for c in zip(*values, strict=True)]
                ax = axes[row][column]
                ax.plot(x, mean, label=variant_label(v, settings["seeds"]), **look)
                low = [m - s for m, s in zip(mean, spread, strict=True)]
                high = [m + s for m, s in zip(mean, spread, strict=True)]
                ax.fill_between(x, low, high, color=look["color"], alpha=0.12, linewidth=0)
        axes[0][column].set_title(label)
        axes[0][column].set_ylim(0, 100)
        axes[1][column].set_xlabel(f"level {symbol}")
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[1][0].set_ylabel("drop from clean (points)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(5, len(labels)), fontsize=7)
    seeds = len(settings["seeds"])
    fig.suptitle(
        f"{summary['dataset']}: accuracy under input perturbations "
        f"(mean ± std over {seeds} seed{'s' if seeds > 1 else ''})",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return style.save(fig, stem)


# --------------------------------------------------------------------------------- files
def write(summary: dict, out_dir: str | Path) -> list[Path]:
    """Write the CSV, JSON, Markdown and figure of one dataset's summary."""
    stem = Path(out_dir) / f"robustness_{summary['dataset']}"
    return (
        [write_csv(summary, stem.with_suffix(".csv"))]
        + style.save_data(stem, summary, markdown_report(summary))
        + plot(summary, stem)
    )


def index_name(profile: str) -> str:
    """``robustness.md`` for the quick profile, ``robustness_<profile>.md`` otherwise (the
    medium profile's outputs are committed beside the quick ones, on other datasets)."""
    return "robustness.md" if profile == "quick" else f"robustness_{profile}.md"


def write_index(summaries: dict[str, dict], out_dir: Path, command: str, profile: str) -> Path:
    """``robustness.md``: every dataset's tables, the figure and the command that made them."""
    parts = [
        "# Robustness to input perturbations",
        "",
        f"Made by `{command}`. Data: `robustness_<dataset>.csv` / `.json`.",
        "",
    ]
    for dataset, summary in summaries.items():
        parts += [
            f"## {dataset}",
            "",
            f"![robustness on {dataset}](robustness_{dataset}.png)",
            "",
            markdown_report(summary),
            "",
        ]
    path = Path(out_dir) / index_name(profile)
    write_text_atomic(path, "\n".join(parts))
    return path
