"""Claims 6–8: what training with noise does to the trained model.

For each dataset and seed, three models are trained from the same initialisation and the
same mini-batch order (``nrnn.train`` seeds both from ``train.seed``):

- ``clean``: the deterministic baseline (noise off in training);
- ``noise``: the noisy RNN (paper-form noise, additive σ₁ and multiplicative σ₂, one
  Brownian motion per unit);
- ``explicit``: noise off, plus the explicit regularizer (q + r)/2 of the same noise.

Every run differs from its ``clean`` partner in ``train.objective`` only. The noise level
is σ₁ = σ₂ = 0.1, twice the shipped configs' 0.05; it was fixed before any result was
seen and is never tuned to make a claim pass.

Each trained model is then measured with noise off (``nrnn.metrics``, ``nrnn.stability``):

- claim 6 (flat minima): the Hutchinson trace of the Hessian of the mean training loss on
  a fixed subset of the training split (and the top eigenvalue, in the details);
- claim 7 (stability): κ = λ_max(sym A) + ‖W‖₂ and ‖Φ_{0→M}‖₂ = ‖∂h_M/∂h_0‖₂ averaged
  over a fixed subset of the test split (and the mean over k of ‖Φ_{k→M}‖₂ and the
  input–output Jacobian norm, in the details);
- claim 8 (margins): the mean empirical ℓ2 input margin over the test subset, misclassified
  samples counting 0 (and the mean over correctly classified samples and the first-order
  margin, in the details).

Each check compares one metric of ``noise`` (or ``explicit``) models with their ``clean``
partners by a *paired* test over seeds: the mean of the per-seed differences, its standard
error, a one-sided paired t test in the claimed direction, the exact one-sided sign test
and the effect size d_z = mean / sd of the differences (Cohen's d for paired data). A
check passes when the mean difference has the claimed sign and the one-sided t test gives
p < α = 0.05. Its ``false_failure`` is 1 − power of that test if the true effect were
d_z = 1 (a large effect): 0.10 with the 10 seeds of the quick profile. Each effect is
reported with its 95 % confidence interval (paired t).

κ is only an upper bound on how fast trajectories separate; beside it the check measures
the finite-time Lyapunov exponent along data: two trajectories driven by the same test
sequence, noise off, renormalised every step (``nrnn.stability.lyapunov_exponent``), the
mean over the test subset (claim 7, ``lyapunov``).

Trained runs come from the shared store (``nrnn.workflow.store``) through the command's backend
(local processes or Ray); the measurements are a task done in the training worker and
stored beside the run, so a second invocation recomputes nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from scipy import stats

from nrnn import data, metrics
from nrnn.config import RunConfig, default_config, from_dict
from nrnn.hashing import content_hash
from nrnn.noise import Noise, ReleasedNoise
from nrnn.train import read_metrics
from nrnn.workflow.experiments import Context, Experiment
from nrnn.workflow.harness import RunOutcome, RunSpec, RunStatus

from .core import Check

ALPHA = 0.05
"""One-sided significance level of every paired test."""
REFERENCE_EFFECT = 1.0
"""The paired effect size d_z at which ``false_failure`` (1 − power) is stated."""
NOISE_LEVEL = 0.1
"""σ₁ = σ₂ of the noise-trained and explicitly regularised models (fixed a priori)."""
BASELINE = "clean"
"""The objective every other one is compared with (the model trained without noise); its
name is part of the check names (``<metric>.<dataset>.<treated>_vs_clean``)."""
OBJECTIVES = (BASELINE, "noise", "explicit")
SUBSET_SEED = data.SUBSET_SEED
"""Seed of the fixed random subsets of the training and test splits that are measured."""


# ----------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class DatasetPlan:
    """A dataset and the overrides applied on top of its shipped default config."""

    name: str
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    objectives: tuple[str, ...] | None = None
    """The objectives trained on this dataset (None: the profile's ``Sizes.objectives``)."""


@dataclass(frozen=True)
class Sizes:
    """What one profile trains and measures.

    ``hessian_samples`` training sequences enter the loss whose Hessian is measured
    (``hessian_probes`` Rademacher probes, ``lanczos_iterations`` HVPs for λ_max);
    ``eval_samples`` test sequences are used for Φ, the Jacobian norms and the margins.
    """

    datasets: tuple[DatasetPlan, ...]
    seeds: tuple[int, ...]
    objectives: tuple[str, ...] = OBJECTIVES
    noise_level: float = NOISE_LEVEL
    hessian_samples: int = 256
    hessian_probes: int = 32
    lanczos_iterations: int = 20
    eval_samples: int = 200


# Quick: digits read row by row (8 steps of 8 pixels) with the hyper-parameters of the
# shipped pixel-by-pixel digits config (configs/digits.toml; digits-rows has none of its
# own) but 32 hidden units instead of 64, so that the explicit-regularizer runs (exact
# covariance recursion, O(M d³)) fit the quick budget: about 1 min each on one core.
DIGITS_ROWS_SMALL = DatasetPlan(
    "digits-rows",
    {
        "model": {"hidden_dim": 32, "dt": 0.2, "cell": {"init_std": 0.5}},
        "optim": {"lr": 0.01, "lr_decay_every": 60, "lr_decay": 0.1},
        "train": {"epochs": 100},
    },
)

# ECG5000 (140 steps) with 16 hidden units and 40 epochs, clean vs noise only: an
# explicit-regularizer run costs about 150 s here even at this size, three of them would
# break the quick budget (they are in the full profile).
ECG5000_SMALL = DatasetPlan(
    "ecg5000",
    {"model": {"hidden_dim": 16}, "optim": {"lr_decay_every": 30}, "train": {"epochs": 40}},
    objectives=(BASELINE, "noise"),
)

TEN_SEEDS = tuple(range(10))
# Quick: 10 seeds per comparison, so that P(false fail) at d_z = 1 is 0.10.
QUICK = Sizes(
    datasets=(DIGITS_ROWS_SMALL, ECG5000_SMALL),
    seeds=TEN_SEEDS,
    hessian_probes=32,
    hessian_samples=256,
    eval_samples=200,
)
# Medium: the quick models with 20 seeds (P(false fail) at d_z = 1 below 0.01).
MEDIUM = dataclasses.replace(QUICK, seeds=tuple(range(20)))
# Full: the shipped configs (64 hidden units, 100 epochs) on both datasets, 20 seeds. The
# explicit-regularizer runs dominate: about 20 s per epoch on one core, ~35 min per run.
FULL = Sizes(
    datasets=(DatasetPlan("digits"), DatasetPlan("ecg5000")),
    seeds=tuple(range(20)),
    hessian_probes=64,
    hessian_samples=500,
    lanczos_iterations=30,
    eval_samples=500,
)
# Tiny, for the tests: digits row by row, 8 hidden units, 1 epoch, 2 seeds, tiny subsets.
SMOKE = Sizes(
    datasets=(DatasetPlan("digits-rows", {"model": {"hidden_dim": 8}, "train": {"epochs": 1}}),),
    seeds=(0, 1),
    objectives=(BASELINE, "noise"),
    hessian_samples=24,
    hessian_probes=3,
    lanczos_iterations=3,
    eval_samples=12,
)
PROFILES = {"smoke": SMOKE, "quick": QUICK, "medium": MEDIUM, "full": FULL}


# -------------------------------------------------------------------------- training
def run_config(plan: DatasetPlan, seed: int, objective: str, noise_level: float) -> RunConfig:
    """The run of one (dataset, seed, objective): the shipped default, then the plan's
    overrides, then σ₁ = σ₂ = ``noise_level``, the seed and the objective."""
    config = from_dict(plan.overrides, default_config(plan.name))
    level = float(noise_level)
    config.noise = config.noise.with_levels(level, level)
    config.train.seed = seed
    config.train.objective = objective
    return config.validate()


# ------------------------------------------------------------------------- measuring
@dataclass(frozen=True)
class MeasureTask:
    """Every metric of a trained model (:func:`measure`), done in the training worker and
    stored beside the run (an ``nrnn.workflow.harness.RunTask``)."""

    hessian_samples: int
    hessian_probes: int
    lanczos_iterations: int
    eval_samples: int
    name: str = "trained-metrics"

    @classmethod
    def for_sizes(cls, sizes: Sizes) -> MeasureTask:
        return cls(
            sizes.hessian_samples,
            sizes.hessian_probes,
            sizes.lanczos_iterations,
            sizes.eval_samples,
        )

    def key(self) -> str:
        # version 3: the Lyapunov exponent along data of a released-code-noise model with
        # its noise off (version 2 kept its mean step multiplier 1 - s_m/2)
        return content_hash({"version": 3, **dataclasses.asdict(self)}, length=12)

    def passes(self, config: RunConfig) -> tuple[int, int]:
        """(forward, forward-and-backward) sequence passes, roughly: Hessian-vector products
        count as two backward passes; margins as a 10-step attack and bisection."""
        hessian = self.hessian_samples * 2 * (self.hessian_probes + self.lanczos_iterations)
        evaluation = self.eval_samples * 40
        return self.eval_samples * 4, hessian + evaluation

    def __call__(self, model, config: RunConfig, run_dir) -> dict:
        train_batch = fixed_subset(config, "train", self.hessian_samples)
        test_batch = fixed_subset(config, "test", self.eval_samples)
        return measure(model, train_batch, test_batch, self, config.train.seed)


def fixed_subset(config: RunConfig, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` sequences of a split of the config's dataset drawn without replacement with
    ``SUBSET_SEED``: (x (size, M, p), y (size,)); the whole split if it is smaller."""
    inputs, labels = data.load(config.data.name, split, recipe=config.data.recipe).tensors
    chosen = data.fixed_subset_indices(len(labels), size, SUBSET_SEED, order="drawn")
    return inputs[chosen], labels[chosen]


def measure(model, train_batch, test_batch, sizes: MeasureTask, seed: int) -> dict[str, float]:
    """Every metric of one trained model (noise off), as plain floats."""
    from nrnn.stability import contraction_rate

    x_train, y_train = train_batch
    x_test, y_test = test_batch
    trace = metrics.hessian_trace(model, x_train, y_train, probes=sizes.hessian_probes, seed=seed)
    top = metrics.top_hessian_eigenvalue(
        model, x_train, y_train, iterations=sizes.lanczos_iterations, seed=seed
    )
    products = metrics.jacobian_products(model, x_test)
    margins = metrics.empirical_margin(model, x_test, y_test)
    first_order = metrics.jacobian_margin_bound(model, x_test, y_test)
    usable = margins.correct & margins.found
    with torch.no_grad():
        train_loss = float(metrics.mean_loss(model, x_train, y_train))
    return {
        "hessian_trace": trace.value,
        "hessian_trace_se": trace.stderr,
        "top_eigenvalue": top.value,
        "top_eigenvalue_residual": top.residual,
        "train_loss": train_loss,
        "kappa": float(contraction_rate(model).detach()),
        "lyapunov": data_lyapunov_exponent(model, x_test, seed),
        "phi_full": products.mean_full,
        "phi_mean_over_steps": products.mean_over_steps,
        "io_jacobian": float(metrics.input_output_jacobian_norm(model, x_test).mean()),
        "margin": float(torch.nan_to_num(margins.margin, nan=0.0).mean()),
        "margin_correct": float(margins.margin[usable].mean()) if usable.any() else math.nan,
        "margin_found_fraction": float(margins.found.float().mean()),
        "margin_first_order": float(first_order.estimate.mean()),
        "test_accuracy": float(margins.correct.float().mean()),
    }


def data_lyapunov_exponent(model, x: torch.Tensor, seed: int) -> float:
    """Finite-time Lyapunov exponent along data, noise off: for every sequence of ``x``
    (paths, M, p), two trajectories driven by it from nearby starts, renormalised every
    step; the mean over sequences of (1/T) log growth, T = M Δt. Measured on
    :func:`without_noise` of the model, which steps as the model does in evaluation (zero
    noise variables would not do: they keep the released-code form's mean step multiplier
    1 − s_m/2)."""
    from nrnn.stability import lyapunov_exponent

    estimate = lyapunov_exponent(without_noise(model), x, paths=x.shape[0], seed=seed)
    return float(estimate.exponent)


def without_noise(model):
    """A copy of a NoisyRNN whose noise levels are 0 (its noise form, and the released-code
    form's learned step δ, kept): it steps as the model does in evaluation mode."""
    noise = model.noise
    if not isinstance(noise, Noise | ReleasedNoise):
        raise TypeError(f"cannot turn off the noise of {type(noise).__name__}")
    quiet = copy.deepcopy(model)
    quiet.noise = dataclasses.replace(noise, additive=0.0, multiplicative=0.0)
    return quiet


# ---------------------------------------------------------------------------- tests
def paired_test(baseline: list[float], treated: list[float], claimed: str) -> dict[str, Any]:
    """Paired comparison over seeds of ``treated`` − ``baseline``.

    ``claimed`` is "less" (the claim: treated < baseline) or "greater". Returns n, the
    means, the mean difference and its standard error, t and its one-sided p value in the
    claimed direction, the exact one-sided sign-test p value (ties dropped), Cohen's d_z
    and the power of the one-sided t test at d_z = ``REFERENCE_EFFECT``.
    """
    if claimed not in ("less", "greater"):
        raise ValueError(f"claimed must be 'less' or 'greater', got {claimed!r}")
    if len(baseline) != len(treated):
        raise ValueError("paired samples must have the same length")
    differences = torch.tensor(treated, dtype=torch.float64) - torch.tensor(
        baseline, dtype=torch.float64
    )
    n = len(differences)
    mean = float(differences.mean()) if n else math.nan
    sd = float(differences.std()) if n > 1 else math.nan
    se = sd / math.sqrt(n) if n > 1 else math.nan
    sign = -1.0 if claimed == "less" else 1.0
    t_value = mean / se if se and math.isfinite(se) else math.nan
    p_t = float(stats.t.sf(sign * t_value, n - 1)) if math.isfinite(t_value) else math.nan
    half_width = float(stats.t.ppf(0.975, n - 1)) * se if n > 1 else math.nan
    agreeing = int((sign * differences > 0).sum())
    nonzero = int((differences != 0).sum())
    p_sign = float(stats.binom.sf(agreeing - 1, nonzero, 0.5)) if nonzero else math.nan
    return {
        "n": n,
        "baseline_mean": float(torch.tensor(baseline, dtype=torch.float64).mean()),
        "treated_mean": float(torch.tensor(treated, dtype=torch.float64).mean()),
        "mean_difference": mean,
        "se_difference": se,
        "ci95_difference": [mean - half_width, mean + half_width],
        "t": t_value,
        "p_t_one_sided": p_t,
        "p_sign_one_sided": p_sign,
        "cohen_dz": mean / sd if sd and math.isfinite(sd) else math.nan,
        "power_at_reference_effect": t_test_power(n, REFERENCE_EFFECT),
    }


def t_test_power(n: int, effect: float, alpha: float = ALPHA) -> float:
    """Power of the one-sided paired t test with n pairs at effect size d_z = ``effect``."""
    if n < 2:
        return 0.0
    critical = stats.t.ppf(1 - alpha, n - 1)
    return float(stats.nct.sf(critical, n - 1, effect * math.sqrt(n)))


def verdict(test: dict[str, float]) -> str:
    """ "supported" (claimed sign, p < α), "opposite" (the other sign, significant in that
    direction), or "inconclusive"."""
    p = test["p_t_one_sided"]
    if math.isfinite(p) and p < ALPHA:
        return "supported"
    if math.isfinite(p) and 1 - p < ALPHA:
        return "opposite"
    return "inconclusive"


# ---------------------------------------------------------------------------- checks
@dataclass(frozen=True)
class Metric:
    """A compared quantity: the claim it tests, its key in :func:`measure`, the claimed
    direction for treated vs clean models, and related keys reported alongside."""

    claim: int
    key: str
    claimed: str
    description: str
    secondary: tuple[str, ...] = ()


METRICS = (
    Metric(
        6,
        "hessian_trace",
        "less",
        "Hutchinson trace of the Hessian of the mean training loss (noise off)",
        ("top_eigenvalue", "train_loss"),
    ),
    Metric(7, "kappa", "less", "contraction rate κ = λ_max(sym A) + ‖W‖₂"),
    Metric(
        7,
        "lyapunov",
        "less",
        "finite-time Lyapunov exponent along test sequences (noise off), mean over the subset",
    ),
    Metric(
        7,
        "phi_full",
        "less",
        "‖∂h_M/∂h_0‖₂ averaged over the test subset",
        ("phi_mean_over_steps", "io_jacobian"),
    ),
    Metric(
        8,
        "margin",
        "greater",
        "mean empirical ℓ2 input margin over the test subset (misclassified = 0)",
        ("margin_correct", "margin_first_order", "test_accuracy"),
    ),
)


def _comparison_check(
    metric: Metric,
    dataset: str,
    treated: str,
    seeds: list[int],
    results: dict,
    runs: dict,
    configs: dict,
    seconds: float,
) -> Check:
    baseline = [results[(BASELINE, s)][metric.key] for s in seeds]
    other = [results[(treated, s)][metric.key] for s in seeds]
    test = paired_test(baseline, other, metric.claimed)
    relation = "<" if metric.claimed == "less" else ">"
    secondary = {
        key: paired_test(
            [results[(BASELINE, s)][key] for s in seeds],
            [results[(treated, s)][key] for s in seeds],
            metric.claimed,
        )
        for key in metric.secondary
    }
    return Check(
        claim=metric.claim,
        name=f"{metric.key}.{dataset}.{treated}_vs_{BASELINE}",
        measured={
            BASELINE: test["baseline_mean"],
            treated: test["treated_mean"],
            "mean_diff": test["mean_difference"],
            "se_diff": test["se_difference"],
            "ci95_diff": test["ci95_difference"],
            "p_t": test["p_t_one_sided"],
            "p_sign": test["p_sign_one_sided"],
            "d_z": test["cohen_dz"],
            "n": test["n"],
        },
        criterion=(
            f"{metric.description}: {treated}-trained {relation} clean-trained, paired over "
            f"seeds (same init and batch order); pass if the mean difference has that sign "
            f"and the one-sided paired t test gives p < {ALPHA}. P(false fail) = 1 − power "
            f"at d_z = {REFERENCE_EFFECT:g}"
        ),
        tolerance={"alpha": ALPHA, "claimed": f"{treated} {relation} {BASELINE}"},
        passed=verdict(test) == "supported",
        false_failure=1.0 - test["power_at_reference_effect"],
        seeds=list(seeds),
        seconds=seconds,
        details={
            "verdict": verdict(test),
            "test": test,
            "per_seed": {BASELINE: baseline, treated: other},
            "secondary": secondary,
            "measurements": {
                f"{objective}/seed{s}": results[(objective, s)]
                for objective in (BASELINE, treated)
                for s in seeds
            },
            "runs": {
                f"{objective}/seed{s}": runs[(objective, s)]
                for objective in (BASELINE, treated)
                for s in seeds
            },
            "configs": {objective: configs[objective] for objective in (BASELINE, treated)},
            "configs_note": "shown for the first seed; other runs differ in train.seed only",
        },
    )


def plan(sizes: Sizes, context: Context | None = None) -> list[tuple[list[RunSpec], MeasureTask]]:
    """The trained runs of every dataset (each objective × seed) and their measuring task."""
    if len(set(sizes.seeds)) < 2:
        raise ValueError(f"a paired test needs at least 2 seeds, got {list(sizes.seeds)}")
    for dataset in sizes.datasets:
        if BASELINE not in (dataset.objectives or sizes.objectives):
            raise ValueError(
                f"{dataset.name}: the objectives must include {BASELINE!r}, the baseline of every "
                "test"
            )
    task = MeasureTask.for_sizes(sizes)
    configure = context.configure if context is not None else (lambda config: config)
    return [
        (
            [
                RunSpec(
                    objective,
                    configure(run_config(dataset, seed, objective, sizes.noise_level)),
                )
                for objective in (dataset.objectives or sizes.objectives)
                for seed in sizes.seeds
            ],
            task,
        )
        for dataset in sizes.datasets
    ]


def _dataset_checks(
    dataset: str, sizes: Sizes, outcomes: list[RunOutcome], log: Callable[[str], None]
) -> list[Check]:
    """Compare the measured models of one dataset (every run succeeded: ``Context.ensure``
    raises otherwise)."""
    results: dict[tuple[str, int], Any] = {}  # by (objective, seed)
    runs: dict[tuple[str, int], dict[str, Any]] = {}
    cost: dict[tuple[str, int], float] = {}
    configs: dict[str, dict] = {}
    objectives = list(dict.fromkeys(outcome.spec.name for outcome in outcomes))
    for outcome in outcomes:
        objective, seed, config = outcome.spec.name, outcome.spec.seed, outcome.spec.config
        history = read_metrics(outcome.run_dir)
        results[(objective, seed)] = outcome.result
        runs[(objective, seed)] = {
            "run_dir": str(outcome.run_dir),
            "status": outcome.status.value,
            "store_key": outcome.run_dir.name,
            "training_seconds": sum(record["seconds"] for record in history),
            "final": {
                key: value
                for key, value in (history[-1] if history else {}).items()
                if key.endswith(("accuracy", "loss", "objective"))
            },
        }
        configs.setdefault(objective, config.to_dict())
        cost[(objective, seed)] = outcome.seconds
    log(
        f"  {dataset}: {len(results)} models measured ("
        + ", ".join(
            f"{sum(1 for o in outcomes if o.status is status)} {status.value}"
            for status in (RunStatus.TRAINED, RunStatus.STORED)
        )
        + ")"
    )
    checks = []
    seeds = list(sizes.seeds)
    for treated in (o for o in objectives if o != BASELINE):
        seconds = sum(cost[(o, s)] for o in (BASELINE, treated) for s in seeds)
        for metric in METRICS:
            checks.append(
                _comparison_check(metric, dataset, treated, seeds, results, runs, configs, seconds)
            )
    return checks


def run(sizes: Sizes, context: Context) -> list[Check]:
    """Every check of claims 6–8 at ``sizes``: train (or read) and measure, then compare."""
    checks = []
    for specs, task in plan(sizes, context):
        dataset = specs[0].dataset
        outcomes = context.ensure(specs, task, description=f"trained models ({dataset})")
        checks.extend(_dataset_checks(dataset, sizes, outcomes, context.log))
    return checks


EXPERIMENT = Experiment(
    name="trained",
    title="trained models: flat minima (6), stable dynamics (7), margins (8) — "
    "noise / explicit regularizer vs deterministic training, paired over seeds",
    claims=(6, 7, 8),
    profiles=PROFILES,
    run=run,
    plan=plan,
)
