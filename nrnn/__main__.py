"""``python -m nrnn`` is the ``nrnn`` command."""

import sys

from .cli import main

sys.exit(main())
