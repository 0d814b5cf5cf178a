"""Monte Carlo helpers: standard errors and the tolerances derived from them."""

from __future__ import annotations

from statistics import NormalDist

import torch


def z_threshold(false_failure: float, comparisons: int = 1) -> float:
    """Two-sided normal quantile z such that ``comparisons`` checks of |estimate − truth|
    ≤ z · standard error fail together with probability at most ``false_failure``
    (Bonferroni; asymptotically normal estimators)."""
    if not 0.0 < false_failure < 1.0:
        raise ValueError(f"false_failure must be in (0, 1), got {false_failure}")
    if comparisons < 1:
        raise ValueError(f"comparisons must be >= 1, got {comparisons}")
    return NormalDist().inv_cdf(1.0 - false_failure / (2.0 * comparisons))


def mean_and_stderr(samples: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample mean and its standard error along ``dim``."""
    count = samples.shape[dim]
    if count < 2:
        raise ValueError(f"need at least 2 samples along dim {dim}, got {count}")
    return samples.mean(dim), samples.std(dim) / count**0.5
