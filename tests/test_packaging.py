"""Packaging: a wheel built from this checkout installs under the one import name ``nrnn``
(nothing generic lands in site-packages), carries its data files and version, and its
``nrnn derive --check`` and ``nrnn verify --profile smoke`` run from a fresh virtual
environment outside the checkout."""

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


BUILD_LEFTOVERS = shutil.ignore_patterns(
    ".*", "build", "*.egg-info", "__pycache__", "output", "runs"
)
"""What a build leaves in the checkout (a module removed since the last build stays in
``build/lib`` and would land in the wheel), caches and outputs: not copied for the build."""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source") / "checkout"
    shutil.copytree(ROOT, source, ignore=BUILD_LEFTOVERS)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("noisy_rnn-*.whl")
    return path


def test_the_wheel_holds_one_top_level_package_with_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert {entry for entry in top_level if not entry.endswith(".dist-info")} == {"nrnn"}
    for required in (
        "nrnn/py.typed",
        "nrnn/configs/digits.toml",
        "nrnn/_generated/expansion.py",
        "nrnn/verification/core.py",
        "nrnn/figures/robustness.py",
        "nrnn/derivations/build.py",
        "nrnn/benchmarks/run.py",
    ):
        assert required in names, required
    # every package and data file of the checkout's nrnn/ folder is in the wheel
    package = ROOT / "nrnn"
    for path in package.rglob("*"):
        if path.suffix in (".py", ".toml", ".typed") and "__pycache__" not in path.parts:
            assert f"nrnn/{path.relative_to(package).as_posix()}" in names, path
    metadata = next(name for name in names if name.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "Requires-Python: >=3.11" in text


def test_the_installed_wheel_runs_outside_the_checkout(wheel, tmp_path):
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # The dependencies (torch, numpy, ...) come from the test's environment, whose own
    # editable install of this checkout is not activated by a plain path entry.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*argv, timeout=600):
        return subprocess.run(
            [python, *argv], cwd=work, capture_output=True, text=True, timeout=timeout
        )

    where = run(
        "-c",
        "import importlib.util, nrnn; print(nrnn.__file__); print(nrnn.__version__); "
        "print([importlib.util.find_spec(n) is None for n in "
        "('verification', 'paper_figures', 'benchmarks', 'derivations')])",
    )
    assert where.returncode == 0, where.stderr
    location, version, absent = where.stdout.split("\n")[:3]
    assert Path(location).is_relative_to(site)
    assert version == _project_version()
    assert absent == "[True, True, True, True]"

    check = run("-m", "nrnn", "derive", "--check")
    assert check.returncode == 0, check.stderr
    assert "generated files are up to date" in check.stdout

    verify = run("-m", "nrnn", "verify", "--profile", "smoke", "--no-progress", "--jobs", "1")
    # Smoke sizes exercise every check, too small for the statistical ones to hold: exit 3
    # means "ran to the end, some check failed"; anything else is an error.
    assert verify.returncode in (0, 3), verify.stdout + verify.stderr
    # Profiles other than quick write into verification/<profile>.
    report = json.loads((work / "verification" / "smoke" / "report.json").read_text())
    assert set(report["modules"]) == {"expansion", "stability", "mc_training", "trained"}
    assert all(module["profile"] == "smoke" for module in report["modules"].values())


def _project_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
