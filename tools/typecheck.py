"""Run mypy on the installed package layout (``make typecheck``, part of ``make test``).

The repository's folders install as subpackages of ``nrnn`` (``derivations/`` is
``nrnn.derivations``, ...; ``[tool.setuptools.package-dir]`` in pyproject.toml), which mypy
cannot see through the editable install. This script lays out that package as a tree of
symbolic links under ``build/typecheck/``, runs mypy on ``-p nrnn`` there with the
configuration in pyproject.toml, and prints the findings with the repository's own paths.

    python tools/typecheck.py [extra mypy arguments]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"


def package_folders() -> dict[str, str]:
    """{subpackage path inside the tree: repository folder}, e.g. {"nrnn/figures":
    "paper_figures"}, from pyproject.toml."""
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    mapping = setup["tool"]["setuptools"]["package-dir"]
    return {package.replace(".", "/"): folder for package, folder in mapping.items()}


def build_tree() -> dict[str, str]:
    """Lay out build/typecheck/nrnn as links into the repository; returns the folder map."""
    folders = package_folders()
    package = TREE / "nrnn"
    package.mkdir(parents=True, exist_ok=True)
    wanted = {entry.name: entry for entry in (ROOT / "nrnn").iterdir()}
    wanted |= {Path(inside).name: ROOT / folder for inside, folder in folders.items()}
    for link in package.iterdir():
        if link.is_symlink() and (link.name not in wanted or link.resolve() != wanted[link.name]):
            link.unlink()
    for name, target in wanted.items():
        link = package / name
        if not link.is_symlink():
            link.symlink_to(target, target_is_directory=target.is_dir())
    return folders


def repository_path(line: str, folders: dict[str, str]) -> str:
    """A mypy output line with its tree path (nrnn/figures/x.py) as the repository's
    (paper_figures/x.py)."""
    for inside, folder in folders.items():
        if line.startswith(inside + "/"):
            return folder + line[len(inside) :]
    return line


def main(argv: list[str]) -> int:
    folders = build_tree()
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(ROOT / ".mypy_cache"),
        "-p",
        "nrnn",
        *argv,
    ]
    result = subprocess.run(
        command, cwd=TREE, capture_output=True, text=True, env=os.environ | {"MYPYPATH": ""}
    )
    for line in (result.stdout + result.stderr).splitlines():
        print(repository_path(line, folders))
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
