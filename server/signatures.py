"""Is a webhook call really from its provider, and fresh? Each provider signs
its calls its own way; a call that is unsigned, wrongly signed, or signed
longer ago than a few minutes (a replay) is a :class:`SignatureError`.

- SendGrid: ECDSA (P-256, SHA-256) over the timestamp header and the body,
  checked with the Event Webhook's verification key.
- Mailgun: HMAC-SHA256 of timestamp and token with the signing key; a token
  is taken once.
- Postmark signs nothing: its webhooks carry HTTP Basic credentials set in
  the webhook's URL, compared in constant time.
- Amazon SNS (for SES): RSA over the message's fields, with the certificate
  at ``SigningCertURL`` — fetched only from an ``sns.<region>.amazonaws.com``
  address over HTTPS, and kept — and only for the topics configured.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
import urllib.request
from collections.abc import Callable
from http.client import HTTPException
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from cadence.errors import CadenceError

DEFAULT_MAX_AGE = dt.timedelta(minutes=5)
SNS_MAX_AGE = dt.timedelta(hours=1)  # SNS retries a failed delivery for about that long
MAX_CERTIFICATE = 64 * 1024
MAX_KEYS = 32  # signing certificates kept
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")

Fetch = Callable[[str], bytes]


class SignatureError(CadenceError):
    """A webhook call its provider did not sign, or signed too long ago."""


def _fresh(signed_at: dt.datetime, now: dt.datetime, max_age: dt.timedelta) -> None:
    if now - signed_at > max_age:
        raise SignatureError("the call was signed too long ago: a replay is refused")
    if signed_at - now > dt.timedelta(minutes=5):
        raise SignatureError("the call is signed in the future: check the clocks")


def _epoch(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(float(text), dt.UTC)
    except (ValueError, OverflowError, OSError):
        raise SignatureError("the signature's timestamp is not a time") from None


# ---- SendGrid ------------------------------------------------------------------------------
def verify_sendgrid(
    public_key: str, signature: str | None, timestamp: str | None, body: bytes, now: dt.datetime
) -> None:
    if not signature or not timestamp:
        raise SignatureError("the call is not signed (X-Twilio-Email-Event-Webhook-Signature)")
    _fresh(_epoch(timestamp), now, DEFAULT_MAX_AGE)
    try:
        key = serialization.load_der_public_key(base64.b64decode(public_key))
        signed = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        raise SignatureError("the signature or the verification key is not base64 DER") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignatureError("the verification key is not an ECDSA key")
    try:
        key.verify(signed, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError("the signature does not match the body") from None


# ---- Mailgun -------------------------------------------------------------------------------
def verify_mailgun(signing_key: str, signature: Any, now: dt.datetime) -> str:
    """Check a Mailgun call's ``signature`` object; its token (taken once)."""
    if not isinstance(signature, dict):
        raise SignatureError("the call is not signed (no `signature`)")
    timestamp, token, given = (
        str(signature.get(k) or "") for k in ("timestamp", "token", "signature")
    )
    if not (timestamp and token and given):
        raise SignatureError("the signature lacks its timestamp, token or signature")
    _fresh(_epoch(timestamp), now, DEFAULT_MAX_AGE)
    wanted = hmac.new(
        signing_key.encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(wanted.encode(), given.lower().encode("utf-8", "replace")):
        raise SignatureError("the signature does not match")
    return token


# ---- Postmark ------------------------------------------------------------------------------
def verify_basic(username: str, password: str, authorization: str | None) -> None:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        raise SignatureError(
            "the call carries no credentials (HTTP Basic, set in the webhook's URL)"
        )
    try:
        user, _, given = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise SignatureError("the credentials cannot be read") from None
    same_user = hmac.compare_digest(user.encode(), username.encode())
    same_password = hmac.compare_digest(given.encode(), password.encode())
    if not (same_user and same_password):
        raise SignatureError("the credentials are wrong")


# ---- Amazon SNS ----------------------------------------------------------------------------
_NOTIFICATION = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_SUBSCRIPTION = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
# The fields each kind of message signs, in the order SNS signs them.
_SIGNED_FIELDS = {
    "Notification": _NOTIFICATION,
    "SubscriptionConfirmation": _SUBSCRIPTION,
    "UnsubscribeConfirmation": _SUBSCRIPTION,
}


def fetch_https(url: str) -> bytes:
    """GET an AWS address (certificates, subscription confirmations)."""
    with urllib.request.urlopen(url, timeout=10) as answer:  # the address was checked: https, SNS
        data: bytes = answer.read(MAX_CERTIFICATE + 1)
    if len(data) > MAX_CERTIFICATE:
        raise SignatureError("the answer from AWS is too large")
    return data


def sns_address(url: Any) -> str:
    """``url`` when it is an HTTPS address of SNS itself, else a SignatureError."""
    try:
        parts = urlsplit(str(url or ""))
        port = parts.port
    except ValueError:
        raise SignatureError("the address cannot be read") from None
    plain_host = parts.netloc == parts.hostname  # no user, password or port
    if parts.scheme != "https" or not plain_host or port or not _SNS_HOST.fullmatch(parts.netloc):
        raise SignatureError("the address is not an HTTPS address of Amazon SNS")
    return str(url)


def certificate_address(url: Any) -> str:
    """A signing certificate's address: SNS's own, a ``.pem`` with no query
    (every query string would be another fetch and another kept key)."""
    found = sns_address(url)
    parts = urlsplit(found)
    if parts.query or parts.fragment or not parts.path.endswith(".pem"):
        raise SignatureError("the signing certificate's address is not SNS's certificate")
    return found


class SnsVerifier:
    """Checks SNS messages; keeps the certificates it fetched."""

    def __init__(self, topics: list[str], fetch: Fetch = fetch_https) -> None:
        self.topics = set(topics)
        self.fetch = fetch
        self._keys: dict[str, rsa.RSAPublicKey] = {}

    def verify(self, message: dict[str, Any], now: dt.datetime) -> None:
        kind = message.get("Type")
        fields = _SIGNED_FIELDS.get(str(kind))
        if fields is None:
            raise SignatureError(f"not an SNS message type: {kind!r}")
        if message.get("TopicArn") not in self.topics:
            raise SignatureError("the topic is not one this server takes (webhooks.ses_topics)")
        try:
            signed_at = dt.datetime.fromisoformat(
                str(message.get("Timestamp")).replace("Z", "+00:00")
            )
            signature = base64.b64decode(str(message.get("Signature") or ""), validate=True)
        except (ValueError, binascii.Error):
            raise SignatureError("the message's timestamp or signature cannot be read") from None
        if signed_at.tzinfo is None:
            raise SignatureError("the message's timestamp has no zone")
        _fresh(signed_at, now, SNS_MAX_AGE)
        text = "".join(
            f"{name}\n{message[name]}\n" for name in fields if isinstance(message.get(name), str)
        )
        version = message.get("SignatureVersion")
        algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(version))
        if algorithm is None:
            raise SignatureError(f"an SNS signature version this server does not know: {version!r}")
        key = self._key(certificate_address(message.get("SigningCertURL")))
        try:
            key.verify(signature, text.encode(), padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise SignatureError("the signature does not match the message") from None

    def _key(self, url: str) -> rsa.RSAPublicKey:
        if url not in self._keys:
            try:
                certificate = x509.load_pem_x509_certificate(self.fetch(url))
            except (OSError, HTTPException) as error:  # unreachable, refused, timed out
                raise SignatureError(
                    f"the signing certificate cannot be fetched: {error}"
                ) from None
            except ValueError:
                raise SignatureError("the signing certificate cannot be read") from None
            if len(self._keys) >= MAX_KEYS:  # SNS rotates its certificate now and then
                self._keys.clear()
            key = certificate.public_key()
            if not isinstance(key, rsa.RSAPublicKey):
                raise SignatureError("the signing certificate's key is not RSA")
            self._keys[url] = key
        return self._keys[url]
