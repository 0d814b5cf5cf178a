"""The paper's figures and tables, one module per figure.

Each figure module defines ``EXPERIMENT``, an ``nrnn.workflow.experiments.Experiment`` of
the ``figures`` group whose ``run(sizes, context)`` computes (from the shared store of trained
runs, or the verification report) and writes its files into ``context.out_dir``: every
figure as PNG and PDF (with :mod:`nrnn.figures.style`) together with its data as CSV or
JSON and a Markdown table, so tests can check results without looking at pixels. Importing
this package registers the figures in the order they are drawn (the cheap ones first):
adding a figure means adding one module and its name below.
"""

from nrnn.workflow.commands import Command
from nrnn.workflow.experiments import register_experiments

register_experiments(
    "figures",
    {
        name: f"{__name__}.{name}"
        for name in ("expansion", "trained_metrics", "stabilisation", "robustness")
    },
)
COMMAND = Command(
    "figures",
    "train, evaluate and draw the paper's figures and tables",
    f"{__name__}.cli:main",
)
