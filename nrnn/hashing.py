"""One hash of plain data, for every key of the project (run keys, config hashes, task keys).

:func:`content_hash` hashes the canonical JSON of JSON-serialisable content (sorted keys, no
spaces) with SHA-256 and keeps the first ``length`` hex digits, so equal content gives the
same key in every process and on every machine.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["content_hash"]


def content_hash(content: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``content``'s canonical JSON."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]
