"""Noisy recurrent neural networks (Lim, Erichson, Hodgkinson, Mahoney; NeurIPS 2021)."""

from importlib.metadata import PackageNotFoundError, version

from . import activations, cells, data, metrics, perturb, quadrature, stability
from .model import NoisyRNN
from .noise import Noise, ReferenceNoise, ReleasedNoise
from .oracle import noise_laplacian
from .regularizer import Expansion, explicit_regularizer

__all__ = [
    "Expansion",
    "Noise",
    "NoisyRNN",
    "ReferenceNoise",
    "ReleasedNoise",
    "activations",
    "cells",
    "data",
    "explicit_regularizer",
    "metrics",
    "noise_laplacian",
    "perturb",
    "quadrature",
    "stability",
]

try:
    __version__ = version("noisy-rnn")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "unknown"
