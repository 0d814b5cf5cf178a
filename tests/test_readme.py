"""The README runs and says what the code does: every code block is run by the test its
directive names (``tests/readme_blocks.py``), the defaults it states are the parser's, its
figures exist and its robustness tables are the generated ones, line for line."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from nrnn import experiments

import readme_blocks
from readme_blocks import Block, blocks, parse_directive, shell_commands, smoke_command
from tool_modules import load_tool

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
OUTPUT = ROOT / "paper_figures" / "output"
VENV_BIN = Path(sys.executable).parent
COMMAND_TIMEOUT = 600  # seconds per shell command


# ------------------------------------------------------------------- the mechanism
def test_every_block_has_a_directive_the_test_understands():
    found = [block for block in blocks(README) if block.kind]
    assert found, "the README has no code block"
    problems = []
    for block in found:
        try:
            parse_directive(block)
        except ValueError as error:
            problems.append(str(error))
    assert not problems, "\n".join(problems)


SAMPLE = """Intro.

<!-- readme-test: run -->
```python
x = 1
```

<!-- readme-test: skip runs for hours -->

```bash
nrnn verify --full
```

```text
a diagram, not code
```

```toml
[data]
```

<!-- readme-test: skip because I said so -->
```sh
ls
```

<!-- readme-test: file my_cell.py -->
```python
y = 2
```

<!-- readme-test: run smoke -->
```python
z = 3
```
"""


def test_blocks_are_found_with_the_directive_just_before_them():
    found = blocks(SAMPLE)
    assert [(b.line, b.language, b.kind) for b in found] == [
        (4, "python", "python"),
        (10, "bash", "shell"),
        (14, "text", None),
        (18, "toml", "toml"),
        (23, "sh", "shell"),
        (28, "python", "python"),
        (33, "python", "python"),
    ]
    assert found[0].code == "x = 1\n"
    assert parse_directive(found[0]) == readme_blocks.Directive("run")
    assert parse_directive(found[1]) == readme_blocks.Directive("skip", "runs for hours")
    assert found[2].directive is None  # no language that needs one
    assert parse_directive(found[5]) == readme_blocks.Directive("file", "my_cell.py")


@pytest.mark.parametrize(
    "index, message",
    [
        (3, "no `<!-- readme-test"),  # a toml block without a directive
        (4, "skip reason 'because I said so' is not one of"),
        (6, "not understood"),  # `run smoke` is for shell blocks only
    ],
)
def test_a_missing_or_unknown_directive_is_an_error_naming_the_line(index, message):
    block = blocks(SAMPLE)[index]
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        parse_directive(block)
    assert f"README.md:{block.line}" in str(error.value)


def test_shell_commands_join_continuations_and_drop_comments():
    code = "# a comment\nnrnn figures --only robustness \\\n    --jobs 64\n\nray stop\n"
    assert shell_commands(code) == ["nrnn figures --only robustness --jobs 64", "ray stop"]


@pytest.mark.parametrize(
    "command, expected",
    [
        (
            "nrnn figures --only robustness --profile full --backend ray --plan",
            "nrnn figures --only robustness --backend ray --plan --profile smoke "
            "--store S/store --out S/out",
        ),
        (
            "nrnn verify --quick --store /shared/runs --out=elsewhere",
            "nrnn verify --profile smoke --store S/store --out S/out",
        ),
        ("nrnn bench", "nrnn bench --profile smoke --store S/store --out S/out"),
        ("nrnn train --dataset digits", "nrnn train --dataset digits"),
        ("python -m nrnn.derivations --check", "python -m nrnn.derivations --check"),
    ],
)
def test_smoke_commands_use_the_smoke_profile_and_a_scratch_store(command, expected):
    assert smoke_command(command, Path("S")) == expected


# ----------------------------------------------------------------- running the README
def run_shell(block: Block, command: str, scratch: Path) -> None:
    environment = os.environ | {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=scratch,
        env=environment,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )
    assert result.returncode == 0, (
        f"{block.where}: `{command}` exited {result.returncode}\n{result.stderr[-3000:]}"
    )


def run_python(block: Block, namespace: dict) -> None:
    importlib.invalidate_caches()  # modules the previous blocks wrote or generated
    try:
        exec(compile(block.code, block.where, "exec"), namespace)
    except Exception as error:
        raise AssertionError(f"{block.where} raised {error!r}") from error


def test_the_readme_runs(tmp_path, monkeypatch):
    """Every block, in order, as its directive says; the counts of what ran are checked so
    that a block silently not running fails the test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    modules_before = set(sys.modules)
    namespace: dict = {"__name__": "__readme__"}
    ran: dict[str, int] = {}
    try:
        with torch.random.fork_rng():
            for block in blocks(README):
                if not block.kind:
                    continue
                directive = parse_directive(block)
                if directive.action == "skip":
                    continue
                if directive.action == "file":
                    (tmp_path / directive.argument).write_text(block.code, encoding="utf-8")
                elif directive.action == "parse":
                    tomllib.loads(block.code)
                elif block.kind == "python":
                    run_python(block, namespace)
                else:
                    for command in shell_commands(block.code):
                        if directive.action == "run smoke":
                            command = smoke_command(command, tmp_path / "smoke")
                        run_shell(block, command, tmp_path)
                ran[directive.action] = ran.get(directive.action, 0) + 1
    finally:
        for name in set(sys.modules) - modules_before:
            module_file = getattr(sys.modules[name], "__file__", None) or ""
            if module_file.startswith(str(tmp_path)):
                del sys.modules[name]
    assert ran.get("run", 0) >= 4 and ran.get("file", 0) >= 2, ran
    # the own-cell example: its derivation wrote the formulas and the formula sheet
    assert (tmp_path / "leaky_gated_formulas" / "cell_leaky_gated.py").is_file()
    assert (tmp_path / "leaky_gated_formulas" / "leaky_gated.md").is_file()


# -------------------------------------------------------------- what the README states
def common_flags_table() -> dict[str, str]:
    """The README's table of the common flags: {first flag of a row: the whole row}."""
    section = README.split("take the same flags:", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in section.splitlines() if line.startswith("| `--")]
    return {re.match(r"\| `(--[a-z-]+)", row)[1]: row for row in rows}


def test_the_common_flags_and_their_defaults_are_the_parsers():
    """Every flag of the common parser is in the README's table, and each default the
    table states is the parser's (the profile's through ``DEFAULT_PROFILE``)."""
    parser = argparse.ArgumentParser()
    experiments.add_common_arguments(parser)
    table = common_flags_table()
    text = "\n".join(table.values())
    options = {option for action in parser._actions for option in action.option_strings}
    missing = {option for option in options - {"-h", "--help"} if f"`{option}" not in text}
    assert not missing, f"flags missing from the README's table: {sorted(missing)}"
    stated = {
        flag: match[1]
        for flag, row in table.items()
        if (match := re.search(r"\(default `([^`]+)`", row))
    }
    assert stated == {"--profile": "quick", "--store": ".cache/runs"}, stated
    assert parser.get_default("profile") is None  # resolved to DEFAULT_PROFILE
    assert stated["--profile"] == experiments.DEFAULT_PROFILE
    assert Path(stated["--store"]) == parser.get_default("store")
    # the defaults stated in words
    assert "on this machine (default)" in table["--backend"]
    assert parser.get_default("backend") == "local"
    assert "(default: all cores / `--threads-per-run`;" in table["--jobs"]
    assert (
        "with `--address`: the most runs submitted to the cluster at once, default no limit"
        in (table["--jobs"])
    )
    assert parser.get_default("jobs") is None  # resolved from the cores and the threads
    assert "(default 1;" in table["--gpus-per-run"]
    assert parser.get_default("gpus_per_run") is None  # one GPU (RayBackend)
    assert "(default 1," in table["--threads-per-run"]
    assert parser.get_default("threads_per_run") == 1
    assert "(default: start a local Ray instance" in table["--address"]
    assert parser.get_default("address") is None


def test_the_regularizer_speed_is_stated_once_and_as_its_json_says():
    """The README had two tables of the regularizer's cost that contradicted each other
    (the JSON matched the second): one is left, and its numbers are the JSON's."""
    import json

    result = json.loads((ROOT / "benchmarks/results/regularizer_speed.json").read_text())
    ratios = result["parts"]["vs_training_step"]["ratio_to_training_step"]
    speedup = result["parts"]["vs_oracle"]["speedup_over_oracle"]
    rows = [
        line
        for line in README.splitlines()
        if line.startswith("|") and re.search(r"(probe|exact).*(training step|oracle)", line)
    ]
    expected = {
        "probe regularizer (K = 8) + backward / training step, M = 140 / 784": [
            ratios["140"]["probe"],
            ratios["784"]["probe"],
        ],
        "exact regularizer + backward / training step, M = 140 / 784": [
            ratios["140"]["exact"],
            ratios["784"]["exact"],
        ],
        "exact regularizer vs the autograd oracle (d = 32, M = 64)": [speedup],
    }
    assert len(rows) == len(expected), rows
    for row in rows:
        label, measured = (cell.strip() for cell in row.split("|")[1:3])
        stated = [float(number) for number in re.findall(r"[0-9.]+", measured)]
        assert stated == pytest.approx(expected[label], rel=0.01), row


# ----------------------------------------------------------------- figures and tables
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


def test_the_generated_tables_in_the_readme_are_the_committed_outputs():
    readme_sync = load_tool("readme_sync")
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme_sync.regions(text.split("\n")), "the README has no generated regions"
    assert readme_sync.stale(text) == [], "run python tools/readme_sync.py"


def test_readme_sync_shifts_headings_rewrites_links_and_notices_a_change(tmp_path):
    readme_sync = load_tool("readme_sync")
    (tmp_path / "out").mkdir()
    table = tmp_path / "out" / "table.md"
    table.write_text(
        "# Title\n\n![plot](plot.png) [site](https://x.org/a)\n\n| a |\n|---|\n| 1 |\n"
    )
    text = (
        "intro\n<!-- generated from out/table.md, headings +2 -->\nold\n<!-- end generated -->\nend"
    )
    assert readme_sync.stale(text, tmp_path) == ["out/table.md"]
    updated = readme_sync.synchronised(text, tmp_path)
    assert updated.split("\n")[2:5] == [
        "### Title",
        "",
        "![plot](out/plot.png) [site](https://x.org/a)",
    ]
    assert updated.endswith("| 1 |\n<!-- end generated -->\nend")
    assert readme_sync.stale(updated, tmp_path) == []
    table.write_text("# Title\n\n| a |\n|---|\n| 2 |\n")
    assert readme_sync.stale(updated, tmp_path) == ["out/table.md"]
    with pytest.raises(ValueError, match="has no"):
        readme_sync.regions(["<!-- generated from out/table.md -->", "text"])
