"""Two computations of a robustness table compared: does a table computed on another machine
(or another kernel path of the same machine) reproduce the committed one within its
confidence intervals, and do its verdicts carry over?

On one machine, with one thread per run, the tables are bitwise reproducible. Another CPU
rounds differently, training amplifies the rounding, and per-seed accuracies move; what the
seeds support is the table's means within their intervals and the contrasts' verdicts. This
module measures both, for two ``robustness_<dataset>.json`` files of the same experiment:

- every cell (a variant's clean accuracy, and its accuracy under each perturbation and
  level): is the other computation's mean over seeds inside the committed mean's two-sided
  95 % t interval (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n)?
- every contrast both computed: the committed and the other verdict, the largest shift of
  its paired differences (clean, and each perturbation's mean drop), and the committed
  interval bound nearest to zero (a verdict whose interval ends close to zero can change
  with round-off alone).

    python -m nrnn.figures.robustness_compare COMMITTED.json OTHER.json --label TEXT --out MD
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from nrnn.files import write_text_atomic


def _half_width(std: float, seeds: int) -> float:
    """Half-width of the two-sided 95 % t interval of a mean over ``seeds`` values."""
    from scipy import stats as scipy_stats

    return float(scipy_stats.t.ppf(0.975, seeds - 1)) * std / math.sqrt(seeds)


def _cells(variant: dict) -> list[tuple[str, float, float]]:
    """(label, mean, standard deviation) of a variant's clean accuracy and of every
    perturbation level."""
    cells = [("clean", variant["clean"]["mean"], variant["clean"]["std"])]
    for name, perturbation in variant["perturbations"].items():
        for level, mean, std in zip(
            perturbation["levels"], perturbation["mean"], perturbation["std"], strict=True
        ):
            cells.append((f"{name} {level:g}", mean, std))
    return cells


def _differences(contrast: dict) -> dict[str, dict]:
    """A contrast's paired differences: clean, and each perturbation's mean drop."""
    found = {"clean": contrast["clean"]}
    for name, perturbation in contrast["perturbations"].items():
        found[name] = perturbation["mean_drop"]
    return found


def compare(committed: dict, other: dict) -> dict[str, Any]:
    """Compare two robustness summaries of one dataset (variants matched by name, contrasts
    by variant and reference; those only one of them has are left out and counted).

    Returns:
        ``cells``: one row per cell of a variant both have (variant, cell, committed mean,
        half-width, other mean, inside); ``per_seed_clean``: how many per-seed clean
        accuracies differ, of how many; ``contrasts``: one row per contrast both have
        (variant, reference, the two verdicts, largest shift of a paired difference, the
        committed interval bound nearest zero); ``left_out``: variants and contrasts only
        one summary has.

    Raises:
        ValueError: the summaries are of different datasets, or a variant's seeds differ.
    """
    if committed["dataset"] != other["dataset"]:
        raise ValueError(
            f"committed and other are of different datasets: {committed['dataset']!r} "
            f"and {other['dataset']!r}"
        )
    theirs = {variant["name"]: variant for variant in other["variants"]}
    cells, differing, per_seed = [], 0, 0
    left_out = []
    for variant in committed["variants"]:
        name = variant["name"]
        if name not in theirs:
            left_out.append(name)
            continue
        if variant["seeds"] != theirs[name]["seeds"]:
            raise ValueError(
                f"variant {name!r}: the seeds differ ({variant['seeds']} and "
                f"{theirs[name]['seeds']}); the comparison pairs the same seeds"
            )
        seeds = len(variant["seeds"])
        for (label, mean, std), (_, other_mean, _) in zip(
            _cells(variant), _cells(theirs[name]), strict=True
        ):
            half = _half_width(std, seeds)
            inside = abs(other_mean - mean) <= half
            cells.append(
                {
                    "variant": name,
                    "cell": label,
                    "committed": mean,
                    "half_width": half,
                    "other": other_mean,
                    "inside": inside,
                }
            )
        pairs = zip(variant["clean"]["per_seed"], theirs[name]["clean"]["per_seed"], strict=True)
        for mine, their in pairs:
            per_seed += 1
            differing += mine != their
    their_contrasts = {(c["variant"], c["reference"]): c for c in other["contrasts"]}
    contrasts = []
    for contrast in committed["contrasts"]:
        key = (contrast["variant"], contrast["reference"])
        if key not in their_contrasts:
            left_out.append(" vs ".join(key))
            continue
        mine, their = _differences(contrast), _differences(their_contrasts[key])
        shift = max(abs(mine[k]["mean_difference"] - their[k]["mean_difference"]) for k in mine)
        nearest = min(abs(bound) for k in mine for bound in mine[k]["ci95"])
        contrasts.append(
            {
                "variant": key[0],
                "reference": key[1],
                "committed": contrast["verdict"],
                "other": their_contrasts[key]["verdict"],
                "largest_shift": shift,
                "nearest_bound": nearest,
            }
        )
    return {
        "dataset": committed["dataset"],
        "cells": cells,
        "per_seed_clean": {"differ": differing, "of": per_seed},
        "contrasts": contrasts,
        "left_out": left_out,
    }


def to_markdown(comparison: dict, label: str) -> str:
    """The comparison as Markdown: a sentence of counts, the cells outside their interval,
    the contrasts with both verdicts (differences in percentage points), and the resolved
    verdicts that carried over."""
    cells = comparison["cells"]
    outside = [cell for cell in cells if not cell["inside"]]
    changed = [c for c in comparison["contrasts"] if c["committed"] != c["other"]]
    seeds = comparison["per_seed_clean"]
    lines = [
        f"**{comparison['dataset']}, {label}**: {len(cells) - len(outside)} of {len(cells)} "
        f"table means inside the committed 95 % interval of their mean; "
        f"{seeds['differ']} of {seeds['of']} per-seed clean accuracies differ; "
        f"{len(comparison['contrasts']) - len(changed)} of {len(comparison['contrasts'])} "
        "verdicts the same.",
        "",
    ]
    if outside:
        lines += ["| model | cell | committed (%) | ± | other (%) |", "|---|---|---:|---:|---:|"]
        for cell in outside:
            lines.append(
                f"| {cell['variant']} | {cell['cell']} | {100 * cell['committed']:.1f} | "
                f"{100 * cell['half_width']:.1f} | {100 * cell['other']:.1f} |"
            )
        lines.append("")
    lines += [
        "| model | against | verdict, committed | verdict, other | largest shift of a "
        "difference (points) | committed interval bound nearest zero (points) |",
        "|---|---|---|---|---:|---:|",
    ]
    for contrast in comparison["contrasts"]:
        lines.append(
            f"| {contrast['variant']} | {contrast['reference']} | {contrast['committed']} | "
            f"{contrast['other']} | {100 * contrast['largest_shift']:.1f} | "
            f"{100 * contrast['nearest_bound']:.1f} |"
        )
    kept = [
        f"{c['variant']} vs {c['reference']} ({c['committed']})"
        for c in comparison["contrasts"]
        if c["committed"] == c["other"] and c["committed"] != "not shown"
    ]
    lines += [
        "",
        "Verdicts that carried over, other than *not shown*: "
        + (", ".join(kept) if kept else "none")
        + ". A verdict changes when an interval bound crosses zero: the shift of a difference "
        "against its committed bound nearest zero shows how close each was.",
    ]
    if comparison["left_out"]:
        lines += ["", "Only in one of them: " + ", ".join(comparison["left_out"]) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("committed", type=Path, help="the committed robustness_<dataset>.json")
    parser.add_argument("other", type=Path, help="the same table computed elsewhere")
    parser.add_argument("--label", required=True, help="what the other computation is")
    parser.add_argument("--out", type=Path, required=True, help="the Markdown file to write")
    arguments = parser.parse_args(argv)
    for name in ("committed", "other"):
        if not getattr(arguments, name).is_file():
            parser.error(f"{name}: no file {str(getattr(arguments, name))!r}")
    committed, other = (
        json.loads(path.read_text()) for path in (arguments.committed, arguments.other)
    )
    try:
        comparison = compare(committed, other)
    except ValueError as error:
        parser.error(str(error))
    write_text_atomic(arguments.out, to_markdown(comparison, arguments.label))
    return 0


if __name__ == "__main__":
    sys.exit(main())
