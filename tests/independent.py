"""Statistics for the tests, written independently of ``nrnn.montecarlo``.

A statistical test takes its tolerance from here, not from the package it checks, so a bug
in the package's standard errors or quantiles cannot widen the tests' own tolerances.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import torch


def normal_quantile(false_failure: float, comparisons: int = 1) -> float:
    """z with P(|Z| > z) = false_failure / comparisons for a standard normal Z: with
    ``comparisons`` asymptotically normal checks of |estimate − truth| ≤ z · SE, all pass
    together except with probability at most ``false_failure`` (Bonferroni)."""
    return NormalDist().inv_cdf(1.0 - false_failure / (2.0 * comparisons))


def mean_and_standard_error(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean and standard error s / √N over the first axis, in float64 numpy.

    samples: (N, ...) -> mean, standard error: (...), as float64 tensors.
    """
    values = samples.detach().cpu().double().numpy()
    count = values.shape[0]
    mean = values.mean(axis=0)
    deviation = np.sqrt(((values - mean) ** 2).sum(axis=0) / (count - 1))
    standard_error = deviation / np.sqrt(count)
    return torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(standard_error)
