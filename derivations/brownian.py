"""The Brownian layouts of the paper's noise, in symbols: which motions drive σ(h) ξ.

σ(h) ξ = σ₁ ξ_add + σ₂ h ∘ ξ_mult, the additive part on one Brownian motion per unit
always; the multiplicative part either

- on the same per-unit motions, :data:`PER_UNIT` (display and config name ``"diagonal"``):
  ξ (n x 1), r = n, σ(h) = σ₁ I + σ₂ diag(h);
- on one extra scalar motion shared by every unit, :data:`SCALAR` (``"scalar"``):
  ξ = [ξ_a, ξ_s] (n x 1 and 1 x 1), r = n + 1, σ(h) = [σ₁ I | σ₂ h].

A layout owns every place where the two differ (ξ's blocks and so r, the columns each
part of the noise reads, σ(h)), so the one-step rules (:mod:`derivations.expansion`), the
brute-force proofs, the stability bounds and the step's noise specs
(:mod:`derivations.noises`) take a layout object and never compare names. The runtime
twin is ``nrnn.noise.brownian`` (same names); this module is SymPy only. :data:`LAYOUTS`
lists both, per unit first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import sympy as sp

__all__ = ["LAYOUTS", "PER_UNIT", "SCALAR", "BrownianLayout"]


class BrownianLayout(ABC):
    """Where the multiplicative part of the paper's noise draws its Brownian motion.

    Attributes:
        name: the config value (``brownian``) and the name the proofs, the generated
            functions (``diffusion_<name>``, ``noise_cotangent_<name>``) and the formula
            sheet show.
        motions: the layout in words, for docstrings.
        diffusion_text: σ(h) in words, for docstrings.
        variables_text: ξ and its blocks in words, for docstrings.
    """

    name: str
    motions: str
    diffusion_text: str
    variables_text: str

    @abstractmethod
    def variables(self, n) -> tuple[sp.MatrixSymbol, ...]:
        """ξ's blocks, top to bottom, for a state of ``n`` entries (a symbol or an int)."""

    @abstractmethod
    def split(self, n) -> tuple[sp.MatrixExpr, sp.MatrixExpr]:
        """The columns (n x 1) of ξ the additive and the multiplicative part read."""

    @abstractmethod
    def diffusion(self, h, sigma_add, sigma_mult, n) -> sp.MatrixExpr:
        """σ(h), n x r, for the state column ``h`` and the levels σ₁, σ₂."""

    def noise_dimension(self, n):
        """r, the noise variables of one step: the rows of ξ's blocks."""
        return sum(variable.shape[0] for variable in self.variables(n))

    def __repr__(self) -> str:
        return f"BrownianLayout({self.name!r})"


class _PerUnit(BrownianLayout):
    name = "diagonal"
    motions = "one Brownian motion per unit"
    diffusion_text = "sigma_1 I + sigma_2 diag(h)"
    variables_text = "xi (one Brownian motion per unit)"

    def variables(self, n) -> tuple[sp.MatrixSymbol, ...]:
        return (sp.MatrixSymbol(r"\xi", n, 1),)

    def split(self, n) -> tuple[sp.MatrixExpr, sp.MatrixExpr]:
        (xi,) = self.variables(n)
        return xi, xi

    def diffusion(self, h, sigma_add, sigma_mult, n) -> sp.MatrixExpr:
        return sigma_add * sp.Identity(n) + sigma_mult * sp.DiagMatrix(h)


class _Scalar(BrownianLayout):
    name = "scalar"
    motions = "multiplicative part on one scalar Brownian motion"
    diffusion_text = "[sigma_1 I | sigma_2 h]"
    variables_text = "xi = [xi_a, xi_s] (scalar Brownian motion)"

    def variables(self, n) -> tuple[sp.MatrixSymbol, ...]:
        return sp.MatrixSymbol(r"\xi_{a}", n, 1), sp.MatrixSymbol(r"\xi_{s}", 1, 1)

    def split(self, n) -> tuple[sp.MatrixExpr, sp.MatrixExpr]:
        additive, shared = self.variables(n)
        return additive, sp.MatMul(sp.OneMatrix(n, 1), shared)

    def diffusion(self, h, sigma_add, sigma_mult, n) -> sp.MatrixExpr:
        return sp.BlockMatrix([[sigma_add * sp.Identity(n), sigma_mult * h]])


PER_UNIT: BrownianLayout = _PerUnit()
SCALAR: BrownianLayout = _Scalar()
LAYOUTS: tuple[BrownianLayout, ...] = (PER_UNIT, SCALAR)
"""Both layouts; every proof runs over them in this order."""
