"""The old name of :mod:`nrnn.workflow.cli` (the workflow layer has its own package): the
same module object, so code that imports or patches ``nrnn.cli`` keeps working."""

import sys

from .workflow import cli as _module

sys.modules[__name__] = _module
