"""The verification figures (expansion, stabilisation, trained_metrics) on tiny inputs: the
data files hold the right numbers, the figures and tables are written, and the verification
report is read when it matches and (re)computed when it does not."""

import csv
import dataclasses
import json
import math

import pytest
from scipy import stats

from nrnn.experiments import REGISTRY, Context, Experiment
from nrnn.figures import expansion, stabilisation, trained_metrics
from nrnn.verification import core
from nrnn.verification import trained as trained_checks

PNG_MAGIC, PDF_MAGIC = b"\x89PNG\r\n\x1a\n", b"%PDF-"


def assert_figure_files(paths, stem):
    """PNG and PDF of ``stem`` are among ``paths``, non-empty, with the right magic bytes."""
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    assert png in paths and pdf in paths
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000
    assert pdf.read_bytes()[:5] == PDF_MAGIC and pdf.stat().st_size > 1000
    for path in paths:
        assert path.stat().st_size > 0


def test_the_new_figures_are_registered_cheap_ones_first():
    names = list(REGISTRY["figures"])
    for name in ("expansion", "stabilisation", "trained_metrics"):
        assert names.index(name) < names.index("robustness")  # the training grid last


# ---------------------------------------------------------------------------- expansion


def test_expansion_runs_the_module_once_then_reads_the_report(tmp_path, monkeypatch):
    report_dir, out = tmp_path / "report", tmp_path / "out"
    context = Context(profile="smoke", out_dir=out, report_dir=report_dir, progress=False)
    paths = expansion.EXPERIMENT.run("smoke", context)

    stored = core.read_report(report_dir / "report.json")
    assert stored["modules"]["expansion"]["profile"] == "smoke"
    assert_figure_files(paths, out / "expansion")
    summary = json.loads((out / "expansion.json").read_text())
    (case,) = summary["remainder"]["cases"]
    assert case["case"] == "lipschitz,d=2,M=2,diagonal"
    assert 3.5 <= case["slope"] <= 4.5  # O(ε⁴), measured by exact quadrature
    assert case["slope"] == pytest.approx(case["slope_reported"], rel=1e-9)
    assert len(case["remainder"]) == len(summary["remainder"]["epsilons"])
    rows = summary["coefficient"]["monte_carlo"]
    assert len(rows) == 2 and all(row["stderr"] > 0 for row in rows)
    (exact,) = summary["coefficient"]["quadrature"]
    assert exact["estimate"] == pytest.approx(exact["predicted"], rel=1e-6)
    table = (out / "expansion.md").read_text()
    assert "d=2,M=2,diagonal" in table and f"{case['slope']:.3f}" in table

    def must_not_run(*args, **kwargs):
        raise AssertionError("the report already holds the module at this profile")

    monkeypatch.setattr(core, "run_module", must_not_run)
    again = core.module_report_at("expansion", context, usable=expansion.usable_report)
    assert json.loads(json.dumps(expansion.summarise(again))) == summary


def empty_module_report(name: str, profile: str) -> dict:
    """A module report without checks, in the form ``core.run_module`` returns."""
    return {
        "module": name,
        "description": "empty",
        "claims": [],
        "profile": profile,
        "sizes": {},
        "finished": "2021-12-06T00:00:00+00:00",
        "seconds": 0.0,
        "passed": True,
        "checks": [],
    }


def test_a_report_at_another_profile_or_without_the_fields_is_recomputed(tmp_path, monkeypatch):
    calls = []

    def fake_run(module, profile, context):
        calls.append((module.name, profile))
        return empty_module_report(module.name, profile)

    monkeypatch.setattr(core, "run_module", fake_run)
    core.write_report(tmp_path, [empty_module_report("expansion", "full")])
    context = Context(profile="quick", report_dir=tmp_path, log=lambda message: None)
    module = core.module_report_at("expansion", context)
    assert calls == [("expansion", "quick")] and module["profile"] == "quick"
    core.module_report_at("expansion", context, usable=expansion.usable_report)
    assert len(calls) == 2  # the stored entry lacks the details the figure plots
    with pytest.raises(ValueError, match="lacks"):
        expansion.summarise(module)


# ------------------------------------------------------------------------ stabilisation
TINY_STABILISATION = stabilisation.SMOKE
FALSE_FAILURE = 1e-5  # of the whole scalar-SDE comparison below (< 1e-4 as required)


def test_stabilisation_scalar_sde_matches_the_closed_form(tmp_path):
    out = tmp_path / "out"
    paths = stabilisation.make(TINY_STABILISATION, Context(out_dir=out, progress=False))
    assert_figure_files(paths, out / "stabilisation")
    summary = json.loads((out / "stabilisation.json").read_text())
    (scalar,) = summary["linear"]
    a = scalar["drift"][0][0]
    points = scalar["points"]
    assert [p["sigma"] for p in points] == list(TINY_STABILISATION.sigmas)
    # dX = aX dt + sX dB: per-path exponents are means of i.i.d. log|1 + a dt + s√dt ξ| / dt,
    # independent over paths, so (mean − truth)/SE is Student t with paths − 1 degrees of
    # freedom. Truth = a − s²/2 up to the Euler–Maruyama bias |EM exact − a + s²/2|, added
    # in full. Two-sided, Bonferroni over the points: P(false failure) ≤ FALSE_FAILURE.
    t = stats.t.ppf(1 - FALSE_FAILURE / (2 * len(points)), TINY_STABILISATION.linear_paths - 1)
    for point in points:
        continuous = a - point["sigma"] ** 2 / 2
        assert point["as_continuous"] == pytest.approx(continuous)
        bias = abs(point["as_em"] - continuous)
        tolerance = t * point["stderr"] + bias + 1e-8
        assert abs(point["measured"] - continuous) <= tolerance, point
        assert point["seed"] >= TINY_STABILISATION.seed and point["paths"] == 64
    measured = [p["measured"] for p in points]
    assert measured[0] > 0 > measured[-1]  # unstable without noise, stabilised with it
    rms = [p["rms_continuous"] for p in points]
    assert rms == sorted(rms) and rms[-1] > rms[0]  # the mean-square exponent moves up
    assert scalar["stabilising_sigma_theory"] == pytest.approx(math.sqrt(2 * a))

    rnn = summary["rnn"]
    for point in rnn["points"]["scalar"]:
        assert point["as_bound"] == pytest.approx(rnn["kappa"] - point["sigma"] ** 2 / 2)
        assert point["ms_bound"] == pytest.approx(rnn["kappa"] + point["sigma"] ** 2 / 2)
        assert math.isfinite(point["measured"]) and point["stderr"] >= 0
    table = (out / "stabilisation.md").read_text()
    assert "scalar SDE" in table and "Nonlinear noisy RNN" in table


def test_stabilisation_settings_reject_bad_values():
    with pytest.raises(ValueError, match="sigmas"):
        stabilisation.Settings(sigmas=(-1.0,))
    with pytest.raises(ValueError, match="paths"):
        stabilisation.Settings(linear_paths=1)
    with pytest.raises(ValueError, match="square"):
        stabilisation.LinearSystem("bad", "bad", ((1.0, 2.0),)).matrix()


# ---------------------------------------------------------------------- trained_metrics
SEEDS = (0, 1, 2)
MEASURED_KEYS = (
    "hessian_trace",
    "top_eigenvalue",
    "train_loss",
    "kappa",
    "lyapunov",
    "phi_full",
    "phi_mean_over_steps",
    "io_jacobian",
    "margin",
    "margin_correct",
    "margin_first_order",
    "test_accuracy",
)


def synthetic_results() -> dict:
    """(objective, seed) -> a measurement dict of verification.trained.measure's keys:
    noise and explicit lower every quantity by 10 % and 5 % (margins raised), seed jitter."""
    factors = {"clean": 1.0, "noise": 0.9, "explicit": 0.95}
    results = {}
    for objective, factor in factors.items():
        for seed in SEEDS:
            jitter = 1.0 + 0.01 * seed
            values = {
                key: (index + 1.0) * factor * jitter for index, key in enumerate(MEASURED_KEYS)
            }
            values["margin"] = 0.5 / factor * jitter
            results[(objective, seed)] = values
    return results


def synthetic_trained_module() -> Experiment:
    """A ``trained`` module whose run returns real comparison checks of synthetic data."""
    results = synthetic_results()
    runs = {key: {"run_dir": "synthetic"} for key in results}
    configs = {objective: {} for objective in ("clean", "noise", "explicit")}
    checks = [
        trained_checks._comparison_check(
            metric, "digits-rows", treated, list(SEEDS), results, runs, configs, 1.0
        )
        for treated in ("noise", "explicit")
        for metric in trained_checks.METRICS
    ]
    return Experiment(
        name="trained",
        title="synthetic",
        claims=(6, 7, 8),
        profiles=trained_checks.PROFILES,
        run=lambda sizes, context: [dataclasses.replace(c) for c in checks],
    )


def test_trained_metrics_from_a_synthetic_verification_run(tmp_path, monkeypatch):
    module = synthetic_trained_module()
    monkeypatch.setattr(core, "load", lambda group, name: module)
    report_dir, out = tmp_path / "report", tmp_path / "out"
    context = Context(out_dir=out, report_dir=report_dir, progress=False)
    paths = trained_metrics.EXPERIMENT.run("quick", context)
    assert core.read_report(report_dir / "report.json")["modules"]["trained"]["profile"] == "quick"
    assert_figure_files(paths, out / "trained_metrics_digits-rows")

    summary = json.loads((out / "trained_metrics.json").read_text())
    (dataset,) = summary["datasets"]
    assert dataset["objectives"] == ["clean", "noise", "explicit"]
    assert dataset["seeds"] == list(SEEDS)
    assert [m["key"] for m in dataset["metrics"]] == [m.key for m in trained_checks.METRICS]
    results = synthetic_results()
    for metric in dataset["metrics"]:
        for objective, entry in metric["values"].items():
            expected = [results[(objective, s)][metric["key"]] for s in SEEDS]
            assert entry["values"] == pytest.approx(expected)
            assert entry["mean"] == pytest.approx(sum(expected) / len(expected))
        assert set(metric["tests"]) == {"noise", "explicit"}
        for test in metric["tests"].values():
            assert 0.0 <= test["p_t_one_sided"] < 0.05 and test["verdict"] == "supported"
        relation = ">" if metric["key"] == "margin" else "<"
        assert metric["relation"] == relation
        assert f"p(noise {relation} clean) = " in trained_metrics.panel_title(metric)

    with (out / "trained_metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * len(SEEDS) * len(MEASURED_KEYS)
    assert {row["objective"] for row in rows} == {"clean", "noise", "explicit"}
    table = (out / "trained_metrics.md").read_text()
    assert "digits-rows" in table and "supported" in table
    assert "[noise, explicit > clean]" in table and "[noise, explicit < clean]" in table


def test_figures_with_set_measure_the_runs_the_plan_lists(tmp_path, monkeypatch):
    """`nrnn figures --only trained_metrics --set model.hidden_dim=4 --out X` redrew the
    report of the shipped settings (output identical to the default run) while --plan listed
    new runs: now it runs the module with the overrides and writes its entry to X only; no
    `figures --out` writes under verification/."""
    from nrnn.figures import cli as figures_cli

    seen = []
    synthetic = synthetic_trained_module()

    def run(sizes, context):
        plan = trained_checks.plan(sizes, context)
        seen.append(sorted({spec.config.model.hidden_dim for specs, _ in plan for spec in specs}))
        return synthetic.run(sizes, context)

    module = dataclasses.replace(synthetic, run=run, plan=trained_checks.plan)
    monkeypatch.setattr(core, "load", lambda group, name: module)
    monkeypatch.chdir(tmp_path)
    base = ["--only", "trained_metrics", "--profile", "smoke", "--store", "store"]
    base += ["--no-progress"]
    assert figures_cli.main(base) == 0  # the shipped settings, into verification/smoke
    assert seen == [[8]]
    default_report = tmp_path / "verification" / "smoke" / "report.json"
    before = default_report.read_bytes()
    assert figures_cli.main([*base, "--out", "plain"]) == 0  # read from verification/smoke
    assert seen == [[8]] and not (tmp_path / "plain" / "report.json").exists()
    assert figures_cli.main([*base, "--set", "model.hidden_dim=4", "--out", "small"]) == 0
    assert seen == [[8], [4]]
    entry = core.read_report(tmp_path / "small" / "report.json")["modules"]["trained"]
    assert entry["overrides"] == ["model.hidden_dim=4"]
    assert figures_cli.main([*base, "--set", "model.hidden_dim=4", "--out", "small"]) == 0
    assert seen == [[8], [4]]  # the second time, from small/report.json
    assert default_report.read_bytes() == before
    written = sorted(p.name for p in (tmp_path / "verification").rglob("*"))
    assert written == ["claims.md", "report.json", "report.md", "smoke"]


def test_trained_metrics_check_names_and_bad_reports():
    assert trained_metrics.parse_check_name("kappa.ecg5000.noise_vs_clean") == (
        "kappa",
        "ecg5000",
        "noise",
    )
    assert trained_metrics.parse_check_name("training.ecg5000.noise") is None
    with pytest.raises(ValueError, match="no comparison"):
        trained_metrics.summarise({"module": "trained", "profile": "quick", "checks": []})
