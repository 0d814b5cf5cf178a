"""The fused recurrence: the model's Euler–Maruyama loop without an autograd graph per step,
and backpropagation through time by hand with the generated vector–Jacobian product of one
step.

Forward: the operations of the reference path (:func:`nrnn.recurrence.reference`: the
cell's drift and :meth:`nrnn.noise.StepNoise.advance`) run without recording a graph, so
the states are the reference path's bit for bit. It keeps what the backward pass needs:
the states h_k, the pre-activations of the cell's activation uses (``Cell.drift_terms``),
the step terms (s_k, a_k, m_k) and, when the noise's gradients need them, the drifts f_k.

Backward: from the last step to the first, with λ_M = ∂L/∂h_M,

    λ_k = λ_{k+1} + F_kᵀ(s_k ⊙ λ_{k+1}) + m_k ⊙ λ_{k+1}   (+ ∂L/∂h_k when the path is the output)

by the cell's generated ``step_vjp`` (``derivations.step_adjoint``; F_k is never formed),
which also returns the step's drive cotangent (passed back to the input map) and, for
every matrix parameter, the factor pairs (l, r) of its contribution Σ_batch l rᵀ, added
into the gradient in place by one ``addmm`` per pair; the noise adds its variables' and
parameters' (the released code's δ) by :meth:`nrnn.noise.NoiseForm.step_cotangents`.
Per step this is a handful of tensor operations on (batch, n) rows and no autograd
bookkeeping.

Wrapped as a ``torch.autograd.Function``: callers see an ordinary differentiable module. A
second derivative (``create_graph=True``: Hessian-vector products, the noise Laplacian)
recomputes the recurrence on the reference path inside the backward pass and
differentiates that graph, so it is exact as well. Under ``torch.func`` transforms and
forward-mode AD the model uses the reference path (:func:`applies`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .cells.base import Cell, argument_names, check_drift_shape
from .noise import NoiseForm, Parameters
from .recurrence import reference

__all__ = ["FusedRecurrence", "applies", "run", "supports"]


def supports(cell: Cell[Any], noise: NoiseForm) -> bool:
    """The cell has a generated step VJP and the noise derived step cotangents."""
    return cell.has_step_vjp and noise.has_step_cotangents


def _transforms_active() -> bool:
    """A ``torch.func`` transform or forward-mode AD is running (they need the graph)."""
    functorch = getattr(torch._C, "_are_functorch_transforms_active", None)
    if functorch is not None and functorch():
        return True
    return torch.autograd.forward_ad._current_level >= 0


def applies(cell: Cell[Any], noise: NoiseForm, tensors: Iterable[torch.Tensor | None]) -> bool:
    """Run fused: the cell and noise support it, a gradient is wanted (grad mode on and a
    tensor of ``tensors`` requires one) and no transform needs the op-by-op graph."""
    return (
        supports(cell, noise)
        and torch.is_grad_enabled()
        and any(t is not None and t.requires_grad for t in tensors)
        and not _transforms_active()
    )


@dataclass(frozen=True)
class Setup:
    """What does not change during one call: the cell, the noise, the step, how the
    cell's ``drift_parameters()`` and the noise's parameters are passed as tensors."""

    cell: Cell[Any]
    noise: NoiseForm
    dt: float
    parameter_type: Any  # the NamedTuple type of the cell's drift_parameters()
    fields: tuple  # per field of the drift parameters: ("tensor", index) or ("constant", value)
    noise_names: tuple[str, ...]
    keep_path: bool

    @classmethod
    def of(
        cls,
        cell: Cell[Any],
        noise: NoiseForm,
        dt: float,
        parameters: tuple[Any, ...],
        noise_parameters: Parameters,
        keep_path: bool,
    ) -> tuple[Setup, list[torch.Tensor]]:
        """The setup and the tensors to pass: (setup, drift tensors + noise tensors)."""
        _check_parameter_names(cell, parameters)
        fields: list[tuple[str, Any]] = []
        tensors: list[torch.Tensor] = []
        for value in parameters:
            if isinstance(value, torch.Tensor):
                fields.append(("tensor", len(tensors)))
                tensors.append(value)
            else:
                fields.append(("constant", value))
        names = tuple(noise_parameters)
        tensors += [noise_parameters[name] for name in names]
        setup = cls(cell, noise, dt, type(parameters), tuple(fields), names, keep_path)
        return setup, tensors

    @property
    def matrix_names(self) -> tuple[str, ...]:
        """The names of the drift parameters passed as tensors, in their order."""
        names = self.parameter_type._fields
        return tuple(
            name for name, (kind, _) in zip(names, self.fields, strict=True) if kind == "tensor"
        )

    def split(
        self, tensors: Sequence[torch.Tensor]
    ) -> tuple[tuple[Any, ...], dict[str, torch.Tensor]]:
        """(drift parameters, noise parameters by name) from the passed tensors."""
        count = len(tensors) - len(self.noise_names)
        values = [tensors[v] if kind == "tensor" else v for kind, v in self.fields]
        return self.parameter_type(*values), dict(
            zip(self.noise_names, tensors[count:], strict=True)
        )


def _check_parameter_names(cell: Cell[Any], parameters: tuple[Any, ...]) -> None:
    """The fused backward returns each drift parameter's gradient under its field name, as
    the generated step VJP names it: ``drift_parameters()`` must be a named tuple whose
    tensor fields are arguments of ``step_vjp``."""
    fields = getattr(type(parameters), "_fields", None)
    owner = f"{type(cell).__name__}.drift_parameters()"
    if fields is None:
        raise TypeError(
            f"{owner} must return a NamedTuple whose fields are the formula names of the "
            f"parameters (for the fused recurrence), got {type(parameters).__name__}; "
            "or build the model with recurrence='reference'"
        )
    formulas = cell.formulas
    assert formulas is not None  # supports(cell, noise) holds when the fused path runs
    formula_names = set(argument_names(formulas.step_vjp))
    unknown = [
        name
        for name, value in zip(fields, parameters, strict=True)
        if isinstance(value, torch.Tensor) and name not in formula_names
    ]
    if unknown:
        raise TypeError(
            f"{owner} fields {unknown} are not arguments of the generated step_vjp "
            f"({sorted(formula_names)}): name each field as the cell's formulas do"
        )


class FusedRecurrence(torch.autograd.Function):
    """``apply(setup, drives (M, batch, drive_dim), xi (M, batch, r) or None, *tensors)``
    -> h_M (batch, n), or the path (batch, M+1, n) with ``setup.keep_path``."""

    # ctx (Any, as in torch.autograd.Function) carries this call's saved state as attributes.
    @staticmethod
    def forward(
        ctx: Any,
        setup: Setup,
        drives: torch.Tensor,
        xi: torch.Tensor | None,
        *tensors: torch.Tensor,
    ) -> torch.Tensor:
        parameters, noise_parameters = setup.split(tensors)
        cell, noise = setup.cell, setup.noise
        steps = drives.shape[0]
        terms = noise.step_terms(xi, steps=steps, dt=setup.dt, parameters=noise_parameters)
        state = drives.new_zeros(drives.shape[1], cell.state_dim)
        states: list[torch.Tensor] = []
        pre_activations, drifts = [], []
        for drive, step_terms in zip(drives.unbind(0), terms, strict=True):
            drift, saved = cell.drift_terms(state, drive, parameters)
            if not states:
                check_drift_shape(cell, state, drift)
            states.append(state)
            pre_activations.append(saved)
            if noise.needs_drift:
                drifts.append(drift)
            state = step_terms.advance(state, drift)
        ctx.setup, ctx.terms = setup, terms
        ctx.states, ctx.pre_activations, ctx.drifts = states, pre_activations, drifts
        ctx.save_for_backward(drives, xi, *tensors)
        return torch.stack([*states, state], dim=1) if setup.keep_path else state

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: differentiate the reference path
            return _reference_backward(ctx, grad_output)
        return (None, *_fused_backward(ctx, grad_output))


def _fused_backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """Gradients of (drives, xi, *tensors) by backpropagation through time."""
    setup = ctx.setup
    cell, noise = setup.cell, setup.noise
    drives, xi, *tensors = ctx.saved_tensors
    parameters, noise_parameters = setup.split(tensors)
    needs = ctx.needs_input_grad[1:]
    matrix_count = len(tensors) - len(setup.noise_names)
    # needs[2:] also holds the noise parameters, after the matrices: zip stops at the matrices
    matrices = [n for n, need in zip(setup.matrix_names, needs[2:], strict=False) if need]
    wanted = {"xi"} if needs[1] else set()
    wanted |= {
        n for n, need in zip(setup.noise_names, needs[2 + matrix_count :], strict=True) if need
    }

    formulas = cell.formulas
    static = cell.formula_arguments({}, parameters)
    known = ("cotangent", "step", "state", "multiplier")
    functions = {False: formulas.step_vjp, True: formulas.step_vjp_multiplicative}
    names = {key: argument_names(vjp) for key, vjp in functions.items()}
    point_names = {
        key: [n for n in ns if n not in known and n not in static] for key, ns in names.items()
    }
    static_arguments = {key: {n: static[n] for n in ns if n in static} for key, ns in names.items()}
    steps = len(ctx.states)

    drive_list = drives.unbind(0)
    xi_list = xi.unbind(0) if xi is not None else [None] * steps
    path_grads: tuple[torch.Tensor, ...] = grad_output.unbind(1) if setup.keep_path else ()
    cotangent = path_grads[-1] if setup.keep_path else grad_output

    drive_grads: list[torch.Tensor] = []
    xi_grads: list[torch.Tensor | None] = [None] * steps
    gradients: dict[str, torch.Tensor] = {}
    for k in reversed(range(steps)):
        terms, state = ctx.terms[k], ctx.states[k]
        multiplicative = terms.state_multiplier is not None
        arguments = static_arguments[multiplicative] | cell.step_point(
            state, drive_list[k], ctx.pre_activations[k], parameters, point_names[multiplicative]
        )
        arguments.update(cotangent=cotangent, step=terms.drift_step, state=state)
        if multiplicative:
            arguments["multiplier"] = terms.state_multiplier
        found = functions[multiplicative](**arguments)
        if wanted:
            drift = ctx.drifts[k] if noise.needs_drift else None
            contributions = noise.step_cotangents(
                cotangent,
                state,
                drift,
                xi_list[k],
                dt=setup.dt,
                parameters=noise_parameters,
                wanted=wanted,
            )
            xi_grads[k] = contributions.pop("xi", None)
            _accumulate(gradients, contributions)
        for name in matrices:  # Σ over the batch of l rᵀ, added in place by one addmm
            for left, right in found[name]:
                gradient = gradients.get(name)
                if gradient is None:
                    gradients[name] = left.transpose(0, 1) @ right
                else:
                    gradient.addmm_(left.transpose(0, 1), right)
        if needs[0]:
            parts = [found[part] for part in cell.drive_parts]
            drive_grads.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1))
        cotangent = found["state"]
        if setup.keep_path:
            cotangent = cotangent + path_grads[k]

    drive_grad = torch.stack(drive_grads[::-1]) if needs[0] else None
    xi_grad: torch.Tensor | None = None
    if "xi" in wanted:
        xi_grad = torch.stack(
            [
                g if g is not None else torch.zeros_like(x)
                for g, x in zip(xi_grads, xi_list, strict=True)
            ]
        )
    names_all = (*setup.matrix_names, *setup.noise_names)
    tensor_grads = [
        gradients.get(name) if need else None
        for name, need in zip(names_all, needs[2:], strict=True)
    ]
    return (drive_grad, xi_grad, *tensor_grads)


def _accumulate(gradients: dict[str, torch.Tensor], contributions: dict[str, torch.Tensor]) -> None:
    for name, value in contributions.items():
        if name in gradients:
            gradients[name].add_(value)
        else:
            gradients[name] = value


def _reference_backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    """The gradients as a differentiable graph: the reference path recomputed from the saved
    inputs and differentiated with ``create_graph`` (for second derivatives)."""
    setup = ctx.setup
    drives, xi, *tensors = ctx.saved_tensors
    inputs = (drives, xi, *tensors)
    with torch.enable_grad():
        parameters, noise_parameters = setup.split(tensors)
        output = reference(
            setup.cell,
            setup.noise,
            setup.dt,
            drives,
            xi,
            parameters,
            noise_parameters,
            setup.keep_path,
        )
    chosen = [i for i, need in enumerate(ctx.needs_input_grad[1:]) if need]
    grads = torch.autograd.grad(
        output,
        [inputs[i] for i in chosen],
        grad_output,
        create_graph=True,
        allow_unused=True,
    )
    result: list[torch.Tensor | None] = [None] * len(inputs)
    for i, grad in zip(chosen, grads, strict=True):
        result[i] = grad
    return (None, *result)


def run(
    cell: Cell[Any],
    noise: NoiseForm,
    dt: float,
    drives: torch.Tensor,
    xi: torch.Tensor | None,
    parameters: tuple[Any, ...],
    noise_parameters: Parameters,
    keep_path: bool,
) -> torch.Tensor:
    """The fused recurrence (arguments as :func:`nrnn.recurrence.reference`)."""
    setup, tensors = Setup.of(cell, noise, dt, parameters, noise_parameters, keep_path)
    return FusedRecurrence.apply(setup, drives, xi, *tensors)
