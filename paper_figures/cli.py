"""``nrnn figures``: make the paper's figures and tables.

    nrnn figures [--quick | --full] [--only NAME ...] [--jobs N] [--out DIR]
                 [--cache DIR] [--datasets A,B] [--no-progress] [--list]

``--quick`` (the default) uses small models, few epochs and seeds so that everything runs
on 2 CPU cores (robustness: hidden 32, 40 epochs, 3 seeds on ECG5000 and digits, about
10 minutes); ``--full`` uses the paper's sizes (hidden 128, 100 epochs, 5 seeds, pixel
MNIST) for a bigger machine. Trained runs are cached under ``--cache`` by config hash, so a
second call only redraws (and an interrupted one resumes).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from . import FIGURES, FigureContext, figure_module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nrnn figures",
        description="Make the paper's figures and tables (PNG, PDF, CSV/JSON, Markdown).",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        dest="mode",
        action="store_const",
        const="quick",
        help="small sizes for 2 CPU cores (default)",
    )
    size.add_argument(
        "--full",
        dest="mode",
        action="store_const",
        const="full",
        help="the paper's sizes (a bigger machine)",
    )
    parser.set_defaults(mode="quick")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(FIGURES),
        metavar="NAME",
        help=f"make only this figure (repeatable); one of {', '.join(FIGURES)}",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes for training and evaluation (default: all cores)",
    )
    parser.add_argument(
        "--out",
        default="paper_figures/output",
        help="output directory (default paper_figures/output)",
    )
    parser.add_argument(
        "--cache",
        default=".cache/runs",
        help="root of the cached training runs (default .cache/runs)",
    )
    parser.add_argument(
        "--datasets",
        type=_dataset_list,
        help="comma-separated datasets instead of each figure's default, "
        "e.g. ecg5000,digits,mnist-rows",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars"
    )
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    return parser


def _dataset_list(text: str) -> tuple[str, ...]:
    from nrnn import data

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in data.NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown dataset(s) {unknown or text!r}; expected names from {', '.join(data.NAMES)}"
        )
    return names


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for name in FIGURES:
            print(f"{name:16s} {figure_module(name).TITLE}")
        return 0
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    context = FigureContext(
        mode=args.mode,
        out_dir=args.out,
        cache_dir=args.cache,
        jobs=args.jobs,
        progress=args.progress,
        datasets=args.datasets,
    )
    for name in args.only or list(FIGURES):
        started = time.perf_counter()
        print(f"[{name}] {figure_module(name).TITLE} ({context.mode})", file=sys.stderr)
        paths = figure_module(name).make(context)
        seconds = time.perf_counter() - started
        print(
            f"[{name}] wrote {len(paths)} files to {context.out_dir} in {seconds:.0f}s",
            file=sys.stderr,
        )
        for path in paths:
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
