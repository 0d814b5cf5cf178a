"""What every verification module shares: the ``Check`` result and the report files.

A verification module tests one group of the paper's claims (numbered as in
``docs/design.md``). It defines ``EXPERIMENT``, an ``nrnn.workflow.experiments.Experiment`` with
sizes for every profile and ``run(sizes, context) -> list[Check]``. Each :class:`Check`
carries the numbers it measured, its pass criterion in words, the tolerance, the verdict,
the probability that it fails although the claim holds (0 for a deterministic check), the
seeds and the time taken.

To add a module, write ``verification/<name>.py`` defining ``EXPERIMENT`` and add it to the
``verify`` group of ``nrnn.workflow.experiments.REGISTRY``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nrnn.exitcodes import InfrastructureError
from nrnn.files import write_json_atomic, write_text_atomic
from nrnn.workflow.experiments import PROFILES, Context, Experiment, load
from nrnn.workflow.experiments import names as experiment_names


@dataclass
class Check:
    """The outcome of one numerical check of one claim.

    Args:
        claim: the claim's number (the list of claims in docs/design.md).
        name: a short identifier, unique within its module.
        measured: the headline numbers, name -> value (what the table prints).
        criterion: the pass criterion in words, e.g. "|a2 - (q+r)/2| <= z SE".
        tolerance: the bound the criterion uses, name -> value.
        passed: the verdict.
        false_failure: probability that the check fails although the claim holds
            (an upper bound; 0 for a deterministic check).
        seeds: the seeds of every random draw.
        seconds: wall-clock time of the check.
        details: everything else worth keeping (per-case numbers, sizes, fits).
    """

    claim: int
    name: str
    measured: dict[str, Any]
    criterion: str
    tolerance: dict[str, Any]
    passed: bool
    false_failure: float = 0.0
    seeds: list[int] = field(default_factory=list)
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return _jsonable(dataclasses.asdict(self))


# ------------------------------------------------------------------------ criteria
# The comparisons every statistical check is made of, one definition each (an estimate with
# standard error SE against a target or a limit, z from a stated false-failure probability).
def within(estimate: float, target: float, stderr: float, z: float, allowance: float = 0.0) -> bool:
    """|estimate − target| ≤ z·SE + allowance: the estimate agrees with the target."""
    return abs(estimate - target) <= z * stderr + allowance


def not_above(estimate: float, limit: float, stderr: float, z: float) -> bool:
    """estimate − z·SE ≤ limit: the estimate is not significantly above the limit (a bound
    holds)."""
    return estimate - z * stderr <= limit


def clearly_above(estimate: float, limit: float, stderr: float, z: float) -> bool:
    """estimate − z·SE > limit: the estimate is significantly above the limit."""
    return estimate - z * stderr > limit


def clearly_below(estimate: float, limit: float, stderr: float, z: float) -> bool:
    """estimate + z·SE < limit: the estimate is significantly below the limit."""
    return estimate + z * stderr < limit


def geometric(spec: tuple[float, float, int]) -> np.ndarray:
    """A geometric grid from (low, high, count): ``count`` points from ``low`` to ``high``."""
    low, high, count = spec
    return np.geomspace(low, high, int(count))


def log_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log|y| against log x (an observed order)."""
    return float(np.polyfit(np.log(x), np.log(np.abs(y)), 1)[0])


def timed(function: Callable[..., Check], *args, **kwargs) -> Check:
    """Run a check function and record its wall-clock seconds in the result."""
    started = time.perf_counter()
    check = function(*args, **kwargs)
    check.seconds = time.perf_counter() - started
    return check


def run_module(experiment: Experiment, profile: str, context: Context | None = None) -> dict:
    """Run every check of a verification experiment at ``profile``; a JSON-ready report.

    The report records the ``--set`` overrides its trained runs had ("overrides", empty
    for a module that trains nothing), so that a report is reused only for the same ones.

    Raises:
        InfrastructureError: the module returned no check: nothing was tested, and that is
            never a pass.
    """
    sizes = experiment.sizes(profile)
    context = context or Context(profile=profile)
    started = time.perf_counter()
    checks = experiment.run(sizes, context)
    if not checks:
        raise InfrastructureError(
            f"verification module {experiment.name!r} ran no check at profile {profile!r}: "
            "nothing was tested"
        )
    return {
        **_module_header(experiment, profile, context),
        "sizes": _jsonable(_fields(sizes)),
        "seconds": time.perf_counter() - started,
        "passed": all(check.passed for check in checks),
        "checks": [check.to_json() for check in checks],
    }


def error_report(experiment: Experiment, profile: str, context: Context, error: str) -> dict:
    """The report entry of a module that could not run (``"error"``; no checks, no
    verdict): it replaces the module's earlier entry, so no stale verdict stays."""
    return {**_module_header(experiment, profile, context), "passed": False, "error": error}


def _module_header(experiment: Experiment, profile: str, context: Context) -> dict:
    return {
        "module": experiment.name,
        "description": experiment.title,
        "claims": list(experiment.claims),
        "profile": profile,
        "overrides": applied_overrides(experiment, context),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "checks": [],
    }


def applied_overrides(experiment: Experiment, context: Context) -> list[str]:
    """The ``--set`` overrides that reach a module's runs (none when it trains nothing)."""
    return list(context.overrides) if experiment.plan is not None else []


# ------------------------------------------------------------------------ formatting
def format_value(value: Any) -> str:
    """A compact rendering of a measured number (or list of numbers)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value == 0 or math.isnan(value) or math.isinf(value):
            return f"{value:g}"
        return f"{value:.4g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.3e}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    return str(value)


def format_pairs(pairs: dict[str, Any]) -> str:
    return ", ".join(f"{key}={format_value(value)}" for key, value in pairs.items())


def table_rows(report: dict) -> list[tuple[str, str, str, str, str]]:
    """(check, measured, tolerance, false-failure, verdict) per check of a module report."""
    rows = []
    for check in report["checks"]:
        rows.append(
            (
                f"{report['module']}.{check['name']} (claim {check['claim']})",
                format_pairs(check["measured"]),
                format_pairs(check["tolerance"]),
                format_value(check["false_failure"]),
                "pass" if check["passed"] else "FAIL",
            )
        )
    return rows


def format_table(reports: list[dict]) -> str:
    """A plain-text table of every check of the given module reports."""
    header = ("check", "measured", "tolerance", "P(false fail)", "result")
    rows = [header] + [row for report in reports for row in table_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """``report.md``: one section per module, a table of checks and each criterion."""
    lines = [
        "# Verification report",
        "",
        "Generated by `nrnn verify`; claims as numbered in docs/design.md.",
        "",
    ]
    for module in report["modules"].values():
        heading = f"## {module['module']}: {module['description']}"
        overrides = module.get("overrides") or []
        settings = f"Profile `{module['profile']}`" + (
            ", with " + ", ".join(f"`--set {text}`" for text in overrides) if overrides else ""
        )
        if "error" in module or not module["checks"]:
            reason = module.get("error", "no check ran")
            lines += [heading, "", f"{settings}, {module['finished']}: COULD NOT RUN: {reason}", ""]
            continue
        verdict = "all checks pass" if module["passed"] else "SOME CHECKS FAIL"
        lines += [
            heading,
            "",
            f"{settings}, finished {module['finished']}, {module['seconds']:.0f} s; {verdict}.",
            "",
            "| check | claim | measured | tolerance | P(false fail) | result |",
            "|---|---|---|---|---|---|",
        ]
        for check in module["checks"]:
            lines.append(
                f"| {check['name']} | {check['claim']} | {format_pairs(check['measured'])} | "
                f"{format_pairs(check['tolerance'])} | {format_value(check['false_failure'])} | "
                f"{'pass' if check['passed'] else '**FAIL**'} |"
            )
        lines += ["", "Criteria:", ""]
        lines += [
            f"- `{check['name']}`: {check['criterion']} (seeds {check['seeds']}, "
            f"{check['seconds']:.1f} s)"
            for check in module["checks"]
        ]
        lines.append("")
    return "\n".join(lines)


CLAIM_TITLES = {
    1: "ε² coefficient = (q + r)/2",
    2: "remainder O(ε⁴), odd orders vanish",
    3: "discrete → continuous, order 1 in Δt",
    4: "∇E ℓ ≈ ∇(loss + (q + r)/2)",
    5: "stochastic stabilisation",
    6: "flatter minima",
    7: "stability bias",
    8: "larger margins",
}
"""The claims of docs/design.md that the verification modules test (claim 9, robustness,
is the robustness experiment's: ``nrnn figures --only robustness``)."""


def _headline(measured: dict[str, Any]) -> str:
    """A check's measured values: numbers as they are, a list of numbers as its range
    (``min..max``); per-case breakdowns (dicts, nested lists, labels) are left out."""
    parts = []
    for key, value in measured.items():
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            low, high = min(value), max(value)
            text = (
                format_value(low) if low == high else f"{format_value(low)}..{format_value(high)}"
            )
            parts.append(f"{key}={text}")
        elif not isinstance(value, (dict, list)):
            parts.append(f"{key}={format_value(value)}")
    return ", ".join(parts)


def format_claims(report: dict) -> str:
    """``claims.md``: one row per claim with every check that tests it (its measured
    values, its module) and the result: generated, so the README's summary of the
    verification is the last run's (the details are in ``report.md``)."""
    by_claim: dict[int, list[tuple[str, dict]]] = {}
    failed_modules = []
    for module in report["modules"].values():
        if "error" in module or not module["checks"]:
            failed_modules.append(module["module"])
            continue
        for check in module["checks"]:
            by_claim.setdefault(check["claim"], []).append((module["module"], check))
    lines = [
        "| claim | checks (module: measured) | passed | result |",
        "|---|---|---:|---|",
    ]
    for claim in sorted(by_claim):
        checks = by_claim[claim]
        passed = sum(check["passed"] for _, check in checks)
        cell = "; ".join(
            f"`{module}.{check['name']}`: {_headline(check['measured'])}"
            for module, check in checks
        )
        failing = [f"`{module}.{check['name']}`" for module, check in checks if not check["passed"]]
        result = "pass" if not failing else "**does not hold**: " + ", ".join(failing)
        title = CLAIM_TITLES.get(claim, "")
        lines.append(f"| {claim}. {title} | {cell} | {passed}/{len(checks)} | {result} |")
    if failed_modules:
        lines += ["", "Could not run: " + ", ".join(failed_modules) + " (see report.md)."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- files
def _fields(sizes: Any) -> Any:
    """A dataclass instance's fields as a dict; anything else unchanged."""
    if dataclasses.is_dataclass(sizes) and not isinstance(sizes, type):
        return dataclasses.asdict(sizes)
    return sizes


def _jsonable(value: Any) -> Any:
    """Plain JSON types: tuples to lists, numpy / torch scalars to Python numbers."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN / inf
    return value


def merge_reports(previous: dict | None, modules: list[dict]) -> dict:
    """The report after this run: the modules just run replace their earlier entries;
    modules not run keep theirs (each entry records its own profile and time)."""
    merged = dict(previous["modules"]) if previous and "modules" in previous else {}
    for module in modules:
        merged[module["module"]] = module
    ordered = {name: merged[name] for name in experiment_names("verify") if name in merged}
    ordered.update({name: value for name, value in merged.items() if name not in ordered})
    passed = bool(ordered) and all(m["passed"] and m["checks"] for m in ordered.values())
    return {"format": 1, "passed": passed, "modules": ordered}


def read_report(path: Path) -> dict | None:
    """The existing ``report.json``, or None if there is none or it is unreadable."""
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and report.get("format") == 1 else None


def write_report(out_dir: Path, modules: list[dict]) -> tuple[Path, Path]:
    """Merge ``modules`` into ``out_dir/report.json`` and rewrite ``report.md`` and the
    summary by claim, ``claims.md``."""
    out_dir = Path(out_dir)
    report = merge_reports(read_report(out_dir / "report.json"), modules)
    json_path = write_json_atomic(out_dir / "report.json", report)
    md_path = write_text_atomic(out_dir / "report.md", format_markdown(report))
    write_text_atomic(out_dir / "claims.md", format_claims(report))
    return json_path, md_path


DEFAULT_REPORT_DIR = Path("verification")
"""Where ``nrnn verify`` writes ``report.json`` and ``report.md`` by default (quick profile)."""


def default_report_dir(profile: str) -> Path:
    """The report directory of a profile: :data:`DEFAULT_REPORT_DIR` for quick (the committed
    report), ``verification/<profile>`` for the others, so they never overwrite it."""
    return DEFAULT_REPORT_DIR if profile == "quick" else DEFAULT_REPORT_DIR / profile


def find_check(module_report: dict, name: str) -> dict:
    """The check ``name`` of a module report (a dict of report.json); KeyError if absent."""
    for check in module_report["checks"]:
        if check["name"] == name:
            return check
    raise KeyError(f"module {module_report.get('module')!r} has no check {name!r}")


def module_report_at(
    name: str,
    context: Context,
    *,
    usable: Callable[[dict], bool] | None = None,
) -> dict:
    """The report of verification module ``name`` at ``context.profile``, computed at most
    once.

    Read from ``report.json`` in ``context.report_dir`` or, failing that, in one of
    ``context.report_sources``, when it holds the module at the profile, with the same
    ``--set`` overrides, with checks (not an error entry), and ``usable(module_report)`` is
    true (default: always); otherwise the module is run (its trained runs through the
    context's store and backend) and merged into ``context.report_dir/report.json`` (the
    sources are never written). Figures use this, so that ``nrnn verify`` followed by
    ``nrnn figures`` does not compute anything twice, and ``nrnn figures --set ...`` never
    draws the report of other settings.

    Returns:
        the module report as stored in ``report.json`` ("module", "profile", "sizes",
        "checks": a list of check dicts with "name", "measured", "details", ...).
    """
    experiment = load("verify", name)
    wanted = {"profile": context.profile, "overrides": applied_overrides(experiment, context)}
    reasons = []
    for directory in (context.report_dir, *context.report_sources):
        path = directory / "report.json"
        stored = (read_report(path) or {}).get("modules", {}).get(name)
        found = None if stored is None else {key: stored.get(key, []) for key in wanted}
        if stored is None:
            reasons.append(f"{path}: absent")
        elif found != wanted:
            reasons.append(f"{path}: at {found}")
        elif "error" in stored or not stored.get("checks"):
            reasons.append(f"{path}: its last run failed")
        elif usable is not None and not usable(stored):
            reasons.append(f"{path}: lacks data this figure needs")
        else:
            return stored
    context.log(
        f"verification module {name!r} at {wanted} is not in a report ({'; '.join(reasons)}); "
        f"running it ..."
    )
    fresh = run_module(experiment, context.profile, context)
    write_report(context.report_dir, [fresh])
    return json.loads(json.dumps(fresh))  # the same plain-JSON form as a stored entry


def report_figure(
    name: str,
    module: str,
    title: str,
    draw: Callable[[dict, Path], list[Path]],
    usable: Callable[[dict], bool] | None = None,
) -> Experiment:
    """A figure experiment drawn from verification module ``module``'s report.

    At every profile it reads (or runs) the module at that profile (:func:`module_report_at`,
    with ``usable``) and calls ``draw(module_report, out_dir)``; its plan is the module's,
    so ``--plan`` lists the trained runs behind the figure.
    """

    def make(profile: str, context: Context) -> list[Path]:
        return draw(module_report_at(module, context, usable=usable), context.out_dir)

    def plan(profile: str, context: Context):
        experiment = load("verify", module)
        if experiment.plan is None:
            return []
        return experiment.plan(experiment.sizes(profile), context)

    return Experiment(
        name=name,
        title=title,
        profiles={profile: profile for profile in PROFILES},
        run=make,
        plan=plan,
    )
