"""Noise forms: the paper's SDE noise (:class:`Noise`) and the authors' released-code noise
(:class:`ReleasedNoise`, also reachable as ``ReferenceNoise``), the interface every form
implements (:class:`NoiseForm`, ``nrnn.noise.base``) and the registry of forms by name
(:data:`NOISE_KINDS`, ``nrnn.noise.kinds``); the paper form's Brownian layouts
(:data:`BROWNIAN_LAYOUTS`, ``nrnn.noise.brownian``)."""

from .base import NoiseForm, Parameters, StepNoise
from .brownian import BROWNIAN_LAYOUTS, PER_UNIT, SCALAR, BrownianLayout
from .kinds import NOISE_KINDS, NoiseKind, kind_of, register_noise
from .paper import BROWNIAN_MODES, Noise
from .released import ReferenceNoise, ReleasedNoise

# The built-in forms, in the order the catalogue and the verification take them.
register_noise(
    "paper",
    Noise,
    variants={
        "diagonal": lambda level: Noise(additive=level, multiplicative=level, brownian="diagonal"),
        "scalar": lambda level: Noise(additive=level, multiplicative=level, brownian="scalar"),
    },
    legacy_form="paper",
)
register_noise(
    "released",
    ReleasedNoise,
    # The released code's additive level is not scaled by √dt: a quarter of the level keeps
    # the noise comparable; s_m must stay in [0, 1].
    variants={
        "released": lambda level: ReleasedNoise(additive=level / 4, multiplicative=min(level, 1.0))
    },
    legacy_form="reference",
)

__all__ = [
    "BROWNIAN_LAYOUTS",
    "BROWNIAN_MODES",
    "NOISE_KINDS",
    "PER_UNIT",
    "SCALAR",
    "BrownianLayout",
    "Noise",
    "NoiseForm",
    "NoiseKind",
    "Parameters",
    "ReferenceNoise",
    "ReleasedNoise",
    "StepNoise",
    "kind_of",
    "register_noise",
]
