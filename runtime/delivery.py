"""Where messages go: the errors a transport reports, and the outbox.

A transport takes a finished :class:`~email.message.EmailMessage` and either
delivers it or raises :class:`DeliveryError` (this message, retried or not)
or :class:`TransportError` (nothing can be delivered: stop). SMTP lives in
:mod:`cadence.runtime.smtp`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from cadence.errors import CadenceError
from cadence.runtime import outgoing


class DeliveryError(CadenceError):
    """A delivery that did not happen; ``permanent`` ones are not retried.
    ``maybe_delivered``: the server went silent after the whole message was
    sent, so it may have been delivered (a retry carries the same Message-ID)."""

    def __init__(self, message: str, *, permanent: bool, maybe_delivered: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.maybe_delivered = maybe_delivered


class TransportError(CadenceError):
    """The transport cannot work at all (wrong credentials, a certificate that
    does not verify, a server without the encryption asked for): the
    dispatcher stops and marks nothing, instead of failing every send."""


class Transport(Protocol):
    def deliver(self, message: EmailMessage) -> None: ...

    def close(self) -> None: ...


class OutboxTransport:
    """`.eml` files in a folder, named by Message-ID: written once, atomically
    (a temporary file, fsynced, renamed, and the folder fsynced), so a file
    that is there was delivered whole, and a crash leaves no half file."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """Temporary files of a dispatcher killed mid-write: never delivered."""
        for leftover in self.folder.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def path_for(self, message: EmailMessage | str) -> Path:
        message_id = (
            message if isinstance(message, str) else outgoing.text_of(message, "Message-ID")
        )
        if message_id is None:  # named by it: a message without one cannot go
            raise DeliveryError("the message has no Message-ID", permanent=True)
        name = message_id.strip("<>").replace("/", "_")
        return self.folder / f"{name}.eml"

    def delivered(self, message_id: str) -> bool:
        """Whether the message with this Message-ID was delivered."""
        return self.path_for(message_id).exists()

    def deliver(self, message: EmailMessage) -> None:
        target = self.path_for(message)
        if target.exists():
            return  # delivered before a crash: never twice
        try:
            self._write(message, target)
        except OSError as error:
            raise DeliveryError(
                f"cannot write {target}: {error.strerror or error}", permanent=False
            ) from None

    def _write(self, message: EmailMessage, target: Path) -> None:
        fd, temp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(message.as_bytes())
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
        _fsync_folder(self.folder)  # the rename itself survives a power cut

    def close(self) -> None:
        pass


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
