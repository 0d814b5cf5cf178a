"""Numerical verification of the paper's claims, one module per group of claims.

``nrnn verify`` (``nrnn.verification.cli.main``) runs the experiments of the ``verify``
group and writes ``report.json`` and ``report.md``. Importing this package registers them
(``nrnn.workflow.experiments.register_experiments``) in the order they run; the command and
the package are found through the entry points in ``pyproject.toml``.
"""

from nrnn.workflow.commands import Command
from nrnn.workflow.experiments import register_experiments

from .core import Check, run_module

register_experiments(
    "verify",
    {name: f"{__name__}.{name}" for name in ("expansion", "stability", "mc_training", "trained")},
)
COMMAND = Command(
    "verify",
    "test the paper's claims numerically; writes verification/report.*",
    f"{__name__}.cli:main",
)

__all__ = ["COMMAND", "Check", "run_module"]
