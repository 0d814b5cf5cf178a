"""The workflow layer: trained runs and the commands around the numerical core.

- :mod:`~nrnn.workflow.store`: the store of trained runs and their keys;
- :mod:`~nrnn.workflow.harness`: run specs, tasks, executing the missing runs, the plan;
- :mod:`~nrnn.workflow.backends`: where runs execute (registered backends: local
  processes, Ray);
- :mod:`~nrnn.workflow.cost`: estimated cost of runs from measured step times;
- :mod:`~nrnn.workflow.lease`: one process at a time per run;
- :mod:`~nrnn.workflow.inventory`: listing and pruning a store;
- :mod:`~nrnn.workflow.memory`: the allocator settings of training workers;
- :mod:`~nrnn.workflow.experiments`: the registry of experiments, profiles, common flags;
- :mod:`~nrnn.workflow.plugins`, :mod:`~nrnn.workflow.commands`: the packages plugged in
  through entry points (the verification, figures, benchmarks and derivations register
  their commands and experiments that way) and the subcommands they add;
- :mod:`~nrnn.workflow.cli`: the ``nrnn`` command.

The workflow imports the numerical core (``nrnn.train``, ``nrnn.config``, ...); the core
never imports the workflow. The old module names (``nrnn.store``, ``nrnn.harness``, ...)
still resolve to these modules.
"""
