"""Run configuration: dataclasses, TOML loading, command-line overrides and a stable hash.

A config has five sections, each a TOML table::

    [data]        name, recipe ("default" | "authors"), train_subset, eval_subset, batch_size,
                  eval_batch_size
    [model]       hidden_dim, dt, recurrence ("fused" | "reference": how gradients are
                  computed, see ``nrnn.NoisyRNN``; they differ at rounding level only)
    [model.cell]  kind (a registered cell: "lipschitz" | "cornn" | "gru" | ...) and that
                  cell's options (``nrnn.cells``: the Lipschitz cell's beta, gamma_a,
                  gamma_w, antisymmetric, init_std, init_divisor, activation; the coRNN's
                  gamma, epsilon, activation, init_std; the GRU-ODE's init_std)
    [noise]       kind (a registered noise form: "paper" | "released" | ...) and its
                  options (both: additive, multiplicative; the paper's: brownian)
    [optim]       lr, weight_decay, lr_decay, lr_decay_every, grad_clip
    [train]       epochs, seed, objective (a registered objective: "noise" | "clean" |
                  "explicit"), regularizer_method ("exact" | "probe", for the explicit
                  objective), probes, divergence_factor, threads, device ("cpu" | "cuda" |
                  "cuda:N" | "auto"), cuda_graph ("auto" | "off": capture the training step
                  in a CUDA graph on CUDA, ``nrnn.graphs``), the stopping rule stop_window,
                  stop_min_gain, plateau_decays (see ``TrainConfig``)

``[model.cell]`` and ``[noise]`` are tagged unions: ``kind`` chooses the cell (noise form)
and the other keys are its options, the rest at their defaults. Without ``kind`` the keys
change the options of the cell (noise form) the config holds. A cell or noise form of your
own, registered (``nrnn.cells.register_cell``, ``nrnn.noise.register_noise``), is named the
same way.

The flat layout of older configs still loads (``[model] cell = "cornn"``,
``oscillator_gamma = 2.5``; ``[noise] form = "reference"``: the released-code form), and
the hashes of every run are computed from that layout (``nrnn.canonical``), so no stored
run changes its key.

Defaults for a dataset live in ``nrnn/configs/<dataset>.toml``; ``nrnn/configs/cells/``
holds a config per built-in cell (``nrnn train --config nrnn/configs/cells/cornn.toml``).
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from . import canonical
from .cells import CELLS, LipschitzOptions
from .hashing import content_hash
from .noise import NOISE_KINDS, Noise, NoiseForm, kind_of
from .options import Options

CUDA_GRAPH_MODES = ("auto", "off")
"""``train.cuda_graph``: capture the training step on CUDA (``auto``) or never (``off``)."""
ADDED_KEYS = canonical.ADDED_KEYS


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
    cell: Options = field(default_factory=LipschitzOptions)
    """The cell's options: the options dataclass of a registered cell (``nrnn.cells``)."""
    recurrence: str = "fused"  # "reference": the op-by-op autograd path (rounding-level changes)

    @property
    def cell_kind(self) -> str:
        """The name of the registered cell :attr:`cell` configures."""
        return canonical.cell_kind_of(self.cell).name


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
    noise: NoiseForm = field(default_factory=Noise)
    """The noise form with its levels (a registered ``nrnn.noise.NoiseForm``)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Every section as plain data; the cell and the noise as ``{"kind": ..., options}``
        (what ``config.json`` of a run holds; :func:`from_dict` reads it back)."""
        content = {
            section.name: dataclasses.asdict(getattr(self, section.name))
            for section in dataclasses.fields(self)
            if section.name not in ("model", "noise")
        }
        model = self.model
        content["model"] = {
            "hidden_dim": model.hidden_dim,
            "dt": model.dt,
            "cell": {"kind": model.cell_kind, **model.cell.as_dict()},
            "recurrence": model.recurrence,
        }
        content["noise"] = {"kind": kind_of(self.noise).name, **self.noise.options()}
        return {name: content[name] for name in SECTIONS}

    def validate(self) -> RunConfig:
        """Check the values a model cannot check itself; returns self. (The cell's options
        and the noise form were checked when they were made.)"""
        from . import contract, data
        from .model import RECURRENCES
        from .objectives import OBJECTIVES
        from .regularizer import METHODS

        if self.data.recipe not in data.RECIPES:
            raise ValueError(f"data.recipe must be one of {data.RECIPES}, got {self.data.recipe!r}")
        if self.data.name in data.NAMES:
            data.info(self.data.name, recipe=self.data.recipe)  # an unknown pairing raises
        contract.choice("model.recurrence", self.model.recurrence, RECURRENCES)
        canonical.cell_kind_of(self.model.cell)
        try:
            kind_of(self.noise)
        except ValueError as error:
            raise ValueError(f"noise: {error}") from None
        device = self.train.device
        if device not in ("cpu", "cuda", "auto") and not device.startswith("cuda:"):
            raise ValueError(f"train.device must be cpu, cuda, cuda:N or auto, got {device!r}")
        contract.choice("train.cuda_graph", self.train.cuda_graph, CUDA_GRAPH_MODES)
        contract.choice("train.objective", self.train.objective, OBJECTIVES.names())
        contract.choice("train.regularizer_method", self.train.regularizer_method, METHODS.names())
        self._validate_numbers()
        return self

    def _validate_numbers(self) -> None:
        """Every number in its range (finite), so that a run never starts with a value it
        cannot train with (a negative or infinite learning rate, a decay of 0 or -1)."""
        from . import contract

        data, model, optim, run = self.data, self.model, self.optim, self.train
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
        ranges: dict[str, tuple[float, dict[str, Any]]] = {
            "model.dt": (model.dt, {"minimum": 0, "strict": True}),
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

    def canonical_dict(self) -> dict[str, dict[str, Any]]:
        """The canonical content of the config (``nrnn.canonical``, version
        ``canonical.VERSION``): what hashes of a run are computed from, so that runs stored
        before the tagged unions and before later keys (``ADDED_KEYS``) keep their hashes."""
        return canonical.canonical_dict(self)

    def identity_hash(self) -> str:
        """Hash of everything that defines the run except ``train.epochs`` (of
        :meth:`canonical_dict`). Leaving the epoch count out lets a finished run be resumed
        for more epochs."""
        content = self.canonical_dict()
        content["train"] = {k: v for k, v in content["train"].items() if k != "epochs"}
        return content_hash(content, length=12)


SECTIONS = tuple(f.name for f in dataclasses.fields(RunConfig))
PLAIN_SECTIONS = ("data", "optim", "train")
MODEL_KEYS = ("hidden_dim", "dt", "cell", "recurrence")
"""The keys of ``[model]`` (``cell``: the ``[model.cell]`` table)."""


def from_dict(content: dict[str, Any], base: RunConfig | None = None) -> RunConfig:
    """A config from nested dicts, on top of ``base`` (changed in place and returned);
    unknown keys are errors. Reads the layout :meth:`RunConfig.to_dict` writes and the flat
    layout of older configs (see the module docstring)."""
    config = base if base is not None else RunConfig()
    for section, values in content.items():
        if section not in SECTIONS:
            raise ValueError(
                f"unknown config section [{section}]; expected one of {list(SECTIONS)}"
            )
        if not isinstance(values, dict):
            raise ValueError(f"config section [{section}] must be a table, got {values!r}")
        if section == "model":
            _set_model(config.model, values)
        elif section == "noise":
            config.noise = _noise(config.noise, values)
        else:
            target = getattr(config, section)
            known = {f.name: f for f in dataclasses.fields(target)}
            for key, value in values.items():
                if key not in known:
                    raise ValueError(
                        f"unknown config key {section}.{key}; expected one of {sorted(known)}"
                    )
                expected = type(getattr(target, key))
                setattr(target, key, _coerce(f"{section}.{key}", value, expected))
    return config


def _set_model(model: ModelConfig, values: dict[str, Any]) -> None:
    flat = {
        key: value
        for key, value in values.items()
        if key in canonical.LEGACY_MODEL and not (key == "cell" and isinstance(value, dict))
    }
    for key, value in values.items():
        if key in flat:
            continue
        if key not in MODEL_KEYS:
            known = sorted({*MODEL_KEYS, *canonical.LEGACY_MODEL})
            raise ValueError(f"unknown config key model.{key}; expected one of {known}")
        if key == "cell":
            model.cell = _cell(model.cell, value)
        else:
            setattr(model, key, _coerce(f"model.{key}", value, type(getattr(model, key))))
    if flat:  # the flat layout of older configs
        if isinstance(values.get("cell"), dict):
            raise ValueError(
                f"model.{next(iter(flat))} is a key of the old flat layout; with a "
                "[model.cell] table, put the cell's options there"
            )
        keys = canonical.flat_cell(model.cell)
        if keys is None:
            keys = dict(canonical.LEGACY_MODEL)
            keys["cell"] = model.cell_kind
        for key, value in flat.items():
            expected = type(canonical.LEGACY_MODEL[key])
            keys[key] = _coerce(f"model.{key}", value, expected)
        model.cell = canonical.cell_from_flat(keys)


def _cell(current: Options, values: Any) -> Options:
    """``[model.cell]``: a new cell of ``kind`` with the given options, or (without
    ``kind``) the current cell with them changed."""
    if not isinstance(values, dict):
        raise ValueError(
            f"model.cell must be a table (kind = ..., options) or a name, got {values!r}"
        )
    return _of_kind(
        "model.cell", CELLS, lambda kind: kind.options, current, current.as_dict, values
    )


def _noise(current: NoiseForm, values: dict[str, Any]) -> NoiseForm:
    """``[noise]``: a new form of ``kind``, the flat layout (``form``), or (with neither)
    the current form with the given levels changed."""
    values = dict(values)
    if "form" in values:  # the flat layout of older configs
        if "kind" in values:
            raise ValueError("noise.kind and noise.form name the noise twice; use noise.kind")
        flat = canonical.flat_noise(current) or dict(canonical.LEGACY_NOISE)
        for key, value in values.items():
            if key not in canonical.LEGACY_NOISE:
                known = sorted(canonical.LEGACY_NOISE)
                raise ValueError(f"unknown config key noise.{key}; expected one of {known}")
            flat[key] = _coerce(f"noise.{key}", value, type(canonical.LEGACY_NOISE[key]))
        return canonical.noise_from_flat(flat)
    return _of_kind(
        "noise", NOISE_KINDS, lambda kind: kind.noise_type, current, current.options, values
    )


def _of_kind(
    prefix: str,
    registry: Any,
    type_of: Callable[[Any], type],
    current: Any,
    current_options: Callable[[], dict[str, Any]],
    values: dict[str, Any],
) -> Any:
    """A table of a tagged union (``[model.cell]``, ``[noise]``): with ``kind``, a new value
    of that registered kind from the given options alone; without, ``current`` (whose
    options ``current_options()`` gives) with the given options changed."""
    values = dict(values)
    if "kind" in values:
        name = values.pop("kind")
        if name not in registry:
            raise ValueError(f"{prefix}.kind must be one of {registry.names()}, got {name!r}")
        value_type = type_of(registry.get(name))
        merged: dict[str, Any] = {}
    else:
        value_type = type(current)
        merged = current_options()
    merged |= _typed(prefix, value_type, values)
    return canonical._make(value_type, merged, f"{prefix}.")


def _typed(prefix: str, dataclass_type: Any, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` checked against the fields of ``dataclass_type`` (names and types)."""
    hints = typing.get_type_hints(dataclass_type)
    known = [entry.name for entry in dataclasses.fields(dataclass_type)]
    typed = {}
    for key, value in values.items():
        if key not in known:
            kind = "kind, " if prefix in ("noise", "model.cell") else ""
            raise ValueError(
                f"unknown config key {prefix}.{key}; expected one of [{kind}{', '.join(known)}]"
            )
        expected = hints[key]
        typed[key] = (
            _coerce(f"{prefix}.{key}", value, expected) if isinstance(expected, type) else value
        )
    return typed


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
    """``"noise.additive=0.1"`` -> ``{"noise": {"additive": 0.1}}``, ``"model.cell.gamma=2"``
    -> ``{"model": {"cell": {"gamma": 2}}}`` (TOML value syntax; a bare word is taken as a
    string)."""
    key, sep, raw = text.partition("=")
    parts = [part.strip() for part in key.strip().split(".")]
    if not sep or len(parts) < 2 or not all(parts):
        raise ValueError(f"override must look like section.key=value, got {text!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw
    for part in reversed(parts[1:]):
        value = {part: value}
    return {parts[0]: value}
