"""Where inbound messages are read from: a Maildir, `.eml` files, standard
input. Each message comes with a *source*: a name that stays the same however
often the mailbox is read, so a message is acted on once. Reading never moves,
flags or deletes anything.
"""

from __future__ import annotations

import hashlib
import mailbox
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cadence.runtime.inbox import MAX_MESSAGE_BYTES


class SourceError(Exception):
    """A mailbox that cannot be read at all; the message says which and why."""


def maildir_messages(folder: str | Path) -> Iterator[tuple[str, bytes]]:
    """Every message of the Maildir ``folder`` (`new` and `cur`), with its
    source ``maildir:/real/path/KEY`` (the key survives flag changes)."""
    path = Path(folder)
    if not (path / "cur").is_dir() or not (path / "new").is_dir():
        raise SourceError(f"{folder}: not a Maildir (it needs cur/ and new/ folders)")
    box = mailbox.Maildir(path, factory=None, create=False)
    real = os.path.realpath(path)
    for key in sorted(box.iterkeys()):
        try:
            data = _limited(box.get_file(key))
        except (KeyError, FileNotFoundError):  # moved by the mail reader meanwhile
            continue
        yield f"maildir:{real}/{key}", data


def file_messages(paths: list[str]) -> Iterator[tuple[str, bytes]]:
    """Messages in files (``-``: standard input), with the source
    ``sha256:DIGEST`` (the same message given twice is read once)."""
    import sys

    for path in paths:
        try:
            if path == "-":
                data = _limited(sys.stdin.buffer, close=False)
            else:
                with open(path, "rb") as handle:
                    data = _limited(handle, close=False)
        except OSError as error:
            raise SourceError(f"{path}: {error.strerror or error}") from None
        yield f"sha256:{hashlib.sha256(data).hexdigest()}", data


def _limited(handle: IO[bytes] | Any, *, close: bool = True) -> bytes:
    """At most one byte past the size limit, so a huge file is refused cheaply."""
    try:
        return handle.read(MAX_MESSAGE_BYTES + 1)
    finally:
        if close:
            handle.close()
