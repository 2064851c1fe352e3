"""Where ntengine keeps what it builds for you (exported artefacts, FASTA indexes):
``$NTENGINE_CACHE``, else ``~/.cache/ntengine``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(cache_dir=None) -> Path:
    return Path(cache_dir or os.environ.get("NTENGINE_CACHE") or Path.home() / ".cache" / "ntengine")
