"""The robustness experiment's statistics: per-variant aggregates over seeds, paired
contrasts (every noisy model against its noise-free twin and against the Lipschitz RNN),
robustness at equal clean accuracy, and the verdicts the README states.

Robustness at equal clean accuracy. Models that differ in clean accuracy differ in
perturbed accuracy for that reason alone, so no summary here averages perturbed
accuracies. A contrast compares, per perturbation and level, the *accuracy drop*
(perturbed − clean accuracy) of the two models, paired by seed (the same seed gives both
the same initialisation and batch order); its mean over a perturbation's levels decides
the verdict for that perturbation: "more robust" when the 95 % confidence interval of the
paired difference of drops lies above zero (the model loses less), "less robust" below
zero, otherwise "not resolved". Clean accuracy is compared beside it.

The verdict of a contrast over all perturbations: "holds" (more robust under at least half
of the perturbations and less robust under none), "partly" (under fewer than half, less
robust under none), "mixed" (more robust under some, less robust under others),
"opposite" (less robust under some, more robust under none), "not shown" (no perturbation
resolved). Each interval is a per-comparison 95 % interval (not adjusted for the number of
comparisons, which the outputs state).
"""

from __future__ import annotations

import math
from typing import Any

from nrnn.noise import kind_of
from nrnn.workflow.harness import RunOutcome

from . import runs

BASELINE = "lipschitz"
"""The paper's reference model: every variant is also compared with it, paired by seed."""

VERDICTS = ("holds", "partly", "mixed", "opposite", "not shown")


# ---------------------------------------------------------------------------- statistics
def stats(values: list[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (0 for one value), min, max and the values."""
    mean = sum(values) / len(values)
    spread = sum((v - mean) ** 2 for v in values)
    std = math.sqrt(spread / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "per_seed": values}


def paired(differences: list[float]) -> dict[str, Any]:
    """The mean of paired differences with its two-sided 95 % t confidence interval
    (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n; None with fewer than two pairs)."""
    from scipy import stats as scipy_stats

    n = len(differences)
    mean = sum(differences) / n if n else None
    interval = None
    if mean is not None and n >= 2:
        sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
        half = float(scipy_stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        interval = [mean - half, mean + half]
    return {"mean_difference": mean, "ci95": interval, "per_seed": differences}


def direction(comparison: dict[str, Any]) -> int:
    """+1 when the confidence interval lies above zero, −1 below, 0 otherwise (or None)."""
    interval = comparison["ci95"]
    if interval is None:
        return 0
    return 1 if interval[0] > 0 else -1 if interval[1] < 0 else 0


def overall_verdict(directions: list[int]) -> str:
    """The verdict of a contrast from its per-perturbation directions (module docstring)."""
    more, less = directions.count(1), directions.count(-1)
    if more and less:
        return "mixed"
    if less:
        return "opposite"
    if not more:
        return "not shown"
    return "holds" if 2 * more >= len(directions) else "partly"


# ------------------------------------------------------------------------------ variants
def _noise_section(config) -> dict[str, Any]:
    noise = config.noise
    return {
        "form": kind_of(noise).name,
        "additive": noise.additive,
        "multiplicative": noise.multiplicative,
        "brownian": getattr(noise, "brownian", None),
        "learnable_step": "step_size" in noise.parameter_names,
    }


def variant_entry(variant: str, outcomes: list[RunOutcome], levels: dict) -> dict[str, Any]:
    """The aggregate over seeds of one variant's finished runs (``outcomes``, each with a
    robustness task result)."""
    results = [o.result for o in outcomes if o.result is not None]
    config = outcomes[0].spec.config
    trainings = [result["training"] for result in results]
    perturbations: dict[str, dict[str, Any]] = {}
    for name, values in levels.items():
        per_seed = [result["perturbations"][name]["accuracy"] for result in results]
        columns = [stats([row[i] for row in per_seed]) for i in range(len(values))]
        perturbations[name] = {
            "levels": list(values),
            "mean": [c["mean"] for c in columns],
            "std": [c["std"] for c in columns],
            "per_seed": per_seed,
        }
    return {
        "name": variant,
        "label": runs.VARIANTS[variant].label,
        "control": runs.VARIANTS[variant].control,
        "same_run_as": None,
        "noise": _noise_section(config),
        "objective": config.train.objective,
        "dt": config.model.dt,
        "lr": config.optim.lr,
        "seeds": [o.spec.seed for o in outcomes],
        "run_dirs": [str(o.run_dir) for o in outcomes],
        "training": {
            key: [t[key] for t in trainings]
            for key in ("epochs", "stopped", "plateaus", "valid_accuracy", "best_valid_accuracy")
        },
        "clean": stats([result["clean"] for result in results]),
        "perturbations": perturbations,
    }


def aliased(entry: dict[str, Any], variant: str, original: str) -> dict[str, Any]:
    """The entry of ``variant``, whose runs are ``original``'s (the same configuration)."""
    chosen = runs.VARIANTS[variant]
    return entry | {
        "name": variant,
        "label": chosen.label,
        "control": chosen.control,
        "same_run_as": original,
    }


# ----------------------------------------------------------------------------- contrasts
def contrast(variant: dict, reference: dict, kind: str) -> dict[str, Any]:
    """``variant`` against ``reference`` paired by seed: clean accuracy, and per
    perturbation and level the accuracy and the accuracy drop (perturbed − clean), the
    mean drop over the levels with its direction, and the overall verdict."""
    shared = [s for s in variant["seeds"] if s in reference["seeds"]]

    def rows(entry: dict) -> list[int]:  # the entry's index of every shared seed
        return [entry["seeds"].index(seed) for seed in shared]

    mine, theirs = rows(variant), rows(reference)
    clean = [
        (variant["clean"]["per_seed"][i], reference["clean"]["per_seed"][j])
        for i, j in zip(mine, theirs, strict=True)
    ]
    perturbations: dict[str, Any] = {}
    for name, ours in variant["perturbations"].items():
        pairs = [
            (ours["per_seed"][i], reference["perturbations"][name]["per_seed"][j])
            for i, j in zip(mine, theirs, strict=True)
        ]
        # drops[seed][level]: the paired difference of (perturbed − clean)
        drops = [
            [(a - clean_a) - (b - clean_b) for a, b in zip(row_a, row_b, strict=True)]
            for (row_a, row_b), (clean_a, clean_b) in zip(pairs, clean, strict=True)
        ]
        levels = range(len(ours["levels"]))
        summary = paired([sum(row) / len(row) for row in drops])
        perturbations[name] = {
            "levels": ours["levels"],
            "accuracy": [paired([a[k] - b[k] for a, b in pairs]) for k in levels],
            "drop": [paired([row[k] for row in drops]) for k in levels],
            "mean_drop": summary,
            "direction": direction(summary),
        }
    directions = [p["direction"] for p in perturbations.values()]
    return {
        "variant": variant["name"],
        "reference": reference["name"],
        "kind": kind,
        "seeds": shared,
        "clean": paired([a - b for a, b in clean]),
        "perturbations": perturbations,
        "more_robust": [n for n, p in perturbations.items() if p["direction"] == 1],
        "less_robust": [n for n, p in perturbations.items() if p["direction"] == -1],
        "verdict": overall_verdict(directions) if len(shared) >= 2 else "not shown",
    }


def contrasts(variants: list[dict]) -> list[dict[str, Any]]:
    """Every noisy variant against its twin (``kind`` "twin"), and every variant but the
    baseline against the Lipschitz RNN (``kind`` "lipschitz") unless its twin is the
    Lipschitz RNN's own run, when both are present."""
    by_name = {v["name"]: v for v in variants}
    found = []
    for variant in variants:
        if variant["same_run_as"] is not None:
            continue
        control = by_name.get(variant["control"] or "")
        if control is not None:
            found.append(contrast(variant, control, "twin"))
        baseline = by_name.get(BASELINE)
        twin_is_baseline = control is not None and BASELINE in (
            control["name"],
            control["same_run_as"],
        )
        if baseline is not None and variant["name"] != BASELINE and not twin_is_baseline:
            found.append(contrast(variant, baseline, "lipschitz"))
    return found


# -------------------------------------------------------------------------------- summary
def summarise(
    dataset: str,
    settings,
    outcomes: list[RunOutcome],
    overrides: tuple[str, ...] = (),
    translation: dict | None = None,
) -> dict[str, Any]:
    """Aggregate the per-run results over seeds (the JSON written for a dataset).

    ``outcomes`` hold one run per (seed, variant) of ``runs.grid``; a variant that grid left
    out because its configuration is another's (``runs.same_runs``) is listed with
    ``same_run_as``.
    """
    levels = settings.levels_for(dataset)
    aliases = runs.same_runs(dataset, settings.variants, settings.size)
    entries: dict[str, dict] = {}
    for variant in settings.variants:
        done = [o for o in outcomes if o.spec.name == variant]
        if not done:  # left out by the plan (an override it cannot take), or another's runs
            continue
        if any(o.result is None for o in done):
            raise RuntimeError(
                f"{variant}: a run without a result (a failed run) reached the table"
            )
        entries[variant] = variant_entry(variant, done, levels)
    for variant, original in aliases.items():
        if original in entries:
            entries[variant] = aliased(entries[original], variant, original)
    variants = [entries[v] for v in settings.variants if v in entries]
    size = settings.size
    found = contrasts(variants)
    return {
        "figure": "robustness",
        "dataset": dataset,
        "settings": {
            "profile": settings.profile,
            "overrides": list(overrides),
            "recipe": size.recipe if dataset in runs.AUTHORS_TUNING else "default",
            "hidden_dim": size.hidden_dim,
            "epoch_cap": size.epochs,
            "stopping": {
                "stop_window": size.stop_window,
                "stop_min_gain": size.stop_min_gain,
                "plateau_decays": size.plateau_decays,
            },
            "train_subset": size.train_subset,
            "seeds": sorted({o.spec.seed for o in outcomes}),
            "eval_samples": settings.eval_samples,
            "eval_sequences": _eval_sequences(dataset, settings),
            "pgd_steps": settings.pgd_steps,
            "eval_seed": settings.eval_seed,
            "levels": {k: list(v) for k, v in levels.items()},
            "comparisons": len(found) * len(levels),
        },
        "translation": translation or {},
        "variants": variants,
        "contrasts": found,
    }


def _eval_sequences(dataset: str, settings) -> int:
    from nrnn import data

    size = data.info(dataset).size("test")
    return size if settings.eval_samples is None else min(size, settings.eval_samples)
