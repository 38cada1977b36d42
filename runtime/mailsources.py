"""Where inbound messages are read from: a Maildir, an IMAP mailbox, `.eml`
files, standard input. Each message comes with a *source*: a name that stays the same however
often the mailbox is read, so a message is acted on once. Reading never moves,
flags or deletes anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import imaplib
import mailbox
import os
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import unquote, urlsplit

from cadence.errors import CadenceError
from cadence.runtime.inbox import MAX_MESSAGE_BYTES
from cadence.runtime.redact import redact


class SourceError(CadenceError):
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


# ---- IMAP ----------------------------------------------------------------------------------
DEFAULT_IMAP_PASSWORD_ENV = "CADENCE_IMAP_PASSWORD"
IMAP_TIMEOUT = 60.0
IMAP_BATCH = 500  # UIDs looked up (and fetched) at once


@dataclass(frozen=True)
class ImapAccount:
    host: str
    port: int
    username: str
    mailbox: str = "INBOX"
    security: Literal["tls", "starttls", "none"] = "tls"
    password_env: str | None = None
    verify: bool = True
    ca_file: str | None = None

    @property
    def label(self) -> str:
        return f"{self.username}@{self.host}:{self.port}/{self.mailbox}"


def parse_imap(text: str) -> ImapAccount:
    """``imaps://USER@HOST[:993][/MAILBOX]`` (TLS), ``imap://…`` (STARTTLS,
    143), ``imap+plain://…`` (no encryption: a server on this machine). The
    password comes from the environment; one in the URL is refused."""
    parts = urlsplit(text)
    schemes: dict[str, tuple[Literal["tls", "starttls", "none"], int]] = {
        "imaps": ("tls", 993), "imap": ("starttls", 143), "imap+plain": ("none", 143),
    }  # fmt: skip
    if parts.scheme not in schemes:
        raise ValueError(f"imap {redact(text)!r}: use imaps://USER@HOST/MAILBOX (or imap://)")
    if parts.password is not None:
        raise ValueError(
            f"imap {redact(text)!r}: no password in the URL; put it in the environment "
            f"({DEFAULT_IMAP_PASSWORD_ENV})"
        )
    if not parts.username or not parts.hostname:
        raise ValueError(f"imap {text!r}: name the user and the host: imaps://USER@HOST")
    security, default_port = schemes[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError(f"imap {text!r}: the port must be a number from 1 to 65535") from None
    mailbox_name = unquote(parts.path.lstrip("/")) or "INBOX"
    return ImapAccount(parts.hostname, port, unquote(parts.username), mailbox_name, security)


def imap_messages(
    account: ImapAccount, known: Callable[[list[str]], set[str]] | None = None
) -> Iterator[tuple[str, bytes]]:
    """New messages of an IMAP mailbox, opened read-only and fetched with
    ``BODY.PEEK[]``, so nothing on the server changes (not even \\\\Seen).
    ``known`` says which sources were read before: those are not fetched.
    Sources are ``imap:USER@HOST/MAILBOX;UIDVALIDITY=V/UID=N``."""
    client = _imap_login(account)
    try:
        status, _ = client.select(_quoted(account.mailbox), readonly=True)
        if status != "OK":
            raise SourceError(f"imap {account.label}: no such mailbox")
        validity = (client.untagged_responses.get("UIDVALIDITY") or [b"0"])[0]
        validity_text = validity.decode(errors="replace") if isinstance(validity, bytes) else "0"
        status, found = client.uid("SEARCH", "ALL")
        if status != "OK":
            raise SourceError(f"imap {account.label}: the server refused to list the mailbox")
        uids = found[0].split() if found and found[0] else []
        prefix = f"imap:{account.username}@{account.host}/{account.mailbox};UIDVALIDITY="
        prefix += validity_text
        for start in range(0, len(uids), IMAP_BATCH):
            chunk = {
                f"{prefix}/UID={uid.decode()}": uid for uid in uids[start : start + IMAP_BATCH]
            }
            seen = known(list(chunk)) if known is not None else set()
            for source, uid in chunk.items():
                if source in seen:
                    continue
                data = _imap_fetch(client, uid, account)
                if data is not None:
                    yield source, data
    except (imaplib.IMAP4.error, OSError) as error:
        raise SourceError(f"imap {account.label}: {error}") from None
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def _imap_login(account: ImapAccount) -> imaplib.IMAP4:
    name = account.password_env or DEFAULT_IMAP_PASSWORD_ENV
    password = os.environ.get(name)
    if not password:
        raise SourceError(
            f"imap {account.label}: set the password in the environment variable {name}"
        )
    context = ssl.create_default_context(cafile=account.ca_file)
    if not account.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        client: imaplib.IMAP4
        if account.security == "tls":
            client = imaplib.IMAP4_SSL(account.host, account.port, ssl_context=context,
                                       timeout=IMAP_TIMEOUT)  # fmt: skip
        else:
            client = imaplib.IMAP4(account.host, account.port, timeout=IMAP_TIMEOUT)
            if account.security == "starttls":
                client.starttls(ssl_context=context)
        client.login(account.username, password)
    except ssl.SSLCertVerificationError as error:
        reason = error.verify_message
        raise SourceError(
            f"imap {account.label}: the server's certificate does not verify ({reason})"
        ) from None
    except imaplib.IMAP4.error as error:
        raise SourceError(f"imap {account.label}: the server refused the login ({error})") from None
    except (OSError, ssl.SSLError) as error:
        raise SourceError(f"imap {account.label}: cannot connect: {error}") from None
    return client


def _imap_fetch(client: imaplib.IMAP4, uid: bytes, account: ImapAccount) -> bytes | None:
    status, data = client.uid("FETCH", uid.decode(), "(BODY.PEEK[])")
    if status != "OK":
        return None
    for item in data:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1][: MAX_MESSAGE_BYTES + 1]
    return None  # deleted meanwhile


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
