"""The Brownian layouts of the paper's noise (``nrnn.noise.brownian``): each layout's parts
agree with each other, and ``Noise.brownian`` selects its layout by the config value."""

import pytest
import torch

from nrnn.noise import BROWNIAN_LAYOUTS, BROWNIAN_MODES, PER_UNIT, SCALAR, Noise

N = 3


def _noise_step(layout, xi, h, additive, multiplicative):
    """σ₁ ξ_add + σ₂ h ⊙ ξ_mult from the layout's split of ξ, (batch, n)."""
    added, multiplied = layout.split(xi)
    return additive * added + multiplicative * h * multiplied


@pytest.mark.parametrize("layout", list(BROWNIAN_LAYOUTS.values()), ids=str)
def test_the_split_of_xi_is_the_diffusion_applied_to_xi(layout):
    generator = torch.Generator().manual_seed(3)
    h = torch.randn(4, N, dtype=torch.float64, generator=generator)
    xi = torch.randn(4, layout.noise_dim(N), dtype=torch.float64, generator=generator)
    sigma = layout.diffusion(h, 0.3, 0.7)
    assert sigma.shape == (4, N, layout.noise_dim(N))
    expected = (sigma @ xi[..., None])[..., 0]
    torch.testing.assert_close(_noise_step(layout, xi, h, 0.3, 0.7), expected)


def test_the_other_layouts_split_disagrees_with_the_diffusion():
    """Negative control: per-unit variables read with the scalar layout's split differ."""
    generator = torch.Generator().manual_seed(4)
    h = torch.randn(4, N, dtype=torch.float64, generator=generator)
    xi = torch.randn(4, SCALAR.noise_dim(N), dtype=torch.float64, generator=generator)
    expected = (SCALAR.diffusion(h, 0.3, 0.7) @ xi[..., None])[..., 0]
    wrong = _noise_step(PER_UNIT, xi[..., :N], h, 0.3, 0.7)
    assert not torch.allclose(wrong, expected)


@pytest.mark.parametrize("name", BROWNIAN_MODES)
def test_the_config_value_selects_its_layout(name):
    noise = Noise(0.3, 0.7, name)
    assert noise.layout is BROWNIAN_LAYOUTS[name]
    assert noise.layout.name == name == noise.brownian
    assert noise.noise_dim(N) == noise.layout.noise_dim(N)


def test_only_one_common_motion_gives_one_multiplicative_level():
    assert Noise(0.3, 0.7, SCALAR.name).common_multiplicative_level(N, "test") == 0.7
    with pytest.raises(ValueError, match="one scalar Brownian motion"):
        Noise(0.3, 0.7, PER_UNIT.name).common_multiplicative_level(N, "test")


def test_an_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="brownian"):
        Noise(0.3, 0.7, "per-unit")
