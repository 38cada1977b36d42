"""The Message-IDs cadence gives its sends, and how it recognises them when
mail comes back.

A send's Message-ID names the campaign version and the action it is, and
carries a token: an HMAC (SHA-256, with a secret kept in the store) of those
two and of the address the send went to::

    <cadence.{campaign key, 12}.{action id}.{token, 20 base32}@{sender's domain}>

The numbers alone are guessable (one key per campaign, sequential ids), the
token is not. Inbound mail that names a Message-ID without a token that
checks out is not about any send of ours; one whose token checks out for an
address tells that a send to that address went out — which is what
authenticates a bounce report (a DSN returns the original's headers).

Message-IDs written before the store had a secret (schema version 12 and
older) have no token: they stay recognised only as the exact Message-ID an
action was recorded as sent with (see :func:`legacy`).
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, select

from cadence.runtime.schema import store_secrets

SECRET_NAME = "message-ids"
# Base32 characters of the HMAC: 100 bits, short enough that the header stays
# on one line (78 characters) for most domains.
TOKEN_LENGTH = 20
# Any Message-ID of cadence's shape, signed or not.
OUR_ID = re.compile(
    r"<cadence\.([0-9a-f]{12})\.(\d{1,18})(?:\.([a-z2-7]{" + str(TOKEN_LENGTH) + r"}))?@[^<>\s]+>"
)
MAX_REFERENCES = 100  # cadence ids read from one message: a thread of ours has a few


@dataclass(frozen=True)
class Reference:
    """A Message-ID of cadence's shape found in a message."""

    text: str  # the whole Message-ID, <…> included
    campaign: str  # the first 12 characters of the campaign version's key
    action_id: int
    token: str | None  # None: written before Message-IDs were signed


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def load_secret(connection: Connection) -> bytes:
    """The store's secret for Message-IDs (made by the schema upgrade)."""
    value = connection.execute(
        select(store_secrets.c.value).where(store_secrets.c.name == SECRET_NAME)
    ).scalar_one()
    return bytes(value)


class MessageIds:
    """Signs Message-IDs for sends and checks the ones that come back."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def make(self, campaign_id: str, action_id: int, address: str, domain: str) -> str:
        """The Message-ID of the send ``action_id`` of ``campaign_id`` to ``address``."""
        key = campaign_id[:12]
        return f"<cadence.{key}.{action_id}.{self._token(key, action_id, address)}@{domain}>"

    def signed_for(self, reference: Reference, address: str) -> bool:
        """Whether ``reference`` is a Message-ID cadence signed for a send to
        ``address`` (an unsigned one never is)."""
        if reference.token is None:
            return False
        expected = self._token(reference.campaign, reference.action_id, address)
        return hmac.compare_digest(expected, reference.token)

    def _token(self, key: str, action_id: int, address: str) -> str:
        # Addresses compare without regard to case, as the store compares people.
        message = f"{key}.{action_id}.{address.strip().lower()}".encode()
        digest = hmac.digest(self._secret, message, "sha256")  # one call: no HMAC object
        return base64.b32encode(digest).decode("ascii").lower()[:TOKEN_LENGTH]


def references(text: str) -> tuple[Reference, ...]:
    """cadence's Message-IDs in ``text``, each once, in order, at most
    :data:`MAX_REFERENCES`."""
    found: dict[str, Reference] = {}
    for match in OUR_ID.finditer(text):
        if match.group(0) not in found:
            key, number, token = match.groups()
            found[match.group(0)] = Reference(match.group(0), key, int(number), token)
            if len(found) >= MAX_REFERENCES:
                break
    return tuple(found.values())


def legacy(reference: Reference) -> bool:
    """A Message-ID written before cadence signed them."""
    return reference.token is None
