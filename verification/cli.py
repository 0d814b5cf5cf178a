"""``nrnn verify [MODULE ...] [--profile P] [--backend local|ray] [--store DIR] [--jobs N]
[--plan] [--out DIR]``.

Runs the chosen verification modules (default: all) at a profile (default ``quick``),
prints a table of every check with its measured value, tolerance, false-failure probability
and verdict, and merges each module's results into ``DIR/report.json`` and ``DIR/report.md``
(written atomically) as soon as it finishes, so an interrupted command keeps the modules it
finished. Trained models come from the shared store of trained runs. Exit codes
(``nrnn.exitcodes``): 3 (``CHECKS_FAILED``) when every module ran and some check failed,
and only then; 2 on a usage error, found before any work starts; 4 when a module could not
run (a failed training run, a damaged store; its report entry then says so and holds no
verdict); 1, Python's own, on a crash.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nrnn import exitcodes
from nrnn.files import prepare_directory
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

from .core import (
    DEFAULT_REPORT_DIR,
    default_report_dir,
    error_report,
    format_table,
    run_module,
    write_report,
)

CHECKS_FAILED = exitcodes.CLAIM_DOES_NOT_HOLD
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
        help=f"modules to run (default: all of {', '.join(experiment_names('verify'))})",
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
    names = list(dict.fromkeys(args.modules)) or list(experiment_names("verify"))
    unknown = [name for name in names if name not in experiment_names("verify")]
    if unknown:
        parser.error(
            f"unknown module(s) {', '.join(unknown)}; choose from "
            + ", ".join(experiment_names("verify"))
        )
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    out = args.out or default_report_dir(args.profile or "quick")
    context = context_from_arguments(args, parser, out_dir=out, report_dir=out)
    trains = validate_request("verify", names, context)
    if args.plan:
        return print_plan("verify", names, context)
    prepare_directory(out, "--out")
    if trains:
        prepare_directory(context.store.root, "--store")

    reports = []
    for name in names:
        experiment = load("verify", name)
        print(f"running {name} ({context.profile}) ...", flush=True)
        try:
            report = run_module(experiment, context.profile, context)
        except (exitcodes.InfrastructureError, OSError) as error:
            write_report(out, [error_report(experiment, context.profile, context, str(error))])
            raise
        json_path, md_path = write_report(out, [report])  # after every module
        reports.append(report)
    print(format_table(reports))
    failed = sum(not check["passed"] for report in reports for check in report["checks"])
    total = sum(len(report["checks"]) for report in reports)
    print(f"\n{total - failed}/{total} checks pass; written to {json_path} and {md_path}")
    return CHECKS_FAILED if failed else exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
