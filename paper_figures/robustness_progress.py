"""How far the robustness runs of a profile are, read from a store: for a profile that runs
longer than a session (``medium``: pixel MNIST on 2 cores), the state that is committed
while it trains, and how far each model is from its stopping rule.

    python -m nrnn.figures.robustness_progress --profile medium \\
        --store paper_figures/output/medium_store --out paper_figures/output

writes ``robustness_<profile>_progress.md``: one row per run with the epochs trained, the
last and best validation accuracy, the gain of the last ``stop_window`` epochs over the best
before them (the rule drops the learning rate, then stops, when it is below
``stop_min_gain``), and the plateaus found so far.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nrnn.files import write_text_atomic
from nrnn.workflow.store import RunStore

from . import runs
from .robustness import settings_for


def run_progress(store: RunStore, config) -> dict[str, Any]:
    """The state of one run in ``store``: "not started", "training", "stopped" (by the
    rule) or "capped" (all epochs), with its epochs and validation accuracies."""
    from nrnn.train import PLATEAU_KEY, read_metrics

    run_dir = store.run_dir(config)
    if not (run_dir / "checkpoint.pt").exists():  # not begun: where it will continue from
        run_dir = store.shorter_run(config) or run_dir
    metrics = read_metrics(run_dir) if run_dir.exists() else []
    window = config.train.stop_window
    valid = [m["valid_accuracy"] for m in metrics]
    gain = None
    if window and len(valid) > window:
        gain = max(valid[-window:]) - max(valid[:-window])
    plateaus = [f"{m[PLATEAU_KEY]} at {m['epoch']}" for m in metrics if m.get(PLATEAU_KEY)]
    if not metrics:
        state = "not started"
    elif metrics[-1].get(PLATEAU_KEY) == "stop":
        state = "stopped"
    elif metrics[-1]["epoch"] >= config.train.epochs:
        state = "capped"
    else:
        state = "training"
    return {
        "state": state,
        "epochs": metrics[-1]["epoch"] if metrics else 0,
        "cap": config.train.epochs,
        "valid_accuracy": valid[-1] if valid else None,
        "best_valid_accuracy": max(valid) if valid else None,
        "window_gain": gain,
        "plateaus": plateaus,
    }


def progress_markdown(
    profile: str,
    store: RunStore,
    datasets: tuple[str, ...] | None,
    threads_per_run: int = 1,
    shown_store: str | None = None,
) -> str:
    """The table of every run of ``profile`` (optionally on ``datasets``) in ``store``, as
    the harness keys them (``threads_per_run`` torch threads, as ``--threads-per-run``)."""
    from nrnn.workflow.harness import with_threads

    settings = settings_for(profile, datasets)
    size = settings.size
    rows = []
    counts: dict[str, int] = {}
    for spec in runs.grid(settings.datasets, settings.variants, size):
        spec = with_threads(spec, threads_per_run)
        found = run_progress(store, spec.config)
        counts[found["state"]] = counts.get(found["state"], 0) + 1

        def percent(value):
            return "–" if value is None else f"{100 * value:.1f}"

        gain = found["window_gain"]
        rows.append(
            f"| {spec.dataset} | {spec.name} | {spec.seed} | {found['state']} | "
            f"{found['epochs']} / {found['cap']} | {percent(found['valid_accuracy'])} | "
            f"{percent(found['best_valid_accuracy'])} | "
            f"{'–' if gain is None else f'{100 * gain:+.1f}'} | "
            f"{', '.join(found['plateaus']) or '–'} |"
        )
    summary = ", ".join(f"{count} {state}" for state, count in sorted(counts.items()))
    return "\n".join(
        [
            f"**Progress of the `{profile}` robustness runs** ({summary}; store "
            f"`{shown_store or store.root}`). A run stops when the best validation accuracy "
            f"of its last {size.stop_window} epochs gains less than "
            f"{100 * size.stop_min_gain:g} points over the best before them, after "
            f"{size.plateau_decays} learning-rate drop(s) at such plateaus; the gain column "
            "is that difference now.",
            "",
            "| dataset | model | seed | state | epochs / cap | validation accuracy (%) | best "
            "(%) | gain of the last window (points) | plateaus |",
            "|---|---|---:|---|---:|---:|---:|---:|---|",
            *rows,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nrnn.figures.robustness_progress")
    parser.add_argument("--profile", default="medium")
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--datasets", default=None)
    parser.add_argument("--threads-per-run", type=int, default=1)
    args = parser.parse_args(argv)
    datasets = tuple(args.datasets.split(",")) if args.datasets else None
    text = progress_markdown(
        args.profile, RunStore(args.store), datasets, args.threads_per_run, str(args.store)
    )
    path = args.out / f"robustness_{args.profile}_progress.md"
    write_text_atomic(path, text + "\n")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
