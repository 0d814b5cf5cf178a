"""``python -m nrnn.benchmarks``: the same as ``nrnn bench``."""

import sys

from .run import main

sys.exit(main())
