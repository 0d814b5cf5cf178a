"""Command line of the benchmarks.

``nrnn bench [--profile P] [--only NAME] [--threads N] [--out DIR] ...`` (also ``python -m
nrnn.benchmarks``) runs the benchmarks of the ``bench`` group of
``nrnn.workflow.experiments.REGISTRY``, prints a table and writes ``DIR/<benchmark>.json``
atomically.

To add a benchmark, write a module with ``EXPERIMENT`` (an ``nrnn.workflow.experiments.Experiment``
whose ``parts`` can be chosen with ``--only`` and whose ``run(sizes, context)`` returns
``{"settings", "parts"}``, each part a dict with an ``aims`` list) and ``summary_rows(result)``,
and add it to the ``bench`` group of the registry.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import torch

from nrnn.files import write_json_atomic
from nrnn.workflow.experiments import (
    Context,
    Experiment,
    add_common_arguments,
    context_from_arguments,
    load,
    print_plan,
)
from nrnn.workflow.experiments import (
    names as experiment_names,
)

from .timing import environment

DEFAULT_OUT = Path("benchmarks") / "results"


def _module(name: str):
    """The benchmark module ``name`` (for its ``summary_rows``)."""
    return importlib.import_module(f"{__package__}.{name}")


def resolve_selection(only: list[str] | None) -> dict[str, tuple[str, ...] | None]:
    """Benchmark name -> chosen parts (None: all) from ``--only`` values.

    A value is a benchmark (``model_speed``), one of its parts (``model_speed.vs_torch_rnn``)
    or a part name alone when no other benchmark has a part of that name.
    """
    if not only:
        return {name: None for name in experiment_names("bench")}
    chosen: dict[str, list[str] | None] = {}
    for value in only:
        name, part = _resolve_one(value)
        parts = chosen.get(name, [])
        if part is None or parts is None:
            chosen[name] = None
        else:
            if part not in parts:
                parts.append(part)
            chosen[name] = parts
    return {name: None if parts is None else tuple(parts) for name, parts in chosen.items()}


def _resolve_one(value: str) -> tuple[str, str | None]:
    benches = {name: load("bench", name) for name in experiment_names("bench")}
    if value in benches:
        return value, None
    name, dot, part = value.partition(".")
    if dot and name in benches and part in benches[name].parts:
        return name, part
    owners = [bench.name for bench in benches.values() if value in bench.parts]
    if len(owners) == 1:
        return owners[0], value
    raise ValueError(f"unknown benchmark {value!r}; choose from: {', '.join(choices())}")


def choices() -> list[str]:
    """Every accepted ``--only`` value."""
    names: list[str] = []
    for bench in (load("bench", name) for name in experiment_names("bench")):
        names.append(bench.name)
        names.extend(f"{bench.name}.{part}" for part in bench.parts)
    return names


def run_benchmark(
    bench: Experiment, *, profile: str, parts: tuple[str, ...] | None, out_dir: Path
) -> tuple[dict, Path]:
    """Run one benchmark, add the environment, write ``out_dir/<name>.json``."""
    body = bench.run(bench.sizes(profile), Context(profile=profile, parts=parts))
    result = {
        "benchmark": bench.name,
        "description": bench.title,
        "profile": profile,
        "environment": environment(),
        **body,
    }
    result["aims_met"] = all(item["met"] for item in collect_aims(result))
    result["checks_passed"] = not failed_checks(result)
    path = write_json_atomic(out_dir / f"{bench.name}.json", result)
    return result, path


def collect_aims(result: dict) -> list[dict]:
    """Every aim of every part, each with its part name added."""
    return [
        {"part": part_name, **item}
        for part_name, part in result["parts"].items()
        for item in part.get("aims", [])
    ]


def failed_checks(result: dict) -> list[str]:
    """Parts whose fairness check failed (their comparison is not meaningful)."""
    return [
        part_name
        for part_name, part in result["parts"].items()
        if "fairness" in part and not part["fairness"]["agrees"]
    ]


def format_table(result: dict, path: Path) -> str:
    """A readable table of one benchmark result."""
    rows = list(_module(result["benchmark"]).summary_rows(result))
    for item in collect_aims(result):
        verdict = "met" if item["met"] else "NOT MET"
        rows.append((f"aim: {item['description']}", f"{item['value']:.2f}  {verdict}"))
    for part_name in failed_checks(result):
        rows.append((f"check: {part_name}", "FAILED (results not comparable)"))
    env = result["environment"]
    load = env["load_average_1_5_15min"]
    header = (
        f"{result['benchmark']} ({result['profile']}): torch {env['torch_version']}, "
        f"{env['torch_threads']} threads, {env['cpu_count']} CPUs"
        + (f", load {load[0]:.1f} at start" if load else "")
    )
    width = max(len(label) for label, _ in rows)
    lines = [header, "-" * len(header)]
    lines += [f"{label.ljust(width)}  {value}" for label, value in rows]
    if load and env["cpus_available"] and load[0] >= 0.5 * env["cpus_available"]:
        lines.append(
            "warning: the machine was busy at the start; with several torch "
            "threads a busy CPU can slow every step many times over (--threads 1 helps)"
        )
    lines.append(f"written to {path}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nrnn bench",
        description="Run the timed benchmarks and write one JSON file per benchmark.",
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"directory for the JSON results (default: {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this benchmark or benchmark.part (repeatable); see --list",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads(N) first (default: torch's default)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when an aim is not met or a check fails"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks from command-line arguments; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for name in experiment_names("bench"):
            bench = load("bench", name)
            print(f"{bench.name}: {bench.title}")
            for part in bench.parts:
                print(f"  {bench.name}.{part}")
        return 0
    profile = args.profile or "quick"
    if args.overrides:
        parser.error("--set changes the configuration of trained runs; benchmarks train none")
    try:
        selection = resolve_selection(args.only)
    except ValueError as error:
        parser.error(str(error))
    if args.plan:
        return print_plan("bench", list(selection), context_from_arguments(args, parser))
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)

    status = 0
    for name, parts in selection.items():
        result, path = run_benchmark(
            load("bench", name), profile=profile, parts=parts, out_dir=args.out
        )
        print(format_table(result, path))
        print()
        if args.strict and not (result["aims_met"] and result["checks_passed"]):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
