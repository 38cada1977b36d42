"""Unsubscribe links in every email (RFC 2369 `List-Unsubscribe`, RFC 8058
one-click): a `mailto:` the inbox understands, and, when the config names an
HTTPS page, a link carrying a signed token that says who asked.

The token is the person's address and an HMAC of it under a secret from the
environment, so a link cannot be forged to unsubscribe someone else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from cadence.runtime.addresses import AddressError, has_control, sender_address

DEFAULT_SECRET_ENV = "CADENCE_UNSUBSCRIBE_SECRET"
SUBJECT = "unsubscribe"


@dataclass(frozen=True)
class UnsubscribeLinks:
    mailto: str
    url: str | None = None
    secret: bytes = b""

    @classmethod
    def from_config(
        cls, mailto: str | None, url: str | None, sender_email: str, secret_env: str | None = None
    ) -> UnsubscribeLinks:
        """Checked settings; :class:`ValueError` says what is wrong."""
        address = mailto or sender_email
        try:
            sender_address("", address)
        except AddressError as error:
            raise ValueError(f"unsubscribe mailto: {error}") from None
        if url is None:
            return cls(address)
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc or has_control(url) or " " in url:
            raise ValueError(
                f"unsubscribe url {url!r}: one-click unsubscribe needs an https:// URL"
            )
        name = secret_env or DEFAULT_SECRET_ENV
        secret = os.environ.get(name, "")
        if len(secret) < 16:
            raise ValueError(
                f"unsubscribe url: set a secret of 16 characters or more in {name} (it signs "
                "the links, so nobody can unsubscribe someone else)"
            )
        return cls(address, url, secret.encode())

    def token(self, person: str) -> str:
        address = person.lower().encode()
        mac = hmac.new(self.secret, address, hashlib.sha256).digest()[:18]
        return f"{_b64(address)}.{_b64(mac)}"

    def person(self, token: str) -> str | None:
        """The address a token was made for, or ``None`` for a forged one."""
        encoded, _, signature = token.partition(".")
        try:
            address = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            return None
        expected = hmac.new(self.secret, address, hashlib.sha256).digest()[:18]
        if not self.secret or not hmac.compare_digest(_b64(expected), signature):
            return None
        return address.decode(errors="replace")

    def headers(self, person: str) -> dict[str, str]:
        """The headers for an email to ``person``."""
        links = [f"<mailto:{self.mailto}?subject={quote(SUBJECT)}>"]
        found = {}
        if self.url is not None:
            joiner = "&" if "?" in self.url else "?"
            links.append(f"<{self.url}{joiner}token={self.token(person)}>")
            # RFC 8058: one-click only with an HTTPS link to POST to.
            found["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        found["List-Unsubscribe"] = ", ".join(links)
        return found


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")
