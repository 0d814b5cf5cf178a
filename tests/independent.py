"""Statistics for the tests, written independently of the package.

A statistical test takes its tolerance from here, not from the package it checks, so a bug
in the package's standard errors or quantiles cannot widen the tests' own tolerances; and
every statistical formula the verification uses (``nrnn.montecarlo``,
``nrnn.verification``) is pinned against the functions here on fixed inputs. Nothing here
calls scipy's distributions: Student's t from its closed form for integer degrees of
freedom, the noncentral t from its definition by quadrature, the binomial tail by exact
sums, least squares from its normal equations.
"""

from __future__ import annotations

import math
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


def sample_sd(values: list[float]) -> float:
    """The sample standard deviation (divisor n − 1)."""
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


# --------------------------------------------------------------------------- Student t
def student_t_cdf(t: float, dof: int) -> float:
    """P(T ≤ t) for Student's t with an integer number of degrees of freedom, from the
    closed form of P(|T| ≤ t) (Abramowitz & Stegun 26.7.3–4): with θ = arctan(t/√ν),

    ν odd:  (2/π) [θ + sin θ (cos θ + (2/3) cos³ θ + … + (2·4⋯(ν−3))/(1·3⋯(ν−2)) cos^(ν−2) θ)]
    ν even: sin θ [1 + (1/2) cos² θ + … + (1·3⋯(ν−3))/(2·4⋯(ν−2)) cos^(ν−2) θ]
    """
    if dof < 1 or int(dof) != dof:
        raise ValueError(f"dof must be a positive integer, got {dof}")
    theta = math.atan(abs(t) / math.sqrt(dof))
    sine, cosine = math.sin(theta), math.cos(theta)
    if dof % 2 == 1:
        series, term = 0.0, cosine
        for k in range(1, dof - 1, 2):  # terms cos^k with coefficient (2·4⋯(k−1))/(1·3⋯k)
            series += term
            term *= cosine**2 * (k + 1) / (k + 2)
        central = (2.0 / math.pi) * (theta + sine * series) if dof > 1 else 2.0 * theta / math.pi
    else:
        series, term = 0.0, 1.0
        for k in range(0, dof - 1, 2):  # terms cos^k with coefficient (1·3⋯(k−1))/(2·4⋯k)
            series += term
            term *= cosine**2 * (k + 1) / (k + 2)
        central = sine * series
    return 0.5 + math.copysign(central / 2.0, t)


def student_t_quantile(probability: float, dof: int) -> float:
    """The t with P(T ≤ t) = probability, by bisection on :func:`student_t_cdf`."""
    low, high = -1e7, 1e7
    for _ in range(200):
        middle = (low + high) / 2
        if student_t_cdf(middle, dof) < probability:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def noncentral_t_survival(critical: float, dof: int, noncentrality: float) -> float:
    """P(T' > critical) for T' = (Z + δ)/√(V/ν), Z standard normal, V chi-square with ν
    degrees of freedom: ∫ P(Z > critical √(v/ν) − δ) f_ν(v) dv by composite Gauss–Legendre
    quadrature over v in [0, ν + 60√(2ν) + 60]."""
    nodes, weights = np.polynomial.legendre.leggauss(64)
    upper = dof + 60 * math.sqrt(2 * dof) + 60
    edges = np.linspace(0.0, upper, 201)
    normal = NormalDist()
    log_normaliser = (dof / 2) * math.log(2) + math.lgamma(dof / 2)
    total = 0.0
    for left, right in zip(edges[:-1], edges[1:], strict=True):
        half = (right - left) / 2
        for node, weight in zip(nodes, weights, strict=True):
            v = left + half * (node + 1)
            if v <= 0:
                continue
            density = math.exp((dof / 2 - 1) * math.log(v) - v / 2 - log_normaliser)
            tail = 1.0 - normal.cdf(critical * math.sqrt(v / dof) - noncentrality)
            total += half * weight * density * tail
    return total


def paired_t_power(pairs: int, effect: float, alpha: float) -> float:
    """Power of the one-sided paired t test at level ``alpha`` with ``pairs`` pairs when the
    true standardised mean difference is d_z = ``effect``: P(T' > t_(1−α, n−1)) with
    noncentrality d_z √n."""
    critical = student_t_quantile(1 - alpha, pairs - 1)
    return noncentral_t_survival(critical, pairs - 1, effect * math.sqrt(pairs))


def paired_t_test(baseline: list[float], treated: list[float], claimed: str) -> dict:
    """The paired comparison of treated − baseline in the claimed direction ("less" or
    "greater"): mean, sample sd, standard error, t, the one-sided p value in the claimed
    direction, the 95 % confidence interval of the mean difference and d_z = mean / sd."""
    differences = [b - a for a, b in zip(baseline, treated, strict=True)]
    n = len(differences)
    mean = math.fsum(differences) / n
    sd = sample_sd(differences)
    se = sd / math.sqrt(n)
    t = mean / se
    below = student_t_cdf(t, n - 1)
    half_width = student_t_quantile(0.975, n - 1) * se
    return {
        "mean": mean,
        "sd": sd,
        "se": se,
        "t": t,
        "p_one_sided": below if claimed == "less" else 1.0 - below,
        "ci95": (mean - half_width, mean + half_width),
        "d_z": mean / sd,
    }


def sign_test(baseline: list[float], treated: list[float], claimed: str) -> float:
    """Exact one-sided sign test: P(at least k of m nonzero differences in the claimed
    direction) under Binomial(m, 1/2), ties dropped."""
    differences = [b - a for a, b in zip(baseline, treated, strict=True)]
    nonzero = [d for d in differences if d != 0]
    agreeing = sum(1 for d in nonzero if (d < 0 if claimed == "less" else d > 0))
    m = len(nonzero)
    return math.fsum(math.comb(m, j) for j in range(agreeing, m + 1)) / 2**m


# ---------------------------------------------------------------------------- fits
def least_squares_slope(x: list[float], y: list[float]) -> float:
    """The slope of the least-squares line through (x, y): Σ(x − x̄)(y − ȳ) / Σ(x − x̄)²."""
    x_mean, y_mean = math.fsum(x) / len(x), math.fsum(y) / len(y)
    numerator = math.fsum((a - x_mean) * (b - y_mean) for a, b in zip(x, y, strict=True))
    return numerator / math.fsum((a - x_mean) ** 2 for a in x)


def log_log_slope(x: list[float], y: list[float]) -> float:
    """The least-squares slope of log |y| against log x."""
    return least_squares_slope([math.log(a) for a in x], [math.log(abs(b)) for b in y])
