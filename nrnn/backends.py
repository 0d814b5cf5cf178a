"""The old name of :mod:`nrnn.workflow.backends` (the workflow layer has its own package): the
same module object, so code that imports or patches ``nrnn.backends`` keeps working."""

import sys

from .workflow import backends as _module

sys.modules[__name__] = _module
