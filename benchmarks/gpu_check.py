"""The GPU check: one script, run once wherever a CUDA GPU is available (under 5 minutes on
one H200-class GPU).

``python -m nrnn.benchmarks.gpu_check [--out FILE] [--repeats N] [--no-tests] [--no-plan]``
``python -m nrnn.benchmarks.gpu_check --markdown [--out FILE]`` (no GPU needed)

1. **The CUDA tests** (``tests/test_devices.py``, ``tests/test_graphs.py``) in a child
   pytest process: the GPU and the CPU agree, the captured training step equals the eager
   step on the same noise, a failed capture falls back to eager, training with the graph
   resumes exactly. Each test's outcome is recorded.
2. **The training step at the paper's size** (hidden 128, M = 784, batch 128, Adam:
   forward, backward, optimiser), the median of ``--repeats`` steps after a warm-up:
   ``NoisyRNN`` eagerly and replayed from a CUDA graph (``nrnn.graphs``) for the paper's
   noise on the fused and the reference recurrence, the released noise, the clean
   Lipschitz RNN and the probe regularizer (K = 8); ``torch.nn.RNN`` + a linear readout
   (cuDNN); and a minimal hand-written loop of the Lipschitz cell (A h and W h as one
   product, tanh, additive noise drawn in one call, autograd backward), eager and captured:
   the floor a captured Python loop of this cell reaches.
3. **The captured step equals the eager step** at that size: three steps from the same
   parameters and CUDA generator state, every parameter and loss compared.
4. **The full profile in GPU-hours**: ``--plan`` of ``nrnn verify`` and ``nrnn figures``
   ``--profile full`` (every run the two need, counted once) with timings measured on
   this GPU (``nrnn.workflow.cost``: each shape of run timed once, captured as it would train).

It writes ``--out`` (default ``benchmarks/results/gpu_check.json``) after each part, with
the device's name, torch's version, the timings, the ratios and the aims (a failed aim is a
finding, not an error), and its summary as Markdown beside it (``gpu_check.md``, which
``tools/readme_sync.py`` copies into the README). On a machine without CUDA it writes
nothing and exits with status 2 and the message "no CUDA device". ``--markdown`` only
writes the summary of the JSON at ``--out`` (or, without one, the note that the check has
not run yet and how to run it).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from nrnn import graphs
from nrnn.files import write_json_atomic, write_text_atomic
from nrnn.model import NoisyRNN
from nrnn.noise import Noise, NoiseForm, ReleasedNoise
from nrnn.objectives import OBJECTIVES
from nrnn.train import objective_loss

from .model_speed import TorchRNNClassifier
from .timing import aim, environment

DEFAULT_OUT = Path("benchmarks") / "results" / "gpu_check.json"
REPOSITORY = Path(__file__).resolve().parent.parent
TESTS = ("tests/test_devices.py", "tests/test_graphs.py")
TEST_TIMEOUT_SECONDS = 240
PLAN_PROFILE = "full"
PLAN_GROUPS = ("verify", "figures")
PLAN_START_BUDGET_SECONDS = 150
"""The full profile's plan is measured only if the check has run less than this (its
timings take a minute or two on a GPU; the whole check stays under 5 minutes)."""

HIDDEN, STEPS, BATCH, INPUT_DIM, CLASSES, DT = 128, 784, 128, 1, 10, 0.01
"""The paper's size (pixel MNIST): hidden 128, 784 steps, batch 128, Δt 0.01."""
AIM_STEP_MS = 21.0  # a compiled step in a CUDA graph, measured for the issue
FLOOR_STEP_MS = 35.0  # the hand-written loop captured, measured for the issue
AIM_CUDNN_RATIO = 10.0
AIM_PROFILE_GPU_HOURS = 30.0
ROUND_OFF_RTOL, ROUND_OFF_ATOL = 1e-4, 1e-6
"""Captured against eager after three Adam steps: float32 round-off, not a bug."""


class NoCudaDevice(RuntimeError):
    """The check needs a CUDA device."""


# ------------------------------------------------------------------------- arguments
def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nrnn.benchmarks.gpu_check",
        description="The GPU check: CUDA tests, training-step timings at the paper's size, "
        "captured = eager, and the full profile in GPU-hours (written to --out).",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON file to write")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed steps per variant (median; default 5)"
    )
    parser.add_argument("--no-tests", action="store_true", help="skip the CUDA tests")
    parser.add_argument("--no-plan", action="store_true", help="skip the full profile's plan")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="only write the Markdown summary of the JSON at --out (no GPU needed)",
    )
    arguments = parser.parse_args(argv)
    if arguments.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {arguments.repeats}")
    return arguments


def require_cuda() -> torch.device:
    if not torch.cuda.is_available():
        raise NoCudaDevice(
            "no CUDA device: torch sees no GPU on this machine (torch "
            f"{torch.__version__}); the GPU check runs where one is, e.g. with the device "
            "tool: python -m nrnn.benchmarks.gpu_check --out $OUT/gpu_check.json"
        )
    return torch.device("cuda", torch.cuda.current_device())


# ------------------------------------------------------------------------- 1. tests
def read_junit(path: Path) -> dict[str, str]:
    """test id -> "passed" | "failed" | "skipped: reason" from a pytest JUnit XML file."""
    outcomes = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = f"skipped: {child.get('message', '')}"
        outcomes[name] = outcome
    return outcomes


def run_tests(timeout: float = TEST_TIMEOUT_SECONDS) -> dict[str, Any]:
    """The CUDA tests in a child pytest process (its own CUDA context)."""
    missing = [test for test in TESTS if not (REPOSITORY / test).is_file()]
    if missing:
        return {"error": f"test files not found under {REPOSITORY}: {missing}"}
    with tempfile.TemporaryDirectory() as directory:
        report = Path(directory) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"]
        command += [*TESTS, f"--junitxml={report}"]
        started = time.perf_counter()
        try:
            finished = subprocess.run(
                command, cwd=REPOSITORY, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return {"error": f"the tests ran past {timeout:.0f} s", "command": " ".join(command)}
        outcomes = read_junit(report) if report.exists() else {}
    counts = {
        kind: sum(1 for o in outcomes.values() if o.startswith(kind))
        for kind in ("passed", "failed", "skipped")
    }
    return {
        "command": " ".join(command[1:]),
        "exit_status": finished.returncode,
        "seconds": time.perf_counter() - started,
        **counts,
        "outcomes": outcomes,
        "output_tail": finished.stdout[-3000:] + finished.stderr[-2000:],
    }


# ------------------------------------------------------------------------- 2. timings
def paper_batch(device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-like inputs in [0, 1] (BATCH, STEPS, 1) and labels (BATCH,), on ``device``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(BATCH, STEPS, INPUT_DIM, generator=generator)
    y = torch.randint(0, CLASSES, (BATCH,), generator=generator)
    return x.to(device), y.to(device)


def noisy_rnn(noise: NoiseForm, recurrence: str, device: torch.device, seed: int = 0) -> NoisyRNN:
    torch.manual_seed(seed)
    model = NoisyRNN(INPUT_DIM, HIDDEN, CLASSES, dt=DT, noise=noise, recurrence=recurrence)
    return model.to(device)


class HandWrittenLipschitz(nn.Module):
    """The Lipschitz cell as the shortest loop: h += Δt (A h + tanh(W h + U x_k + b)) +
    √Δt σ ξ_k, with A h and W h one product of the stacked (2d, d) matrix and the noise of
    every step drawn in one call; autograd differentiates it."""

    def __init__(self, sigma: float = 0.5) -> None:
        super().__init__()
        scale = 1.0 / math.sqrt(HIDDEN)
        self.stacked = nn.Parameter(torch.randn(2 * HIDDEN, HIDDEN) * scale)
        self.input = nn.Linear(INPUT_DIM, HIDDEN)
        self.readout = nn.Linear(HIDDEN, CLASSES)
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        drives = self.input(x).transpose(0, 1)
        noise = torch.randn_like(drives) * (math.sqrt(DT) * self.sigma)
        state = drives.new_zeros(x.shape[0], HIDDEN)
        for drive, xi in zip(drives.unbind(0), noise.unbind(0), strict=True):
            a_h, w_h = (state @ self.stacked.T).split(HIDDEN, dim=-1)
            state = state + DT * (a_h + torch.tanh(w_h + drive)) + xi
        return self.readout(state)


def _step_of(
    loss_of: graphs.LossFunction, model: nn.Module, device: torch.device, captured: bool
) -> graphs.TrainingStep:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, capturable=captured)
    return graphs.training_step(
        loss_of,
        optimizer,
        grad_clip=0.0,
        capture=captured,
        batch_size=BATCH,
        device=device,
        report=lambda line: print(line, file=sys.stderr, flush=True),
    )


def time_step(
    step: graphs.TrainingStep, x: torch.Tensor, y: torch.Tensor, repeats: int
) -> dict[str, Any]:
    """The first call's seconds (warm-up; a captured step's capture) and the median of
    ``repeats`` later calls, in milliseconds, each waited for on the GPU."""

    def timed() -> float:
        torch.cuda.synchronize()
        started = time.perf_counter()
        step(x, y)
        torch.cuda.synchronize()
        return time.perf_counter() - started

    first = timed()
    milliseconds = [1e3 * timed() for _ in range(repeats)]
    result: dict[str, Any] = {
        "first_call_seconds": first,
        "milliseconds": milliseconds,
        "median_ms": statistics.median(milliseconds),
    }
    if isinstance(step, graphs.CapturedStep):
        result["graphs_captured"] = step.captured
        result["capture_failure"] = step.failure
    return result


VARIANTS: dict[str, tuple[NoiseForm, str, str]] = {
    "noisy_rnn_paper_fused": (Noise(0.5), "fused", "noise"),
    "noisy_rnn_paper_reference": (Noise(0.5), "reference", "noise"),
    "noisy_rnn_released_fused": (ReleasedNoise(0.05, 0.02), "fused", "noise"),
    "lipschitz_clean_fused": (Noise(), "fused", "clean"),
    "probe_regularizer_k8": (Noise(0.5), "fused", "explicit"),
}
"""name -> (noise, recurrence, objective) of the NoisyRNN variants timed."""


def time_variants(device: torch.device, repeats: int) -> dict[str, dict[str, Any]]:
    """Eager and captured medians of every variant, cuDNN's and the hand-written loop's."""
    x, y = paper_batch(device)
    timings: dict[str, dict[str, Any]] = {}
    for name, (noise, recurrence, objective) in VARIANTS.items():
        timings[name] = {}
        regularized = OBJECTIVES.get(objective).regularized
        few = 2 if regularized else repeats  # the regularizer: 1.6 s a step eagerly
        for mode in ("eager", "captured"):
            model = noisy_rnn(noise, recurrence, device)

            def loss_of(x, y, model=model, objective=objective):
                return objective_loss(model, x, y, objective, regularizer_method="probe")

            step = _step_of(loss_of, model, device, mode == "captured")
            timings[name][mode] = time_step(step, x, y, few)
            print(f"{name} {mode}: {timings[name][mode]['median_ms']:.1f} ms", file=sys.stderr)
    torch.manual_seed(0)
    cudnn = TorchRNNClassifier(INPUT_DIM, HIDDEN, CLASSES).to(device)  # cuDNN on a GPU
    timings["torch_rnn_cudnn"] = {
        "eager": time_step(
            _step_of(lambda x, y: F.cross_entropy(cudnn(x), y), cudnn, device, False),
            x,
            y,
            repeats,
        )
    }
    timings["handwritten_lipschitz_loop"] = {}
    for mode in ("eager", "captured"):
        torch.manual_seed(0)
        loop = HandWrittenLipschitz().to(device)

        def loop_loss(x, y, loop=loop):
            return F.cross_entropy(loop(x), y)

        step = _step_of(loop_loss, loop, device, mode == "captured")
        timings["handwritten_lipschitz_loop"][mode] = time_step(step, x, y, repeats)
    return timings


def summarise(timings: dict[str, dict[str, Any]]) -> tuple[dict[str, float], list[dict]]:
    """Ratios and aims from the medians of :func:`time_variants`."""
    median = {
        (name, mode): result["median_ms"]
        for name, modes in timings.items()
        for mode, result in modes.items()
    }
    cudnn = median[("torch_rnn_cudnn", "eager")]
    floor = median[("handwritten_lipschitz_loop", "captured")]
    ratios: dict[str, float] = {}
    for name in (*VARIANTS, "handwritten_lipschitz_loop"):
        eager, captured = median[(name, "eager")], median[(name, "captured")]
        ratios[f"{name}: eager / captured"] = eager / captured
        ratios[f"{name}: captured / cuDNN nn.RNN"] = captured / cudnn
        ratios[f"{name}: captured / hand-written loop captured"] = captured / floor
    step = median[("noisy_rnn_paper_fused", "captured")]
    aims = [
        aim(f"NoisyRNN training step captured (ms) <= {AIM_STEP_MS:g}", step, AIM_STEP_MS, "<="),
        aim(
            f"NoisyRNN training step captured (ms) <= {FLOOR_STEP_MS:g} (the captured floor)",
            step,
            FLOOR_STEP_MS,
            "<=",
        ),
        aim(
            f"NoisyRNN captured / cuDNN nn.RNN <= {AIM_CUDNN_RATIO:g}",
            step / cudnn,
            AIM_CUDNN_RATIO,
            "<=",
        ),
    ]
    return ratios, aims


# ------------------------------------------------------------------- 3. equality
def captured_equals_eager(device: torch.device, steps: int = 3) -> dict[str, Any]:
    """``steps`` Adam steps of the paper-size NoisyRNN (paper noise, fused) eagerly and
    replayed from a graph, from the same parameters and CUDA generator state."""
    x, y = paper_batch(device)
    results = {}
    for mode in ("eager", "captured"):
        model = noisy_rnn(Noise(0.5), "fused", device)

        def loss_of(x: torch.Tensor, y: torch.Tensor, model: NoisyRNN = model) -> torch.Tensor:
            return objective_loss(model, x, y, "noise")

        step = _step_of(loss_of, model, device, mode == "captured")
        torch.cuda.manual_seed(11)
        losses = torch.stack([step(x.roll(k, 0), y.roll(k, 0)).clone() for k in range(steps)])
        failure = getattr(step, "failure", None)
        results[mode] = (losses, [p.detach().clone() for p in model.parameters()], failure)
    eager, captured = results["eager"], results["captured"]
    pairs = [(eager[0], captured[0]), *zip(eager[1], captured[1], strict=True)]
    largest = max(float((a - b).abs().max()) for a, b in pairs)
    close = all(torch.allclose(b, a, rtol=ROUND_OFF_RTOL, atol=ROUND_OFF_ATOL) for a, b in pairs)
    return {
        "steps": steps,
        "capture_failure": captured[2],
        "bitwise_equal": all(torch.equal(a, b) for a, b in pairs),
        "largest_absolute_difference": largest,
        "tolerance": {"rtol": ROUND_OFF_RTOL, "atol": ROUND_OFF_ATOL},
        "within_round_off": close and captured[2] is None,
        "losses_eager": eager[0].tolist(),
        "losses_captured": captured[0].tolist(),
    }


# ---------------------------------------------------------------------- 4. the plan
def profile_plan(profile: str = PLAN_PROFILE) -> dict[str, Any]:
    """Every run ``nrnn verify`` and ``nrnn figures`` need at ``profile`` (each store key
    once) with its estimated seconds on this machine's device (``--plan``'s estimate)."""
    from nrnn.workflow.experiments import Context, load
    from nrnn.workflow.experiments import names as experiment_names
    from nrnn.workflow.store import RunStore

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        context = Context(profile=profile, store=RunStore(directory), progress=False)
        seconds: dict[str, float] = {}
        for group in PLAN_GROUPS:
            for name in experiment_names(group):
                experiment = load(group, name)
                if experiment.plan is None:
                    continue
                for specs, task in experiment.plan(experiment.sizes(profile), context):
                    for row in context.plan_rows(specs, task):
                        seconds[row.key] = max(seconds.get(row.key, 0.0), row.remaining_seconds)
        cache = Path(directory) / "timings.json"
        shapes = len(json.loads(cache.read_text())) if cache.exists() else 0
    return {
        "profile": profile,
        "groups": list(PLAN_GROUPS),
        "runs": len(seconds),
        "shapes_timed": shapes,
        "gpu_hours": sum(seconds.values()) / 3600,
        "seconds_to_plan": time.perf_counter() - started,
        "how": "nrnn.workflow.cost.Timings on this GPU: each shape of run timed once with the "
        "training step it would use (captured); a run's estimate is its steps and evaluations "
        "at those rates, one run at a time on one GPU",
    }


# ------------------------------------------------------------------------ summary
HOW_TO_RUN = (
    "Run it where a GPU is: `python -m nrnn.benchmarks.gpu_check` (under 5 minutes; it "
    "writes `benchmarks/results/gpu_check.json` and this summary), then "
    "`python tools/readme_sync.py`. On a machine with torch (CUDA) and pytest but without "
    "this package: `python3 -m pip install -q --no-deps --no-build-isolation -e . && "
    "python3 -m nrnn.benchmarks.gpu_check --out DIR/gpu_check.json`, then copy "
    "`gpu_check.json` and `gpu_check.md` from DIR into `benchmarks/results/`."
)
NOT_RUN = (
    "The GPU check has not run yet: the captured training step was built and tested on a "
    "CPU (every capture hazard a CPU can show is tested there), with no GPU at hand, so "
    "there are no GPU timings here yet. " + HOW_TO_RUN
)
LABELS = {
    "noisy_rnn_paper_fused": "`NoisyRNN`, paper noise σ₁ = 0.5, fused recurrence",
    "noisy_rnn_paper_reference": '`NoisyRNN`, paper noise σ₁ = 0.5, `recurrence="reference"`',
    "noisy_rnn_released_fused": "`NoisyRNN`, released noise (0.05, 0.02), fused",
    "lipschitz_clean_fused": "clean Lipschitz RNN, fused",
    "probe_regularizer_k8": "explicit objective, probe regularizer (K = 8)",
    "torch_rnn_cudnn": "`torch.nn.RNN` + Linear (cuDNN)",
    "handwritten_lipschitz_loop": "hand-written Lipschitz loop (autograd backward)",
}


def _milliseconds(result: dict[str, Any] | None) -> str:
    if not result:
        return "—"
    text = f"{result['median_ms']:.1f} ms"
    if result.get("capture_failure"):
        text += f" (capture failed: {result['capture_failure']}; eager)"
    return text


def render_markdown(results: dict[str, Any] | None) -> str:
    """The summary of a GPU check's results (None: the note that it has not run)."""
    if results is None:
        return NOT_RUN + "\n"
    environment = results.get("environment", {})
    lines = [
        f"Measured on one {results.get('device')} (torch {results.get('torch_version')}, "
        f"{environment.get('timestamp', '')}) by `python -m nrnn.benchmarks.gpu_check` "
        "(`benchmarks/results/gpu_check.json`). One training step (forward, backward, Adam) "
        "at hidden 128, M = 784, batch 128, median of the timed steps:",
        "",
        "| training step | eager | replayed from a CUDA graph |",
        "|---|---|---|",
    ]
    timings = results.get("step_timings", {})
    if "error" in timings:
        lines.append(f"| (the timings failed: {timings['error']}) | | |")
    else:
        for name, label in LABELS.items():
            modes = timings.get(name, {})
            lines.append(
                f"| {label} | {_milliseconds(modes.get('eager'))} | "
                f"{_milliseconds(modes.get('captured'))} |"
            )
    lines.append("")
    for entry in results.get("aims", []):
        verdict = "met" if entry["met"] else "not met"
        lines.append(f"- {entry['description']}: {entry['value']:.3g} ({verdict})")
    equality = results.get("captured_equals_eager", {})
    if "largest_absolute_difference" in equality:
        same = (
            "bitwise equal"
            if equality["bitwise_equal"]
            else (f"largest difference {equality['largest_absolute_difference']:.2g}")
        )
        verdict = "within float32 round-off" if equality["within_round_off"] else "NOT equal"
        lines.append(
            f"- captured against eager, {equality['steps']} steps on the same noise: {same} "
            f"({verdict})"
        )
    tests = results.get("tests", {})
    if "outcomes" in tests:
        failed = [name for name, outcome in tests["outcomes"].items() if outcome == "failed"]
        lines.append(
            f"- CUDA tests ({', '.join(TESTS)}): {tests['passed']} passed, {tests['failed']} "
            f"failed, {tests['skipped']} skipped" + (f": {', '.join(failed)}" if failed else "")
        )
    elif tests:
        lines.append(f"- CUDA tests: {tests.get('error', 'not run')}")
    plan = results.get("full_profile", {})
    if "gpu_hours" in plan:
        lines.append(
            f"- the `full` profile (`nrnn verify` and `nrnn figures`, {plan['runs']} runs): "
            f"{plan['gpu_hours']:.1f} GPU-hours by `--plan` on this GPU"
        )
    elif plan:
        lines.append(f"- the `full` profile: {plan.get('skipped') or plan.get('error')}")
    return "\n".join(lines) + "\n"


def markdown_path(out: Path) -> Path:
    return out.with_suffix(".md")


# --------------------------------------------------------------------------- main
def write_results(path: Path, results: dict[str, Any]) -> Path:
    """The results as indented JSON, written atomically (a check cut short keeps what it
    had), and their summary beside them (:func:`markdown_path`)."""
    write_text_atomic(markdown_path(path), render_markdown(results))
    return write_json_atomic(path, results, indent=1)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.markdown:
        existing = json.loads(arguments.out.read_text()) if arguments.out.exists() else None
        write_text_atomic(markdown_path(arguments.out), render_markdown(existing))
        return 0
    try:
        device = require_cuda()
    except NoCudaDevice as error:
        print(error, file=sys.stderr)
        return 2
    started = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "gpu_check",
        "device": torch.cuda.get_device_name(device),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "environment": environment(),
        "sizes": {"hidden": HIDDEN, "steps": STEPS, "batch": BATCH, "dt": DT, "optimiser": "Adam"},
    }

    def save(part: str, compute: Callable[[], Any]) -> None:
        try:
            results[part] = compute()
        except Exception as error:  # recorded: the other parts still run
            results[part] = {"error": f"{type(error).__name__}: {error}"}
        results["seconds"] = time.perf_counter() - started
        write_results(arguments.out, results)
        print(f"gpu_check: {part} done ({results['seconds']:.0f} s)", file=sys.stderr)

    if not arguments.no_tests:
        save("tests", run_tests)
    save("step_timings", lambda: time_variants(device, arguments.repeats))
    timings = results["step_timings"]
    if "error" not in timings:
        ratios, aims = summarise(timings)
        results["ratios"], results["aims"] = ratios, aims
    save("captured_equals_eager", lambda: captured_equals_eager(device))
    if arguments.no_plan:
        results["full_profile"] = {"skipped": "--no-plan"}
    elif time.perf_counter() - started > PLAN_START_BUDGET_SECONDS:
        results["full_profile"] = {
            "skipped": f"the check had run {time.perf_counter() - started:.0f} s; run "
            "`nrnn figures --profile full --plan` on the GPU for the estimate"
        }
    else:
        save("full_profile", profile_plan)
        plan = results["full_profile"]
        if "gpu_hours" in plan:
            results.setdefault("aims", []).append(
                aim(
                    f"full profile (verify + figures) GPU-hours <= {AIM_PROFILE_GPU_HOURS:g}",
                    plan["gpu_hours"],
                    AIM_PROFILE_GPU_HOURS,
                    "<=",
                )
            )
    write_results(arguments.out, results)
    print(f"gpu_check: wrote {arguments.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
