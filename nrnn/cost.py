"""The old name of :mod:`nrnn.workflow.cost` (the workflow layer has its own package): the
same module object, so code that imports or patches ``nrnn.cost`` keeps working."""

import sys

from .workflow import cost as _module

sys.modules[__name__] = _module
