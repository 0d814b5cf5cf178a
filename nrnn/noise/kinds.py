"""The registry of noise forms: every noise form a config, the catalogue and the
verification can name.

A :class:`NoiseKind` ties a name (``[noise] kind`` of a run config) to the form's class (a
frozen dataclass of its levels, which is its own options) and the variants the catalogue of
reference problems builds at a noise level (``nrnn.catalogue.NOISE_FORMS``: the generic tests
and the verification run every one). :func:`register_noise` adds one; the built-in forms are
registered in ``nrnn.noise``, a form of your own in your module::

    register_noise("my_noise", MyNoise, variants={"my_noise": lambda level: MyNoise(level)})
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..registry import Registry
from .base import NoiseForm

__all__ = ["NOISE_KINDS", "NoiseKind", "kind_of", "register_noise"]


@dataclass(frozen=True)
class NoiseKind:
    """One registered noise form.

    Attributes:
        name: the form's name in configs (``[noise] kind``).
        noise_type: the :class:`nrnn.noise.NoiseForm` subclass, a frozen dataclass called
            with the config's values (``noise_type(**values)``).
        variants: the catalogue's noises of this form, by name: level -> noise (default:
            ``noise_type(level, level)`` under ``name``).
        legacy_form: the value of ``[noise] form`` in configs written before noise forms
            were tagged unions (built-in forms only; ``nrnn.canonical``).
    """

    name: str
    noise_type: type[NoiseForm]
    variants: Mapping[str, Callable[[float], NoiseForm]] = field(default_factory=dict)
    legacy_form: str | None = None

    def catalogue(self) -> dict[str, Callable[[float], NoiseForm]]:
        """The catalogue's variants: name -> (level -> a noise form)."""
        if self.variants:
            return dict(self.variants)
        noise_type = self.noise_type
        return {self.name: lambda level: noise_type(level, level)}  # type: ignore[call-arg]


NOISE_KINDS: Registry[NoiseKind] = Registry("noise form")
"""Every registered noise form by name, built-in ones first (``paper``, ``released``)."""


def register_noise(
    name: str,
    noise_type: type[NoiseForm],
    *,
    variants: Mapping[str, Callable[[float], NoiseForm]] | None = None,
    legacy_form: str | None = None,
) -> NoiseKind:
    """Register a noise form (see :class:`NoiseKind`) and return its entry.

    Raises:
        TypeError: ``noise_type`` is not a frozen dataclass subclass of NoiseForm.
    """
    if not (isinstance(noise_type, type) and issubclass(noise_type, NoiseForm)):
        raise TypeError(f"noise_type must be an nrnn.noise.NoiseForm subclass, got {noise_type!r}")
    parameters = getattr(noise_type, "__dataclass_params__", None)
    if not dataclasses.is_dataclass(noise_type) or parameters is None or not parameters.frozen:
        raise TypeError(
            f"{noise_type.__name__} must be a frozen dataclass (a noise form is its own "
            "options in a run config)"
        )
    return NOISE_KINDS.register(NoiseKind(name, noise_type, dict(variants or {}), legacy_form))


def kind_of(noise: NoiseForm) -> NoiseKind:
    """The registered entry of ``noise``'s class (ValueError for an unregistered form)."""
    for kind in NOISE_KINDS.entries():
        if type(noise) is kind.noise_type:
            return kind
    raise ValueError(
        f"{type(noise).__name__} is not a registered noise form (nrnn.noise.register_noise); "
        f"registered: {NOISE_KINDS.names()}"
    )
