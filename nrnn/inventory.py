"""The old name of :mod:`nrnn.workflow.inventory` (the workflow layer has its own package): the
same module object, so code that imports or patches ``nrnn.inventory`` keeps working."""

import sys

from .workflow import inventory as _module

sys.modules[__name__] = _module
