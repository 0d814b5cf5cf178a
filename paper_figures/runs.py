"""The model variants the paper compares, their noise-free twins, and their run
configurations per size.

==================  ============================================================  ===============
name                model                                                         control (twin)
==================  ============================================================  ===============
lipschitz           Lipschitz RNN: no noise, its own tuning                       —
antisymmetric       Antisymmetric RNN (β = 1, no A h), no noise, its own tuning   —
released-clean      the released code's form with both levels 0 (learnable δ)    —
released-small      released form, the released "small noise" setting (0.02/0.02) released-clean
released-high       released form, the released "high noise" setting (0.05/0.02)  released-clean
paper-clean         the paper's form with σ = 0, at the noisy models' tuning      —
paper-small         paper form, "small" translated: σ₁ = 0.02/√Δt, σ₂ = 0         paper-clean
paper-high          paper form, "high" translated: σ₁ = 0.05/√Δt, σ₂ = 0          paper-clean
explicit            noise off, loss + explicit regularizer of paper-high's noise  paper-clean
==================  ============================================================  ===============

The released settings. The authors' scripts train the noisy RNN with ``--add_noise s_a
--mult_noise s_m``: (0.02, 0.02) "small noise" and (0.05, 0.02) "high noise", in their
code's noise form (``[noise] kind = "released"``, ``nrnn.ReleasedNoise``): a uniform random
multiplier of a learnable per-unit step δ and additive noise not scaled by √Δt. The
``paper-*`` variants carry the same noise in the paper's SDE form, translated by the
derived SDE equivalent (``nrnn.translation.released_to_paper``): σ₁ = s_a/√Δt exactly, and
σ₂ = 0 because the released multiplier's noise is proportional to the drift step, not to the
state (its measured size is recorded beside the results).

Controls. A noisy variant differs from the Lipschitz and Antisymmetric RNNs in more than
its noise (Δt, learning rate, the learnable δ in the released form). Its *twin* has the
identical parametrisation and tuning with the noise off; the causal contrast is noisy vs
twin, and the paper's contrast (vs the Lipschitz RNN with its own tuning) is reported
beside it. Where a twin's configuration equals another variant's (``paper-clean`` is the
Lipschitz RNN on datasets without released tuning), :func:`grid` trains it once and
:func:`same_runs` says which variant stands for it.

Training stops when the validation accuracy stops improving (``Size.stop_window``,
``stop_min_gain``, ``plateau_decays``: the same rule for every model; ``Size.epochs`` is the
cap).

With the default recipe, all variants of a dataset share its shipped config
(``nrnn/configs/<dataset>.toml``: learning rate, Δt, initialisation, batch size) with the
sizes of a :class:`Size`, so they differ only in the noise form and level, the objective and
the architecture flag. With ``Size.recipe = "authors"`` (pixel MNIST) each variant takes the
authors' released data preparation, initialisation and tuning (:data:`AUTHORS_TUNING`): the
Lipschitz and Antisymmetric RNNs their own, every other variant the noisy models'.

:func:`grid` gives the runs as ``nrnn.workflow.harness.RunSpec`` objects; experiments train them
through ``nrnn.workflow.experiments.Context.ensure`` (one store of trained runs, local processes or
Ray).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nrnn import config as config_module
from nrnn.config import RunConfig
from nrnn.hashing import content_hash
from nrnn.translation import ReleasedTranslation, released_to_paper
from nrnn.workflow.harness import RunSpec

RELEASED_NOISE = {"small": (0.02, 0.02), "high": (0.05, 0.02)}
"""(s_a, s_m) of the authors' released training scripts: additive and multiplicative level."""


def translation(setting: str, dt: float) -> ReleasedTranslation:
    """The released ``setting`` ("small" or "high") at step ``dt`` and its paper form."""
    if setting not in RELEASED_NOISE:
        raise ValueError(f"setting must be one of {list(RELEASED_NOISE)}, got {setting!r}")
    return released_to_paper(*RELEASED_NOISE[setting], dt)


# ---------------------------------------------------------------------------- variants
def _clean(form: str, antisymmetric: bool = False) -> Callable[[RunConfig], None]:
    def configure(config: RunConfig) -> None:
        config_module.from_dict(
            {
                "train": {"objective": "clean"},
                "noise": {"kind": form},
                "model": {"cell": {"antisymmetric": antisymmetric}},
            },
            config,
        )

    return configure


def _released(setting: str) -> Callable[[RunConfig], None]:
    def configure(config: RunConfig) -> None:
        additive, multiplicative = RELEASED_NOISE[setting]
        noise = {"kind": "released", "additive": additive, "multiplicative": multiplicative}
        config_module.from_dict({"train": {"objective": "noise"}, "noise": noise}, config)

    return configure


def _paper(setting: str, objective: str = "noise") -> Callable[[RunConfig], None]:
    def configure(config: RunConfig) -> None:
        matched = translation(setting, config.model.dt).paper
        noise = {"kind": "paper", "additive": matched.additive, "multiplicative": 0.0}
        config_module.from_dict({"train": {"objective": objective}, "noise": noise}, config)

    return configure


@dataclass(frozen=True)
class Variant:
    """A named model of the comparison.

    Attributes:
        name, label: identifier and the label in tables and figures.
        configure: edits a dataset's config in place (noise, objective, architecture).
        control: the name of its noise-free twin (identical parametrisation and tuning,
            noise off), or None for a model without noise.
        tuning: the row of :data:`AUTHORS_TUNING` it takes under the authors' recipe.
    """

    name: str
    label: str
    configure: Callable[[RunConfig], None]
    control: str | None = None
    tuning: str = "noisy"


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("lipschitz", "Lipschitz RNN", _clean("paper"), tuning="lipschitz"),
        Variant(
            "antisymmetric",
            "Antisymmetric RNN",
            _clean("paper", antisymmetric=True),
            tuning="antisymmetric",
        ),
        Variant("released-clean", "Released form, no noise", _clean("released")),
        Variant(
            "released-small", "Released form, small noise", _released("small"), "released-clean"
        ),
        Variant("released-high", "Released form, high noise", _released("high"), "released-clean"),
        Variant("paper-clean", "Paper form, no noise", _clean("paper")),
        Variant("paper-small", "Paper form, small noise", _paper("small"), "paper-clean"),
        Variant("paper-high", "Paper form, high noise", _paper("high"), "paper-clean"),
        Variant(
            "explicit",
            "Explicit regularizer (high noise)",
            _paper("high", objective="explicit"),
            "paper-clean",
        ),
    )
}


# -------------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class Size:
    """How big the runs are, and when they stop.

    Attributes:
        hidden_dim: d.
        epochs: the cap on training epochs.
        seeds: training seeds (one run per seed per variant and dataset).
        stop_window, stop_min_gain, plateau_decays: the stopping rule of every run
            (``train.*`` of the config): stop when the best validation accuracy of the last
            ``stop_window`` epochs beats the best before them by less than ``stop_min_gain``,
            after ``plateau_decays`` such plateaus that drop the learning rate instead (by
            the config's ``lr_decay``). ``stop_window = 0``: train all ``epochs``, with the
            learning rate dropped once after ``lr_decay_fraction`` of them.
        lr_decay_fraction: see above (only without a stopping rule).
        variant_seeds: (variant, seeds) pairs that replace ``seeds`` for those variants.
        recipe: ``"default"``, or ``"authors"``: the released code's data preparation,
            initialisation and per-variant tuning (:data:`AUTHORS_TUNING`) on the datasets
            it was released for (pixel MNIST); other datasets keep the default.
        train_subset, eval_subset: ``data.train_subset`` / ``data.eval_subset`` (0: all);
            the validation accuracy of the stopping rule is measured on ``eval_subset``.
        explicit_method, probes: how the ``explicit`` variant computes its regularizer.
        device: ``train.device`` of every run (``"auto"``: CUDA when present).
    """

    hidden_dim: int
    epochs: int
    seeds: tuple[int, ...]
    stop_window: int = 0
    stop_min_gain: float = 0.005
    plateau_decays: int = 1
    lr_decay_fraction: float = 0.8
    variant_seeds: tuple[tuple[str, tuple[int, ...]], ...] = ()
    recipe: str = "default"
    train_subset: int = 0
    eval_subset: int = 0
    explicit_method: str = "probe"
    probes: int = 8
    device: str = "cpu"

    def seeds_for(self, variant: str) -> tuple[int, ...]:
        return dict(self.variant_seeds).get(variant, self.seeds)


STOP_WINDOW, STOP_MIN_GAIN, PLATEAU_DECAYS = 10, 0.005, 1
"""The stopping rule of every trained profile: the best validation accuracy of the last 10
epochs gains less than 0.5 points over the best before them; the first such plateau drops
the learning rate (×0.1 in every config used here), the second stops the run."""

SMOKE = Size(
    hidden_dim=8,
    epochs=3,
    seeds=(0,),
    stop_window=1,
    stop_min_gain=0.005,
    train_subset=256,
    eval_subset=128,
)
# Digits and ECG5000 on 2 cores: hidden 32, trained until they stop improving (at most 200
# epochs), 10 paired seeds, validated on 500 sequences (ECG5000's whole validation split).
# The explicit variant trains with the probe estimator (K = 4, unbiased; about 3 times a
# noisy step): the exact covariance recursion costs O(M d³) per sequence, ~80 times a step.
QUICK = Size(
    hidden_dim=32,
    epochs=200,
    seeds=tuple(range(10)),
    eval_subset=500,
    probes=4,
    stop_window=STOP_WINDOW,
    stop_min_gain=STOP_MIN_GAIN,
    plateau_decays=PLATEAU_DECAYS,
)
# Pixel MNIST (784 steps) on 2 cores, in the background over days: the authors' recipe and
# tuning at hidden 64 on a 12,000-image training subset, until the models stop improving
# (at most 200 epochs: at 100 the noise-free twins were still gaining 1-1.5 points per
# window; runs stored with the cap of 100 are continued, not trained again), 5 seeds,
# validation on 1,000 of the authors' 2,000 validation images.
MEDIUM = Size(
    hidden_dim=64,
    epochs=200,
    seeds=(0, 1, 2, 3, 4),
    recipe="authors",
    train_subset=12_000,
    eval_subset=1_000,
    stop_window=STOP_WINDOW,
    stop_min_gain=STOP_MIN_GAIN,
    plateau_decays=PLATEAU_DECAYS,
)
# The paper's size: the authors' recipe and tuning, hidden 128, all 58,000 training images,
# until the models stop improving (at most 150 epochs; the authors trained 100 with the
# learning rate ×0.1 at 90), 5 seeds, on a GPU when there is one.
FULL = Size(
    hidden_dim=128,
    epochs=150,
    seeds=(0, 1, 2, 3, 4),
    recipe="authors",
    device="auto",
    stop_window=STOP_WINDOW,
    stop_min_gain=STOP_MIN_GAIN,
    plateau_decays=PLATEAU_DECAYS,
)

DATASET_OVERRIDES: dict[str, dict] = {
    # No shipped config for the 784-step tasks: the released scripts' step and learning rate.
    "mnist-pixels": {
        "data": {"batch_size": 128},
        "model": {"dt": 0.03, "cell": {"init_std": 0.5}},
        "optim": {"lr": 0.003},
    },
    "pmnist-pixels": {
        "data": {"batch_size": 128},
        "model": {"dt": 0.03, "cell": {"init_std": 0.5}},
        "optim": {"lr": 0.003},
    },
}

_AUTHORS_NOISY = {
    "model": {"dt": 0.01, "cell": {"beta": 0.75, "gamma_a": 0.001, "gamma_w": 0.001}},
    "optim": {"lr": 0.001},
}
_AUTHORS_ORDERED = {
    "lipschitz": {
        "model": {"dt": 0.03, "cell": {"beta": 0.75, "gamma_a": 0.001, "gamma_w": 0.001}},
        "optim": {"lr": 0.003},
    },
    "antisymmetric": {
        "model": {"dt": 0.01, "cell": {"beta": 1.0, "gamma_a": 1e-4, "gamma_w": 1e-4}},
        "optim": {"lr": 0.002},
    },
    "noisy": _AUTHORS_NOISY,
}
AUTHORS_TUNING: dict[str, dict[str, dict]] = {
    "mnist-pixels": _AUTHORS_ORDERED,
    "pmnist-pixels": {
        **_AUTHORS_ORDERED,
        "lipschitz": {"model": _AUTHORS_ORDERED["lipschitz"]["model"], "optim": {"lr": 0.0035}},
    },
}
"""dataset -> tuning ("lipschitz", "antisymmetric", "noisy") -> config overrides: the tuning
table of the authors' released training scripts (Adam, batch 128, learning rate ×0.1 late in
training; hidden matrices initialised with standard deviation 0.1 / d). Their noisy models
ran in the released noise form; every variant with noise, and its twin, takes the "noisy"
row (:attr:`Variant.tuning`)."""
_AUTHORS_COMMON = {
    "data": {"batch_size": 128, "recipe": "authors"},
    "model": {"cell": {"init_std": 0.1, "init_divisor": "hidden"}},
    "optim": {"lr_decay": 0.1},
}


def make_config(variant: str, dataset: str, seed: int, size: Size) -> RunConfig:
    """The run configuration of one variant on one dataset with one seed."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {list(VARIANTS)}")
    chosen = VARIANTS[variant]
    config = config_module.default_config(dataset)
    if dataset in DATASET_OVERRIDES:
        config = config_module.from_dict(DATASET_OVERRIDES[dataset], config)
    # The authors released tuning for pixel MNIST only; other datasets keep the default.
    if size.recipe == "authors" and dataset in AUTHORS_TUNING:
        config = config_module.from_dict(_AUTHORS_COMMON, config)
        config = config_module.from_dict(AUTHORS_TUNING[dataset][chosen.tuning], config)
    config.model.hidden_dim = size.hidden_dim
    config.data.train_subset = size.train_subset
    config.data.eval_subset = size.eval_subset
    config.train.epochs = size.epochs
    config.train.seed = seed
    config.train.device = size.device
    config.train.regularizer_method = size.explicit_method
    config.train.probes = size.probes
    config.train.stop_window = size.stop_window
    if size.stop_window:
        config.train.stop_min_gain = size.stop_min_gain
        config.train.plateau_decays = size.plateau_decays
        config.optim.lr_decay_every = 0
    else:
        config.optim.lr_decay_every = max(1, round(size.lr_decay_fraction * size.epochs))
    config.noise = config.noise.with_levels(0.0, 0.0)
    chosen.configure(config)
    return config.validate()


# --------------------------------------------------------------------------------- grid
def grid(datasets: Iterable[str], variants: Iterable[str], size: Size) -> list[RunSpec]:
    """Every (dataset, seed, variant) run, datasets outermost, then seeds (so a partly
    trained grid holds whole seeds first); a variant whose config equals an earlier
    variant's (see :func:`same_runs`) is left out."""
    variants = list(variants)
    specs = []
    for dataset in datasets:
        aliases = same_runs(dataset, variants, size)
        for seed in sorted({s for v in variants for s in size.seeds_for(v)}):
            specs += [
                RunSpec(variant, make_config(variant, dataset, seed, size))
                for variant in variants
                if variant not in aliases and seed in size.seeds_for(variant)
            ]
    return specs


def same_runs(dataset: str, variants: Iterable[str], size: Size) -> dict[str, str]:
    """{variant: earlier variant with the same configuration on ``dataset``}: for example
    ``paper-clean`` is the Lipschitz RNN where both have the dataset's default tuning."""
    seen: dict[str, str] = {}
    aliases = {}
    for variant in variants:
        seed = size.seeds_for(variant)[0]
        content = content_hash(make_config(variant, dataset, seed, size).canonical_dict())
        if content in seen:
            aliases[variant] = seen[content]
        else:
            seen[content] = variant
    return aliases


def task_key(content: dict) -> str:
    """A short stable hash of a JSON-serialisable dict, for ``RunTask.key``."""
    return content_hash(content, length=12)


__all__ = [
    "AUTHORS_TUNING",
    "DATASET_OVERRIDES",
    "FULL",
    "MEDIUM",
    "QUICK",
    "RELEASED_NOISE",
    "SMOKE",
    "PLATEAU_DECAYS",
    "STOP_MIN_GAIN",
    "STOP_WINDOW",
    "Size",
    "VARIANTS",
    "Variant",
    "grid",
    "make_config",
    "same_runs",
    "task_key",
    "translation",
]
