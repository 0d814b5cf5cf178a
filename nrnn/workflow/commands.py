"""Subcommands of ``nrnn`` that other packages add (``derive``, ``verify``, ``figures``,
``bench``): each is a :class:`Command` named by an entry point of the ``nrnn.commands``
group (``nrnn.workflow.plugins``), so the command line never names the package that runs it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..registry import Registry
from . import plugins

__all__ = ["COMMANDS", "Command", "commands"]


@dataclass(frozen=True)
class Command:
    """A subcommand that parses its own arguments.

    Attributes:
        name: ``nrnn <name>``.
        summary: one line for ``nrnn --help``.
        main: ``"module:function"``, imported when the command runs (so that, say, SymPy is
            loaded by ``nrnn derive`` only); ``function(argv) -> exit code``.
    """

    name: str
    summary: str
    main: str

    def run(self, argv: list[str]) -> int:
        module, _, function = self.main.partition(":")
        return int(getattr(importlib.import_module(module), function)(argv))


COMMANDS: Registry[Command] = Registry("command")


def commands() -> tuple[Command, ...]:
    """Every command of the installed packages (their entry points loaded once)."""
    for command in plugins.load("nrnn.commands"):
        COMMANDS.register(command)
    return COMMANDS.entries()
