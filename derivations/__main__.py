"""``python -m derivations [--check]``: regenerate (or check) the generated code and formula sheet."""

from derivations.build import main

raise SystemExit(main())
