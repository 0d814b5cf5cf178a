"""The README shows what `make reproduce` produced: its figures exist and its robustness
tables are the generated ones, line for line."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
OUTPUT = ROOT / "paper_figures" / "output"


def test_every_image_the_readme_shows_exists():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert images, "the README shows no figure"
    missing = [image for image in images if not (ROOT / image).is_file()]
    assert not missing, f"README images missing: {missing}"


@pytest.mark.parametrize("table", sorted(OUTPUT.glob("robustness_*.md")), ids=lambda p: p.name)
def test_robustness_tables_in_the_readme_are_the_generated_ones(table):
    rows = [
        line for line in table.read_text(encoding="utf-8").splitlines() if line.startswith("| ")
    ]
    assert rows
    stale = [row for row in rows if row not in README]
    assert not stale, f"README differs from {table.name}; first differing row: {stale[0]}"
