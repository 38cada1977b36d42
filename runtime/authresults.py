"""What the receiving mail server found of a message's sender: its
Authentication-Results header (RFC 8601), read with `authres`.

A From address is the sender's word. A receiving server that checks DMARC,
DKIM and SPF writes its verdict at the top of the message; when that verdict
says the From address was forged, cadence changes nobody's state for the
message. Only the receiving server's headers count: those with the topmost
header's authserv-id (servers add theirs above what came in), or, with
``authserv_id`` set, those with that one. A message without a verdict is
taken at its word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from typing import Any

import authres

MAX_HEADER = 2 * 1024  # characters of a header read: a verdict is a line or two
MAX_HEADERS = 6  # headers read: a server writes one, or one per check
_NO_SERVER = re.compile(r"\s*[A-Za-z0-9-]+\s*=")  # a header starting at its first result


@dataclass(frozen=True)
class Verdict:
    forged: bool
    reason: str  # what decided, as the header says it ("dmarc=fail header.from=x.com")


def verdict(message: Message, sender: str | None, authserv_id: str | None = None) -> Verdict | None:
    """The receiving server's verdict on ``sender`` (the From address), or
    ``None`` when the message carries none that counts. Every header that
    server wrote is read together, and a failure outweighs a pass: a header
    that came with the message can only add what its sender would not want."""
    results = [result for header in _receivers_headers(message, authserv_id)
               for result in header.results]  # fmt: skip
    if not results:
        return None
    domain = (sender or "").rpartition("@")[2].lower()
    failed, passed, vouched, refused = [], [], [], []
    for result in results:
        method, outcome = str(result.method).lower(), str(result.result).lower()
        if method in ("dmarc", "compauth"):  # compauth: Exchange Online's own verdict on From
            about = _property(result, "header", "from").lower()
            if about and about != domain:
                continue  # a verdict on another From than the one cadence read
            if outcome == "fail":
                failed.append(f"{method}=fail")
            elif outcome == "pass":
                passed.append(f"{method}=pass")
        elif method == "dkim" and outcome == "pass":
            signer = _property(result, "header", "d") or _property(result, "header", "i")
            if signer.rpartition("@")[2].lower() == domain:
                vouched.append(f"dkim=pass header.d={domain}")
        elif method == "spf" and outcome == "fail":
            envelope = _property(result, "smtp", "mailfrom").rpartition("@")[2].lower()
            if envelope == domain:
                refused.append(f"spf=fail smtp.mailfrom={domain}")
    if failed:
        return Verdict(True, failed[0])
    if passed or vouched:
        return Verdict(False, (passed + vouched)[0])
    if refused:  # no DMARC verdict, no signature of the domain, and its SPF failed
        return Verdict(True, refused[0])
    return None


def _receivers_headers(message: Message, authserv_id: str | None) -> list[Any]:
    """The receiving server's Authentication-Results headers: those with
    ``authserv_id``, else those with the topmost header's (the last server's)."""
    parsed = [_parse(str(value)[:MAX_HEADER])
              for value in message.get_all("authentication-results", [])[:MAX_HEADERS]]  # fmt: skip
    if not parsed or (authserv_id is None and parsed[0] is None):
        return []
    wanted = (authserv_id or str(parsed[0].authserv_id)).lower()
    return [found for found in parsed
            if found is not None and str(found.authserv_id).lower() == wanted]  # fmt: skip


def _parse(value: str) -> Any:
    text = " ".join(value.split())
    if _NO_SERVER.match(text):
        # Exchange Online writes no authserv-id ("spf=pass (…) smtp.mailfrom=…;
        # dkim=…"), which authres refuses: read it as the receiving server's.
        text = f"receiver; {text}"
    try:
        return authres.AuthenticationResultsHeader.parse_value(text)
    except Exception:  # not a header anyone can read: no verdict
        return None


def _property(result: Any, kind: str, name: str) -> str:
    for found in getattr(result, "properties", []) or []:
        if str(found.type).lower() == kind and str(found.name).lower() == name:
            return str(found.value)
    return ""
