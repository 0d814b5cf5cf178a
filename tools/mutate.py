"""Mutation testing with a fixed list of planted bugs (``make mutate``).

Each :class:`Mutation` names a file, an exact piece of its text, the buggy text that
replaces it and the tests that should fail because of it. The bugs are planted one at a
time in the working tree, the named tests run (``pytest -x``), and the file is restored
byte for byte, whatever happens. A bug is *killed* when its tests fail, *survives* when
they pass. A planted bug whose original text is not found exactly once is an *error*: the
code moved, and the list must follow it (it is never skipped silently).

    python tools/mutate.py [--only NAME ...] [--list] [--timeout SECONDS]

Prints one line per bug and the kill rate; exits 0 when there is no error and at least
``REQUIRED_KILL_RATE`` of the bugs are killed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIRED_KILL_RATE = 0.95


@dataclass(frozen=True)
class Mutation:
    """One planted bug: ``original`` (exactly once in ``path``) becomes ``mutated``; the
    ``tests`` (pytest arguments) must then fail."""

    name: str
    area: str  # mathematics, estimators, gradients, attacks, training, harness, criteria,
    # statistics, bookkeeping, seeds, configuration, noise off, claim 9
    path: str
    original: str
    mutated: str
    tests: tuple[str, ...]


MUTATIONS = (
    # ------------------------------------------------------------------ mathematics
    Mutation(
        "probe mean step without the 1/2",
        "mathematics",
        "nrnn/steps.py",
        "return self.advance(mean, torch.add(differential, curvature, alpha=0.5))",
        "return self.advance(mean, torch.add(differential, curvature, alpha=1.0))",
        ("tests/test_regularizer.py", "-k", "probe"),
    ),
    Mutation(
        "probe noise scaled by dt instead of sqrt(dt)",
        "mathematics",
        "nrnn/probes.py",
        "root_dt = math.sqrt(model.dt)",
        "root_dt = model.dt",
        ("tests/test_regularizer.py", "-k", "probe"),
    ),
    Mutation(
        "regularizer is q + r instead of (q + r)/2",
        "mathematics",
        "nrnn/regularizer.py",
        "return 0.5 * (self.q + self.r)",
        "return self.q + self.r",
        ("tests/test_regularizer.py", "tests/test_verification_expansion.py"),
    ),
    Mutation(
        "additive noise scaled by dt instead of sqrt(dt)",
        "mathematics",
        "nrnn/noise/paper.py",
        "additive = (root_dt * self.additive * added).unbind(0)",
        "additive = (dt * self.additive * added).unbind(0)",
        ("tests/test_model.py",),
    ),
    Mutation(
        "released-code step multiplier mean 1 - s_m instead of 1 - s_m/2",
        "mathematics",
        "nrnn/noise/released.py",
        "return (1.0 - s_m / 2) + (s_m / math.sqrt(12.0)) * xi[..., xi.shape[-1] // 2 :]",
        "return (1.0 - s_m) + (s_m / math.sqrt(12.0)) * xi[..., xi.shape[-1] // 2 :]",
        ("tests/test_model.py",),
    ),
    Mutation(
        "uniform quadrature nodes on [-1, 1] instead of [-sqrt 3, sqrt 3]",
        "mathematics",
        "nrnn/quadrature.py",
        "return math.sqrt(3.0) * points, weights / 2.0",
        "return points, weights / 2.0",
        ("tests/test_verification_expansion.py", "-k", "quadrature_rule"),
    ),
    Mutation(
        "Lipschitz matrix with +gamma I",
        "mathematics",
        "nrnn/cells/lipschitz.py",
        "return (1 - beta) * (raw + transposed) + beta * (raw - transposed) - gamma * identity",
        "return (1 - beta) * (raw + transposed) + beta * (raw - transposed) + gamma * identity",
        ("tests/test_model.py",),
    ),
    Mutation(
        "contraction rate from the smallest eigenvalue",
        "mathematics",
        "nrnn/stability/bounds.py",
        "top_eigenvalue = torch.linalg.eigvalsh(symmetric)[..., -1]",
        "top_eigenvalue = torch.linalg.eigvalsh(symmetric)[..., 0]",
        ("tests/test_stability.py", "-k", "kappa or contraction"),
    ),
    Mutation(
        "a.s. bound with sigma^2 instead of sigma^2/2 (generated code)",
        "mathematics",
        "nrnn/_generated/stability.py",
        "return kappa - sigma_mult**2/2",
        "return kappa - sigma_mult**2",
        ("tests/test_generated_code.py", "-k", "stability_scalars"),
    ),
    # ------------------------------------------------------------------- estimators
    Mutation(
        "standard error inflated sqrt(n)-fold",
        "estimators",
        "nrnn/montecarlo.py",
        "return samples.mean(dim), samples.std(dim) / count**0.5",
        "return samples.mean(dim), samples.std(dim)",
        ("tests/test_montecarlo.py",),
    ),
    Mutation(
        "z threshold without the Bonferroni division",
        "estimators",
        "nrnn/montecarlo.py",
        "return NormalDist().inv_cdf(1.0 - false_failure / (2.0 * comparisons))",
        "return NormalDist().inv_cdf(1.0 - false_failure / 2.0)",
        ("tests/test_montecarlo.py",),
    ),
    Mutation(
        "probe covariance divided by K - 1",
        "estimators",
        "nrnn/regularizer.py",
        "logit_covariance = logit_paths.transpose(1, 2) @ logit_paths / paths.shape[1]",
        "logit_covariance = logit_paths.transpose(1, 2) @ logit_paths / (paths.shape[1] - 1)",
        ("tests/test_regularizer.py", "-k", "probe"),
    ),
    Mutation(
        "Lyapunov exponent per step instead of per unit time",
        "estimators",
        "nrnn/stability/exponents.py",
        "samples = log_growth / run.time()",
        "samples = log_growth / run.steps",
        ("tests/test_stability.py", "-k", "lyapunov"),
    ),
    Mutation(
        "Hutchinson probes in {0, 1} instead of {-1, 1}",
        "estimators",
        "nrnn/metrics/curvature.py",
        "v = signs.to(operator.dtype) * 2 - 1",
        "v = signs.to(operator.dtype)",
        ("tests/test_metrics.py", "-k", "hutchinson"),
    ),
    # ---------------------------------------------------------------------- attacks
    Mutation(
        "PGD L2 projection onto the sphere instead of the ball",
        "attacks",
        "nrnn/perturb.py",
        "return delta * torch.clamp(level / length.clamp_min(1e-30), max=1.0)",
        "return delta * (level / length.clamp_min(1e-30))",
        ("tests/test_perturb.py",),
    ),
    Mutation(
        "L2 random start with a uniform radius (not uniform in the ball)",
        "attacks",
        "nrnn/perturb.py",
        "return direction * level * radius ** (1.0 / dimension)",
        "return direction * level * radius",
        ("tests/test_perturb.py",),
    ),
    Mutation(
        "FGSM L-inf along the raw gradient",
        "attacks",
        "nrnn/perturb.py",
        "        return gradient.sign()\n",
        "        return gradient\n",
        ("tests/test_perturb.py",),
    ),
    Mutation(
        "PGD keeps the iterate with the lower loss",
        "attacks",
        "nrnn/perturb.py",
        "better = candidate_loss > best_loss",
        "better = candidate_loss < best_loss",
        ("tests/test_perturb.py",),
    ),
    Mutation(
        "salt and pepper: one entry too few set high",
        "attacks",
        "nrnn/perturb.py",
        "out[(rank >= count // 2) & (rank < count)] = high",
        "out[(rank > count // 2) & (rank < count)] = high",
        ("tests/test_perturb.py",),
    ),
    # --------------------------------------------------------------------- training
    Mutation(
        "explicit objective adds q + r instead of (q + r)/2",
        "training",
        "nrnn/objectives.py",
        "return (expansion.loss + 0.5 * (expansion.q + expansion.r)).mean()",
        "return (expansion.loss + (expansion.q + expansion.r)).mean()",
        ("tests/test_regularizer.py", "-k", "objective"),
    ),
    Mutation(
        "randomness not re-seeded per epoch",
        "training",
        "nrnn/train/loop.py",
        "torch.manual_seed(_epoch_seed(config.train.seed, epoch))",
        "pass",
        ("tests/test_train.py", "-k", "resume"),
    ),
    Mutation(
        "gradient clipping applied when it is off",
        "training",
        "nrnn/graphs.py",
        "if self.grad_clip:",
        "if not self.grad_clip:",
        ("tests/test_lipschitz_pins.py",),
    ),
    Mutation(
        "learning-rate decay ignores its period",
        "training",
        "nrnn/train/loop.py",
        "step_size=config.optim.lr_decay_every or 10**9,",
        "step_size=10**9,",
        ("tests/test_train.py", "-k", "schedule"),
    ),
    # ---------------------------------------------------------------------- harness
    Mutation(
        "store key ignores the code version",
        "harness",
        "nrnn/train/keys.py",
        'return {"config": config.canonical_dict(), "code_version": CODE_VERSION}',
        'return {"config": config.canonical_dict()}',
        ("tests/test_harness.py",),
    ),
    Mutation(
        "finished runs are trained again",
        "harness",
        "nrnn/workflow/harness.py",
        "if not store.is_finished(spec.config):\n                continued = ",
        "if True:\n                continued = ",
        ("tests/test_harness.py",),
    ),
    Mutation(
        "a longer run continues from a stored run of another config (another seed)",
        "harness",
        "nrnn/workflow/store.py",
        "                    or other.identity_hash() != identity\n",
        "",
        ("tests/test_harness.py", "-k", "longer"),
    ),
    Mutation(
        "stored task results are recomputed",
        "harness",
        "nrnn/workflow/harness.py",
        "    result = store.read_task(spec.config, task.name, task.key())\n    if result is None:",
        "    result = None\n    if result is None:",
        ("tests/test_harness.py",),
    ),
    # ---------------------------------------------------------------------- criteria
    Mutation(
        "agreement within z SE minus the allowance",
        "criteria",
        "verification/core.py",
        "return abs(estimate - target) <= z * stderr + allowance",
        "return abs(estimate - target) <= z * stderr - allowance",
        ("tests/test_verification_criteria.py", "-k", "within"),
    ),
    Mutation(
        "a bound holds only if the estimate plus z SE is below it",
        "criteria",
        "verification/core.py",
        "return estimate - z * stderr <= limit",
        "return estimate + z * stderr <= limit",
        ("tests/test_verification_criteria.py", "-k", "bound_holds"),
    ),
    Mutation(
        "significantly below with the z SE on the wrong side",
        "criteria",
        "verification/core.py",
        "return estimate + z * stderr < limit",
        "return estimate - z * stderr < limit",
        ("tests/test_verification_criteria.py", "-k", "significance"),
    ),
    Mutation(
        "supported verdict at p < 2 alpha",
        "criteria",
        "verification/trained.py",
        "if math.isfinite(p) and p < ALPHA:",
        "if math.isfinite(p) and p < 2 * ALPHA:",
        ("tests/test_verification_criteria.py", "-k", "verdicts"),
    ),
    Mutation(
        "second-moment simulator steps with the transposed matrix",
        "criteria",
        "verification/stability.py",
        'state = state @ step.T + math.sqrt(dt) * torch.einsum("pn,pni->pi", xi, kicks)',
        'state = state @ step + math.sqrt(dt) * torch.einsum("pn,pni->pi", xi, kicks)',
        ("tests/test_verification_criteria.py", "-k", "every_claim5"),
    ),
    Mutation(
        "second-moment check without its Bonferroni correction",
        "criteria",
        "verification/stability.py",
        "z = z_threshold(FALSE_FAILURE, len(systems))",
        "z = z_threshold(FALSE_FAILURE, 1)",
        ("tests/test_verification_criteria.py", "-k", "bonferroni"),
    ),
    # -------------------------------------------------------------------- statistics
    Mutation(
        "95 % interval from the one-sided 95 % quantile",
        "statistics",
        "verification/trained.py",
        "half_width = float(stats.t.ppf(0.975, n - 1)) * se if n > 1 else math.nan",
        "half_width = float(stats.t.ppf(0.95, n - 1)) * se if n > 1 else math.nan",
        ("tests/test_statistics.py", "-k", "paired_test"),
    ),
    Mutation(
        "sign test tail starts one agreement too late",
        "statistics",
        "verification/trained.py",
        "p_sign = float(stats.binom.sf(agreeing - 1, nonzero, 0.5)) if nonzero else math.nan",
        "p_sign = float(stats.binom.sf(agreeing, nonzero, 0.5)) if nonzero else math.nan",
        ("tests/test_statistics.py", "-k", "paired_test"),
    ),
    Mutation(
        "power of the one-sided test at the two-sided critical value",
        "statistics",
        "verification/trained.py",
        "critical = stats.t.ppf(1 - alpha, n - 1)",
        "critical = stats.t.ppf(1 - alpha / 2, n - 1)",
        ("tests/test_statistics.py", "-k", "power"),
    ),
    Mutation(
        "Student threshold with runs instead of runs - 1 degrees of freedom",
        "statistics",
        "verification/mc_training.py",
        "return float(stats.t.ppf(1 - false_failure / (2 * comparisons), runs - 1))",
        "return float(stats.t.ppf(1 - false_failure / (2 * comparisons), runs))",
        ("tests/test_statistics.py", "-k", "threshold"),
    ),
    Mutation(
        "slope standard error from the population deviation",
        "statistics",
        "verification/mc_training.py",
        "stderr = float(slopes.std(ddof=1) / math.sqrt(len(slopes)))",
        "stderr = float(slopes.std(ddof=0) / math.sqrt(len(slopes)))",
        ("tests/test_statistics.py", "-k", "slope_summary"),
    ),
    # ------------------------------------------------------------------- bookkeeping
    Mutation(
        "local workers report the completion index instead of the position",
        "bookkeeping",
        "nrnn/workflow/backends.py",
        "for future in concurrent.futures.as_completed(futures):\n"
        "                position = futures[future]",
        "for done, future in enumerate(concurrent.futures.as_completed(futures)):\n"
        "                position = done",
        ("tests/test_bookkeeping.py", "-k", "two_workers"),
    ),
    Mutation(
        "outcomes stored by position among the pending runs",
        "bookkeeping",
        "nrnn/workflow/harness.py",
        "outcomes[index] = dataclasses.replace(outcome, spec=jobs[index].spec)",
        "outcomes[position] = dataclasses.replace(outcome, spec=jobs[position].spec)",
        ("tests/test_bookkeeping.py", "-k", "reverse"),
    ),
    Mutation(
        "outcomes returned in completion order",
        "bookkeeping",
        "nrnn/workflow/harness.py",
        "return [outcomes[index] for index in range(len(jobs))]",
        "return list(outcomes.values())",
        ("tests/test_bookkeeping.py", "-k", "reverse"),
    ),
    Mutation(
        "store key leaves out every key added later",
        "bookkeeping",
        "nrnn/canonical.py",
        "if not (key in added and value == defaults[section].get(key, _ABSENT))",
        "if key not in added",
        ("tests/test_bookkeeping.py", "-k", "config"),
    ),
    Mutation(
        "measurement task key from the sample count only",
        "bookkeeping",
        "verification/trained.py",
        'return content_hash({"version": 3, **dataclasses.asdict(self)}, length=12)',
        'return content_hash({"version": 3, "samples": self.hessian_samples}, length=12)',
        ("tests/test_bookkeeping.py", "-k", "task"),
    ),
    Mutation(
        "robustness task key without the PGD steps",
        "bookkeeping",
        "paper_figures/robustness_task.py",
        '                "pgd_steps": self.pgd_steps,\n',
        "",
        ("tests/test_bookkeeping.py", "-k", "task"),
    ),
    # ------------------------------------------------------------------------- seeds
    Mutation(
        "Hutchinson probes ignore the seed",
        "seeds",
        "nrnn/metrics/curvature.py",
        "generator = torch.Generator().manual_seed(seed)\n    samples = []",
        "generator = torch.Generator().manual_seed(0)\n    samples = []",
        ("tests/test_seeds.py", "-k", "hessian_trace"),
    ),
    Mutation(
        "Lyapunov starting directions ignore the seed",
        "seeds",
        "nrnn/stability/exponents.py",
        "torch.Generator().manual_seed(self.seed + _DIRECTION_SEED_OFFSET)",
        "torch.Generator().manual_seed(_DIRECTION_SEED_OFFSET)",
        ("tests/test_seeds.py", "-k", "data_lyapunov"),
    ),
    Mutation(
        "fixed subsets ignore their seed",
        "seeds",
        "nrnn/data.py",
        "manual_seed(seed)\n    drawn = torch.randperm(total",
        "manual_seed(SUBSET_SEED)\n    drawn = torch.randperm(total",
        ("tests/test_seeds.py", "-k", "subset"),
    ),
    Mutation(
        "Richardson paths ignore the seed",
        "seeds",
        "verification/expansion.py",
        "generator = torch.Generator().manual_seed(seed + 1_000_003 * index)",
        "generator = torch.Generator().manual_seed(1_000_003 * index)",
        ("tests/test_seeds.py", "-k", "richardson"),
    ),
    # ----------------------------------------------------------------- configuration
    Mutation(
        "a cell's options not passed to it (its defaults built)",
        "configuration",
        "nrnn/cells/kinds.py",
        "return self.cell_type(hidden_dim, **chosen.as_dict())",
        "return self.cell_type(hidden_dim)",
        ("tests/test_config_cells.py", "-k", "reaches"),
    ),
    Mutation(
        "GRU-ODE init_std not applied to its weights",
        "configuration",
        "nrnn/cells/gru.py",
        'scale = contract.real("init_std", init_std) / math.sqrt(hidden_dim)',
        'contract.real("init_std", init_std)\n        scale = 1.0 / math.sqrt(hidden_dim)',
        ("tests/test_config_cells.py", "-k", "reaches"),
    ),
    Mutation(
        "a config's [noise] and [model.cell] options not applied (the kind's defaults built)",
        "configuration",
        "nrnn/config.py",
        "    merged |= _typed(prefix, value_type, values)\n    return canonical._make(value_type",
        "    return canonical._make(value_type",
        ("tests/test_config_cells.py", "-k", "reaches"),
    ),
    Mutation(
        "old-layout [noise] levels ignored (the form's defaults loaded)",
        "configuration",
        "nrnn/canonical.py",
        'return _make(kind.noise_type, {key: flat[key] for key in own}, "noise.")',
        'return _make(kind.noise_type, {key: LEGACY_NOISE[key] for key in own}, "noise.")',
        ("tests/test_store_keys.py",),
    ),
    Mutation(
        "recurrence not passed to the model",
        "configuration",
        "nrnn/train/factory.py",
        "        recurrence=m.recurrence,\n",
        "",
        ("tests/test_config_cells.py", "-k", "reaches"),
    ),
    # --------------------------------------------------------------------- noise off
    Mutation(
        "Lyapunov exponent along data measured with the noise on",
        "noise off",
        "verification/trained.py",
        "lyapunov_exponent(without_noise(model), x, paths=x.shape[0], seed=seed)",
        "lyapunov_exponent(model, x, paths=x.shape[0], seed=seed)",
        ("tests/test_noise_off.py", "-k", "data_lyapunov"),
    ),
    Mutation(
        "step Jacobians along the mean step instead of the evaluation step",
        "noise off",
        "nrnn/metrics/dynamics.py",
        "step = model.noise.evaluation_step(model.dt, model.noise_parameters)",
        "step = model.noise.mean_step(model.dt, model.noise_parameters)",
        ("tests/test_noise_off.py", "-k", "jacobian"),
    ),
    Mutation(
        "evaluation keeps the training mode (noise on)",
        "noise off",
        "nrnn/train/objective.py",
        "    model.eval()\n    inputs, labels = dataset.tensors",
        "    inputs, labels = dataset.tensors",
        ("tests/test_noise_off.py", "-k", "evaluate"),
    ),
    Mutation(
        "mean loss of the Hessian measured with the noise on",
        "noise off",
        "nrnn/metrics/_base.py",
        "with deterministic(model):\n        logits = model(x)\n    _check_logits(logits, y)",
        "with contextlib.nullcontext():\n        logits = model(x)\n    _check_logits(logits, y)",
        ("tests/test_noise_off.py", "-k", "hessian or mean_loss"),
    ),
    Mutation(
        "fused backward: the adjoint is not carried through the step",
        "gradients",
        "nrnn/fused.py",
        'cotangent = found["state"]',
        "cotangent = cotangent",
        ("tests/test_fused.py", "-k", "equal_the_reference"),
    ),
    Mutation(
        "fused backward: the gradient of the stored path is dropped",
        "gradients",
        "nrnn/fused.py",
        "cotangent = cotangent + path_grads[k]",
        "cotangent = cotangent + 0 * path_grads[k]",
        ("tests/test_fused.py",),
    ),
    Mutation(
        "fused backward: each step's weight-gradient term overwrites the sum",
        "gradients",
        "nrnn/fused.py",
        "gradient.addmm_(left.transpose(0, 1), right)",
        "gradient.addmm_(left.transpose(0, 1), right, beta=0)",
        ("tests/test_fused.py", "-k", "equal_the_reference"),
    ),
    # ----------------------------------------------------------------------- claim 9
    Mutation(
        "stopping rule stops at the first plateau, whatever plateau_decays says",
        "claim 9",
        "nrnn/train/stopping.py",
        'return "decay" if decays < train_config.plateau_decays else "stop"',
        'return "stop"',
        ("tests/test_stopping.py",),
    ),
    Mutation(
        "stopping rule counts a gain equal to the minimum as a plateau",
        "claim 9",
        "nrnn/train/stopping.py",
        "if recent - before >= train_config.stop_min_gain:",
        "if recent - before > train_config.stop_min_gain:",
        ("tests/test_stopping.py", "-k", "decision"),
    ),
    Mutation(
        "released noise translated without the square root of dt",
        "claim 9",
        "nrnn/translation.py",
        "paper=Noise(float(released_additive_level(released.additive, dt)), 0.0),",
        "paper=Noise(released.additive, 0.0),",
        ("tests/test_translation.py",),
    ),
    Mutation(
        "released noise translated by the old convention (sigma_2 = s_m / sqrt(dt))",
        "claim 9",
        "nrnn/translation.py",
        "paper=Noise(float(released_additive_level(released.additive, dt)), 0.0),",
        "paper=Noise(float(released_additive_level(released.additive, dt)), s_m / dt**0.5),",
        ("tests/test_translation.py",),
    ),
    Mutation(
        "robustness contrasts pair seeds by position",
        "claim 9",
        "paper_figures/robustness_summary.py",
        'return [entry["seeds"].index(seed) for seed in shared]',
        "return list(range(len(shared)))",
        ("tests/test_robustness_summary.py",),
    ),
    Mutation(
        "robustness verdict from the sign of the mean, not its interval",
        "claim 9",
        "paper_figures/robustness_summary.py",
        "return 1 if interval[0] > 0 else -1 if interval[1] < 0 else 0",
        'return 1 if comparison["mean_difference"] > 0 else -1',
        ("tests/test_robustness_summary.py",),
    ),
    Mutation(
        "robustness contrast of accuracies instead of accuracy drops",
        "claim 9",
        "paper_figures/robustness_summary.py",
        "[(a - clean_a) - (b - clean_b) for a, b in zip(row_a, row_b, strict=True)]",
        "[a - b for a, b in zip(row_a, row_b, strict=True)]",
        ("tests/test_robustness_summary.py",),
    ),
)


@dataclass
class Outcome:
    mutation: Mutation
    status: str  # "killed", "survived" or "error"
    seconds: float
    detail: str = ""


def planted(mutation: Mutation) -> tuple[Path, str] | str:
    """(file, its original text) if the original occurs exactly once, else the error."""
    path = ROOT / mutation.path
    if not path.is_file():
        return f"{mutation.path} does not exist"
    text = path.read_text(encoding="utf-8")
    count = text.count(mutation.original)
    if count != 1:
        return f"original text found {count} times in {mutation.path} (must be exactly once)"
    return path, text


def run_one(mutation: Mutation, timeout: float) -> Outcome:
    """Plant one bug, run its tests, restore the file (contents and times)."""
    started = time.perf_counter()
    found = planted(mutation)
    if isinstance(found, str):
        return Outcome(mutation, "error", 0.0, found)
    path, text = found
    times = os.stat(path)
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
    environment = os.environ | {"PYTHONDONTWRITEBYTECODE": "1"}
    try:
        path.write_text(text.replace(mutation.original, mutation.mutated), encoding="utf-8")
        result = subprocess.run(
            command + list(mutation.tests),
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return Outcome(mutation, "killed", time.perf_counter() - started, "timed out")
    finally:
        path.write_text(text, encoding="utf-8")
        os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
    seconds = time.perf_counter() - started
    last = result.stdout.strip().splitlines()[-1:] or [""]
    if result.returncode == 1:
        return Outcome(mutation, "killed", seconds, last[0])
    if result.returncode == 0:
        return Outcome(mutation, "survived", seconds, last[0])
    # 2: interrupted or collection error, 3: internal error, 4: usage, 5: no tests ran
    return Outcome(mutation, "error", seconds, f"pytest exited {result.returncode}: {last[0]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="only the bugs whose name contains NAME"
    )
    parser.add_argument("--list", action="store_true", help="list the planted bugs and exit")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per bug's tests")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the file being mutated is restored
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    chosen = [m for m in MUTATIONS if not args.only or any(part in m.name for part in args.only)]
    if args.list:
        for mutation in chosen:
            print(f"{mutation.area:12} {mutation.path:30} {mutation.name}")
        return 0
    outcomes = []
    for number, mutation in enumerate(chosen, 1):
        outcome = run_one(mutation, args.timeout)
        outcomes.append(outcome)
        print(
            f"[{number:2}/{len(chosen)}] {outcome.status:8} {outcome.seconds:5.0f} s  "
            f"{mutation.area:11} {mutation.name}  ({outcome.detail})",
            flush=True,
        )
    killed = sum(o.status == "killed" for o in outcomes)
    errors = [o for o in outcomes if o.status == "error"]
    survivors = [o for o in outcomes if o.status == "survived"]
    rate = killed / len(outcomes) if outcomes else 0.0
    print(
        f"\nkilled {killed} of {len(outcomes)} planted bugs: kill rate {100 * rate:.1f} % "
        f"(required {100 * REQUIRED_KILL_RATE:.0f} %); {len(survivors)} survived, "
        f"{len(errors)} errors"
    )
    for outcome in survivors:
        print(f"  survived: {outcome.mutation.name} ({outcome.mutation.path})")
    for outcome in errors:
        print(f"  error: {outcome.mutation.name}: {outcome.detail}")
    return 0 if not errors and rate >= REQUIRED_KILL_RATE else 1


if __name__ == "__main__":
    sys.exit(main())
