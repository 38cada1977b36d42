"""Outgoing emails, built the cheap way and written byte for byte as the
email package writes them.

Setting a header on an ``EmailMessage`` parses its value into a header object,
and writing the message folds that object again: two trips through the
package's header parser per header per email, most of the cost of sending. Here
each header is stored the way the package's own parser stores a header it reads
from the wire — its folded text — so writing it is a copy, and reading it back
(``message["Subject"]``) parses it as if the email had been received. Values
many emails share (the sender, the date of a batch, an unsubscribe link) are
folded once.

Where a value is plain (printable ASCII words, short enough for one line) the
fold is known without parsing: it is the value itself. Anything else — non-ASCII,
long, odd spacing, an encoded word — is parsed and folded by the email package
once, and kept as its header object when its fold is not plain ASCII lines (so
a server that speaks SMTPUTF8 still gets it as the package would write it). A
property test holds every path to the package's own bytes.
"""

from __future__ import annotations

import functools
import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as POLICY
from email.utils import getaddresses
from typing import Any

from cadence.runtime.addresses import has_control

_WIDTH = POLICY.max_line_length or 78  # the package's 78 (the default policy sets it)
# Printable ASCII words separated by single spaces: no leading, trailing or
# repeated whitespace, which the package's folding would change.
_PLAIN = re.compile(r"[!-~]+(?: [!-~]+)*\Z")
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# An address that needs no quoting: dot-atom local part and domain.
_BARE_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\Z")
_MESSAGE_ID = re.compile(r"<[!-;=?-~]+>\Z")  # one id, no spaces or brackets inside
# Writing a message reads its Content-Type back (twice): a header object, made
# once, is returned as it is rather than parsed again for every email.
_TEXT_PLAIN = POLICY.header_factory("Content-Type", 'text/plain; charset="utf-8"')
# Headers whose plain values are written as they are: unstructured text and
# single bare addresses (for other kinds the package may rewrite a plain value).
_UNSTRUCTURED = frozenset({"subject", "in-reply-to", "references"})
_ADDRESS = frozenset({"to", "from", "reply-to", "cc"})


def stored(name: str, value: str | Address) -> Any:
    """``value`` as ``name`` is kept in an outgoing message: its folded text,
    or (when that is not plain ASCII lines) the parsed header object. Raises
    ``ValueError`` when the header would hold a line break or a control
    character."""
    if isinstance(value, str) and _plain(name, value):
        return value
    header = POLICY.header_factory(name, value)
    # Both the value and what it decodes to (an encoded word can hold a line
    # break); the package refuses the first when a header is set.
    if has_control(str(value)) or has_control(str(header)):
        raise ValueError(f"the {name} header would hold a line break")
    folded = POLICY.fold(name, header)
    text = folded[len(name) + 2 : -len(POLICY.linesep)]
    lines = text.split(POLICY.linesep)
    fits = len(lines[0]) + len(name) + 2 <= _WIDTH and all(
        len(line) <= _WIDTH for line in lines[1:]
    )
    # (An empty value folds to "Name:" with no space, which text cannot say.)
    if fits and text and str(value).isascii() and str(header).isascii() and folded.isascii():
        return text
    return header


def recipient(name: str, addr_spec: str) -> Any:
    """:func:`stored` for an address header holding the one address
    ``addr_spec``, quoted where it must be (``Address`` parses it: only when
    it is not bare)."""
    if _BARE_ADDRESS.match(addr_spec) is not None:
        return stored(name, addr_spec)
    return stored(name, str(Address(addr_spec=addr_spec)))


@functools.lru_cache(maxsize=256)
def shared(name: str, value: str) -> Any:
    """:func:`stored`, kept for values many emails carry."""
    return stored(name, value)


def add(message: EmailMessage, name: str, value: Any) -> None:
    """Add a value from :func:`stored` or :func:`shared` to ``message``: kept
    as the package's parser keeps what it reads (text), or as the header
    object the package would have made (which writing folds)."""
    message.set_raw(name, value)


def set_text(message: EmailMessage, text: str) -> None:
    """The body: plain text in UTF-8, as ``message.set_content(text)`` sets
    it. ASCII lines that fit are 7bit, written as they are; anything else is
    left to the package (quoted-printable or base64)."""
    if text.isascii():
        lines = text.encode("ascii").splitlines()
        if max(map(len, lines), default=0) <= _WIDTH:
            message.set_raw("Content-Type", _TEXT_PLAIN)
            message.set_raw("Content-Transfer-Encoding", "7bit")
            message.set_raw("MIME-Version", "1.0")
            message.set_payload(b"\n".join(lines).decode("ascii") + "\n")
            return
    message.set_content(text)


def text_of(message: EmailMessage, name: str) -> str | None:
    """The value of header ``name`` as ``str(message[name])`` gives it,
    without parsing it when it was stored plain."""
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            if type(value) is str and _plain(name, value):
                return value
            return str(message[name])
    return None


def envelope(message: EmailMessage) -> tuple[str, list[str]] | None:
    """The SMTP envelope (sender, recipients) ``smtplib.send_message`` would
    take from ``message``'s headers, found without parsing them when the
    recipient is one bare address stored plain (the sender's header is
    parsed once per distinct value); ``None`` for any other message."""
    raw = {key.lower(): value for key, value in message.raw_items()}
    if raw.keys() & {"sender", "cc", "bcc", "resent-date"} or len(raw) != len(message):
        return None  # headers that change the envelope, or one given twice
    to, sender = raw.get("to"), raw.get("from")
    if type(to) is not str or _BARE_ADDRESS.match(to) is None or sender is None:
        return None
    first = _first_address(sender)
    if not first.isascii():
        return None  # an international sender: send_message asks for SMTPUTF8
    return first, [to]


@functools.lru_cache(maxsize=64)
def _first_address(stored_from: Any) -> str:
    """As send_message finds it: the From header parsed, its first address."""
    return getaddresses([POLICY.header_fetch_parse("From", stored_from)])[0][1]


def _plain(name: str, value: str) -> bool:
    """Whether ``value`` folds to itself as header ``name``."""
    if len(name) + 2 + len(value) > _WIDTH or "=?" in value:
        return False
    kind = name.lower()
    if kind in _UNSTRUCTURED:
        return _PLAIN.match(value) is not None
    if kind in _ADDRESS:
        return _BARE_ADDRESS.match(value) is not None
    if kind == "message-id":
        return _MESSAGE_ID.match(value) is not None
    return False
