"""``python -m nrnn`` is the ``nrnn`` command."""

import sys

from .workflow.cli import main

sys.exit(main())
