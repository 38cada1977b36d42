"""Where cadence keeps what it can always build again (the parser tables,
compiled campaigns): ``$CADENCE_CACHE_DIR``, else the user's cache folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path

CACHE_ENV = "CADENCE_CACHE_DIR"


def cache_dir() -> Path | None:
    """The cache folder (never site-packages); ``None`` when none can be made,
    or when another user could write in it: what is kept there is loaded as
    it is (the parser's tables are a pickle), so nobody else may put it there."""
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
    return folder if _private(folder) else None


def _private(folder: Path) -> bool:
    """Whether only this user can write in ``folder`` (as ssh asks of ~/.ssh)."""
    try:
        status = folder.stat()
    except OSError:
        return False
    owner = getattr(os, "getuid", lambda: status.st_uid)()
    return status.st_uid == owner and not status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
