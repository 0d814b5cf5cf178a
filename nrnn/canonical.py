"""The stored form of a run config: one versioned canonicalisation, and the flat layout of
the configs written before cells and noise forms were tagged unions.

Every key of a trained run (``nrnn.store.RunStore.key``, ``RunConfig.identity_hash``) is a
hash of :func:`canonical_dict`. Version 1 (:data:`VERSION`) is the layout the keys of every
existing store were computed from, so that they stay valid:

- ``[model]`` is flat: ``hidden_dim``, ``dt``, the built-in cells' options under their old
  keys (:data:`LEGACY_MODEL`: the Lipschitz cell's ``beta``, ..., the coRNN's ``gamma`` as
  ``oscillator_gamma``; every key a cell does not use at its default), ``cell`` (the kind's
  name) and ``recurrence``;
- ``[noise]`` is flat: ``form`` (``"paper"``, or ``"reference"`` for the released-code form),
  ``additive``, ``multiplicative``, ``brownian`` (``"diagonal"`` for a form without one);
- keys added after runs were stored (:data:`ADDED_KEYS`) are left out at their defaults.

A cell or noise form registered without old keys (every one added later) has no flat
layout: its section holds ``cell = {kind = ..., options}`` (``noise = {kind = ...}``), which
no older config can produce, so new keys never collide with stored ones.

The same flat layout is what configs written before the tagged unions hold (``config.json``
of stored runs, TOML files of users); :func:`cell_from_flat` and :func:`noise_from_flat`
read it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .cells import CELLS
from .cells.kinds import CellKind
from .noise import NOISE_KINDS, NoiseForm, kind_of
from .options import Options

__all__ = [
    "ADDED_KEYS",
    "LEGACY_MODEL",
    "LEGACY_NOISE",
    "VERSION",
    "canonical_dict",
    "flat_dict",
    "cell_from_flat",
    "cell_kind_of",
    "flat_cell",
    "flat_noise",
    "noise_from_flat",
]

VERSION = 1
"""The version of :func:`canonical_dict`; a new layout gets a new version and keeps this one
for the keys of stored runs."""

LEGACY_MODEL: dict[str, Any] = {
    "beta": 0.75,
    "gamma_a": 0.001,
    "gamma_w": 0.001,
    "antisymmetric": False,
    "init_std": 1.0,
    "init_divisor": "sqrt-hidden",
    "cell": "lipschitz",
    "activation": "tanh",
    "oscillator_gamma": 2.7,
    "oscillator_epsilon": 4.7,
}
"""The cell keys of the flat ``[model]`` table, in their order, with their defaults."""

LEGACY_NOISE: dict[str, Any] = {
    "form": "paper",
    "additive": 0.0,
    "multiplicative": 0.0,
    "brownian": "diagonal",
}
"""The keys of the flat ``[noise]`` table with their defaults."""

ADDED_KEYS = {
    "model": ("cell", "activation", "oscillator_gamma", "oscillator_epsilon", "recurrence"),
    "train": ("stop_window", "stop_min_gain", "plateau_decays", "cuda_graph"),
}
"""Keys added after runs were cached by their hash, by section: left out of it at their
defaults, so that those runs keep their hashes. (Runs stored before ``recurrence`` existed
were computed op by op; the store tells them apart by ``CODE_VERSION``, which changed with
the fused default.)"""
ADDED_DEFAULTS = {"model": {**LEGACY_MODEL, "recurrence": "fused"}}
_ABSENT = object()


def cell_kind_of(options: Options) -> CellKind:
    """The registered cell whose options ``options`` are (ValueError otherwise)."""
    for kind in CELLS.entries():
        if type(options) is kind.options:
            return kind
    raise ValueError(
        f"model.cell must be the options of a registered cell ({CELLS.names()}), got "
        f"{type(options).__name__}"
    )


# ------------------------------------------------------------------------- the flat layout
def flat_cell(options: Options) -> dict[str, Any] | None:
    """The cell keys of the flat ``[model]`` table for ``options`` (every key of
    :data:`LEGACY_MODEL`), or None for a cell without old keys."""
    kind = cell_kind_of(options)
    if not kind.legacy_keys:
        return None
    flat = dict(LEGACY_MODEL)
    values = options.as_dict()
    for option, key in kind.legacy_keys.items():
        flat[key] = values[option]
    flat["cell"] = kind.name
    return flat


def cell_from_flat(flat: dict[str, Any]) -> Options:
    """The cell options of a flat ``[model]`` table's cell keys (every key of
    :data:`LEGACY_MODEL`): the cell ``flat["cell"]`` with its options from its old keys;
    a key of another cell must hold its default.

    Raises:
        ValueError: an unknown cell, or another cell's key away from its default.
    """
    name = flat["cell"]
    if name not in CELLS:
        raise ValueError(f"model.cell must be one of {CELLS.names()}, got {name!r}")
    kind = CELLS.get(name)
    own = set(kind.legacy_keys.values())
    for key, default in LEGACY_MODEL.items():
        if key == "cell" or key in own or flat[key] == default:
            continue
        owners = [other.name for other in CELLS.entries() if key in other.legacy_keys.values()] or [
            "another"
        ]
        raise ValueError(
            f"model.{key} configures the {', '.join(owners)} cell, not model.cell = "
            f"{name!r}; leave it at its default {default!r}"
        )
    values = {option: flat[key] for option, key in kind.legacy_keys.items()}
    return _make(kind.options, values, "model.", {v: k for k, v in kind.legacy_keys.items()})


def flat_noise(noise: NoiseForm) -> dict[str, Any] | None:
    """The flat ``[noise]`` table of ``noise`` (every key of :data:`LEGACY_NOISE`), or None
    for a form without an old ``form`` value."""
    kind = kind_of(noise)
    if kind.legacy_form is None:
        return None
    return {**LEGACY_NOISE, **noise.options(), "form": kind.legacy_form}


def noise_from_flat(flat: dict[str, Any]) -> NoiseForm:
    """The noise form of a flat ``[noise]`` table (every key of :data:`LEGACY_NOISE`); the
    form's unused keys must hold their defaults.

    Raises:
        ValueError: an unknown form, or a key the form does not use away from its default.
    """
    forms = {kind.legacy_form: kind for kind in NOISE_KINDS.entries() if kind.legacy_form}
    form = flat["form"]
    if form not in forms:
        raise ValueError(
            f"noise.form must be one of {tuple(forms)} (or noise.kind one of "
            f"{NOISE_KINDS.names()}), got {form!r}"
        )
    kind = forms[form]
    own = set(kind.noise_type.option_names())
    for key, default in LEGACY_NOISE.items():
        if key != "form" and key not in own and flat[key] != default:
            raise ValueError(
                f"noise.{key} is not an option of the {kind.name} noise form; leave it at its "
                f"default {default!r}"
            )
    return _make(kind.noise_type, {key: flat[key] for key in own}, "noise.")


def _make(
    factory: Any, values: dict[str, Any], prefix: str, names: dict[str, str] | None = None
) -> Any:
    """``factory(**values)`` with a failed check's message naming the config key."""
    try:
        return factory(**values)
    except (TypeError, ValueError) as error:
        message = str(error)
        for option, key in (names or {}).items():
            if message.startswith(f"{option} "):
                message = key + message[len(option) :]
                break
        raise ValueError(prefix + message) from None


# ---------------------------------------------------------------------- canonicalisation
def flat_dict(config: Any) -> dict[str, dict[str, Any]]:
    """The content of a ``nrnn.config.RunConfig`` in the flat layout of older configs where
    its cell and noise form have one (every key, defaults included), else in its own."""
    content = config.to_dict()
    model = config.model
    flat = flat_cell(model.cell)
    content["model"] = {"hidden_dim": model.hidden_dim, "dt": model.dt}
    content["model"] |= {"cell": config.to_dict()["model"]["cell"]} if flat is None else flat
    content["model"]["recurrence"] = model.recurrence
    flat_form = flat_noise(config.noise)
    if flat_form is not None:
        content["noise"] = flat_form
    return content


def canonical_dict(config: Any) -> dict[str, dict[str, Any]]:
    """The canonical content of a ``nrnn.config.RunConfig`` (version :data:`VERSION`, see
    the module docstring): what the keys of stored runs are hashes of."""
    content = flat_dict(config)
    defaults = {"train": dataclasses.asdict(type(config.train)()), **ADDED_DEFAULTS}
    for section, added in ADDED_KEYS.items():
        content[section] = {
            key: value
            for key, value in content[section].items()
            if not (key in added and value == defaults[section].get(key, _ABSENT))
        }
    return content
