"""``nrnn verify [MODULE ...] [--profile P] [--backend local|ray] [--store DIR] [--jobs N]
[--plan] [--out DIR]``.

Runs the chosen verification modules (default: all) at a profile (default ``quick``),
prints a table of every check with its measured value, tolerance, false-failure probability
and verdict, and merges the results into ``DIR/report.json`` and ``DIR/report.md`` (written
atomically). Trained models come from the shared store of trained runs. Exit code
``CHECKS_FAILED`` (3) when every module ran but a check failed, 2 on a usage error (and 1,
Python's own, on a crash), so that scripts can tell a finding from an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nrnn.errors import CLAIM_FAILED
from nrnn.experiments import (
    REGISTRY,
    add_common_arguments,
    context_from_arguments,
    load,
    print_list,
    print_plan,
)

from .core import (
    DEFAULT_REPORT_DIR,
    default_report_dir,
    format_table,
    run_module,
    write_report,
)

CHECKS_FAILED = CLAIM_FAILED
"""Exit code when the verification ran to the end and some check failed (3; the exit codes
are defined in ``nrnn.errors``: 4 is a failure of the machinery, never a claim)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nrnn verify",
        description="Test the paper's claims numerically and write a report.",
    )
    parser.add_argument(
        "modules",
        nargs="*",
        metavar="MODULE",
        help=f"modules to run (default: all of {', '.join(REGISTRY['verify'])})",
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"directory of report.json and report.md (default: {DEFAULT_REPORT_DIR} for "
        f"the quick profile, {DEFAULT_REPORT_DIR}/<profile> for the others)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads(N) for the checks run in this process (default: "
        "torch's default; training runs always use one thread each)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the verification from command-line arguments; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print_list("verify")
        return 0
    names = list(dict.fromkeys(args.modules)) or list(REGISTRY["verify"])
    unknown = [name for name in names if name not in REGISTRY["verify"]]
    if unknown:
        parser.error(
            f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(REGISTRY['verify'])}"
        )
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    out = args.out or default_report_dir(args.profile or "quick")
    context = context_from_arguments(args, parser, out_dir=out, report_dir=out)
    if args.plan:
        return print_plan("verify", names, context)

    reports = []
    for name in names:
        print(f"running {name} ({context.profile}) ...", flush=True)
        reports.append(run_module(load("verify", name), context.profile, context))
    json_path, md_path = write_report(out, reports)
    print(format_table(reports))
    failed = sum(not check["passed"] for report in reports for check in report["checks"])
    total = sum(len(report["checks"]) for report in reports)
    print(f"\n{total - failed}/{total} checks pass; written to {json_path} and {md_path}")
    return CHECKS_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main())
