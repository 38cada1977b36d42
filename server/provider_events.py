"""What email providers report by webhook, read into the events cadence acts
on: a bounce (permanent or not), a complaint, an unsubscribe. Everything else
a provider reports (delivered, opened, clicked…) is passed over.

The payloads are the providers' documented shapes: SendGrid's Event Webhook
(a JSON array), Mailgun's webhooks (``event-data``), Postmark's bounce, spam
complaint and subscription change webhooks, and Amazon SES notifications as
SNS delivers them (``notificationType`` or, from configuration sets,
``eventType``). A payload that is not what its provider sends is a
:class:`PayloadError`, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from cadence.errors import CadenceError
from cadence.runtime.classify import Classification, Recipient

EventKind = Literal["bounce", "complaint", "unsubscribe"]
MAX_EVENTS = 10_000  # in one call: SendGrid batches, but not this many


class PayloadError(CadenceError, ValueError):
    """A webhook body that is not what the provider sends."""


@dataclass(frozen=True)
class ProviderEvent:
    id: str  # the provider's id of the event: reported twice, acted on once
    kind: EventKind
    address: str
    permanent: bool = True  # bounces: for good, or a temporary failure
    status: str = ""  # an RFC 3463 code when the provider gives one
    detail: str = ""  # the provider's words

    def classification(self, provider: str) -> Classification:
        reason = f"{provider} webhook: {self.kind}" + (f" ({self.detail})" if self.detail else "")
        if self.kind == "bounce":
            recipient = Recipient(self.address.lower(), self.status, self.permanent)
            return Classification("bounce", reason[:500], recipients=(recipient,))
        return Classification(self.kind, reason[:500], sender=self.address.lower())


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise PayloadError("the body is not JSON") from None


def _text(value: Any, what: str) -> str:
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
        raise PayloadError(f"{what} is missing or not text")
    return str(value)


# ---- SendGrid ------------------------------------------------------------------------------
def sendgrid_events(body: bytes) -> Iterator[ProviderEvent]:
    events = _json(body)
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        raise PayloadError("SendGrid sends a JSON array of events")
    for event in events:
        if not isinstance(event, dict):
            raise PayloadError("each SendGrid event is a JSON object")
        name = event.get("event")
        kind: EventKind | None = None
        permanent = True
        if name == "bounce":
            kind, permanent = "bounce", event.get("type", "bounce") != "blocked"
        elif name == "spamreport":
            kind = "complaint"
        elif name in ("unsubscribe", "group_unsubscribe"):
            kind = "unsubscribe"
        if kind is None:
            continue
        yield ProviderEvent(
            id=_text(event.get("sg_event_id"), "sg_event_id"),
            kind=kind,
            address=_text(event.get("email"), "email"),
            permanent=permanent,
            status=str(event.get("status") or ""),
            detail=str(event.get("reason") or event.get("type") or "")[:200],
        )


# ---- Mailgun -------------------------------------------------------------------------------
def mailgun_events(payload: dict[str, Any]) -> Iterator[ProviderEvent]:
    data = payload.get("event-data")
    if not isinstance(data, dict):
        raise PayloadError("a Mailgun webhook carries `event-data`")
    name = data.get("event")
    kind: EventKind | None = None
    permanent = True
    if name == "failed":
        kind, permanent = "bounce", data.get("severity") == "permanent"
    elif name == "complained":
        kind = "complaint"
    elif name == "unsubscribed":
        kind = "unsubscribe"
    if kind is None:
        return
    found = data.get("delivery-status")
    status: dict[str, Any] = found if isinstance(found, dict) else {}
    yield ProviderEvent(
        id=_text(data.get("id"), "event-data.id"),
        kind=kind,
        address=_text(data.get("recipient"), "event-data.recipient"),
        permanent=permanent,
        status=str(status.get("enhanced-code") or ""),
        detail=str(data.get("reason") or status.get("message") or "")[:200],
    )


# ---- Postmark ------------------------------------------------------------------------------
_POSTMARK_PERMANENT = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Blocked"}
_POSTMARK_TEMPORARY = {"SoftBounce", "Transient", "DnsError", "ChallengeVerification"}


def postmark_events(body: bytes) -> Iterator[ProviderEvent]:
    event = _json(body)
    if not isinstance(event, dict):
        raise PayloadError("Postmark sends one JSON object")
    record = event.get("RecordType")
    if record == "Bounce":
        kind_of = event.get("Type")
        if kind_of == "SpamComplaint":
            kind: EventKind = "complaint"
        elif kind_of == "Unsubscribe":
            kind = "unsubscribe"
        elif kind_of in _POSTMARK_PERMANENT or kind_of in _POSTMARK_TEMPORARY:
            kind = "bounce"
        else:
            return  # an automatic reply, an open… reported as a "bounce" type
        yield ProviderEvent(
            id=_text(event.get("ID"), "ID"),
            kind=kind,
            address=_text(event.get("Email"), "Email"),
            permanent=kind_of not in _POSTMARK_TEMPORARY,
            detail=str(event.get("Description") or event.get("Name") or "")[:200],
        )
    elif record == "SpamComplaint":
        yield ProviderEvent(
            id=_text(event.get("ID"), "ID"),
            kind="complaint",
            address=_text(event.get("Email"), "Email"),
        )
    elif record == "SubscriptionChange" and event.get("SuppressSending") is True:
        reason = event.get("SuppressionReason")
        if reason == "ManualSuppression":
            yield ProviderEvent(
                id=f"{_text(event.get('MessageID'), 'MessageID')}:{event.get('ChangedAt')}",
                kind="unsubscribe",
                address=_text(event.get("Recipient"), "Recipient"),
            )


# ---- Amazon SES (through SNS) --------------------------------------------------------------
def ses_events(message: str, message_id: str) -> Iterator[ProviderEvent]:
    """The events of an SES notification (the SNS message's `Message`)."""
    found = _json(message.encode("utf-8", "surrogatepass"))
    if not isinstance(found, dict):
        raise PayloadError("an SES notification is a JSON object")
    name = found.get("notificationType") or found.get("eventType")
    if name == "Bounce":
        bounce = found.get("bounce")
        if not isinstance(bounce, dict):
            raise PayloadError("an SES bounce carries `bounce`")
        permanent = bounce.get("bounceType") == "Permanent"
        for number, recipient in enumerate(_list(bounce.get("bouncedRecipients"))):
            yield ProviderEvent(
                id=f"{bounce.get('feedbackId') or message_id}:{number}",
                kind="bounce",
                address=_text(recipient.get("emailAddress"), "emailAddress"),
                permanent=permanent,
                status=str(recipient.get("status") or ""),
                detail=str(recipient.get("diagnosticCode") or bounce.get("bounceSubType") or "")[
                    :200
                ],
            )
    elif name == "Complaint":
        complaint = found.get("complaint")
        if not isinstance(complaint, dict):
            raise PayloadError("an SES complaint carries `complaint`")
        for number, recipient in enumerate(_list(complaint.get("complainedRecipients"))):
            yield ProviderEvent(
                id=f"{complaint.get('feedbackId') or message_id}:{number}",
                kind="complaint",
                address=_text(recipient.get("emailAddress"), "emailAddress"),
                detail=str(complaint.get("complaintFeedbackType") or "")[:200],
            )


def _list(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise PayloadError("the recipients are a list of objects")
    return value[:MAX_EVENTS]
