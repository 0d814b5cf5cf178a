"""``nrnn verify [MODULE ...] [--quick | --full] [--out DIR]``.

Runs the chosen verification modules (default: all), prints a table of every check with
its measured value, tolerance, false-failure probability and verdict, and merges the
results into ``DIR/report.json`` and ``DIR/report.md`` (written atomically). Exit code
``CHECKS_FAILED`` (3) when every module ran but a check failed, 2 on a usage error (and 1,
Python's own, on a crash), so that scripts can tell a finding from an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .core import (
    DEFAULT_REPORT_DIR,
    MODULE_NAMES,
    format_table,
    load_module,
    run_module,
    write_report,
)

CHECKS_FAILED = 3
"""Exit code when the verification ran to the end and some check failed."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nrnn verify",
        description="Test the paper's claims numerically and write a report.",
    )
    parser.add_argument(
        "modules",
        nargs="*",
        metavar="MODULE",
        help=f"modules to run (default: all of {', '.join(MODULE_NAMES)})",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        dest="profile",
        action="store_const",
        const="quick",
        help="small sizes: a few minutes on 2 CPU cores",
    )
    size.add_argument(
        "--full",
        dest="profile",
        action="store_const",
        const="full",
        help="the full sizes (default)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_REPORT_DIR,
        help=f"directory of report.json and report.md (default: {DEFAULT_REPORT_DIR})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads(N) first (default: torch's default)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the verification from command-line arguments; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    names = list(dict.fromkeys(args.modules)) or list(MODULE_NAMES)
    unknown = [name for name in names if name not in MODULE_NAMES]
    if unknown:
        parser.error(
            f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(MODULE_NAMES)}"
        )
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    profile = args.profile or "full"

    reports = []
    for name in names:
        print(f"running {name} ({profile}) ...", flush=True)
        reports.append(run_module(load_module(name), profile))
    json_path, md_path = write_report(args.out, reports)
    print(format_table(reports))
    failed = sum(not check["passed"] for report in reports for check in report["checks"])
    total = sum(len(report["checks"]) for report in reports)
    print(f"\n{total - failed}/{total} checks pass; written to {json_path} and {md_path}")
    return CHECKS_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main())
