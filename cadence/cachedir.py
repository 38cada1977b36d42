"""Where cadence keeps what it can always build again (the parser tables,
compiled campaigns): ``$CADENCE_CACHE_DIR``, else the user's cache folder."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "CADENCE_CACHE_DIR"


def cache_dir() -> Path | None:
    """The cache folder (never site-packages); ``None`` when none can be made."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        folder = Path(configured)
    else:
        import platformdirs

        folder = Path(platformdirs.user_cache_dir("cadence", appauthor=False))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder
