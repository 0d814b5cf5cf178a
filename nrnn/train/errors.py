"""The errors of training: a checkpoint that cannot be used, a damaged run directory, a
run that diverged."""

from __future__ import annotations

from pathlib import Path

from ..exitcodes import InfrastructureError


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or belongs to another configuration."""


class DamagedRunError(CheckpointError, InfrastructureError):
    """A run directory whose checkpoint or metrics are damaged (unreadable, failing the
    checkpoint's digest, or metrics that do not cover the checkpoint's epochs). ``problem``
    names the file and what is wrong; the message adds what to do. A failure of the
    machinery, not of a claim: a command that meets one exits 4 with the message."""

    def __init__(self, problem: str, run_dir: str | Path) -> None:
        super().__init__(
            f"{problem}; the harness sets a damaged run aside and trains it again, or delete "
            f"{run_dir} (`nrnn runs prune` removes damaged runs from a store)"
        )
        self.problem = problem


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite, or an epoch's objective grew past
    ``train.divergence_factor`` times the best epoch's."""
