"""Writing an output file so that a crash leaves the old file or the new one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` with a binary stream that becomes ``path`` whole or not at
    all (an existing file's permissions are kept). A symlink is written through
    (its target replaced); a device or pipe is written to directly, never
    replaced. Raises :class:`OSError`."""
    path = path.resolve() if path.is_symlink() else path
    if path.exists() and not path.is_file():
        with open(path, "wb") as out:
            write(out)
        return
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb", buffering=1024 * 1024) as out:
            write(out)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
