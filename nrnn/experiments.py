"""The old name of :mod:`nrnn.workflow.experiments` (the workflow layer has its own package): the
same module object, so code that imports or patches ``nrnn.experiments`` keeps working."""

import sys

from .workflow import experiments as _module

sys.modules[__name__] = _module
