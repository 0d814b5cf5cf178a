"""The exact Euler–Maruyama mean-square condition of a linear system
dX = A X dt + Σᵢ Bᵢ X dβᵢ: the second-moment matrix 𝓜, its exponent and stability, and the
noise matrices Bᵢ of the model's multiplicative noise."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .. import contract
from .._generated import stability as _formulas
from ..noise import Noise

if TYPE_CHECKING:
    from numpy.typing import ArrayLike


def linear_noise_matrices(hidden_dim: int, sigma: float, brownian: str = "scalar") -> torch.Tensor:
    """The Bᵢ of dX = A X dt + Σᵢ Bᵢ X dβᵢ for the model's multiplicative noise, float64.

    ``"scalar"``: one matrix σ I, shape (1, d, d); ``"diagonal"``: σ eᵢeᵢᵀ for each unit,
    shape (d, d, d).
    """
    contract.integer("hidden_dim", hidden_dim)
    return Noise(0.0, sigma, brownian).noise_matrices(hidden_dim)


def em_mean_square_matrix(
    drift_matrix: torch.Tensor | ArrayLike, noise_matrices: torch.Tensor | ArrayLike, dt: float
) -> torch.Tensor:
    """The matrix 𝓜 with vec E[X_{k+1}X_{k+1}ᵀ] = 𝓜 vec E[X_k X_kᵀ] for the Euler–Maruyama map
    X_{k+1} = (I + dt A) X_k + √dt Σᵢ ξᵢ Bᵢ X_k of dX = A X dt + Σᵢ Bᵢ X dβᵢ.

    Args:
        drift_matrix: A, (..., d, d).
        noise_matrices: B, (..., n, d, d).
        dt: the step.
    Returns:
        𝓜 = (I + dt A)⊗(I + dt A) + dt Σᵢ Bᵢ⊗Bᵢ, (..., d², d²); it is the same matrix
        for row- and column-major vec (both factors of each product are equal).
    """
    A = torch.as_tensor(drift_matrix)
    B = torch.as_tensor(noise_matrices, dtype=A.dtype, device=A.device)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2] or B.ndim < 3 or B.shape[-2:] != A.shape[-2:]:
        raise ValueError(
            f"drift_matrix must be (..., d, d) and noise_matrices (..., n, d, d), got "
            f"{tuple(A.shape)} and {tuple(B.shape)}"
        )
    identity = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    return _formulas.em_mean_square_matrix(identity + dt * A, B, dt)


def em_mean_square_exponent(
    drift_matrix: torch.Tensor | ArrayLike, noise_matrices: torch.Tensor | ArrayLike, dt: float
) -> torch.Tensor:
    """Exact root-mean-square exponent log ρ(𝓜) / (2 dt) of the Euler–Maruyama map, (...).

    ρ is the spectral radius of :func:`em_mean_square_matrix`; E|X_K|² grows like ρ^K for a
    generic start. As dt → 0 it tends to half the spectral abscissa of A⊕A + Σ Bᵢ⊗Bᵢ
    (for Bᵢ = σ I: max Re eig(A) + σ²/2).
    """
    radius = torch.linalg.eigvals(em_mean_square_matrix(drift_matrix, noise_matrices, dt)).abs()
    return torch.log(radius.amax(-1)) / (2 * dt)


def em_mean_square_stable(
    drift_matrix: torch.Tensor | ArrayLike, noise_matrices: torch.Tensor | ArrayLike, dt: float
) -> torch.Tensor:
    """Whether the Euler–Maruyama map is mean-square stable: ρ(𝓜) < 1, bool (...)."""
    return em_mean_square_exponent(drift_matrix, noise_matrices, dt) < 0
