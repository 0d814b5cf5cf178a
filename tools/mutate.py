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
    area: str  # mathematics, estimators, gradients, attacks, training, harness
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
        "nrnn/noise.py",
        "additive = (root_dt * self.additive * xi[..., :n]).unbind(0)",
        "additive = (dt * self.additive * xi[..., :n]).unbind(0)",
        ("tests/test_model.py",),
    ),
    Mutation(
        "released-code step multiplier mean 1 - s_m instead of 1 - s_m/2",
        "mathematics",
        "nrnn/noise.py",
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
        "nrnn/stability.py",
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
        "nrnn/stability.py",
        "samples = log_growth / run.time()",
        "samples = log_growth / run.steps",
        ("tests/test_stability.py", "-k", "lyapunov"),
    ),
    Mutation(
        "Hutchinson probes in {0, 1} instead of {-1, 1}",
        "estimators",
        "nrnn/metrics.py",
        "v = torch.randint(0, 2, (operator.dim,), generator=generator).to(operator.dtype) * 2 - 1",
        "v = torch.randint(0, 2, (operator.dim,), generator=generator).to(operator.dtype)",
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
        "nrnn/train.py",
        "return (expansion.loss + 0.5 * (expansion.q + expansion.r)).mean()",
        "return (expansion.loss + (expansion.q + expansion.r)).mean()",
        ("tests/test_regularizer.py", "-k", "objective"),
    ),
    Mutation(
        "randomness not re-seeded per epoch",
        "training",
        "nrnn/train.py",
        "torch.manual_seed(_epoch_seed(config.train.seed, epoch))",
        "pass",
        ("tests/test_train.py", "-k", "resume"),
    ),
    Mutation(
        "gradient clipping applied when it is off",
        "training",
        "nrnn/train.py",
        "if config.optim.grad_clip:",
        "if not config.optim.grad_clip:",
        ("tests/test_lipschitz_pins.py",),
    ),
    Mutation(
        "learning-rate decay ignores its period",
        "training",
        "nrnn/train.py",
        "step_size=config.optim.lr_decay_every or 10**9,",
        "step_size=10**9,",
        ("tests/test_train.py", "-k", "schedule"),
    ),
    # ---------------------------------------------------------------------- harness
    Mutation(
        "store key ignores the code version",
        "harness",
        "nrnn/store.py",
        'return {"config": config.canonical_dict(), "code_version": CODE_VERSION}',
        'return {"config": config.canonical_dict()}',
        ("tests/test_harness.py",),
    ),
    Mutation(
        "finished runs are trained again",
        "harness",
        "nrnn/harness.py",
        "if not store.is_finished(spec.config):\n                result = train(",
        "if True:\n                result = train(",
        ("tests/test_harness.py",),
    ),
    Mutation(
        "stored task results are recomputed",
        "harness",
        "nrnn/harness.py",
        "    result = store.read_task(spec.config, task.name, task.key())\n    if result is None:",
        "    result = None\n    if result is None:",
        ("tests/test_harness.py",),
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
