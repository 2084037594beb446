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
    source = "FITLIB_CACHE_DIR" if os.environ.get("FITLIB_CACHE_DIR") else "the user cache directory"
    path = Path(os.environ.get("FITLIB_CACHE_DIR") or platformdirs.user_cache_dir("fitlib"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. the path is a file, or not writable
        raise ValueError(f"fitlib's cache folder {path} ({source}) cannot be used: {exc}") from None
    return path
