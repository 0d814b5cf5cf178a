"""Reference problems with known answers, in one table for the tests, the verification
and the figures.

- **Cells and noises** (:data:`CELLS`, :data:`NOISE_FORMS`, :data:`MODEL_CASES`): a
  small float64 model of every registered cell with every registered noise form (the
  variants their registrations name: ``nrnn.cells.register_cell``,
  ``nrnn.noise.register_noise``), and a batch for it. Generic tests run over
  :data:`MODEL_CASES`; the known answers are the oracles below.
- **Linear SDEs** dX = A X dt + s X dβ (:class:`LinearSystem`: :data:`SCALAR_CASES`,
  :data:`SCALAR`, :data:`ROTATION`, :data:`NON_NORMAL`, :func:`second_moment_systems`)
  realised by :func:`linear_model`, a Lipschitz-cell model whose separation h − h' obeys
  the SDE exactly. Known answers: the a.s. exponent max Re eig(A) − s²/2, its exact
  Euler–Maruyama value (:func:`em_linear_exponent`), the root-mean-square exponent
  (:func:`continuous_rms_exponent`).
- **The exact Gaussian case** (:func:`gaussian_model`): a linear drift (W = 0) with
  additive noise, whose h_M is exactly N(h̄_M, C_M) at every noise level.
- **The oracles**: ``nrnn.noise_laplacian`` (autograd: q + r = Δ_ξ ℓ at ξ = 0) and
  ``nrnn.quadrature`` (exact E ℓ_ε by tensor Gauss quadrature).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar, overload

import numpy as np
import torch
from scipy import integrate

from .cells import CELLS as CELLS_REGISTRY
from .cells import Cell, CoRNNCell
from .model import NoisyRNN
from .noise import NOISE_KINDS, Noise, NoiseForm

T = TypeVar("T")

__all__ = [
    "CELLS",
    "CoRNNCell",
    "MODEL_CASES",
    "NOISE_FORMS",
    "NON_NORMAL",
    "ROTATION",
    "SCALAR",
    "SCALAR_CASES",
    "LinearSystem",
    "ModelCase",
    "cell_factory",
    "cell_name",
    "continuous_rms_exponent",
    "em_linear_exponent",
    "em_scalar_exponent",
    "finite_time_allowance",
    "gaussian_model",
    "linear_model",
    "make_noise",
    "random_batch",
    "random_inputs",
    "random_model",
    "second_moment_systems",
    "small_model",
]

DTYPE = torch.float64


# ----------------------------------------------------------- cells and noise forms
class _Variants(Mapping[str, T]):
    """A read-only view of the variants of every registered entry, by name: read from the
    registry at each access, so a cell or noise form registered later is in it."""

    def __init__(self, collect: Callable[[], dict[str, T]]) -> None:
        self._collect = collect

    def __getitem__(self, name: str) -> T:
        variants = self._collect()
        if name not in variants:
            raise KeyError(f"{name!r} is not in the catalogue; expected one of {tuple(variants)}")
        return variants[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._collect())

    def __len__(self) -> int:
        return len(self._collect())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._collect())})"


def _noise_variants() -> dict[str, Callable[[float], NoiseForm]]:
    return {name: make for kind in NOISE_KINDS.entries() for name, make in kind.catalogue().items()}


def _cell_variants() -> dict[str, Callable[[int], Cell]]:
    return {
        name: make for kind in CELLS_REGISTRY.entries() for name, make in kind.catalogue().items()
    }


NOISE_FORMS: Mapping[str, Callable[[float], NoiseForm]] = _Variants(_noise_variants)
"""Every registered noise form's variants by name: level -> noise (the paper's noise with one
Brownian motion per unit, ``"diagonal"``, or a scalar one, ``"scalar"``; the released
code's noise, ``"released"``; then any registered later)."""

CELLS: Mapping[str, Callable[[int], Cell]] = _Variants(_cell_variants)
"""Every registered cell's variants by name: hidden size d -> a cell (weights from torch's
RNG): ``lipschitz``, ``antisymmetric``, ``lipschitz-arctan``, ``cornn``, ``gru``, then any
registered later."""


def make_noise(form: str, level: float) -> NoiseForm:
    """The noise variant ``form`` (a name in :data:`NOISE_FORMS`) at ``level``: σ₁ = σ₂ =
    level (paper), or s_a = level / 4 and s_m = min(level, 1) (released code, whose additive
    level is not scaled by √dt)."""
    return NOISE_FORMS[form](level)


def cell_factory(cell: str | Callable[[int], Cell]) -> Callable[[int], Cell]:
    """A cell name of :data:`CELLS`, or any callable hidden size -> cell (a Cell class)."""
    return CELLS[cell] if isinstance(cell, str) else cell


def cell_name(cell: object) -> str:
    """The name of a cell given as in :func:`cell_factory`."""
    if isinstance(cell, str):
        return cell
    return str(getattr(cell, "name", None) or getattr(cell, "__name__", repr(cell)))


def small_model(
    cell: str | Callable[[int], Cell],
    noise: str,
    *,
    hidden: int = 3,
    inputs: int = 2,
    classes: int = 3,
    dt: float = 0.3,
    level: float = 0.5,
    seed: int = 0,
    dtype: torch.dtype = DTYPE,
) -> NoisyRNN:
    """A seeded model of ``cell`` (see :func:`cell_factory`) with ``noise`` (a form in
    :data:`NOISE_FORMS` at ``level``); the released code's per-unit step δ is made
    non-uniform."""
    torch.manual_seed(seed)
    cell = cell_factory(cell)(hidden)
    model = NoisyRNN(inputs, hidden, classes, dt=dt, noise=make_noise(noise, level), cell=cell)
    model = model.to(dtype)
    step_size = model.noise_parameters.get("step_size")
    if step_size is not None:
        with torch.no_grad():
            step_size.mul_(0.5 + torch.rand(step_size.shape, dtype=dtype))
    return model


def random_batch(
    seed: int, batch: int, steps: int, inputs: int, classes: int, dtype: torch.dtype = DTYPE
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x (batch, steps, inputs) standard normal, y (batch,) uniform labels) from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, inputs, generator=generator, dtype=dtype)
    return x, torch.randint(0, classes, (batch,), generator=generator)


@dataclass(frozen=True)
class ModelCase:
    """A small model of one cell with one noise form, and its batch."""

    cell: str
    noise: str
    hidden: int = 3
    steps: int = 4
    batch: int = 3
    inputs: int = 2
    classes: int = 3
    dt: float = 0.3
    level: float = 0.5
    seed: int = 0

    @property
    def label(self) -> str:
        return f"{self.cell}-{self.noise}"

    def build(self, dtype: torch.dtype = DTYPE) -> tuple[NoisyRNN, torch.Tensor, torch.Tensor]:
        """(model, x, y), seeded."""
        model = small_model(
            self.cell,
            self.noise,
            hidden=self.hidden,
            inputs=self.inputs,
            classes=self.classes,
            dt=self.dt,
            level=self.level,
            seed=self.seed,
            dtype=dtype,
        )
        x, y = random_batch(self.seed + 1, self.batch, self.steps, self.inputs, self.classes, dtype)
        return model, x, y


class _ModelCases(Sequence[ModelCase]):
    """Every cell variant of :data:`CELLS` with every noise variant of :data:`NOISE_FORMS`,
    read from the registries at each access."""

    def _cases(self) -> tuple[ModelCase, ...]:
        return tuple(ModelCase(cell, noise) for cell in CELLS for noise in NOISE_FORMS)

    @overload
    def __getitem__(self, index: int) -> ModelCase: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ModelCase]: ...

    def __getitem__(self, index: int | slice) -> ModelCase | Sequence[ModelCase]:
        return self._cases()[index]

    def __len__(self) -> int:
        return len(self._cases())

    def __repr__(self) -> str:
        return f"MODEL_CASES({[case.label for case in self._cases()]})"


MODEL_CASES: Sequence[ModelCase] = _ModelCases()
"""Every registered cell with every registered noise form (their catalogue variants)."""


# ----------------------------------------------------------------------- linear SDEs
@dataclass(frozen=True)
class LinearSystem:
    """dX = A X dt + s X dβ (scalar β). ``drift`` is A as nested tuples, (d, d); ``sigma``
    the noise level s at which the verification measures it."""

    name: str
    title: str
    drift: tuple[tuple[float, ...], ...]
    sigma: float = 0.0

    def matrix(self) -> np.ndarray:
        """A as a float64 array (d, d); ValueError unless square and finite."""
        matrix = np.array(self.drift, dtype=float)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or not np.isfinite(matrix).all():
            raise ValueError(f"{self.name}: drift must be a finite square matrix, got {self.drift}")
        return matrix


SCALAR_CASES = ((0.5, 1.5), (-0.2, 0.8), (1.0, 2.0))
"""(a, s) of dX = aX dt + sX dB: a.s. exponent a − s²/2, E X² exponent 2a + s²."""
SCALAR = LinearSystem("scalar", "scalar SDE: dX = 0.5 X dt + s X dB", ((0.5,),), 1.5)
ROTATION = LinearSystem(
    "rotation", "normal A = [[0.5, −2], [2, 0.5]] (rotation)", ((0.5, -2.0), (2.0, 0.5)), 1.5
)
NON_NORMAL = LinearSystem(
    "non-normal", "non-normal A = [[0.3, 4], [0, −1]]", ((0.3, 4.0), (0.0, -1.0)), 1.2
)
"""Both 2×2 systems are unstable without noise (max Re λ > 0, κ = λ_max(sym A) > 0); the
non-normal one has κ far above max Re λ, so the model bound κ − s²/2 is loose there."""


def linear_model(drift: np.ndarray, sigma: float, brownian: str, dt: float) -> NoisyRNN:
    """A float64 NoisyRNN whose separation h − h' obeys dX = A X dt + σ X dβ exactly.

    β = 1/2 and γ_A = 0 make A = M_A; M_W = 0 and γ_W = 0 make W = 0, so the activation
    term is common to both trajectories and cancels; the input layer is zeroed (h stays 0).
    """
    d = drift.shape[0]
    model = NoisyRNN(
        1, d, 2, dt=dt, beta=0.5, gamma_a=0.0, gamma_w=0.0, noise=Noise(0.0, sigma, brownian)
    ).double()
    with torch.no_grad():
        model.M_A.copy_(torch.as_tensor(drift, dtype=torch.float64))
        model.M_W.zero_()
        model.input.weight.zero_()
        model.input.bias.zero_()
    return model


def em_scalar_exponent(eigenvalue: complex, s: float, dt: float) -> float:
    """E log|1 + dt λ + s √dt ξ| / dt, ξ ~ N(0, 1): the exact a.s. exponent of the
    Euler–Maruyama map along eigenvalue λ (by adaptive quadrature)."""
    shift = 1.0 + dt * eigenvalue
    scale = s * math.sqrt(dt)

    def integrand(xi: float) -> float:
        return math.log(abs(shift + scale * xi)) * math.exp(-0.5 * xi * xi) / math.sqrt(2 * math.pi)

    if scale == 0.0:
        return math.log(abs(shift)) / dt
    # The log is singular (integrably) where the real part crosses 0: split there.
    singular = -shift.real / scale
    limit = max(40.0, abs(singular) + 1.0)
    points = [singular] if -limit < singular < limit else None
    value, _ = integrate.quad(
        integrand, -limit, limit, points=points, limit=400, epsabs=1e-14, epsrel=1e-12
    )
    return value / dt


def em_linear_exponent(drift: np.ndarray, s: float, dt: float) -> float:
    """Exact EM a.s. exponent of dX = A X dt + s X dβ (scalar β): max over eig(A) (the step
    matrices are polynomials in A, so they commute)."""
    return max(em_scalar_exponent(complex(lam), s, dt) for lam in np.linalg.eigvals(drift))


def finite_time_allowance(drift: np.ndarray, time: float) -> float:
    """log cond(V) / t for A = V Λ V⁻¹: how far a non-normal transient can move a
    finite-time exponent (0 for normal A)."""
    _, vectors = np.linalg.eig(drift)
    return math.log(np.linalg.cond(vectors)) / time


def continuous_rms_exponent(drift: np.ndarray, noise_matrices: np.ndarray) -> float:
    """Half the spectral abscissa of A⊕A + Σ Bᵢ⊗Bᵢ: the continuous root-mean-square exponent."""
    d = drift.shape[0]
    identity = np.eye(d)
    generator = np.kron(drift, identity) + np.kron(identity, drift)
    generator += sum(np.kron(b, b) for b in noise_matrices)
    return float(np.linalg.eigvals(generator).real.max()) / 2


def second_moment_systems() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, A, noise matrices (n, d, d)) whose exact EM second moments are
    E X_K X_Kᵀ = unvec(𝓜^K vec X₀X₀ᵀ): scalar, normal, non-normal, per-unit, mean-square
    stable ones and a random 3×3 with two general Bᵢ."""
    generator = np.random.default_rng(5)
    random_drift = generator.normal(size=(3, 3)) * 0.8
    random_noise = generator.normal(size=(2, 3, 3)) * 0.6

    def matrices(d: int, sigma: float, brownian: str = "scalar") -> np.ndarray:
        return Noise(0.0, sigma, brownian).noise_matrices(d).numpy()

    rotation, non_normal = ROTATION.matrix(), NON_NORMAL.matrix()
    return [
        ("scalar d=1", np.array([[-0.2]]), np.array([[[0.8]]])),
        ("damped scalar d=1 (ms-stable)", np.array([[-1.0]]), np.array([[[0.8]]])),
        ("rotation, scalar", rotation, matrices(2, ROTATION.sigma)),
        ("non-normal, scalar", non_normal, matrices(2, NON_NORMAL.sigma)),
        ("rotation, per-unit", rotation, matrices(2, ROTATION.sigma, "diagonal")),
        (
            "damped rotation, per-unit (ms-stable)",
            np.array([[-1.0, -2.0], [2.0, -1.0]]),
            matrices(2, 0.8, "diagonal"),
        ),
        ("random 3x3, two general B", random_drift, random_noise),
    ]


# --------------------------------------------------------------- the exact Gaussian case
def gaussian_model(hidden: int = 2, level: float = 0.7, dt: float = 0.3, seed: int = 0) -> NoisyRNN:
    """A float64 model whose h_M is exactly Gaussian: W = 0 makes the drift A h + φ(U x + b)
    affine in h, and the noise is additive (σ₂ = 0), so h_M ~ N(h̄_M, C_M) at every noise
    level and the mean correction m_M vanishes."""
    torch.manual_seed(seed)
    model = NoisyRNN(2, hidden, 3, dt=dt, gamma_w=0.0, noise=Noise(level, 0.0)).double()
    with torch.no_grad():
        model.M_W.zero_()
    return model


# ------------------------------------------------------------------- random RNNs
def random_model(
    seed: int, hidden_dim: int, noise: NoiseForm, dt: float, *, gamma_a: float = 0.001
) -> NoisyRNN:
    """A small random float64 Lipschitz NoisyRNN (input 2, init_std 1)."""
    torch.manual_seed(seed)
    return NoisyRNN(2, hidden_dim, 2, dt=dt, gamma_a=gamma_a, noise=noise).double()


def random_inputs(seed: int, paths: int, steps: int) -> torch.Tensor:
    """Standard normal inputs (paths, steps, 2), float64."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(paths, steps, 2, dtype=torch.float64, generator=generator)
