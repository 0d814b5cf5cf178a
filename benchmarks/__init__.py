"""Timed comparisons of the noisy RNN, written to JSON.

Timings are benchmarks, never tests: each benchmark measures ratios against a baseline
timed in the same run (interleaved, median of several repeats after a warm-up) and
records whether each aim was met. Run them with ``python -m nrnn.benchmarks`` or ``nrnn bench``;
``nrnn.benchmarks.run`` holds the command line. Importing this package registers the
benchmarks (the ``bench`` group of ``nrnn.workflow.experiments``).
"""

from nrnn.workflow.commands import Command
from nrnn.workflow.experiments import register_experiments

register_experiments(
    "bench",
    {
        name: f"{__name__}.{name}"
        for name in ("model_speed", "regularizer_speed", "monte_carlo_speed")
    },
)
COMMAND = Command(
    "bench", "timed comparisons, written to benchmarks/results/*.json", f"{__name__}.run:main"
)
