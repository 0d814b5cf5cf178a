"""The old name of :mod:`nrnn.workflow.store` (the workflow layer has its own package): the
same module object, so code that imports or patches ``nrnn.store`` keeps working."""

import sys

from .workflow import store as _module

sys.modules[__name__] = _module
