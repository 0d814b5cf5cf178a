"""Noisy recurrent neural networks (Lim, Erichson, Hodgkinson, Mahoney; NeurIPS 2021)."""

from . import data
from .model import NoisyRNN
from .noise import Noise, ReferenceNoise

__all__ = ["NoisyRNN", "Noise", "ReferenceNoise", "data"]
__version__ = "0.1.0"
