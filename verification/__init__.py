"""Numerical verification of the paper's claims, one module per group of claims.

``nrnn verify`` (``verification.cli.main``) runs the modules registered in
``verification.core.MODULE_NAMES`` and writes ``report.json`` and ``report.md``.
"""

from .core import MODULE_NAMES, Check, Module, load_module, run_module

__all__ = ["Check", "Module", "MODULE_NAMES", "load_module", "run_module"]
