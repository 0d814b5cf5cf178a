"""The old name of :mod:`nrnn.workflow.lease` (the workflow layer has its own package): the
same module object, so code that imports or patches ``nrnn.lease`` keeps working."""

import sys

from .workflow import lease as _module

sys.modules[__name__] = _module
