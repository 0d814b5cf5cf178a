"""Robustness to input perturbations (the paper's Tables 1–2 and its robustness figure).

Every model variant of :mod:`paper_figures.runs` is trained on each dataset with several
seeds and evaluated, noise off, on the test split (or a fixed random subset of it) clean and
under every perturbation of :mod:`nrnn.perturb` at several levels.

Files written per dataset ``<d>`` into the output directory:

    robustness_<d>.csv    one row per (variant, seed, perturbation, level): the accuracy
    robustness_<d>.json   the same aggregated: mean, std and per-seed values, the ranking of
                          the variants by mean perturbed accuracy
    robustness_<d>.md     the table: one row per model; clean accuracy and each
                          perturbation level (mean ± std over seeds, in %)
    robustness_<d>.png/.pdf  accuracy against level, one panel per perturbation type,
                          mean ± std over seeds (level 0 is the clean accuracy)

and ``robustness.md``, all tables with the settings and the command that made them.

Levels (``LEVELS``) are per dataset because the data differ in scale: the digits lie in
[0, 1] (pixel standard deviation about 0.4), ECG5000 and MNIST are standardised (standard
deviation 1). Adversarial budgets are per whole sequence (L2 over all M · p entries).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nrnn.experiments import Context, Experiment
from nrnn.files import write_text_atomic
from nrnn.harness import RunOutcome, RunSpec

from . import runs, style

TITLE = "Accuracy under white, multiplicative, salt-and-pepper and adversarial input perturbations"

PERTURBATION_ORDER = (
    "white",
    "multiplicative",
    "salt-and-pepper",
    "fgsm-linf",
    "pgd-linf",
    "fgsm-l2",
    "pgd-l2",
)


def _levels(white, multiplicative, salt, linf, l2) -> dict[str, tuple[float, ...]]:
    return {
        "white": white,
        "multiplicative": multiplicative,
        "salt-and-pepper": salt,
        "fgsm-linf": linf,
        "pgd-linf": linf,
        "fgsm-l2": l2,
        "pgd-l2": l2,
    }


SALT = ((0.05, 0.1, 0.2), (0.02, 0.05, 0.1, 0.15, 0.2))
LEVEL_FAMILIES: dict[str, tuple[dict, dict]] = {
    # standardised data (standard deviation 1): ECG5000, MNIST with the default recipe
    "unit": (
        _levels((0.5, 1.0, 2.0), (0.5, 1.0, 2.0), SALT[0], (0.1, 0.2, 0.4), (1.0, 2.0, 4.0)),
        _levels(
            (0.25, 0.5, 1.0, 1.5, 2.0),
            (0.25, 0.5, 1.0, 1.5, 2.0),
            SALT[1],
            (0.05, 0.1, 0.2, 0.3, 0.4),
            (0.5, 1.0, 2.0, 3.0, 4.0),
        ),
    ),
    # pixels in [0, 1], 64 of them: the 8x8 digits
    "pixels-64": (
        _levels((0.1, 0.2, 0.4), (0.2, 0.4, 0.8), SALT[0], (0.02, 0.05, 0.1), (0.2, 0.5, 1.0)),
        _levels(
            (0.05, 0.1, 0.2, 0.3, 0.4),
            (0.1, 0.2, 0.4, 0.6, 0.8),
            SALT[1],
            (0.01, 0.02, 0.05, 0.075, 0.1),
            (0.1, 0.2, 0.5, 0.75, 1.0),
        ),
    ),
    # pixels in [0, 1], 784 of them: pixel MNIST with the authors' recipe (k/255). RNNs
    # read 784 pixels one by one and are far more sensitive to adversarial changes than to
    # random ones: at the digits' budgets (L∞ 0.02, L2 0.7) a Lipschitz RNN trained at the
    # medium size kept 29 % and 10 % accuracy (measured), so the adversarial budgets are
    # four and seven times smaller, and the random levels are those of the digits.
    "pixels-784": (
        _levels((0.1, 0.2, 0.4), (0.2, 0.4, 0.8), SALT[0], (0.005, 0.01, 0.02), (0.1, 0.25, 0.5)),
        _levels(
            (0.05, 0.1, 0.2, 0.3, 0.4),
            (0.1, 0.2, 0.4, 0.6, 0.8),
            SALT[1],
            (0.0025, 0.005, 0.01, 0.015, 0.02),
            (0.05, 0.1, 0.25, 0.375, 0.5),
        ),
    ),
}
"""family -> (three levels per perturbation: smoke, quick, medium; five: full)."""


def _scaled(levels: dict[str, tuple[float, ...]], factor: float) -> dict[str, tuple[float, ...]]:
    """Levels for data ``factor`` times larger (multiplicative and salt-and-pepper levels are
    relative and stay)."""
    relative = ("multiplicative", "salt-and-pepper")
    return {
        name: values if name in relative else tuple(factor * v for v in values)
        for name, values in levels.items()
    }


def levels_for(dataset: str, recipe: str, profile: str) -> dict[str, tuple[float, ...]]:
    """Perturbation levels for a dataset as prepared by ``recipe``, at ``profile``.

    The levels follow the scale of the data: the digits lie in [0, 1] (pixel standard
    deviation about 0.4); ECG5000 and MNIST (default recipe) are standardised; the authors'
    ordered pixel MNIST lies in [0, 1] and their permuted MNIST in 0..255 (levels ×255).
    Adversarial budgets are per whole sequence (L2 over all M · p entries).
    """
    if dataset in ("digits", "digits-rows"):
        family, factor = "pixels-64", 1.0
    elif recipe == "authors":
        family, factor = "pixels-784", 255.0 if dataset == "pmnist-pixels" else 1.0
    elif dataset in ("ecg5000", "mnist-rows", "mnist-pixels", "pmnist-pixels"):
        family, factor = "unit", 1.0
    else:
        raise ValueError(f"no perturbation levels for dataset {dataset!r}")
    few, many = LEVEL_FAMILIES[family]
    chosen = many if profile == "full" else few
    if profile == "smoke":
        chosen = {name: values[-1:] for name, values in chosen.items()}
    return _scaled(chosen, factor)


DEFAULT_DATASETS = {
    "smoke": ("digits",),
    "quick": ("ecg5000", "digits"),
    "medium": ("mnist-pixels",),
    "full": ("mnist-pixels", "pmnist-pixels", "ecg5000"),
}


@dataclass(frozen=True)
class Settings:
    """Everything that defines the robustness experiment.

    Attributes:
        datasets: dataset names.
        variants: names in ``runs.VARIANTS``.
        size: hidden size, epochs, seeds and recipe of the training runs.
        profile: the profile the levels come from.
        eval_samples: evaluate on a fixed random subset of this many test sequences (the
            same for every model); None: the whole test split.
        pgd_steps: PGD iterations (step 2.5 · level / steps, random start).
        eval_seed: seed of the subset and of the random perturbations.
    """

    datasets: tuple[str, ...]
    variants: tuple[str, ...] = tuple(runs.VARIANTS)
    size: runs.Size = runs.QUICK
    profile: str = "quick"
    eval_samples: int | None = 1000
    pgd_steps: int = 10
    eval_seed: int = 0

    def levels_for(self, dataset: str) -> dict[str, tuple[float, ...]]:
        recipe = self.size.recipe if dataset in runs.AUTHORS_TUNING else "default"
        levels = levels_for(dataset, recipe, self.profile)
        return {name: levels[name] for name in PERTURBATION_ORDER if name in levels}


PROFILES = {
    # tiny: the tests
    "smoke": Settings(
        DEFAULT_DATASETS["smoke"],
        variants=("lipschitz", "noisy-high"),
        size=runs.SMOKE,
        profile="smoke",
        eval_samples=64,
        pgd_steps=2,
    ),
    # ECG5000 and digits: hidden 32, 40 epochs, 3 seeds, 3 levels per perturbation.
    "quick": Settings(DEFAULT_DATASETS["quick"], size=runs.QUICK, profile="quick"),
    # Pixel MNIST, the authors' recipe, hidden 64, 12,000 training images, 18 epochs, 3
    # seeds, 1000 test images; the explicit-regularizer variant is left out (its probe
    # estimator costs about ten times a noisy step at 784 steps).
    "medium": Settings(
        DEFAULT_DATASETS["medium"],
        variants=tuple(v for v in runs.VARIANTS if v != "explicit"),
        size=runs.MEDIUM,
        profile="medium",
    ),
    # The paper's size: ordered and permuted pixel MNIST (authors' recipe) and ECG5000,
    # hidden 128, 100 epochs, 5 seeds, every variant, 5 levels, the whole test split.
    "full": Settings(
        DEFAULT_DATASETS["full"],
        size=runs.FULL,
        profile="full",
        eval_samples=None,
        pgd_steps=20,
    ),
}


def settings_for(profile: str, datasets: tuple[str, ...] | None = None) -> Settings:
    """The experiment at ``profile``, optionally on other datasets."""
    settings = PROFILES[profile]
    if datasets:
        settings = dataclasses.replace(settings, datasets=tuple(datasets))
    for dataset in settings.datasets:
        settings.levels_for(dataset)  # an unknown dataset raises here
    return settings


# ------------------------------------------------------------------------ evaluation task
@dataclass(frozen=True)
class RobustnessTask:
    """Clean and perturbed test accuracy of one trained model (a ``runs.RunTask``).

    ``levels`` is a tuple of (perturbation name, levels) pairs.
    """

    levels: tuple[tuple[str, tuple[float, ...]], ...]
    eval_samples: int | None
    pgd_steps: int
    eval_seed: int
    batch_size: int = 500
    name: str = "robustness"

    def key(self) -> str:
        return runs.task_key(
            {
                "version": 1,
                "levels": self.levels,
                "samples": self.eval_samples,
                "pgd_steps": self.pgd_steps,
                "seed": self.eval_seed,
                "batch_size": self.batch_size,
            }
        )

    def passes(self, config) -> tuple[int, int]:
        """(sequences through a forward pass, through a forward and backward pass)."""
        from nrnn import data

        size = data.info(config.data.name, recipe=config.data.recipe).size("test")
        samples = size if self.eval_samples is None else min(size, self.eval_samples)
        forward, backward = 1, 0  # clean
        for name, levels in self.levels:
            forward += len(levels)
            if name.startswith("fgsm-"):
                backward += len(levels)
            elif name.startswith("pgd-"):
                backward += len(levels) * self.pgd_steps
        return samples * forward, samples * backward

    def __call__(self, model, config, run_dir) -> dict:
        from nrnn import perturb
        from nrnn.train import evaluate

        test, data_range = evaluation_data(config, self.eval_samples, self.eval_seed)
        perturbations: dict[str, dict] = {}
        result: dict[str, Any] = {"clean": evaluate(model, test, self.batch_size)["accuracy"]}

        result["perturbations"] = perturbations
        for name, levels in self.levels:
            entry = perturb.get(name)
            if name.startswith("pgd-"):
                entry = perturb.pgd_perturbation(name.removeprefix("pgd-"), self.pgd_steps)
            accuracy = perturb.evaluate_under(
                model,
                test,
                entry,
                levels,
                seed=self.eval_seed,
                batch_size=self.batch_size,
                data_range=data_range,
            )
            perturbations[name] = {
                "levels": list(levels),
                "accuracy": list(accuracy.values()),
            }
        return result


def evaluation_data(config, samples: int | None, seed: int):
    """The evaluation set and the data range for salt and pepper.

    Returns (TensorDataset of the test split of the config's dataset and recipe, or a
    random subset of ``samples`` sequences drawn with ``seed``, (min, max) of the training
    inputs).
    """
    import torch
    from torch.utils.data import TensorDataset

    from nrnn import data

    dataset, recipe = config.data.name, config.data.recipe
    test = data.load(dataset, "test", recipe=recipe)
    inputs, labels = test.tensors
    if samples is not None and samples < len(labels):
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(labels), generator=generator)[:samples].sort().values
        inputs, labels = inputs[chosen], labels[chosen]
    train_inputs = data.load(dataset, "train", recipe=recipe).tensors[0]
    return TensorDataset(inputs, labels), (float(train_inputs.min()), float(train_inputs.max()))


def task_for(settings: Settings, dataset: str) -> RobustnessTask:
    levels = tuple((name, tuple(values)) for name, values in settings.levels_for(dataset).items())
    return RobustnessTask(levels, settings.eval_samples, settings.pgd_steps, settings.eval_seed)


# ------------------------------------------------------------------------------ compute
def available_datasets(settings: Settings) -> list[str]:
    """The settings' datasets, each checked to have its data package installed.

    Raises:
        nrnn.data.MissingDataPackageError: naming the package to install (a dataset left
            out would shrink ``robustness.md`` silently).
    """
    from nrnn import data

    for dataset in settings.datasets:
        data.require(dataset)
    return list(settings.datasets)


def plan(settings: Settings, context: Context) -> list[tuple[list[RunSpec], RobustnessTask]]:
    """The trained runs (and their evaluation task) of every dataset, with the command
    line's ``--set`` overrides. A variant they make invalid (the Antisymmetric RNN with
    another cell) is left out with a message; a value no run takes, or that the baseline
    (the Lipschitz RNN, every comparison's reference) cannot take, is an error."""
    chosen: list[tuple[list[RunSpec], RobustnessTask]] = []
    for dataset in available_datasets(settings):
        specs: list[RunSpec] = []
        refused: list[tuple[RunSpec, ValueError]] = []
        for spec in runs.grid([dataset], settings.variants, settings.size):
            try:
                specs.append(RunSpec(spec.name, context.configure(spec.config)))
            except ValueError as error:
                refused.append((spec, error))
        for spec, reason in refused:
            if spec.name == BASELINE or not specs:
                raise ValueError(f"{spec.label}: {reason}")
            context.log(f"robustness: leaving out {spec.label}: {reason}")
        chosen.append((specs, task_for(settings, dataset)))
    return chosen


def compute(settings: Settings, context: Context) -> dict[str, dict]:
    """Train (or read from the store) and evaluate every run; the summary per dataset."""
    summaries = {}
    for specs, task in plan(settings, context):
        dataset = specs[0].dataset
        outcomes = context.ensure(specs, task, description=f"robustness runs ({dataset})")
        summaries[dataset] = summarise(dataset, settings, outcomes, context.overrides)
    return summaries


def summarise(
    dataset: str, settings: Settings, outcomes: list[RunOutcome], overrides: tuple[str, ...] = ()
) -> dict:
    """Aggregate the per-run results over seeds (the JSON written for a dataset)."""
    levels = settings.levels_for(dataset)
    variants = []
    for variant in settings.variants:
        done = [o for o in outcomes if o.spec.name == variant]
        if not done:  # left out by the plan (an override it cannot take)
            continue
        if any(o.result is None for o in done):
            raise RuntimeError(
                f"{variant}: a run without a result (a failed run) reached the table"
            )
        results = [o.result for o in done if o.result is not None]
        perturbations: dict[str, dict[str, Any]] = {}
        entry: dict[str, Any] = {
            "name": variant,
            "label": runs.VARIANTS[variant].label,
            "seeds": [o.spec.seed for o in done],
            "run_dirs": [str(o.run_dir) for o in done],
            "clean": _stats([result["clean"] for result in results]),
            "perturbations": perturbations,
        }
        perturbed: list[float] = []
        for name, values in levels.items():
            per_seed = [result["perturbations"][name]["accuracy"] for result in results]
            columns = [_stats([row[i] for row in per_seed]) for i in range(len(values))]
            perturbations[name] = {
                "levels": list(values),
                "mean": [c["mean"] for c in columns],
                "std": [c["std"] for c in columns],
                "per_seed": per_seed,
            }
            perturbed += perturbations[name]["mean"]
        entry["mean_perturbed_accuracy"] = sum(perturbed) / len(perturbed) if perturbed else None
        entry["per_seed_mean_perturbed"] = [
            _mean([a for name in levels for a in result["perturbations"][name]["accuracy"]])
            for result in results
        ]
        variants.append(entry)
    ranking = sorted(
        (v for v in variants if v["mean_perturbed_accuracy"] is not None),
        key=lambda v: -v["mean_perturbed_accuracy"],
    )
    size = settings.size
    return {
        "figure": "robustness",
        "dataset": dataset,
        "settings": {
            "profile": settings.profile,
            "overrides": list(overrides),
            "recipe": size.recipe if dataset in runs.AUTHORS_TUNING else "default",
            "hidden_dim": size.hidden_dim,
            "epochs": size.epochs,
            "train_subset": size.train_subset,
            "seeds": sorted({o.spec.seed for o in outcomes}),
            "eval_samples": settings.eval_samples,
            "eval_sequences": _eval_sequences(dataset, settings),
            "pgd_steps": settings.pgd_steps,
            "eval_seed": settings.eval_seed,
            "levels": {k: list(v) for k, v in levels.items()},
        },
        "variants": variants,
        "ranking": [v["name"] for v in ranking],
        "comparisons": paired_comparisons(variants),
    }


BASELINE = "lipschitz"
"""The variant every other is compared with, paired by seed: the deterministic Lipschitz RNN."""


def paired_comparisons(variants: list[dict]) -> dict[str, dict]:
    """Every variant minus the Lipschitz RNN, paired by seed (the same seed draws the same
    initial weights and batch order): the mean difference in clean accuracy and in mean
    perturbed accuracy (over every perturbation level), each with its two-sided 95 % t
    confidence interval over the seeds both have (None with fewer than two)."""
    from scipy import stats

    by_name = {v["name"]: v for v in variants}
    baseline = by_name.get(BASELINE)
    if baseline is None:
        return {}
    result: dict[str, dict] = {}
    for variant in variants:
        if variant["name"] == BASELINE:
            continue
        shared = [s for s in variant["seeds"] if s in baseline["seeds"]]
        entry: dict[str, Any] = {"seeds": shared}
        for key, values in (
            ("clean", lambda v: v["clean"]["per_seed"]),
            ("perturbed", lambda v: v["per_seed_mean_perturbed"]),
        ):
            mine = dict(zip(variant["seeds"], values(variant), strict=True))
            theirs = dict(zip(baseline["seeds"], values(baseline), strict=True))
            differences = [mine[s] - theirs[s] for s in shared]
            mean = _mean(differences) if differences else None
            interval = None
            if mean is not None and len(differences) >= 2:
                se = stats.sem(differences)
                half = float(stats.t.ppf(0.975, len(differences) - 1) * se)
                interval = [mean - half, mean + half]
            entry[key] = {"mean_difference": mean, "ci95": interval, "per_seed": differences}
        result[variant["name"]] = entry
    return result


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _eval_sequences(dataset: str, settings: Settings) -> int:
    from nrnn import data

    size = data.info(dataset).size("test")
    return size if settings.eval_samples is None else min(size, settings.eval_samples)


def _stats(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one value), min, max and the values."""
    mean = sum(values) / len(values)
    spread = sum((v - mean) ** 2 for v in values)
    std = math.sqrt(spread / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "per_seed": values}


# -------------------------------------------------------------------------------- write
def _perturbation_label(name: str, pgd_steps: int) -> tuple[str, str]:
    from nrnn import perturb

    if name.startswith("pgd-"):
        entry = perturb.pgd_perturbation(name.removeprefix("pgd-"), pgd_steps)
    else:
        entry = perturb.get(name)
    return entry.label, entry.symbol


def write(summary: dict, out_dir: str | Path) -> list[Path]:
    """Write the CSV, JSON, Markdown table and figure of one dataset's summary."""
    stem = Path(out_dir) / f"robustness_{summary['dataset']}"
    return (
        [_write_csv(summary, stem.with_suffix(".csv"))]
        + style.save_data(stem, summary, markdown_report(summary))
        + plot(summary, stem)
    )


CSV_COLUMNS = ("dataset", "variant", "label", "seed", "perturbation", "level", "accuracy")


def _write_csv(summary: dict, path: Path) -> Path:
    rows = []
    for v in summary["variants"]:
        for i, seed in enumerate(v["seeds"]):
            rows.append(
                [
                    summary["dataset"],
                    v["name"],
                    v["label"],
                    seed,
                    "clean",
                    0.0,
                    v["clean"]["per_seed"][i],
                ]
            )
            for name, p in v["perturbations"].items():
                for level, accuracy in zip(p["levels"], p["per_seed"][i], strict=True):
                    rows.append(
                        [summary["dataset"], v["name"], v["label"], seed, name, level, accuracy]
                    )
    return style.save_csv(path, CSV_COLUMNS, rows)


def _percent(mean: float, std: float, seeds: int) -> str:
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if seeds > 1 else "")


TABLE_GROUPS = (
    ("random perturbations", ("white", "multiplicative", "salt-and-pepper")),
    ("adversarial perturbations", ("fgsm-linf", "pgd-linf", "fgsm-l2", "pgd-l2")),
)
"""The Markdown output has one table per group (each with the clean column), to stay readable."""


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
        label, symbol = _perturbation_label(name, settings["pgd_steps"])
        columns += [(f"{label} {symbol}={level:g}", name, i) for i, level in enumerate(values)]

    def mean_std(v, name, i):
        if name is None:
            return v["clean"]["mean"], v["clean"]["std"]
        p = v["perturbations"][name]
        return p["mean"][i], p["std"][i]

    best = [
        max((mean_std(v, n, i)[0] for v in summary["variants"]), default=None)
        for _, n, i in columns
    ]
    lines = [
        "| Model | " + " | ".join(c[0] for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for v in summary["variants"]:
        cells = []
        for (_, name, i), top in zip(columns, best, strict=True):
            mean, std = mean_std(v, name, i)
            text = _percent(mean, std, len(v["seeds"]))
            cells.append(f"**{text}**" if top is not None and mean == top else text)
        lines.append(f"| {variant_label(v, settings['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_report(summary: dict) -> str:
    """A caption, one table per group of ``TABLE_GROUPS``, and the runs left out."""
    settings = summary["settings"]
    epochs = settings["epochs"]
    parts = [
        f"**{summary['dataset']}**: test accuracy (%) clean and under input perturbations, "
        f"mean ± std over seeds {settings['seeds']}; hidden {settings['hidden_dim']}, "
        f"{epochs} epoch{'s' if epochs != 1 else ''}, {settings['eval_sequences']} test "
        "sequences (best mean in bold)."
        + (
            " Every run with " + ", ".join(f"`{o}`" for o in settings["overrides"]) + "."
            if settings.get("overrides")
            else ""
        ),
    ]
    for title, names in TABLE_GROUPS:
        if any(name in settings["levels"] for name in names):
            parts += ["", f"*{title.capitalize()}*", "", markdown_table(summary, names)]
    comparisons = summary.get("comparisons", {})
    if comparisons:
        lines = []
        labels = {v["name"]: v["label"] for v in summary["variants"]}
        for name, entry in comparisons.items():
            cells = []
            for key, what in (("perturbed", "mean perturbed accuracy"), ("clean", "clean")):
                mean, interval = entry[key]["mean_difference"], entry[key]["ci95"]
                text = f"{what} {100 * mean:+.1f}"
                if interval is not None:
                    text += f" [{100 * interval[0]:+.1f}, {100 * interval[1]:+.1f}]"
                cells.append(text)
            lines.append(f"- {labels[name]}: " + "; ".join(cells))
        parts += [
            "",
            "*Against the Lipschitz RNN* (percentage points, paired by seed, mean difference "
            "and 95 % confidence interval over the seeds):",
            "",
            *lines,
        ]
    return "\n".join(parts)


def plot(summary: dict, stem: Path) -> list[Path]:
    """Accuracy (%) against level, one panel per perturbation, mean ± std band over seeds."""
    style.apply()
    import matplotlib.pyplot as plt

    settings = summary["settings"]
    names = list(settings["levels"])
    columns = min(4, len(names) + 1)
    rows = math.ceil((len(names) + 1) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.3 * rows), squeeze=False)
    flat = axes.ravel()
    # one panel per perturbation; the grid's spare axes (one holds the legend) stay empty
    for ax, name in zip(flat, names, strict=False):
        label, symbol = _perturbation_label(name, settings["pgd_steps"])
        for index, v in enumerate(summary["variants"]):
            p = v["perturbations"][name]
            x = [0.0] + p["levels"]
            mean = [100 * v["clean"]["mean"]] + [100 * m for m in p["mean"]]
            std = [100 * v["clean"]["std"]] + [100 * s for s in p["std"]]
            look = style.variant_style(v["name"], index)
            ax.plot(x, mean, label=variant_label(v, settings["seeds"]), **look)
            low = [m - s for m, s in zip(mean, std, strict=True)]
            high = [m + s for m, s in zip(mean, std, strict=True)]
            ax.fill_between(x, low, high, color=look["color"], alpha=0.15, linewidth=0)
        ax.set_title(label)
        ax.set_xlabel(f"level {symbol}")
        ax.set_ylim(0, 100)
    for ax in flat[::columns]:
        ax.set_ylabel("test accuracy (%)")
    legend_ax = flat[len(names)]
    handles, labels = flat[0].get_legend_handles_labels()
    legend_ax.legend(handles, labels, loc="center", title=summary["dataset"])
    legend_ax.axis("off")
    for ax in flat[len(names) + 1 :]:
        ax.axis("off")
    seeds = len(settings["seeds"])
    fig.suptitle(
        f"{summary['dataset']}: accuracy under input perturbations "
        f"(mean ± std over {seeds} seed{'s' if seeds > 1 else ''}; level 0 = clean)",
        fontsize=10,
    )
    fig.tight_layout()
    return style.save(fig, stem)


def index_name(profile: str) -> str:
    """``robustness.md`` for the quick profile, ``robustness_<profile>.md`` otherwise (the
    medium profile's outputs are committed beside the quick ones, on another dataset)."""
    return "robustness.md" if profile == "quick" else f"robustness_{profile}.md"


def write_index(summaries: dict[str, dict], out_dir: Path, command: str, profile: str) -> Path:
    """``robustness.md``: every dataset's table, the figure and the command that made them."""
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
            "Ranking by mean accuracy over all perturbation levels: "
            + ", ".join(summary["ranking"]),
            "",
        ]
    path = Path(out_dir) / index_name(profile)
    write_text_atomic(path, "\n".join(parts))
    return path


# ----------------------------------------------------------------------------- registry
def make(settings: Settings, context: Context) -> list[Path]:
    """Compute (or read from the store) and write every file."""
    summaries = compute(settings, context)
    paths = []
    for summary in summaries.values():
        paths += write(summary, context.out_dir)
    command = f"nrnn figures --only robustness --profile {settings.profile}"
    if context.datasets:
        command += " --datasets " + ",".join(context.datasets)
    if context.backend_name != "local":
        command += f" --backend {context.backend_name}"
    paths.append(write_index(summaries, context.out_dir, command, settings.profile))
    return paths


def _with_datasets(function):
    """Apply the command line's ``--datasets`` to the profile's settings."""

    def wrapped(settings: Settings, context: Context):
        return function(settings_for(settings.profile, context.datasets), context)

    return wrapped


EXPERIMENT = Experiment(
    name="robustness",
    title=TITLE,
    profiles=PROFILES,
    run=_with_datasets(make),
    plan=_with_datasets(plan),
    claims=(9,),
)
