"""The generated torch code keeps autograd intact (gradcheck in float64, small batched cases)."""

import pytest
import torch

from nrnn._generated import (
    activation,
    cell_cornn,
    cell_gru,
    cell_lipschitz,
    cross_entropy,
    expansion,
    released_noise,
    stability,
)


def _inputs(*shapes):
    generator = torch.Generator().manual_seed(sum(len(s) for s in shapes) + len(shapes))
    return tuple(
        torch.randn(*shape, dtype=torch.float64, generator=generator, requires_grad=True)
        for shape in shapes
    )


def _selections(d):
    """P_y = [I 0] and P_z = [0 I] (d, 2d), constants."""
    identity = torch.eye(d, dtype=torch.float64)
    zero = torch.zeros(d, d, dtype=torch.float64)
    return torch.cat([identity, zero], 1), torch.cat([zero, identity], 1)


def _scalar(value, batch=(2,)):
    return torch.full(batch, value, dtype=torch.float64, requires_grad=True)


CASES = {
    "tanh_second": lambda: (activation.tanh_second, _inputs((2, 3))),
    "sigmoid_second": lambda: (activation.sigmoid_second, _inputs((2, 3))),
    "arctan_second": lambda: (activation.arctan_second, _inputs((2, 3))),
    "lipschitz.step_jacobian": lambda: (
        cell_lipschitz.step_jacobian,
        _inputs((2, 3, 3), (2, 3, 3), (2, 3)) + (_scalar(0.1),),
    ),
    "lipschitz.curvature": lambda: (
        cell_lipschitz.curvature,
        _inputs((2, 3, 3), (2, 3), (2, 3, 3)),
    ),
    "cornn.step_jacobian": lambda: (
        lambda w, v, g, e, slope, dt: cell_cornn.step_jacobian(
            w, v, g, e, *_selections(2), slope, dt
        ),
        _inputs((2, 2, 2), (2, 2, 2))
        + (_scalar(2.0), _scalar(1.5))
        + _inputs((2, 2))
        + (_scalar(0.1),),
    ),
    "cornn.curvature": lambda: (
        lambda w, v, curvature, covariance: cell_cornn.curvature(
            w, v, *_selections(2), curvature, covariance
        ),
        _inputs((2, 2, 2), (2, 2, 2), (2, 2), (2, 4, 4)),
    ),
    "gru.curvature": lambda: (
        cell_gru.curvature,
        _inputs((2, 2), *([(2, 2, 2)] * 3), *([(2, 2)] * 9), (2, 2, 2)),
    ),
    "diffusion_scalar": lambda: (
        expansion.diffusion_scalar,
        _inputs((2, 3)) + (_scalar(0.3), _scalar(0.5)),
    ),
    "diffusion_diagonal": lambda: (
        expansion.diffusion_diagonal,
        _inputs((2, 3)) + (_scalar(0.3), _scalar(0.5)),
    ),
    "covariance_step": lambda: (
        expansion.covariance_step,
        _inputs((2, 3, 3), (2, 3, 3), (2, 3, 4)) + (_scalar(0.1),),
    ),
    "mean_step": lambda: (
        expansion.mean_step,
        _inputs((2, 3), (2, 3, 3), (2, 3)) + (_scalar(0.1),),
    ),
    "q_term": lambda: (expansion.q_term, _inputs((2, 3), (2, 3))),
    "r_term": lambda: (expansion.r_term, _inputs((2, 3, 3), (2, 3, 3))),
    "covariance_rhs": lambda: (expansion.covariance_rhs, _inputs((2, 3, 3), (2, 3, 3), (2, 3, 2))),
    "cross_entropy_hessian": lambda: (cross_entropy.cross_entropy_hessian, _inputs((2, 4))),
    "readout_hessian": lambda: (cross_entropy.readout_hessian, _inputs((2, 4, 3), (2, 4, 4))),
    "em_mean_square_matrix": lambda: (
        stability.em_mean_square_matrix,
        _inputs((2, 2, 2), (2, 3, 2, 2)) + (_scalar(0.1),),
    ),
    "almost_sure_bound_diagonal": lambda: (
        lambda k, s: stability.almost_sure_bound_diagonal(k, s, 3),
        (_scalar(0.2), _scalar(0.4)),
    ),
    "released_diffusion": lambda: (
        released_noise.released_diffusion,
        _inputs((2, 3)) + (_scalar(0.3), _scalar(0.5), _scalar(0.1)),
    ),
    "released_step_variance": lambda: (
        released_noise.released_step_variance,
        (_scalar(0.3), _scalar(0.5)) + _inputs((2, 3)),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck(name):
    function, inputs = CASES[name]()
    assert torch.autograd.gradcheck(function, inputs)


def test_no_autograd_cutting_constructs_in_generated_torch_code():
    import pathlib

    import nrnn._generated as package

    for path in pathlib.Path(package.__file__).parent.glob("*.py"):
        source = path.read_text()
        assert "torch.tensor(" not in source, path
        assert ".detach(" not in source and ".numpy(" not in source, path
