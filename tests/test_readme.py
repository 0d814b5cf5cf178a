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


def test_the_own_cell_example_runs_as_written(tmp_path):
    """The README's "Bring your own cell" section, block by block, in an empty directory:
    a Python block that starts with ``# <file>.py`` is that file, a bash block is run with
    this interpreter, any other Python block is run as a script."""
    import subprocess
    import sys

    section = README.split("## Bring your own cell", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(python|bash)\n(.*?)```", section, flags=re.DOTALL)
    ran = 0
    for language, code in blocks:
        if (
            language == "python"
            and code.startswith("# ")
            and code.split("\n", 1)[0].endswith(".py")
        ):
            (tmp_path / code.split("\n", 1)[0][2:]).write_text(code)
            continue
        command = (
            [sys.executable, "-c", code]
            if language == "python"
            else [sys.executable, *code.strip().removeprefix("python ").split()]
        )
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        ran += 1
    assert ran == 3
    assert (tmp_path / "leaky_gated_formulas" / "cell_leaky_gated.py").is_file()
    assert (tmp_path / "leaky_gated_formulas" / "leaky_gated.md").is_file()
