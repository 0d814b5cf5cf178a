"""SymPy derivations of the noisy-RNN theory and the printer that turns them into code.

Modules, one idea each:

- :mod:`derivations.ito` -- Itô calculus on explicit component symbols; Gaussian moments.
- :mod:`derivations.jets` -- truncated power series in epsilon (Faà di Bruno by SymPy).
- :mod:`derivations.nodes` -- matrix-expression nodes the derivations need beyond SymPy's.
- :mod:`derivations.matrix_rules` -- expectation rules and linear algebra on matrix expressions.
- :mod:`derivations.explicit` -- evaluate a matrix expression on explicit SymPy matrices.
- :mod:`derivations.activation` -- tanh derivatives in terms of tanh.
- :mod:`derivations.brownian` -- the Brownian layouts (per unit, scalar) of the paper's noise.
- :mod:`derivations.expansion` -- the one-step rules of the discrete small-noise expansion.
- :mod:`derivations.brute_force` -- the small-size brute-force expansion and its proof.
- :mod:`derivations.continuous` -- the continuous-time moment ODEs from Itô's formula.
- :mod:`derivations.stability` -- Lyapunov exponent bounds and the Euler--Maruyama condition.
- :mod:`derivations.cross_entropy` -- gradient and Hessian of the cross-entropy loss.
- :mod:`derivations.released_noise` -- the released-code noise and its SDE equivalent.
- :mod:`derivations.noises` -- the noise forms' step in symbols (``NoiseSpec``), the built-in ones.
- :mod:`derivations.step_adjoint` -- the vector-Jacobian product of one step, cells and noises.
- :mod:`derivations.codegen` -- the torch / numpy printer; :mod:`derivations.latex` the sheet.
- :mod:`derivations.build` -- ``nrnn derive [--check]`` (:data:`COMMAND`, found through the
  ``nrnn.commands`` entry point; SymPy is imported when it runs).
"""

from nrnn.workflow.commands import Command

COMMAND = Command(
    "derive",
    "regenerate nrnn/_generated and docs/formulas.md [--check] "
    "[--cell or --noise FILE.py:NAME --out DIR]",
    f"{__name__}.build:main",
)
