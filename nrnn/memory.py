"""The old name of :mod:`nrnn.workflow.memory` (the workflow layer has its own package): the
same module object, so code that imports or patches ``nrnn.memory`` keeps working."""

import sys

from .workflow import memory as _module

sys.modules[__name__] = _module
