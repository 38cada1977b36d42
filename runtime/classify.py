"""What an inbound message is: a bounce, an automatic reply, an unsubscribe
request, a human reply, or something to leave alone — and why.

Inbound mail is untrusted input. Classification only reads the message (it
never raises for a malformed one: what cannot be read is ``ignore`` with the
reason) and records which header or phrase decided, so a person can check
(`cadence inbox --explain`) and undo a wrong call. Whether a reply belongs to
a campaign is decided later, against the store.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import Literal

from cadence.runtime.addresses import has_control
from cadence.runtime.message_ids import Reference, references
from cadence.runtime.returndate import return_date

Kind = Literal["reply", "auto_reply", "bounce", "unsubscribe", "complaint", "ignore"]
MAX_TEXT = 64 * 1024  # characters of a body read for phrases: a reply's news is at the top
MAX_SUBJECT = 4 * 1024  # characters of a Subject read (RFC 5322 lines are at most 998)
# A tag, found without backtracking: no `<` inside, so each `<` ends a scan.
_TAG = re.compile(r"<[^<>]{0,2000}>")


@dataclass(frozen=True)
class Recipient:
    """One address a bounce reports, and whether the failure is for good."""

    address: str
    status: str  # an RFC 3463 code, like 5.1.1 (empty when the report gives none)
    permanent: bool


@dataclass(frozen=True)
class Classification:
    kind: Kind
    reason: str  # which header or phrase decided
    sender: str | None = None  # the From address, lower case
    # cadence's Message-IDs in the message's In-Reply-To and References: what it answers
    refers_to: tuple[str, ...] = ()
    # cadence's Message-IDs anywhere else (a bounce's returned headers, a body):
    # never what a message answers, only what a bounce may show it reports on
    quoted: tuple[str, ...] = ()
    recipients: tuple[Recipient, ...] = ()  # bounces: who failed
    back_on: dt.date | None = None  # automatic replies: the return date found
    details: dict[str, str] = field(default_factory=dict)


_AUTO_SUBJECT = re.compile(
    r"^\s*(?:automatic reply|auto(?:matic)?[- ]?(?:reply|response|antwort)|out of (?:the )?office"
    r"|ooo\b|abwesenheitsnotiz|automatische antwort|r[ée]ponse automatique|absence"
    r"|respuesta autom[aá]tica|risposta automatica|fr[åa]nvaro|autosvar|away from (?:the )?office"
    r"|on vacation|on leave|vacation reply)",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery status notification|mail delivery (?:failed|failure|"
    r"subsystem)|returned mail|delivery (?:has )?failed|failure notice|non[- ]?delivery",
    re.IGNORECASE,
)
_DAEMON = re.compile(r"^(?:mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.IGNORECASE)
_UNSUBSCRIBE = re.compile(
    r"\b(?:unsubscribe|unsub\b|remove me|take me off|opt(?:-| )?out|stop (?:e-?mailing|"
    r"contacting|sending|writing)|(?:do not|don'?t|please don'?t) (?:e-?mail|contact|write)"
    r"|no more e-?mails?|remove my (?:e-?mail|address))",
    re.IGNORECASE,
)
_QUOTE_START = re.compile(
    r"^(?:>|On .{0,200} wrote:\s*$|-{2,} ?Original Message ?-{2,}|_{5,}|From: .+|Sent from my )",
    re.IGNORECASE | re.MULTILINE,
)


def classify(
    message: Message,
    *,
    unsubscribe_addresses: frozenset[str] = frozenset(),
    received: dt.date | None = None,
) -> Classification:
    """What ``message`` is. ``unsubscribe_addresses``: the mailto addresses of
    cadence's List-Unsubscribe headers (lower case). ``received``: the day
    cadence read it; a return date is read from the day the message says it
    was written only when that is no later (a Date header is the sender's word)."""
    try:
        return _classify(message, unsubscribe_addresses, received)
    except Exception as error:  # a message malformed past what the parser forgave
        return Classification("ignore", f"cannot be read: {type(error).__name__}: {error}")


def _classify(
    message: Message, unsubscribe_addresses: frozenset[str], received: dt.date | None
) -> Classification:
    sender = _sender(message)
    text = _text(message)
    refers = tuple(reference.text for reference in _answered(message))
    quoted = tuple(r.text for r in references(text) if r.text not in refers)
    bounce = _bounce(message, sender, text)
    if bounce is not None:
        reason, recipients = bounce
        return Classification("bounce", reason, sender, refers, quoted, recipients)
    auto = _auto_reply(message)
    if auto is not None:
        written = _written(message)
        if written is not None and received is not None and written > received:
            written = received  # dated in the future: read from the day it came
        written = written or received
        back = return_date(_fresh(text), written) if written else None
        details = {"written": written.isoformat()} if written else {}
        return Classification("auto_reply", auto, sender, refers, back_on=back, details=details)
    if sender is None:
        return Classification("ignore", "no From address, or more than one")
    to = {address.lower() for address in _addresses(message, "to", "delivered-to")}
    subject = _subject(message)
    if to & unsubscribe_addresses and "unsubscribe" in subject.lower():
        mailto = sorted(to & unsubscribe_addresses)[0]
        return Classification("unsubscribe", f"mail to {mailto} asking to unsubscribe", sender,
                              refers)  # fmt: skip
    listed = _list_mail(message)
    if listed is not None and not refers:  # a newsletter's footer says "unsubscribe" too
        return Classification("ignore", listed, sender)
    asked = _UNSUBSCRIBE.search(_fresh(subject + "\n" + text))
    if asked is not None:
        return Classification("unsubscribe", f"the reply says {asked.group(0)!r}", sender, refers)
    if refers:
        return Classification("reply", f"In-Reply-To/References name {refers[0]}", sender, refers)
    return Classification("reply", "from an address, to be matched to an enrollment", sender)


# ---- bounces --------------------------------------------------------------------------------
def _bounce(
    message: Message, sender: str | None, text: str
) -> tuple[str, tuple[Recipient, ...]] | None:
    if message.get_content_type() == "multipart/report" and (
        str(message.get_param("report-type", "")).lower() == "delivery-status"
    ):
        recipients = _dsn_recipients(message)
        if recipients:
            return "a delivery status notification (RFC 3464)", recipients
    looks_like = bool(sender and _DAEMON.match(sender)) or bool(
        _BOUNCE_SUBJECT.search(_subject(message))
    )
    if not looks_like:
        return None
    from flufl.bounce import all_failures

    temporary, permanent = all_failures(message)
    recipients = tuple(
        [Recipient(_decoded(a), "", True) for a in sorted(permanent)]
        + [Recipient(_decoded(a), "", False) for a in sorted(temporary - permanent)]
    )
    if recipients:
        return "a bounce from a mail server (recognised by flufl.bounce)", recipients
    return None


def _dsn_recipients(message: Message) -> tuple[Recipient, ...]:
    found = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks = (
            [block for block in payload if isinstance(block, Message)]
            if isinstance(payload, list)
            else []
        )
        if not blocks:  # some parsers leave the fields as text
            data = part.get_payload(decode=True)
            blocks = _field_blocks(data if isinstance(data, bytes) else b"")
        for block in blocks[1:] if len(blocks) > 1 else blocks:  # the first is per-message
            recipient = _recipient(block)
            if recipient is not None:
                found.append(recipient)
    return tuple(found)


def _recipient(block: Message) -> Recipient | None:
    final = str(block.get("final-recipient", "") or block.get("original-recipient", "") or "")
    address = final.partition(";")[2].strip() or final.strip()
    action = str(block.get("action", "") or "").strip().lower()
    status = str(block.get("status", "") or "").strip().split(" ")[0]
    if not address or action in ("delivered", "relayed", "expanded"):
        return None
    permanent = status.startswith("5") or (action == "failed" and not status.startswith("4"))
    return Recipient(address.strip("<>").lower(), status, permanent)


def _field_blocks(data: bytes) -> list[Message]:
    import email

    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    return [email.message_from_string(block) for block in re.split(r"\n\s*\n", text) if block]


def _decoded(address: bytes) -> str:
    return address.decode("utf-8", errors="replace").strip("<>").lower()


# ---- automatic replies ---------------------------------------------------------------------
def _auto_reply(message: Message) -> str | None:
    submitted = str(message.get("auto-submitted", "") or "").strip().lower()
    if submitted and submitted != "no":
        return f"Auto-Submitted: {submitted} (RFC 3834)"
    for header in ("x-autoreply", "x-autorespond", "x-autoresponder", "x-auto-reply"):
        if message.get(header) is not None:
            return f"{header.title()} header"
    precedence = str(message.get("precedence", "") or "").strip().lower()
    if precedence == "auto_reply":
        return "Precedence: auto_reply"
    if message.get("x-ms-exchange-inbox-rules-loop") is not None:
        return "X-MS-Exchange-Inbox-Rules-Loop (an Outlook rule or out-of-office)"
    subject = _subject(message)
    if _AUTO_SUBJECT.match(subject):
        return f"the subject {subject.strip()[:60]!r}"
    return None


def _subject(message: Message) -> str:
    """The subject, RFC 2047 encoded words decoded ("=?utf-8?q?Automatische_Antwort?=").
    Only its first :data:`MAX_SUBJECT` characters: what decides is at its start,
    and the standard library decodes many encoded words in quadratic time."""
    raw = str(message.get("subject", "") or "")[:MAX_SUBJECT]
    if "=?" not in raw:
        return raw
    try:
        return str(make_header(decode_header(raw)))
    except (HeaderParseError, LookupError, UnicodeDecodeError, ValueError):
        return raw


def _written(message: Message) -> dt.date | None:
    try:
        return parsedate_to_datetime(str(message.get("date", ""))).date()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# ---- lists and newsletters -----------------------------------------------------------------
def _list_mail(message: Message) -> str | None:
    for header in ("list-id", "list-unsubscribe", "list-post"):
        if message.get(header) is not None:
            return f"list mail ({header.title()} header), not about cadence's emails"
    precedence = str(message.get("precedence", "") or "").strip().lower()
    if precedence in ("bulk", "list", "junk"):
        return f"Precedence: {precedence}"
    return None


# ---- reading the message -------------------------------------------------------------------
def _sender(message: Message) -> str | None:
    """The From address, lower case; ``None`` unless the message has one From
    header naming one address (``From: a@x <b@y>`` is read as two by some
    and as one by others: whose would it be?) without control characters."""
    if len(message.get_all("from", [])) != 1:
        return None
    addresses = _addresses(message, "from")
    if len(addresses) != 1 or has_control(addresses[0]):
        return None
    return addresses[0].lower()


def _addresses(message: Message, *headers: str) -> list[str]:
    values = [str(value) for header in headers for value in message.get_all(header, [])]
    return [address for _name, address in getaddresses(values) if "@" in address]


def _answered(message: Message) -> tuple[Reference, ...]:
    """cadence's Message-IDs in In-Reply-To and References: the only places
    that say which of our emails a message answers (a body can paste anything)."""
    threads = " ".join(str(message.get(h, "") or "") for h in ("in-reply-to", "references"))
    return references(threads)


def _text(message: Message) -> str:
    """The readable text of the message (plain parts, then the text of HTML
    ones, then attached originals' headers), up to :data:`MAX_TEXT`."""
    pieces: list[str] = []
    size = 0
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("text/plain", "text/html", "text/rfc822-headers", "message/rfc822-headers"):
            left = MAX_TEXT - size + 1  # what is left to read
            content = _part_text(part)
            if kind == "text/html":  # markup is most of a page: read more of it
                content = _TAG.sub(" ", content[: left * 4])
            content = content[:left]
            pieces.append(content)
            size += len(content)
        elif kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                pieces.append("".join(f"{k}: {v}\n" for k, v in inner[0].items()))
        if size > MAX_TEXT:
            break
    return "\n".join(pieces)[:MAX_TEXT]


def _part_text(part: Message) -> str:
    if isinstance(part, EmailMessage):
        try:
            content = part.get_content()
            return content if isinstance(content, str) else ""
        except (LookupError, ValueError, AssertionError):  # an unknown charset, a bad encoding
            pass
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _fresh(text: str) -> str:
    """What the writer wrote: the text above the first quoted line."""
    found = _QUOTE_START.search(text)
    return text[: found.start()] if found else text
