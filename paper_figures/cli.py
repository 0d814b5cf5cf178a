"""``nrnn figures``: make the paper's figures and tables.

    nrnn figures [--profile smoke|quick|medium|full] [--only NAME ...] [--datasets A,B]
                 [--backend local|ray [--address auto|HOST:PORT]] [--store DIR] [--jobs N]
                 [--plan] [--out DIR] [--no-progress] [--list]

``quick`` (the default) runs on 2 CPU cores in minutes; ``medium`` is the paper's
pixel-MNIST robustness experiment at a size 2 cores finish in about two hours; ``full`` the
paper's sizes, for a cluster or a GPU. Trained runs come from the shared store (``--store``),
so a second call only redraws and an interrupted one resumes. The quick profile writes into
``paper_figures/output`` (the committed figures) and reads ``verification/report.json``;
the other profiles write into ``paper_figures/output/<profile>`` and read
``verification/<profile>/report.json``. With ``--out X`` (and no ``--report``) the figures
still read that report, but a verification module they have to run (absent there, or run
with other ``--set`` overrides) is written to ``X/report.json``, never under
``verification/``.

Exit codes (``nrnn.exitcodes``): 0 when every figure was written; 2 on a usage error, found
before any work starts; 4 when a training run failed (nothing is written then: no table
shrinks silently, no previous output is overwritten by an incomplete one).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nrnn.files import prepare_directory
from nrnn.verification.core import DEFAULT_REPORT_DIR, default_report_dir
from nrnn.workflow.experiments import (
    add_common_arguments,
    context_from_arguments,
    load,
    print_list,
    print_plan,
    validate_request,
)
from nrnn.workflow.experiments import (
    names as experiment_names,
)

OUTPUT = Path("paper_figures") / "output"


def default_out(profile: str) -> Path:
    return OUTPUT if profile == "quick" else OUTPUT / profile


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nrnn figures",
        description="Make the paper's figures and tables (PNG, PDF, CSV/JSON, Markdown).",
    )
    add_common_arguments(parser)
    figures = list(experiment_names("figures"))
    parser.add_argument(
        "--only",
        action="append",
        choices=figures,
        metavar="NAME",
        help=f"make only this figure (repeatable); one of {', '.join(figures)}",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output directory (default {OUTPUT} for the quick profile, "
        f"{OUTPUT}/<profile> for the others)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="directory of the verification report that some figures read, and where they "
        f"write a module they have to run (default {DEFAULT_REPORT_DIR}, or "
        f"{DEFAULT_REPORT_DIR}/<profile> beyond quick; with --out X: read there, written to X)",
    )
    parser.add_argument(
        "--datasets",
        type=_dataset_list,
        help="comma-separated datasets instead of each figure's default, "
        "e.g. ecg5000,digits,mnist-rows",
    )
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
        print_list("figures")
        return 0
    profile = args.profile or "quick"
    out = args.out or default_out(profile)
    report_sources: tuple[Path, ...]
    if args.report is not None:
        report_dir, report_sources = args.report, ()
    elif args.out is not None:
        report_dir, report_sources = args.out, (default_report_dir(profile),)
    else:
        report_dir, report_sources = default_report_dir(profile), ()
    context = context_from_arguments(
        args,
        parser,
        out_dir=out,
        report_dir=report_dir,
        report_sources=report_sources,
        datasets=args.datasets,
    )
    names = list(dict.fromkeys(args.only or experiment_names("figures")))
    trains = validate_request("figures", names, context)
    if args.plan:
        return print_plan("figures", names, context)
    prepare_directory(out, "--out")
    if args.report is not None:
        prepare_directory(args.report, "--report")
    if trains:
        prepare_directory(context.store.root, "--store")
    for name in names:
        experiment = load("figures", name)
        started = time.perf_counter()
        print(f"[{name}] {experiment.title} ({context.profile})", file=sys.stderr)
        paths = experiment.run(experiment.sizes(context.profile), context)
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
