"""The Monte Carlo helpers against values worked out by hand."""

import math

import pytest
import torch

from nrnn.montecarlo import mean_and_stderr, z_threshold


def test_mean_and_stderr_of_known_samples():
    """(1, 2, 3, 4): mean 5/2, sample variance (2.25 + 0.25 + 0.25 + 2.25)/3 = 5/3, so the
    standard error is √(5/3)/√4 = √(5/12)."""
    mean, stderr = mean_and_stderr(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
    assert float(mean) == pytest.approx(2.5, rel=1e-15)
    assert float(stderr) == pytest.approx(math.sqrt(5 / 12), rel=1e-15)


def test_mean_and_stderr_along_a_dimension():
    """Along dim 1 of a (2, 3) tensor: the row (0, 2, 4) has mean 2, sample variance 4 and SE
    2/√3; the row (7, 7, 7) has SE 0. Along dim 0 each column is a pair (a, b) with SE
    |a − b| / 2."""
    samples = torch.tensor([[0.0, 2.0, 4.0], [7.0, 7.0, 7.0]], dtype=torch.float64)
    mean, stderr = mean_and_stderr(samples, dim=1)
    torch.testing.assert_close(mean, torch.tensor([2.0, 7.0], dtype=torch.float64))
    torch.testing.assert_close(stderr, torch.tensor([2 / math.sqrt(3), 0.0], dtype=torch.float64))
    columns_mean, columns_stderr = mean_and_stderr(samples, dim=0)
    torch.testing.assert_close(columns_mean, torch.tensor([3.5, 4.5, 5.5], dtype=torch.float64))
    torch.testing.assert_close(
        columns_stderr, torch.tensor([3.5, 2.5, 1.5], dtype=torch.float64), rtol=1e-12, atol=0
    )


def test_mean_and_stderr_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2 samples"):
        mean_and_stderr(torch.ones(1, 3))


@pytest.mark.parametrize(
    "false_failure, comparisons, z",
    [
        (0.05, 1, 1.959963984540054),  # the familiar 95 % two-sided quantile
        (0.01, 1, 2.5758293035489004),
        (1e-4, 5, 4.264890793922602),  # Bonferroni: the two-sided 1e-5 quantile
    ],
)
def test_z_threshold_is_the_two_sided_bonferroni_quantile(false_failure, comparisons, z):
    assert z_threshold(false_failure, comparisons) == pytest.approx(z, rel=1e-12)


@pytest.mark.parametrize("false_failure, comparisons", [(0.0, 1), (1.0, 1), (0.1, 0)])
def test_z_threshold_refuses_impossible_arguments(false_failure, comparisons):
    with pytest.raises(ValueError):
        z_threshold(false_failure, comparisons)
