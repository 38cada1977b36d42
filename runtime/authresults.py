"""What the receiving mail server found of a message's sender: its
Authentication-Results header (RFC 8601), read with `authres`.

A From address is the sender's word. A receiving server that checks DMARC,
DKIM and SPF writes its verdict at the top of the message; when that verdict
says the From address was forged, cadence changes nobody's state for the
message. Only the receiving server's header counts: it is the topmost one
(servers add theirs above what came in), or, with ``authserv_id`` set, the
first one that server wrote (any other may have come with the message).
A message without a verdict is taken at its word, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from typing import Any

import authres

MAX_HEADER = 8 * 1024  # characters of the header read: a verdict is a line or two


@dataclass(frozen=True)
class Verdict:
    forged: bool
    reason: str  # what decided, as the header says it ("dmarc=fail header.from=x.com")


def verdict(message: Message, sender: str | None, authserv_id: str | None = None) -> Verdict | None:
    """The receiving server's verdict on ``sender`` (the From address), or
    ``None`` when the message carries none that counts."""
    header = _receivers_header(message, authserv_id)
    if header is None:
        return None
    domain = (sender or "").rpartition("@")[2].lower()
    results: dict[str, list[Any]] = {}
    for result in header.results:
        results.setdefault(str(result.method).lower(), []).append(result)
    for method in ("dmarc", "compauth"):  # compauth: Microsoft's own DMARC-like verdict
        for result in results.get(method, []):
            if str(result.result).lower() == "fail":
                return Verdict(True, f"{method}=fail")
            if method == "dmarc" and str(result.result).lower() == "pass":
                return Verdict(False, "dmarc=pass")
    # No DMARC verdict: a DKIM signature of the From's own domain vouches for it;
    # else an SPF failure of the From's own domain says it is forged.
    for result in results.get("dkim", []):
        signer = _property(result, "header", "d") or _property(result, "header", "i")
        if str(result.result).lower() == "pass" and signer.rpartition("@")[2].lower() == domain:
            return Verdict(False, f"dkim=pass header.d={domain}")
    for result in results.get("spf", []):
        envelope = _property(result, "smtp", "mailfrom").rpartition("@")[2].lower()
        if str(result.result).lower() == "fail" and envelope == domain:
            return Verdict(True, f"spf=fail smtp.mailfrom={domain}")
    return None


def _receivers_header(message: Message, authserv_id: str | None) -> Any:
    for value in message.get_all("authentication-results", [])[:20]:
        header = _parse(str(value)[:MAX_HEADER])
        if authserv_id is None:
            return header  # the topmost: whatever it is, no other counts
        if header is not None and str(header.authserv_id).lower() == authserv_id.lower():
            return header
    return None


def _parse(value: str) -> Any:
    text = " ".join(value.split())
    try:
        return authres.AuthenticationResultsHeader.parse_value(text)
    except Exception:
        pass
    # Exchange Online writes no authserv-id ("spf=pass (…) smtp.mailfrom=…;
    # dkim=…"), which authres refuses: read it as the receiving server's.
    try:
        return authres.AuthenticationResultsHeader.parse_value(f"receiver; {text}")
    except Exception:  # not a header anyone can read: no verdict
        return None


def _property(result: Any, kind: str, name: str) -> str:
    for found in getattr(result, "properties", []) or []:
        if str(found.type).lower() == kind and str(found.name).lower() == name:
            return str(found.value)
    return ""
