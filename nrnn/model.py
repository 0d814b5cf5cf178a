"""The noisy RNN: a recurrent cell stepped by Euler–Maruyama with noise injected into its state.

State h ∈ R^n (the cell's ``state_dim``), inputs x_0..x_{M−1} ∈ R^p, step dt:

    c_k = U x_k + b                                   (the drive, ``input``)
    h_{k+1} = h_k + s_k ⊙ f(h_k, c_k) + a_k + h_k ⊙ m_k,   h_0 = 0
    logits = V h_M[:output_dim] + c

The cell (``nrnn.cells``) owns the drift f and its parameters; the noise (``nrnn.noise``)
owns the step terms s_k, a_k, m_k drawn from its noise variables ξ_k. For the paper's
noise s_k = dt and a_k + h_k ⊙ m_k = √dt σ(h_k) ξ_k; for ``ReleasedNoise`` the step is the
released code's. The model only calls the two objects: it never asks which kind they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from . import contract, fused, recurrence
from .cells import INIT_DIVISORS, Cell, LipschitzCell
from .cells.lipschitz import LipschitzOptions, LipschitzParameters
from .noise import Noise, NoiseForm, StepNoise
from .recurrence import RECURRENCES

__all__ = ["INIT_DIVISORS", "RECURRENCES", "NoisyRNN", "check_batch", "check_model"]

_LIPSCHITZ_DEFAULTS = {
    name: getattr(LipschitzOptions(), name)
    for name in ("beta", "gamma_a", "gamma_w", "antisymmetric", "init_std", "init_divisor")
}
"""The default cell's options that :class:`NoisyRNN` takes as keywords, at the cell's
defaults (``tests/test_model.py`` checks the keywords' defaults against them)."""


class NoisyRNN(nn.Module):
    """Noisy RNN classifier: a cell, a noise form and a linear readout.

    Args:
        input_dim: p, features per time step.
        hidden_dim: d, the cell's size.
        num_classes: c.
        cell: a :class:`nrnn.cells.Cell` of size ``hidden_dim``; default a
            :class:`nrnn.cells.LipschitzCell` with the options below.
        noise: ``Noise`` (paper form) or ``ReleasedNoise`` (released-code form).
        dt: the Euler–Maruyama step (> 0).
        beta, gamma_a, gamma_w, antisymmetric, init_std, init_divisor: options of the
            default Lipschitz cell (see ``LipschitzCell``); with another ``cell`` they must
            keep their defaults.
        recurrence: ``"fused"`` (default): when a gradient is wanted, the recurrence runs
            without an autograd graph per step and its backward pass is the generated
            vector–Jacobian product of one step (``nrnn.fused``), for every cell with
            generated formulas and the built-in noises; ``"reference"``: op by op with
            autograd (``nrnn.recurrence``), the path any other cell takes too. Both give
            the same states bit for bit and the same gradients up to rounding.

    Parameters, in this order: the cell's (``cell.*``; the Lipschitz cell's ``M_W`` and
    ``M_A``), the noise's (``noise_parameters.*``: ``step_size`` = δ (n,) for
    ``ReleasedNoise``), ``input`` (Linear p → drive_dim: U, b) and ``readout`` (Linear →
    c: V, c). The cell's and the noise's are also reachable as ``model.M_W``,
    ``model.step_size`` etc., and a state dict written before cells existed (keys ``M_W``,
    ``M_A``, ``step_size`` at the top level) loads.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        num_classes: int,
        *,
        dt: float = 0.01,
        beta: float = 0.75,
        gamma_a: float = 0.001,
        gamma_w: float = 0.001,
        noise: NoiseForm = Noise(),
        antisymmetric: bool = False,
        init_std: float = 1.0,
        init_divisor: str = "sqrt-hidden",
        cell: Cell[Any] | None = None,
        recurrence: str = "fused",
    ) -> None:
        super().__init__()
        self.recurrence = contract.choice("recurrence", recurrence, RECURRENCES)
        self.input_dim = contract.integer("input_dim", input_dim)
        self.hidden_dim = contract.integer("hidden_dim", hidden_dim)
        self.num_classes = contract.integer("num_classes", num_classes)
        self.dt = contract.real("dt", dt, minimum=0, strict=True)
        self.noise = contract.instance(
            "noise", noise, NoiseForm, "nrnn.Noise or nrnn.ReleasedNoise (an nrnn.noise.NoiseForm)"
        )
        options: dict[str, Any] = {
            "beta": beta,
            "gamma_a": gamma_a,
            "gamma_w": gamma_w,
            "antisymmetric": antisymmetric,
            "init_std": init_std,
            "init_divisor": init_divisor,
        }
        if cell is None:
            cell = LipschitzCell(hidden_dim, **options)
        else:
            self._check_cell(cell, options)
        self.cell: Cell[Any] = cell
        self.noise_parameters = nn.ParameterDict(noise.parameters(cell.state_dim, self.dt))
        self.input = nn.Linear(input_dim, cell.drive_dim)
        self.readout = nn.Linear(cell.output_dim, num_classes)
        self.register_load_state_dict_pre_hook(_load_entries_from_the_top_level)

    def _check_cell(self, cell: Cell[Any], options: dict[str, Any]) -> None:
        contract.instance("cell", cell, Cell, "an nrnn.cells.Cell")
        if cell.hidden_dim != self.hidden_dim:
            raise ValueError(f"cell must have hidden_dim={self.hidden_dim}, got {cell.hidden_dim}")
        changed = [name for name, value in options.items() if value != _LIPSCHITZ_DEFAULTS[name]]
        if changed:
            raise ValueError(
                f"{', '.join(changed)} configure the default Lipschitz cell; with cell= pass "
                "them to the cell (e.g. nrnn.cells.LipschitzCell(..., beta=...))"
            )

    def _part_holding(self, name: str) -> nn.Module | None:
        """The cell or the noise's parameters if they hold a parameter ``name``."""
        modules = self.__dict__.get("_modules", {})
        for part in _PARTS:
            owner = modules.get(part)
            if owner is not None and name in owner._parameters:
                return owner
        return None

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            owner = self._part_holding(name)
            if owner is None:
                raise
            return owner._parameters[name]

    def __setattr__(self, name: str, value: Any) -> None:
        owner = self._part_holding(name)
        if owner is None:
            super().__setattr__(name, value)
        else:
            setattr(owner, name, value)

    # ----------------------------------------------------------------- structure
    @property
    def state_dim(self) -> int:
        """n, the entries of the state (the cell's)."""
        return self.cell.state_dim

    @property
    def noise_dim(self) -> int:
        """r, noise variables per step (the width of ``xi``)."""
        return self.noise.noise_dim(self.cell.state_dim)

    def matrices(self) -> LipschitzParameters:
        """(A, W) of the Lipschitz cell, each (d, d); A is zero for the antisymmetric one."""
        cell = self.cell
        if not isinstance(cell, LipschitzCell):
            raise AttributeError(
                f"{type(cell).__name__} has no matrices (A, W): not a Lipschitz cell"
            )
        return cell.matrices()

    def input_drive(self, x: torch.Tensor) -> torch.Tensor:
        """The drive c_k = U x_k + b of every step: x (batch, M, p) -> (batch, M, drive_dim)."""
        return self.input(x)

    # ------------------------------------------------------------- validation
    def _prepare(
        self, x: torch.Tensor, xi: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        reference = self.readout.weight
        x = contract.as_model_dtype(contract.sequences(x, features=self.input_dim), reference)
        batch, steps, _ = x.shape
        expected = (batch, steps, self.noise_dim)
        if xi is not None:
            xi = contract.noise_increments(xi, expected)
            xi = contract.as_model_dtype(xi, reference, name="xi")
        elif self.training and not self.noise.is_zero:
            xi = self.noise.sample(expected, dtype=reference.dtype, device=reference.device)
        return x, xi

    # ---------------------------------------------------------------- dynamics
    def step_terms(self, xi: torch.Tensor | None, steps: int) -> list[StepNoise]:
        """The noise's terms of every step from time-major ``xi`` (M, batch, r) or None."""
        return self.noise.step_terms(xi, steps=steps, dt=self.dt, parameters=self.noise_parameters)

    def euler_step(
        self,
        state: torch.Tensor,
        drive: torch.Tensor,
        parameters: tuple[Any, ...],
        terms: StepNoise,
    ) -> torch.Tensor:
        """One step h_k -> h_{k+1} = h + s ⊙ f + a + h ⊙ m with ``terms`` = (s, a, m)
        (``nrnn.noise.StepNoise``); state, drive (batch, ·), parameters the cell's."""
        return terms.advance(state, self.cell.drift(state, drive, parameters))

    def uses_fused_recurrence(self, tensors: Iterable[torch.Tensor | None]) -> bool:
        """Whether a call with these input tensors runs fused (see ``recurrence``)."""
        return self.recurrence == "fused" and fused.applies(self.cell, self.noise, tensors)

    def _run(self, x: torch.Tensor, xi: torch.Tensor | None, keep_path: bool) -> torch.Tensor:
        x, xi = self._prepare(x, xi)
        parameters = self.cell.drift_parameters()
        drives = self.input(x).transpose(0, 1)  # time-major (M, batch, drive_dim)
        xi = None if xi is None else xi.transpose(0, 1)
        arguments = (self.cell, self.noise, self.dt, drives, xi, parameters)
        noise_parameters = dict(self.noise_parameters)
        tensors = [drives, xi, *parameters, *noise_parameters.values()]
        tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
        if self.uses_fused_recurrence(tensors):
            return fused.run(*arguments, noise_parameters, keep_path)
        return recurrence.reference(*arguments, noise_parameters, keep_path)

    def final_state(self, x: torch.Tensor, xi: torch.Tensor | None = None) -> torch.Tensor:
        """h_M (batch, n) without keeping the path (cheaper for Monte Carlo)."""
        return self._run(x, xi, keep_path=False)

    def trajectory(self, x: torch.Tensor, xi: torch.Tensor | None = None) -> torch.Tensor:
        """States: x (batch, M, p), xi (batch, M, r) -> (batch, M+1, n), h_0 included."""
        return self._run(x, xi, keep_path=True)

    def logits(self, state: torch.Tensor) -> torch.Tensor:
        """The readout of states (..., n) -> (..., c)."""
        return self.readout(self.cell.output(state))

    def forward(self, x: torch.Tensor, xi: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, c) from x (batch, M, p).

        Noise is drawn when the module is in training mode and its noise is non-zero; a
        given ``xi`` (batch, M, r) is used in either mode.
        """
        return self.logits(self._run(x, xi, keep_path=False))

    def extra_repr(self) -> str:
        return (
            f"input_dim={self.input_dim}, hidden_dim={self.hidden_dim}, "
            f"num_classes={self.num_classes}, dt={self.dt}, noise={self.noise}, "
            f"recurrence={self.recurrence!r}"
        )


_PARTS = ("cell", "noise_parameters")
"""The children whose parameters used to sit at the model's top level."""


def _load_entries_from_the_top_level(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any
) -> None:
    """State dicts written before cells existed hold the cell's and the noise's entries
    (``M_W``, ``M_A``, ``step_size``) at the model's top level: move them under their part."""
    for part in _PARTS:
        for name in getattr(module, part).state_dict():
            old, new = prefix + name, f"{prefix}{part}.{name}"
            if old in state_dict and new not in state_dict:
                state_dict[new] = state_dict.pop(old)


def check_model(model: Any) -> NoisyRNN:
    """An ``nrnn.NoisyRNN`` (TypeError otherwise)."""
    return contract.instance("model", model, NoisyRNN, "an nrnn.NoisyRNN")


def check_batch(
    model: NoisyRNN, x: torch.Tensor, y: torch.Tensor, *, probes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate (model, x, y[, probes]) for a per-sample loss; return x in the model's
    dtype and device and y as int64 there."""
    check_model(model)
    x = contract.sequences(x, features=model.input_dim)
    y = contract.labels(y, x.shape[0], model.num_classes)
    if probes is not None:
        contract.integer("probes", probes)
    reference = model.readout.weight
    return contract.as_model_dtype(x, reference), y.to(reference.device)
