"""Copy the generated tables into the README (``make reproduce`` runs it last).

A region of the README between

    <!-- generated from paper_figures/output/trained_metrics.md, headings +2 -->
    <!-- end generated -->

holds that file's text: its headings moved down by the stated number of levels and its
relative links (figures, data files) rewritten to point from the README's folder. So the
numbers the README shows are the ones the last run wrote; ``tests/test_readme.py`` fails
when a region and its file disagree.

    python tools/readme_sync.py          rewrite the regions
    python tools/readme_sync.py --check  exit 1 (and name them) when regions are stale
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from nrnn.files import write_text_atomic

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

_START = re.compile(r"^<!-- generated from (?P<path>\S+?)(?:, headings \+(?P<shift>\d+))? -->$")
_END = "<!-- end generated -->"
_HEADING = re.compile(r"^(#+) ")
_LINK = re.compile(r"(!?\[[^\]]*\]\()(?P<target>[^)\s]+)\)")


@dataclass(frozen=True)
class Region:
    """Lines ``start`` < i < ``end`` of the README come from ``path`` (relative to the
    repository), headings moved down by ``shift`` levels."""

    path: str
    shift: int
    start: int
    end: int


def regions(lines: list[str]) -> list[Region]:
    """Every generated region of the README's lines; a start without its end is an error."""
    found = []
    index = 0
    while index < len(lines):
        match = _START.match(lines[index])
        if match:
            try:
                end = lines.index(_END, index + 1)
            except ValueError:
                raise ValueError(
                    f"README line {index + 1}: {lines[index]!r} has no {_END!r} after it"
                ) from None
            found.append(Region(match["path"], int(match["shift"] or 0), index, end))
            index = end
        index += 1
    return found


def rendered(region: Region, root: Path = ROOT) -> list[str]:
    """The lines a region should hold: its file with shifted headings and links rewritten
    from the file's folder to the README's."""
    source = root / region.path
    folder = Path(region.path).parent

    def relink(match: re.Match[str]) -> str:
        target = match["target"]
        if "://" in target or target.startswith(("/", "#")):
            return match.group(0)
        return f"{match.group(1)}{(folder / target).as_posix()})"

    lines = []
    for line in source.read_text(encoding="utf-8").strip("\n").split("\n"):
        line = _HEADING.sub(lambda m: "#" * (len(m.group(1)) + region.shift) + " ", line)
        lines.append(_LINK.sub(relink, line))
    return lines


def synchronised(text: str, root: Path = ROOT) -> str:
    """The README ``text`` with every generated region filled from its file."""
    lines = text.split("\n")
    for region in reversed(regions(lines)):
        lines[region.start + 1 : region.end] = rendered(region, root)
    return "\n".join(lines)


def stale(text: str, root: Path = ROOT) -> list[str]:
    """The files whose region in ``text`` differs from what they hold now."""
    lines = text.split("\n")
    return [
        region.path
        for region in regions(lines)
        if lines[region.start + 1 : region.end] != rendered(region, root)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale regions")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    if args.check:
        outdated = stale(text)
        for path in outdated:
            print(f"README region from {path} is stale: run python tools/readme_sync.py")
        return 1 if outdated else 0
    updated = synchronised(text)
    if updated != text:
        write_text_atomic(README, updated)
        print("README.md: generated regions updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
