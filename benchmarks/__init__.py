"""Timed comparisons of the noisy RNN, written to JSON.

Timings are benchmarks, never tests: each benchmark measures ratios against a baseline
timed in the same run (interleaved, median of several repeats after a warm-up) and
records whether each aim was met. Run them with ``python -m nrnn.benchmarks`` or ``nrnn bench``;
``nrnn.benchmarks.run`` holds the command line.
"""
