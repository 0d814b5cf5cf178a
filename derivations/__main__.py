"""``python -m nrnn.derivations [--check]``: regenerate (or check) the generated code and
formula sheet."""

from nrnn.derivations.build import main

raise SystemExit(main())
