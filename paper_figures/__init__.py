"""The paper's figures and tables, one module per figure.

Each figure module defines ``EXPERIMENT``, an ``nrnn.experiments.Experiment`` of the
``figures`` group whose ``run(sizes, context)`` computes (from the shared store of trained
runs, or the verification report) and writes its files into ``context.out_dir``: every
figure as PNG and PDF (with :mod:`nrnn.figures.style`) together with its data as CSV or
JSON and a Markdown table, so tests can check results without looking at pixels. Adding a
figure means adding one module and one line in ``nrnn.experiments.REGISTRY``.
"""
