"""``python -m nrnn.figures`` is ``nrnn figures``."""

import sys

from .cli import main

sys.exit(main())
