"""The old name of :mod:`nrnn.workflow.harness` (the workflow layer has its own package): the
same module object, so code that imports or patches ``nrnn.harness`` keeps working."""

import sys

from .workflow import harness as _module

sys.modules[__name__] = _module
