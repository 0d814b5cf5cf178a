"""Run configuration: dataclasses, TOML loading, command-line overrides and a stable hash.

A config has five sections, each a TOML table::

    [data]   name, recipe ("default" | "authors"), train_subset, eval_subset, batch_size,
             eval_batch_size
    [model]  hidden_dim, dt, cell ("lipschitz" | "cornn" | "gru"), activation ("tanh" |
             "arctan" | "sigmoid": the Lipschitz and coRNN cells' φ), init_std;
             the Lipschitz cell's beta, gamma_a, gamma_w, antisymmetric, init_divisor
             ("sqrt-hidden" | "hidden"); the coRNN's oscillator_gamma, oscillator_epsilon;
             recurrence ("fused" | "reference": how gradients are computed, see
             ``nrnn.NoisyRNN``; they differ at rounding level only)
    [noise]  form ("paper" | "reference"), additive, multiplicative, brownian
    [optim]  lr, weight_decay, lr_decay, lr_decay_every, grad_clip
    [train]  epochs, seed, objective ("noise" | "clean" | "explicit"), regularizer_method
             ("exact" | "probe", for the explicit objective), probes, divergence_factor,
             threads, device ("cpu" | "cuda" | "cuda:N" | "auto"), cuda_graph ("auto" |
             "off": capture the training step in a CUDA graph on CUDA, ``nrnn.graphs``),
             the stopping rule stop_window, stop_min_gain, plateau_decays (see
             ``TrainConfig``)

Defaults for a dataset live in ``nrnn/configs/<dataset>.toml``; ``nrnn/configs/cells/``
holds a config per built-in cell (``nrnn train --config nrnn/configs/cells/cornn.toml``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

OBJECTIVES = ("noise", "clean", "explicit")
CELL_KEYS = {
    "lipschitz": ("beta", "gamma_a", "gamma_w", "antisymmetric", "init_divisor", "activation"),
    "cornn": ("oscillator_gamma", "oscillator_epsilon", "activation"),
    "gru": (),
}
"""The model keys that configure one cell only (a key of another cell must keep its default)."""
ADDED_KEYS = {
    "model": ("cell", "activation", "oscillator_gamma", "oscillator_epsilon", "recurrence"),
    "train": ("stop_window", "stop_min_gain", "plateau_decays", "cuda_graph"),
}
"""Keys added after runs were cached by their hash, by section: left out of it at their
defaults, so that those runs keep their hashes. (Runs stored before ``recurrence`` existed
were computed op by op; the store tells them apart by :data:`nrnn.store.CODE_VERSION`,
which changed with the fused default.)"""
REGULARIZER_METHODS = ("exact", "probe")
CUDA_GRAPH_MODES = ("auto", "off")
"""``train.cuda_graph``: capture the training step on CUDA (``auto``) or never (``off``)."""
NOISE_FORMS = ("paper", "reference")


@dataclass
class DataConfig:
    name: str = "digits"
    recipe: str = "default"  # "authors": the released code's pixel-MNIST preparation
    train_subset: int = 0  # train on this many sequences of a fixed random subset; 0 = all
    eval_subset: int = 0  # per-epoch valid/test metrics on a fixed random subset; 0 = all
    batch_size: int = 64
    eval_batch_size: int = 1000


@dataclass
class ModelConfig:
    hidden_dim: int = 64
    dt: float = 0.1
    beta: float = 0.75
    gamma_a: float = 0.001
    gamma_w: float = 0.001
    antisymmetric: bool = False
    init_std: float = 1.0
    init_divisor: str = "sqrt-hidden"  # hidden matrices ~ N(0, (init_std / √d)²); "hidden": / d
    cell: str = "lipschitz"  # the drift: "lipschitz" | "cornn" | "gru"
    activation: str = "tanh"  # φ of the lipschitz and cornn cells
    oscillator_gamma: float = 2.7  # cornn: restoring constant γ
    oscillator_epsilon: float = 4.7  # cornn: damping constant ε
    recurrence: str = "fused"  # "reference": the op-by-op autograd path (rounding-level changes)

    def cell_options(self) -> dict[str, Any]:
        """The keyword arguments of the cell's constructor (``nrnn.cells.CELL_TYPES``)."""
        if self.cell == "lipschitz":
            return {
                "beta": self.beta,
                "gamma_a": self.gamma_a,
                "gamma_w": self.gamma_w,
                "antisymmetric": self.antisymmetric,
                "init_std": self.init_std,
                "init_divisor": self.init_divisor,
                "activation": self.activation,
            }
        if self.cell == "cornn":
            return {
                "gamma": self.oscillator_gamma,
                "epsilon": self.oscillator_epsilon,
                "activation": self.activation,
                "init_std": self.init_std,
            }
        return {"init_std": self.init_std}


@dataclass
class NoiseConfig:
    form: str = "paper"
    additive: float = 0.0
    multiplicative: float = 0.0
    brownian: str = "diagonal"


@dataclass
class OptimConfig:
    lr: float = 3e-3
    weight_decay: float = 0.0
    lr_decay: float = 0.1
    lr_decay_every: int = 0  # epochs between decays; 0 = never
    grad_clip: float = 0.0  # max gradient norm; 0 = no clipping


@dataclass
class TrainConfig:
    epochs: int = 10
    seed: int = 0
    objective: str = "noise"
    regularizer_method: str = "exact"  # how the explicit objective computes (q + r)/2
    probes: int = 8  # random probes per sample when regularizer_method = "probe"
    divergence_factor: float = 100.0  # stop when an epoch's objective exceeds this × the best
    # Until it stops improving (0: train all `epochs`): stop when the best validation
    # accuracy of the last `stop_window` epochs beats the best before them by less than
    # `stop_min_gain` (a fraction), after `plateau_decays` such plateaus that instead drop
    # the learning rate by `optim.lr_decay`; `epochs` is then the cap.
    stop_window: int = 0
    stop_min_gain: float = 0.002
    plateau_decays: int = 0
    threads: int = 0  # 0 = torch's default
    device: str = "cpu"  # "auto": CUDA when available
    # On CUDA, replay the training step from a CUDA graph ("auto") or run it op by op
    # ("off"); no effect on a CPU (nrnn.graphs).
    cuda_graph: str = "auto"


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def validate(self) -> RunConfig:
        """Check the values a model cannot check itself; returns self."""
        from . import data
        from .model import INIT_DIVISORS, RECURRENCES

        if self.data.recipe not in data.RECIPES:
            raise ValueError(f"data.recipe must be one of {data.RECIPES}, got {self.data.recipe!r}")
        if self.data.name in data.NAMES:
            data.info(self.data.name, recipe=self.data.recipe)  # an unknown pairing raises
        if self.model.recurrence not in RECURRENCES:
            raise ValueError(
                f"model.recurrence must be one of {RECURRENCES}, got {self.model.recurrence!r}"
            )
        if self.model.init_divisor not in INIT_DIVISORS:
            raise ValueError(
                f"model.init_divisor must be one of {INIT_DIVISORS}, "
                f"got {self.model.init_divisor!r}"
            )
        self._validate_cell()
        device = self.train.device
        if device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
            raise ValueError(f"train.device must be cpu, cuda, cuda:N or auto, got {device!r}")
        if self.train.cuda_graph not in CUDA_GRAPH_MODES:
            raise ValueError(
                f"train.cuda_graph must be one of {CUDA_GRAPH_MODES}, got {self.train.cuda_graph!r}"
            )
        if self.noise.form not in NOISE_FORMS:
            raise ValueError(f"noise.form must be one of {NOISE_FORMS}, got {self.noise.form!r}")
        if self.train.objective not in OBJECTIVES:
            raise ValueError(
                f"train.objective must be one of {OBJECTIVES}, got {self.train.objective!r}"
            )
        if self.train.regularizer_method not in REGULARIZER_METHODS:
            raise ValueError(
                f"train.regularizer_method must be one of {REGULARIZER_METHODS}, "
                f"got {self.train.regularizer_method!r}"
            )
        self._validate_numbers()
        return self

    def _validate_numbers(self) -> None:
        """Every number in its range (finite), so that a run never starts with a value it
        cannot train with (a negative or infinite learning rate, a decay of 0 or -1)."""
        from . import contract
        from .noise import BROWNIAN_MODES

        data, model, noise, optim, run = self.data, self.model, self.noise, self.optim, self.train
        counts = {
            "data.batch_size": (data.batch_size, 1),
            "data.eval_batch_size": (data.eval_batch_size, 1),
            "data.train_subset": (data.train_subset, 0),
            "data.eval_subset": (data.eval_subset, 0),
            "model.hidden_dim": (model.hidden_dim, 1),
            "optim.lr_decay_every": (optim.lr_decay_every, 0),
            "train.epochs": (run.epochs, 1),
            "train.seed": (run.seed, 0),
            "train.probes": (run.probes, 1),
            "train.threads": (run.threads, 0),
            "train.stop_window": (run.stop_window, 0),
            "train.plateau_decays": (run.plateau_decays, 0),
        }
        for name, (value, minimum) in counts.items():
            contract.integer(name, value, minimum=minimum)
        reference = noise.form == "reference"
        ranges: dict[str, tuple[float, dict[str, Any]]] = {
            "model.dt": (model.dt, {"minimum": 0, "strict": True}),
            "model.init_std": (model.init_std, {"minimum": 0}),
            "model.beta": (model.beta, {"minimum": 0, "maximum": 1}),
            "model.gamma_a": (model.gamma_a, {}),
            "model.gamma_w": (model.gamma_w, {}),
            "model.oscillator_gamma": (model.oscillator_gamma, {}),
            "model.oscillator_epsilon": (model.oscillator_epsilon, {}),
            "noise.additive": (noise.additive, {"minimum": 0}),
            "noise.multiplicative": (
                noise.multiplicative,
                {"minimum": 0, "maximum": 1} if reference else {"minimum": 0},
            ),
            "optim.lr": (optim.lr, {"minimum": 0, "strict": True}),
            "optim.weight_decay": (optim.weight_decay, {"minimum": 0}),
            "optim.grad_clip": (optim.grad_clip, {"minimum": 0}),
            "train.divergence_factor": (run.divergence_factor, {"minimum": 0}),
            "train.stop_min_gain": (run.stop_min_gain, {"minimum": 0, "maximum": 1}),
        }
        for name, (number, bounds) in ranges.items():
            contract.real(name, number, **bounds)
        if not 0 < optim.lr_decay <= 1:
            raise ValueError(
                f"optim.lr_decay must be in (0, 1] (the factor the learning rate is multiplied "
                f"by every optim.lr_decay_every epochs), got {optim.lr_decay}"
            )
        if noise.brownian not in BROWNIAN_MODES:
            raise ValueError(
                f"noise.brownian must be one of {BROWNIAN_MODES}, got {noise.brownian!r}"
            )
        self._validate_stopping()
        factor = run.divergence_factor
        if factor != 0 and not factor > 1:
            raise ValueError(f"train.divergence_factor must be 0 (off) or > 1, got {factor}")

    def _validate_stopping(self) -> None:
        from . import data

        train = self.train
        if not train.stop_window:
            return
        if self.optim.lr_decay_every and train.plateau_decays:
            raise ValueError(
                "optim.lr_decay_every and train.plateau_decays are two learning-rate "
                "schedules; with train.stop_window set, use one (lr_decay_every = 0 to drop "
                "the rate at plateaus)"
            )
        if self.data.name in data.NAMES:
            splits = data.info(self.data.name, recipe=self.data.recipe).splits
            if "valid" not in splits:
                raise ValueError(
                    f"train.stop_window needs a validation split; dataset "
                    f"{self.data.name!r} has only {splits}"
                )

    def _validate_cell(self) -> None:
        from .activations import ACTIVATIONS

        model, defaults = self.model, ModelConfig()
        if model.cell not in CELL_KEYS:
            raise ValueError(f"model.cell must be one of {tuple(CELL_KEYS)}, got {model.cell!r}")
        if model.activation not in ACTIVATIONS:
            raise ValueError(
                f"model.activation must be one of {tuple(ACTIVATIONS)}, got {model.activation!r}"
            )
        own = set(CELL_KEYS[model.cell])
        for cell, keys in CELL_KEYS.items():
            for key in set(keys) - own:
                if getattr(model, key) != getattr(defaults, key):
                    raise ValueError(
                        f"model.{key} configures the {cell} cell, not model.cell = "
                        f"{model.cell!r}; leave it at its default {getattr(defaults, key)!r}"
                    )

    def canonical_dict(self) -> dict[str, dict[str, Any]]:
        """:meth:`to_dict` without the keys added later (:data:`ADDED_KEYS`) where they
        hold their defaults: what hashes of a run are computed from, so that runs stored
        before those keys existed keep their hashes."""
        content = self.to_dict()
        defaults = RunConfig().to_dict()
        for section, added in ADDED_KEYS.items():
            content[section] = {
                k: v
                for k, v in content[section].items()
                if not (k in added and v == defaults[section][k])
            }
        return content

    def identity_hash(self) -> str:
        """Hash of everything that defines the run except ``train.epochs`` (of
        :meth:`canonical_dict`). Leaving the epoch count out lets a finished run be resumed
        for more epochs."""
        content = self.canonical_dict()
        content["train"] = {k: v for k, v in content["train"].items() if k != "epochs"}
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


SECTIONS = tuple(f.name for f in dataclasses.fields(RunConfig))


def from_dict(content: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
    """A config from nested dicts, on top of ``base``; unknown keys are errors."""
    config = base if base is not None else RunConfig()
    for section, values in content.items():
        if section not in SECTIONS:
            raise ValueError(
                f"unknown config section [{section}]; expected one of {list(SECTIONS)}"
            )
        if not isinstance(values, dict):
            raise ValueError(f"config section [{section}] must be a table, got {values!r}")
        target = getattr(config, section)
        known = {f.name: f for f in dataclasses.fields(target)}
        for key, value in values.items():
            if key not in known:
                raise ValueError(
                    f"unknown config key {section}.{key}; expected one of {sorted(known)}"
                )
            setattr(target, key, _coerce(f"{section}.{key}", value, type(getattr(target, key))))
    return config


def _coerce(name: str, value: Any, expected: type) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ValueError(f"{name} must be of type {expected.__name__}, got {value!r}")
    return value


def default_config(dataset: str) -> RunConfig:
    """The shipped default for ``dataset`` (``nrnn/configs/<dataset>.toml``), else the base."""
    config = RunConfig()
    config.data.name = dataset
    shipped = resources.files("nrnn").joinpath("configs", f"{dataset}.toml")
    if shipped.is_file():
        config = from_dict(tomllib.loads(shipped.read_text()), config)
    return config


def load_toml(path: str | Path, base: RunConfig | None = None) -> RunConfig:
    """Read a TOML config file on top of ``base`` (default: the dataset's shipped default)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    with path.open("rb") as handle:
        try:
            content = tomllib.load(handle)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"config file {path} is not valid TOML: {error}") from None
    if base is None:
        dataset = content.get("data", {}).get("name", DataConfig.name)
        base = default_config(dataset)
    return from_dict(content, base)


def parse_override(text: str) -> dict[str, dict[str, Any]]:
    """``"noise.additive=0.1"`` -> ``{"noise": {"additive": 0.1}}`` (TOML value syntax;
    a bare word is taken as a string)."""
    key, sep, raw = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not section or not name:
        raise ValueError(f"override must look like section.key=value, got {text!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    return {section: {name: value}}
