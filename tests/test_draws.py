"""Bulk random draws (``nrnn.draws``): the ±1 law, the time-major order of chunked draws,
and drawing on the generator's device."""

from __future__ import annotations

import math

import pytest
import torch

from nrnn import draws
from nrnn.montecarlo import z_threshold

FALSE_FAILURE = 1e-4  # per statistical test


def test_rademacher_entries_are_signs_with_mean_zero_and_independent_neighbours():
    """±1 only; the mean, and the mean product of neighbours (for independent fair signs
    both have mean 0 and standard error exactly 1/√n), within z/√n: 2 comparisons,
    false failure ≤ 1e-4."""
    samples = draws.rademacher((400, 1000), generator=torch.Generator().manual_seed(0))
    flat = samples.flatten()
    assert set(flat.unique().tolist()) == {-1.0, 1.0}
    z = z_threshold(FALSE_FAILURE, 2)
    n = flat.numel()
    assert abs(float(flat.mean())) <= z / math.sqrt(n)
    assert abs(float((flat[:-1] * flat[1:]).mean())) <= z / math.sqrt(n - 1)


def test_rademacher_covers_every_bit_of_the_random_words():
    """All eight bits of each byte are used: the sign frequencies per bit position are fair
    (8 comparisons, standard error 1/(2√n) each, false failure ≤ 1e-4)."""
    samples = draws.rademacher((20_000, 8), generator=torch.Generator().manual_seed(1))
    fraction = (samples > 0).double().mean(0)
    z = z_threshold(FALSE_FAILURE, 8)
    assert ((fraction - 0.5).abs() <= z / (2 * math.sqrt(len(samples)))).all()


@pytest.mark.parametrize("distribution", draws.DISTRIBUTIONS)
def test_a_seed_gives_the_same_numbers_and_the_dtype_asked_for(distribution):
    def sample(seed):
        generator = torch.Generator().manual_seed(seed)
        return draws.standard(distribution, (5, 7), generator=generator, dtype=torch.float64)

    assert sample(3).dtype == torch.float64 and sample(3).shape == (5, 7)
    assert torch.equal(sample(3), sample(3)) and not torch.equal(sample(3), sample(4))


def test_unknown_distribution_is_refused():
    with pytest.raises(ValueError, match="distribution"):
        draws.standard("uniform", (3,))


def test_draws_happen_on_the_generators_device_and_move():
    """A CPU generator draws on the CPU even when the numbers are wanted elsewhere (here the
    meta device stands for a GPU): ``torch.randn(generator=cpu, device="cuda")`` fails."""
    seen = []

    def draw(device):
        seen.append(torch.device(device))
        return torch.zeros(2, device=device)

    moved = draws.on_generator_device(draw, torch.Generator(), "meta")
    assert seen == [torch.device("cpu")] and moved.device.type == "meta"
    draws.on_generator_device(draw, None, "meta")
    assert seen[-1].type == "meta"  # no generator: torch's default one of the target device
    assert draws.rademacher((3,), generator=torch.Generator(), device="meta").is_meta


@pytest.mark.parametrize("chunk_elements", [0, 10, 1 << 20])
def test_step_draws_come_out_time_major_whatever_the_chunk(chunk_elements):
    """Chunks of T steps drawn as (T, *per_step): the same numbers as one draw of every step
    when a chunk holds them all, as per-step draws with one step per chunk."""

    def stream(chunk):
        generator = torch.Generator().manual_seed(5)

        def sample(shape):
            return torch.randn(shape, generator=generator)

        return torch.stack(list(draws.step_draws(sample, (4, 8), 6, chunk_elements=chunk)))

    drawn = stream(chunk_elements)
    assert drawn.shape == (6, 4, 8)
    if chunk_elements == 1 << 20:
        expected = torch.randn(6, 4, 8, generator=torch.Generator().manual_seed(5))
        assert torch.equal(drawn, expected)
    if chunk_elements == 0:
        generator = torch.Generator().manual_seed(5)
        expected = torch.stack([torch.randn(1, 4, 8, generator=generator)[0] for _ in range(6)])
        assert torch.equal(drawn, expected)
