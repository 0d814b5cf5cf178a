"""Noisy recurrent neural networks (Lim, Erichson, Hodgkinson, Mahoney; NeurIPS 2021)."""

from . import data, metrics, perturb, stability
from .model import NoisyRNN
from .noise import Noise, ReferenceNoise
from .oracle import noise_laplacian
from .regularizer import Expansion, explicit_regularizer

__all__ = [
    "Expansion",
    "Noise",
    "NoisyRNN",
    "ReferenceNoise",
    "data",
    "explicit_regularizer",
    "metrics",
    "noise_laplacian",
    "perturb",
    "stability",
]
__version__ = "0.1.0"
