"""Measurements of trained models: loss curvature, state-Jacobian products and margins.

Every function measures the *deterministic* model (noise off): an ``nn.Module`` is put in
``eval()`` mode for the measurement and restored to its previous mode afterwards. Shapes
follow ``nrnn.NoisyRNN``: inputs ``x`` are (batch, M, p), labels ``y`` are (batch,) class
indices, logits are (batch, c), hidden states are (batch, d).

Curvature (of the mean cross-entropy loss over the given batch, with respect to every
parameter that requires a gradient, through Hessian-vector products):

- :func:`hessian_trace`: tr H, by Hutchinson's estimator with Rademacher probes (value and
  standard error) or exactly (sum of the Hessian diagonal, one HVP per parameter);
- :func:`top_hessian_eigenvalue`: λ_max(H) by Lanczos with full reorthogonalisation, with
  the residual ‖H u − θ u‖ of the returned Ritz pair.

Dynamics (``NoisyRNN`` only, along the deterministic path h̄_0 = 0, …, h̄_M):

- :func:`step_jacobians`: J_k = ∂h_{k+1}/∂h_k;
- :func:`jacobian_products`: spectral norms of Φ_{k→M} = ∂h_M/∂h_k = J_{M−1} ⋯ J_k.

Inputs (any model mapping (batch, M, p) to logits, including plain functions):

- :func:`input_output_jacobian_norm`: ‖∂logits/∂x‖_F per sample;
- :func:`empirical_margin`: the smallest input perturbation found that changes the
  prediction (DeepFool-style attack, then bisection of the radius);
- :func:`jacobian_margin_bound`: the first-order (linearised) margin.

Modules: :mod:`.curvature`, :mod:`.dynamics`, :mod:`.margins`; what they share (argument
checks, :func:`deterministic`, :func:`mean_loss`) in :mod:`._base`.
"""

from ._base import deterministic, mean_loss
from .curvature import (
    EigenEstimate,
    TraceEstimate,
    hessian_matrix,
    hessian_trace,
    top_hessian_eigenvalue,
)
from .dynamics import JacobianProducts, jacobian_products, step_jacobians
from .margins import (
    MarginBound,
    MarginResult,
    empirical_margin,
    input_output_jacobian_norm,
    jacobian_margin_bound,
    logit_gap_gradients,
)

__all__ = [
    "TraceEstimate",
    "EigenEstimate",
    "JacobianProducts",
    "MarginResult",
    "MarginBound",
    "deterministic",
    "mean_loss",
    "hessian_trace",
    "top_hessian_eigenvalue",
    "hessian_matrix",
    "step_jacobians",
    "jacobian_products",
    "input_output_jacobian_norm",
    "logit_gap_gradients",
    "empirical_margin",
    "jacobian_margin_bound",
]
