"""Stability of the noisy RNN: contraction rate, Lyapunov-exponent bounds, measured exponents.

Two trajectories h, h' of one model, driven by the same inputs and the *same* noise
(common noise), differ by e = h − h'. The additive noise cancels in e; the multiplicative
noise does not. When the cell's drift splits as f(h) = L h + N(h) with N ρ-Lipschitz
(``Cell.stability_split``), eᵀ(f(h) − f(h')) ≤ κ|e|² with the one-sided Lipschitz
constant κ = λ_max(sym L) + ρ: for the Lipschitz cell L = A and ρ = sup|φ'| ‖W‖₂, so
κ = λ_max(sym A) + ‖W‖₂ for tanh. With σ₂ the multiplicative level, Itô's formula on
log|e|² gives (continuous time, paper-form noise, n entries in the state):

    almost surely   limsup (1/t) log|e_t| ≤ κ − σ₂²/2            (one scalar Brownian motion)
                    limsup (1/t) log|e_t| ≤ κ + σ₂²(1/2 − 1/n)   (one Brownian motion per unit)
    in mean square  limsup (1/2t) log E|e_t|² ≤ κ + σ₂²/2         (either)

A cell without such a split (the gated GRU-ODE cell: its gates multiply the state) has
no closed-form bound: the bound functions raise :class:`NoClosedFormBound` and say so;
the measured exponents work for every cell.

so multiplicative noise on a scalar Brownian motion can make a model with κ > 0 contract
(stochastic stabilisation), while the mean-square exponent only grows with noise.
Exponents here are all *per unit time* and of the distance itself: the mean-square one is
that of the root-mean-square distance √E|e|², i.e. half the exponent of E|e|² (for
dX = aX dt + sX dB: a.s. a − s²/2, root-mean-square a + s²/2, E X² exponent 2a + s²).

The formulas come from ``nrnn._generated.stability`` (derived with SymPy in
``derivations/stability.py``). This package adds:

- the bounds for a model (:func:`contraction_rate`, :func:`almost_sure_bound`,
  :func:`mean_square_bound`, :func:`stabilising_noise_level`);
- bounds that hold exactly for the Euler–Maruyama map the model actually runs
  (:func:`em_almost_sure_bound`, :func:`em_mean_square_bound`), which differ from the
  continuous ones by O(dt);
- Monte Carlo exponents: :func:`lyapunov_exponent` (two trajectories, renormalised
  separation) and :func:`linearised_lyapunov_exponent` (tangent dynamics, QR);
- the exact Euler–Maruyama mean-square condition of a linear system
  dX = A X dt + Σᵢ Bᵢ X dβᵢ (:func:`em_mean_square_matrix`, :func:`em_mean_square_exponent`,
  :func:`em_mean_square_stable`, :func:`linear_noise_matrices`).

Modules: :mod:`.bounds` (the model and Euler–Maruyama bounds), :mod:`.linear` (linear
systems, exactly), :mod:`.exponents` (the measured exponents).
"""

from .bounds import (
    NoClosedFormBound,
    almost_sure_bound,
    contraction_rate,
    em_almost_sure_bound,
    em_mean_square_bound,
    mean_square_bound,
    stabilising_noise_level,
)
from .exponents import LyapunovEstimate, linearised_lyapunov_exponent, lyapunov_exponent
from .linear import (
    em_mean_square_exponent,
    em_mean_square_matrix,
    em_mean_square_stable,
    linear_noise_matrices,
)

__all__ = [
    "LyapunovEstimate",
    "NoClosedFormBound",
    "almost_sure_bound",
    "contraction_rate",
    "em_almost_sure_bound",
    "em_mean_square_bound",
    "em_mean_square_exponent",
    "em_mean_square_matrix",
    "em_mean_square_stable",
    "linear_noise_matrices",
    "linearised_lyapunov_exponent",
    "lyapunov_exponent",
    "mean_square_bound",
    "stabilising_noise_level",
]
