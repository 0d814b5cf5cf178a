"""Numerical verification of the paper's claims, one module per group of claims.

``nrnn verify`` (``nrnn.verification.cli.main``) runs the experiments of the ``verify``
group of ``nrnn.experiments.REGISTRY`` and writes ``report.json`` and ``report.md``.
"""

from .core import Check, run_module

__all__ = ["Check", "run_module"]
