"""Robustness to input perturbations (the paper's Tables 1–2 and its robustness figure;
claim 9).

Every model variant of :mod:`paper_figures.runs` (the Lipschitz and Antisymmetric RNNs, the
noisy RNN in the released code's form and in the paper's form, each with its noise-free
twin, and the explicit regularizer) is trained on each dataset with several seeds until it
stops improving, and evaluated, noise off, on the test split (or a fixed random subset of
it) clean and under every perturbation of :mod:`nrnn.perturb` at several levels
(:mod:`.robustness_task`). :mod:`.robustness_summary` aggregates the seeds and compares
every noisy model with its twin and with the Lipschitz RNN at equal clean accuracy (the
accuracy drop from clean, paired by seed); :mod:`.robustness_report` writes the files and
the claim-9 page.

Levels (``LEVELS``) are per dataset because the data differ in scale: the digits lie in
[0, 1] (pixel standard deviation about 0.4), ECG5000 and MNIST are standardised (standard
deviation 1). Adversarial budgets are per whole sequence (L2 over all M · p entries).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nrnn.workflow.experiments import DEFAULT_BACKEND, Context, Experiment
from nrnn.workflow.harness import RunSpec

from . import runs
from .robustness_report import write, write_claim9, write_index
from .robustness_summary import BASELINE, summarise
from .robustness_task import RobustnessTask, evaluation_data

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
    "medium": ("mnist-pixels", "pmnist-pixels"),
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
        variants=("lipschitz", "released-clean", "released-high"),
        size=runs.SMOKE,
        profile="smoke",
        eval_samples=64,
        pgd_steps=2,
    ),
    # ECG5000 and digits: hidden 32, every variant until it stops improving, 10 seeds, 3
    # levels per perturbation.
    "quick": Settings(
        DEFAULT_DATASETS["quick"], size=runs.QUICK, profile="quick", eval_samples=500
    ),
    # Ordered and permuted pixel MNIST, the authors' recipe, hidden 64, 12,000 training
    # images, until the models stop improving, 5 seeds, 1000 test images; the
    # explicit-regularizer variant is left out (its probe estimator costs about six times a
    # noisy step at 784 steps).
    "medium": Settings(
        DEFAULT_DATASETS["medium"],
        variants=tuple(v for v in runs.VARIANTS if v != "explicit"),
        size=runs.MEDIUM,
        profile="medium",
    ),
    # The paper's size: ordered and permuted pixel MNIST (authors' recipe) and ECG5000,
    # hidden 128, until they stop improving, 5 seeds, every variant, 5 levels, the whole
    # test split.
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
    planned = plan(settings, context)
    tasks = {specs[0].dataset: task for specs, task in planned}
    # Every dataset's runs at once, seed by seed: a long profile stopped part-way holds
    # whole seeds of every dataset.
    specs = sorted((s for specs, _ in planned for s in specs), key=lambda spec: spec.seed)
    outcomes = context.ensure(
        specs, lambda spec: tasks[spec.dataset], description="robustness runs"
    )
    summaries = {}
    for dataset, task in tasks.items():
        mine = [o for o in outcomes if o.spec.dataset == dataset]
        translation = translation_record(dataset, settings, task)
        summaries[dataset] = summarise(dataset, settings, mine, context.overrides, translation)
    return summaries


TRANSLATION_SEQUENCES = 8
TRANSLATION_PATHS = 1000
"""Test sequences and noise paths per sequence of the translation's measured size."""


def translation_record(dataset: str, settings: Settings, task: RobustnessTask) -> dict:
    """For each released setting a variant of ``settings`` runs in the released form: the
    translation to the paper's form (``nrnn.translation``) and its size measured on
    :data:`TRANSLATION_SEQUENCES` test sequences at the released model's initialisation
    (its seed-0 config): the variance the matched model leaves out relative to what it
    keeps, and the logit noise tr Cov(logits) of the matched model (same weights, σ₁ =
    s_a/√Δt, σ₂ = 0) and of the older convention (σ₂ = s_m/√Δt added) over the released
    model's, and of the matched model over the released one with its mean training step made
    Δt (the noise alone), each ratio with its standard error (delta method)."""
    import torch

    from nrnn.config import from_dict
    from nrnn.train import build_model
    from nrnn.translation import dropped_variance_share, logit_noise

    record = {}
    for setting in runs.RELEASED_NOISE:
        variant = f"released-{setting}"
        if variant not in settings.variants:
            continue
        config = runs.make_config(
            variant, dataset, settings.size.seeds_for(variant)[0], settings.size
        )
        torch.manual_seed(config.train.seed)
        released = build_model(config)
        translation = runs.translation(setting, config.model.dt)
        weights = {k: v for k, v in released.state_dict().items() if "step_size" not in k}
        test, _ = evaluation_data(config, task.eval_samples, task.eval_seed)
        x = test.tensors[0][:TRANSLATION_SEQUENCES]
        dt_root = config.model.dt**0.5
        levels = {
            "released": None,
            "matched": (translation.paper.additive, 0.0),
            "convention": (translation.paper.additive, translation.multiplicative / dt_root),
        }
        models = {}
        for name, paper_levels in levels.items():
            model = released
            if paper_levels is not None:  # the same weights with paper-form noise
                paper = runs.make_config(variant, dataset, config.train.seed, settings.size)
                additive, multiplicative = paper_levels
                noise = {"kind": "paper", "additive": additive, "multiplicative": multiplicative}
                model = build_model(from_dict({"noise": noise}, paper))
                model.load_state_dict(weights)
            models[name] = model
        # the released model with its mean training step δ (1 − s_m/2) made Δt: it differs
        # from the matched one in the noise alone
        torch.manual_seed(config.train.seed)
        models["released-mean-step"] = build_model(config)
        with torch.no_grad():
            models["released-mean-step"].step_size.fill_(config.model.dt / translation.drift_scale)
        noises = {}
        for name, model in models.items():
            generator = torch.Generator().manual_seed(settings.eval_seed)
            estimate = logit_noise(
                model, x, paths=TRANSLATION_PATHS, generator=generator, dtype=torch.float32
            )
            noises[name] = (
                estimate.variance.sum().item(),
                estimate.stderr.pow(2).sum().sqrt().item(),
            )
        measured: dict[str, Any] = {
            "dropped_variance_share": dropped_variance_share(released, x),
            "sequences": len(x),
            "paths": TRANSLATION_PATHS,
            "released_logit_noise": noises["released"][0],
        }
        for name, numerator, denominator in (
            ("matched", "matched", "released"),
            ("convention", "convention", "released"),
            ("matched_same_step", "matched", "released-mean-step"),
        ):
            (value, se), (base, base_se) = noises[numerator], noises[denominator]
            ratio = value / base
            measured[f"{name}_ratio"] = ratio
            measured[f"{name}_ratio_se"] = (
                ratio * ((se / value) ** 2 + (base_se / base) ** 2) ** 0.5
            )
        record[setting] = translation.as_dict() | {"measured": measured}
    return record


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
    if context.backend_name != DEFAULT_BACKEND:
        command += f" --backend {context.backend_name}"
    paths.append(write_index(summaries, context.out_dir, command, settings.profile))
    paths.append(write_claim9(context.out_dir))
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
