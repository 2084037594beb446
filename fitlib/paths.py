"""Where fitlib keeps generated files (the converted body model and other caches)."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """Return fitlib's cache directory, creating it if needed.

    ``$FITLIB_CACHE_DIR`` overrides the platform's user cache directory
    (``~/.cache/fitlib`` on Linux).
    """
    path = Path(os.environ.get("FITLIB_CACHE_DIR") or platformdirs.user_cache_dir("fitlib"))
    path.mkdir(parents=True, exist_ok=True)
    return path
