"""The stopping rule: when the validation accuracy stops improving (a plateau), decay the
learning rate or stop."""

from __future__ import annotations

from typing import Any

PLATEAU_KEY = "plateau"
"""The key of an epoch's metrics record at which the stopping rule found a plateau: its
value is ``"decay"`` (the learning rate dropped after that epoch) or ``"stop"``."""


def plateau_decision(history: list[dict], train_config: Any) -> str | None:
    """The stopping rule (``train.stop_window`` W, ``stop_min_gain`` g,
    ``plateau_decays`` P) applied after the last epoch of ``history`` (the metrics records
    so far, each with ``epoch`` and ``valid_accuracy``).

    A plateau: at least W epochs since the start or the last plateau, and the best
    validation accuracy of the last W epochs exceeds the best of all epochs before them by
    less than g. Returns None (no plateau, or the rule is off: W = 0), ``"decay"`` (a
    plateau, fewer than P decays so far: drop the learning rate) or ``"stop"``. A pure
    function of the records, so a resumed run decides as the uninterrupted one did.
    """
    window = train_config.stop_window
    if not window or not history:
        return None
    epoch = history[-1]["epoch"]
    events = [m for m in history if m.get(PLATEAU_KEY)]
    since = events[-1]["epoch"] if events else 0
    if epoch - since < window or epoch <= window:
        return None
    before = max(m["valid_accuracy"] for m in history if m["epoch"] <= epoch - window)
    recent = max(m["valid_accuracy"] for m in history if m["epoch"] > epoch - window)
    if recent - before >= train_config.stop_min_gain:
        return None
    decays = sum(1 for m in events if m[PLATEAU_KEY] == "decay")
    return "decay" if decays < train_config.plateau_decays else "stop"
