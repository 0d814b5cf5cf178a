"""Stochastic stabilisation (claim 5): Lyapunov exponents against the multiplicative noise level.

For dX = A X dt + s X dβ with one scalar Brownian motion β, the almost-sure (a.s.) exponent
lim (1/t) log|X_t| is max Re eig(A) − s²/2: noise *lowers* it and can make a system that
grows without noise contract. The root-mean-square exponent lim (1/2t) log E|X_t|² is
max Re eig(A) + s²/2: it only grows with noise. The figure sweeps s and compares, per panel,

(a)–(c) linear systems, each unstable without noise: a scalar SDE, a normal 2×2 A (a
    rotation with Re λ > 0) and a non-normal 2×2 A (where κ = λ_max(sym A) > max Re λ, so
    the model bound κ − s²/2 of ``nrnn.stability.almost_sure_bound`` is loose):
    the Monte Carlo a.s. exponent (``nrnn.stability.lyapunov_exponent``, ± 1.96 SE over
    independent paths) against the continuous theory max Re λ − s²/2, the exact value for the
    Euler–Maruyama step the simulation uses (O(dt) away), the bound κ − s²/2 and the
    root-mean-square exponent;
(d) the nonlinear noisy RNN (random weights, shifted so that κ > 0, additive noise σ₁ too):
    the measured exponent with the multiplicative noise on one scalar Brownian motion and on
    one Brownian motion per unit, against the a.s. bound κ − σ₂²/2, its exact
    Euler–Maruyama form (``em_almost_sure_bound``), the weaker per-unit bound
    κ + σ₂²(1/2 − 1/d) and the mean-square bound κ + σ₂²/2.

The simulated systems are those of the reference catalogue (``nrnn.catalogue``, shared with
the ``stability`` verification module: ``linear_model`` makes a ``NoisyRNN`` whose
separation obeys the linear SDE exactly), swept over s here; nothing is read from the
verification report.

Files written into the output directory:

    stabilisation.json      every measured point (exponent, standard error, seed, paths,
                            time) with the theory at that s, and the theory curves
    stabilisation.md        one table per system
    stabilisation.png/.pdf  the four panels
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nrnn.catalogue import NON_NORMAL, ROTATION, SCALAR, LinearSystem
from nrnn.noise import BROWNIAN_LAYOUTS
from nrnn.workflow.experiments import Context, Experiment

from . import style

TITLE = "Stochastic stabilisation: Lyapunov exponent vs multiplicative noise, theory vs Monte Carlo"


@dataclass(frozen=True)
class Settings:
    """What one mode simulates.

    Attributes:
        systems: the linear systems of panels (a)–(c).
        sigmas: noise levels s of the linear sweep (Monte Carlo points).
        dt: Euler–Maruyama step of every simulation.
        burn_in_time: time run (renormalising) before exponents are accumulated.
        linear_time, linear_paths: time span and independent paths per linear point.
        rnn_sigmas: σ₂ of the RNN sweep; rnn_brownian: Brownian modes measured.
        rnn_hidden, rnn_additive, rnn_gamma_a, rnn_model_seed: the random RNN (γ_A < 0 shifts
            A by −γ_A I so that it is unstable without noise).
        rnn_time, rnn_paths: time span and paths per RNN point.
        curve_points: points of the theory curves over [0, max σ].
        seed: base seed of the Monte Carlo points (each point gets its own, recorded).
    """

    systems: tuple[LinearSystem, ...] = (SCALAR, ROTATION, NON_NORMAL)
    sigmas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
    dt: float = 0.01
    burn_in_time: float = 2.0
    linear_time: float = 40.0
    linear_paths: int = 128
    rnn_sigmas: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
    rnn_brownian: tuple[str, ...] = ("scalar", "diagonal")
    rnn_hidden: int = 6
    rnn_additive: float = 0.3
    rnn_gamma_a: float = -0.5
    rnn_model_seed: int = 600
    rnn_time: float = 30.0
    rnn_paths: int = 64
    curve_points: int = 61
    seed: int = 7000

    def __post_init__(self) -> None:
        if not self.sigmas or any(s < 0 or not math.isfinite(s) for s in self.sigmas):
            raise ValueError(f"sigmas must be finite and >= 0, got {self.sigmas}")
        if any(s < 0 or not math.isfinite(s) for s in self.rnn_sigmas):
            raise ValueError(f"rnn_sigmas must be finite and >= 0, got {self.rnn_sigmas}")
        if self.dt <= 0 or self.linear_time <= 0 or self.rnn_time <= 0:
            raise ValueError("dt, linear_time and rnn_time must be > 0")
        if self.linear_paths < 2 or self.rnn_paths < 2:
            raise ValueError("linear_paths and rnn_paths must be >= 2 (standard errors)")
        unknown = set(self.rnn_brownian) - {"scalar", "diagonal"}
        if unknown:
            raise ValueError(f"rnn_brownian must be 'scalar' or 'diagonal', got {sorted(unknown)}")


QUICK = Settings()
FULL = Settings(
    sigmas=tuple(np.round(np.linspace(0.0, 2.0, 17), 3).tolist()),
    linear_time=100.0,
    linear_paths=512,
    rnn_sigmas=tuple(np.round(np.linspace(0.0, 3.0, 13), 3).tolist()),
    rnn_time=60.0,
    rnn_paths=128,
    curve_points=121,
)


# ----------------------------------------------------------------------- linear systems
def _number(tensor) -> float:
    return float(tensor.detach()) if hasattr(tensor, "detach") else float(tensor)


def _measure(model, x, *, paths: int, time_span: float, settings: Settings, seed: int) -> dict:
    """Monte Carlo a.s. exponent of ``model`` driven by ``x``: measured, stderr and its setup."""
    from nrnn import stability
    from nrnn.verification.stability import steps_for

    estimate = stability.lyapunov_exponent(
        model,
        x,
        paths=paths,
        seed=seed,
        steps=steps_for(time_span, settings.dt),
        burn_in=steps_for(settings.burn_in_time, settings.dt),
    )
    return {
        "measured": estimate.exponent,
        "stderr": estimate.stderr,
        "paths": estimate.paths,
        "time": estimate.time,
        "seed": seed,
    }


def linear_theory(system: LinearSystem, s: float, dt: float) -> dict:
    """Theory of dX = A X dt + s X dβ at one s (scalar β).

    Returns the a.s. exponent max Re λ − s²/2 (``as_continuous``), its exact Euler–Maruyama
    value (``as_em``), the model bound κ − s²/2 (``as_bound``, nrnn.stability), the
    root-mean-square exponent (``rms_continuous``, = max Re λ + s²/2), its exact EM value
    (``rms_em``) and the mean-square bound κ + s²/2 (``rms_bound``).
    """
    import torch

    from nrnn import stability
    from nrnn.catalogue import continuous_rms_exponent, em_linear_exponent, linear_model

    drift = system.matrix()
    model = linear_model(drift, s, "scalar", dt)
    noise_matrices = stability.linear_noise_matrices(drift.shape[0], s, "scalar")
    return {
        "sigma": s,
        "as_continuous": float(np.linalg.eigvals(drift).real.max()) - s**2 / 2,
        "as_em": em_linear_exponent(drift, s, dt),
        "as_bound": _number(stability.almost_sure_bound(model)),
        "rms_continuous": continuous_rms_exponent(drift, noise_matrices.numpy()),
        "rms_em": _number(
            stability.em_mean_square_exponent(torch.as_tensor(drift), noise_matrices, dt)
        ),
        "rms_bound": _number(stability.mean_square_bound(model)),
    }


def linear_sweep(system: LinearSystem, settings: Settings, seed: int) -> dict:
    """Measured a.s. exponents of one system at every ``settings.sigmas`` with the theory.

    Returns name, title, drift, max_re_eig, kappa, stabilising levels (theory: √(2 max Re λ),
    bound: √(2κ)), points (one dict per s: measured, stderr, seed, paths, time and the
    :func:`linear_theory` values) and curves (the theory on a fine grid of s).
    """
    import torch

    from nrnn import stability
    from nrnn.catalogue import linear_model

    drift = system.matrix()
    x = torch.zeros(1, 1, 1, dtype=torch.float64)
    points = []
    for index, s in enumerate(settings.sigmas):
        model = linear_model(drift, s, "scalar", settings.dt)
        point = _measure(
            model,
            x,
            paths=settings.linear_paths,
            time_span=settings.linear_time,
            settings=settings,
            seed=seed + index,
        )
        points.append(point | linear_theory(system, s, settings.dt))
    grid = np.linspace(0.0, max(settings.sigmas), settings.curve_points)
    curves = [linear_theory(system, float(s), settings.dt) for s in grid]
    max_re = float(np.linalg.eigvals(drift).real.max())
    kappa = _number(stability.contraction_rate(linear_model(drift, 0.0, "scalar", settings.dt)))
    return {
        "name": system.name,
        "title": system.title,
        "drift": drift.tolist(),
        "max_re_eig": max_re,
        "kappa": kappa,
        "stabilising_sigma_theory": math.sqrt(2 * max(max_re, 0.0)),
        "stabilising_sigma_bound": math.sqrt(2 * max(kappa, 0.0)),
        "points": points,
        "curves": {key: [curve[key] for curve in curves] for key in curves[0]},
    }


# --------------------------------------------------------------------------------- RNN
def rnn_model(settings: Settings, sigma: float, brownian: str):
    """The random float64 NoisyRNN of panel (d) with multiplicative level ``sigma`` (its
    weights depend on ``rnn_model_seed`` only; the global torch RNG is left untouched)."""
    import torch

    from nrnn import Noise
    from nrnn.catalogue import random_model

    with torch.random.fork_rng(devices=[]):
        return random_model(
            settings.rnn_model_seed,
            settings.rnn_hidden,
            Noise(settings.rnn_additive, sigma, brownian),
            settings.dt,
            gamma_a=settings.rnn_gamma_a,
        )


def rnn_theory(settings: Settings, sigma: float) -> dict:
    """The bounds of the RNN at σ₂ = ``sigma`` (nrnn.stability): a.s. κ − σ²/2 (scalar),
    its Euler–Maruyama form, the per-unit bound κ + σ²(1/2 − 1/d), mean-square κ + σ²/2."""
    from nrnn import stability

    scalar = rnn_model(settings, sigma, "scalar")
    per_unit = rnn_model(settings, sigma, "diagonal")
    return {
        "sigma": sigma,
        "as_bound": _number(stability.almost_sure_bound(scalar)),
        "as_em_bound": _number(stability.em_almost_sure_bound(scalar)),
        "as_bound_per_unit": _number(stability.almost_sure_bound(per_unit)),
        "ms_bound": _number(stability.mean_square_bound(scalar)),
    }


def rnn_sweep(settings: Settings, seed: int) -> dict:
    """Measured exponents of the RNN at every ``rnn_sigmas`` and Brownian mode, its bounds.

    Returns kappa, the model settings, points (brownian -> one dict per σ₂: measured,
    stderr, seed, paths, time and the :func:`rnn_theory` bounds) and curves.
    """
    from nrnn import stability
    from nrnn.catalogue import random_inputs
    from nrnn.verification.stability import steps_for

    total = steps_for(settings.burn_in_time, settings.dt) + steps_for(
        settings.rnn_time, settings.dt
    )
    theory = [rnn_theory(settings, sigma) for sigma in settings.rnn_sigmas]
    points = {}
    for mode_index, brownian in enumerate(settings.rnn_brownian):
        rows = []
        for index, sigma in enumerate(settings.rnn_sigmas):
            point_seed = seed + 100 * mode_index + index
            x = random_inputs(point_seed, settings.rnn_paths, total)
            model = rnn_model(settings, sigma, brownian)
            rows.append(
                _measure(
                    model,
                    x,
                    paths=settings.rnn_paths,
                    time_span=settings.rnn_time,
                    settings=settings,
                    seed=point_seed,
                )
                | theory[index]
            )
        points[brownian] = rows
    top = max(settings.rnn_sigmas, default=0.0)
    curves = [rnn_theory(settings, float(s)) for s in np.linspace(0.0, top, settings.curve_points)]
    quiet = rnn_model(settings, 0.0, "scalar")
    return {
        "hidden": settings.rnn_hidden,
        "additive": settings.rnn_additive,
        "gamma_a": settings.rnn_gamma_a,
        "model_seed": settings.rnn_model_seed,
        "kappa": _number(stability.contraction_rate(quiet)),
        "stabilising_sigma_bound": _number(stability.stabilising_noise_level(quiet)),
        "points": points,
        "curves": {key: [curve[key] for curve in curves] for key in curves[0]},
    }


def compute(settings: Settings) -> dict:
    """Every sweep of the figure (the JSON written); float64, one torch thread."""
    import torch

    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        linear = [
            linear_sweep(system, settings, settings.seed + 1000 * index)
            for index, system in enumerate(settings.systems)
        ]
        rnn = rnn_sweep(settings, settings.seed + 50_000) if settings.rnn_sigmas else None
    finally:
        torch.set_num_threads(threads)
    return {
        "figure": "stabilisation",
        "settings": _settings_json(settings),
        "error_bar_z": style.error_bar_z(),
        "linear": linear,
        "rnn": rnn,
        "seconds": time.perf_counter() - started,
    }


def _settings_json(settings: Settings) -> dict:
    values = asdict(settings)
    values["systems"] = [system.name for system in settings.systems]
    return values


# -------------------------------------------------------------------------------- plot
AS_COLOUR, MS_COLOUR, MEASURED_COLOUR, PER_UNIT_COLOUR = "#0072B2", "#D55E00", "#000000", "#999999"


def _plot_linear(ax, sweep: dict, z: float, dt: float) -> None:
    curves = sweep["curves"]
    sigma = curves["sigma"]
    ax.plot(sigma, curves["as_continuous"], color=AS_COLOUR, label="a.s. theory: max Re λ − s²/2")
    ax.plot(
        sigma,
        curves["as_em"],
        color=AS_COLOUR,
        linestyle=":",
        linewidth=1.2,
        label=f"a.s. exact for the Euler–Maruyama step (dt = {dt:g})",
    )
    if sweep["kappa"] - sweep["max_re_eig"] > 1e-9:
        ax.plot(
            sigma,
            curves["as_bound"],
            color=AS_COLOUR,
            linestyle="--",
            label=r"a.s. bound κ − s²/2 ($\kappa = \lambda_{\max}(\mathrm{sym}\,A)$)",
        )
    ax.plot(
        sigma,
        curves["rms_continuous"],
        color=MS_COLOUR,
        label=r"mean-square theory $\frac{1}{2t}\log\mathrm{E}|X_t|^2$: max Re λ + s²/2",
    )
    points = sweep["points"]
    ax.errorbar(
        [p["sigma"] for p in points],
        [p["measured"] for p in points],
        yerr=[z * p["stderr"] for p in points],
        color=MEASURED_COLOUR,
        marker="o",
        linestyle="none",
        capsize=2.5,
        markersize=4,
        label=f"a.s. Monte Carlo (± {z:.2f} SE)",
    )
    ax.axhline(0.0, color="k", linewidth=0.6)
    threshold = sweep["stabilising_sigma_theory"]
    ax.set_title(
        f"{sweep['title']}\nmax Re λ = {sweep['max_re_eig']:.2f}, "
        f"κ = {sweep['kappa']:.2f}; a.s. stable for s > {threshold:.2f}"
    )


def _plot_rnn(ax, rnn: dict, z: float) -> None:
    curves = rnn["curves"]
    sigma = curves["sigma"]
    ax.plot(
        sigma,
        curves["as_bound"],
        color=AS_COLOUR,
        linestyle="--",
        label="a.s. bound κ − σ₂²/2 (scalar Brownian motion)",
    )
    ax.plot(
        sigma,
        curves["as_em_bound"],
        color=AS_COLOUR,
        linestyle=":",
        linewidth=1.2,
        label="a.s. bound for the Euler–Maruyama map",
    )
    ax.plot(
        sigma,
        curves["as_bound_per_unit"],
        color=PER_UNIT_COLOUR,
        linestyle="-.",
        label="a.s. bound κ + σ₂²(1/2 − 1/d), one Brownian motion per unit",
    )
    ax.plot(
        sigma,
        curves["ms_bound"],
        color=MS_COLOUR,
        linestyle="--",
        label="mean-square bound κ + σ₂²/2",
    )
    looks = {
        "scalar": (MEASURED_COLOUR, "o", MEASURED_COLOUR, "measured, scalar Brownian motion"),
        "diagonal": (PER_UNIT_COLOUR, "s", "none", "measured, one Brownian motion per unit"),
    }
    for brownian, points in rnn["points"].items():
        colour, marker, face, label = looks[brownian]
        ax.errorbar(
            [p["sigma"] for p in points],
            [p["measured"] for p in points],
            yerr=[z * p["stderr"] for p in points],
            color=colour,
            marker=marker,
            markerfacecolor=face,
            linestyle="none",
            capsize=2.5,
            markersize=4,
            label=f"{label} (± {z:.2f} SE)",
        )
    ax.axhline(0.0, color="k", linewidth=0.6)
    ax.set_title(
        f"nonlinear noisy RNN (d = {rnn['hidden']}, σ₁ = {rnn['additive']:g}, "
        f"random inputs)\nκ = {rnn['kappa']:.2f}; bound < 0 for "
        f"σ₂ > √(2κ) = {rnn['stabilising_sigma_bound']:.2f}"
    )
    ax.set_xlabel("multiplicative noise level σ₂")
    ax.set_ylabel("Lyapunov exponent (per unit time)")
    ax.legend(loc="lower left", fontsize=6.5)


def plot(summary: dict, stem: Path) -> list[Path]:
    """Linear systems and the RNN, one panel each (2 columns); PNG and PDF."""
    style.apply()
    import matplotlib.pyplot as plt

    z, dt = summary["error_bar_z"], summary["settings"]["dt"]
    panels = len(summary["linear"]) + (summary["rnn"] is not None)
    columns = min(2, panels)
    rows = math.ceil(panels / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.6 * columns, 4.3 * rows), squeeze=False)
    flat = axes.ravel()
    letters = "abcdefgh"
    # one panel per sweep; the grid may have more axes than sweeps (the RNN panel, blanks)
    for index, (ax, sweep) in enumerate(zip(flat, summary["linear"], strict=False)):
        _plot_linear(ax, sweep, z, dt)
        ax.set_title(f"({letters[index]}) " + ax.get_title())
        ax.set_xlabel("multiplicative noise level s = σ₂")
        ax.set_ylabel("Lyapunov exponent (per unit time)")
        ax.legend(loc="lower left", fontsize=6.5)
    if summary["rnn"] is not None:
        ax = flat[len(summary["linear"])]
        _plot_rnn(ax, summary["rnn"], z)
        ax.set_title(f"({letters[len(summary['linear'])]}) " + ax.get_title())
    for ax in flat[panels:]:
        ax.axis("off")
    fig.suptitle(
        "Stochastic stabilisation: multiplicative noise on one scalar Brownian motion "
        "lowers the almost-sure (a.s.) Lyapunov exponent\nwhile the mean-square one "
        "rises (exponent < 0: nearby trajectories contract)",
        fontsize=10,
    )
    fig.tight_layout()
    return style.save(fig, stem)


# ------------------------------------------------------------------------------- tables
def _pm(value: float, error: float) -> str:
    return f"{value:.3f} ± {error:.3f}"


def markdown_report(summary: dict) -> str:
    """One Markdown table per linear system and one for the RNN."""
    settings = summary["settings"]
    lines = [
        "# Stochastic stabilisation",
        "",
        "![stabilisation](stabilisation.png)",
        "",
        f"Monte Carlo a.s. exponents (``nrnn.stability.lyapunov_exponent``: two trajectories "
        f"with common noise, dt = {settings['dt']:g}, burn-in t = {settings['burn_in_time']:g}), "
        f"mean ± standard error over independent paths; computed in "
        f"{summary['seconds']:.0f} s. Data: `stabilisation.json`.",
    ]
    for sweep in summary["linear"]:
        lines += [
            "",
            f"**{sweep['title']}** (max Re λ = {sweep['max_re_eig']:.3f}, κ = "
            f"{sweep['kappa']:.3f}; {settings['linear_paths']} paths, t = "
            f"{settings['linear_time']:g})",
            "",
            "| s | measured a.s. | max Re λ − s²/2 | EM exact a.s. | κ − s²/2 | "
            "mean-square max Re λ + s²/2 | EM exact mean-square |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p in sweep["points"]:
            lines.append(
                f"| {p['sigma']:g} | {_pm(p['measured'], p['stderr'])} | "
                f"{p['as_continuous']:.3f} | {p['as_em']:.3f} | {p['as_bound']:.3f} | "
                f"{p['rms_continuous']:.3f} | {p['rms_em']:.3f} |"
            )
    rnn = summary["rnn"]
    if rnn is not None:
        lines += [
            "",
            f"**Nonlinear noisy RNN** (d = {rnn['hidden']}, σ₁ = {rnn['additive']:g}, "
            f"γ_A = {rnn['gamma_a']:g}, weights seed {rnn['model_seed']}, κ = {rnn['kappa']:.3f}; "
            f"{settings['rnn_paths']} paths, t = {settings['rnn_time']:g})",
            "",
        ]
        modes = list(rnn["points"])
        header = " | ".join(f"measured ({BROWNIAN_LAYOUTS[m].label})" for m in modes)
        lines += [
            f"| σ₂ | {header} | κ − σ₂²/2 | EM bound | per-unit bound | κ + σ₂²/2 |",
            "|---:|" + "---:|" * (len(modes) + 4),
        ]
        for index, sigma in enumerate(settings["rnn_sigmas"]):
            theory = rnn["points"][modes[0]][index]
            measured = " | ".join(
                _pm(rnn["points"][m][index]["measured"], rnn["points"][m][index]["stderr"])
                for m in modes
            )
            lines.append(
                f"| {sigma:g} | {measured} | {theory['as_bound']:.3f} | "
                f"{theory['as_em_bound']:.3f} | {theory['as_bound_per_unit']:.3f} | "
                f"{theory['ms_bound']:.3f} |"
            )
    return "\n".join(lines)


def write(summary: dict, out_dir: str | Path) -> list[Path]:
    """Write stabilisation.json, stabilisation.md and stabilisation.png/.pdf."""
    stem = Path(out_dir) / "stabilisation"
    return style.save_data(stem, summary, markdown_report(summary)) + plot(summary, stem)


# ----------------------------------------------------------------------------- registry
def make(settings: Settings, context: Context) -> list[Path]:
    """Simulate the sweeps and write every file."""
    return write(compute(settings), context.out_dir)


# Tiny sizes for the tests; the sweeps train nothing, so medium (the pixel-MNIST profile)
# draws the quick figure.
SMOKE = Settings(
    systems=(SCALAR,),
    sigmas=(0.0, 0.8, 1.5),
    burn_in_time=0.5,
    linear_time=10.0,
    linear_paths=64,
    rnn_sigmas=(0.0, 2.0),
    rnn_brownian=("scalar",),
    rnn_time=2.0,
    rnn_paths=8,
    curve_points=5,
    seed=123,
)
PROFILES = {"smoke": SMOKE, "quick": QUICK, "medium": QUICK, "full": FULL}

EXPERIMENT = Experiment(name="stabilisation", title=TITLE, profiles=PROFILES, run=make)
