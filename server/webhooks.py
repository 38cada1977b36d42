"""Provider webhooks: ``/webhooks/sendgrid``, ``/webhooks/mailgun``,
``/webhooks/postmark`` and ``/webhooks/ses`` (Amazon SNS). They take no API
token: a call is believed on its provider's signature alone
(:mod:`cadence.server.signatures`). Bounces, complaints and unsubscribes
become what the same news by mail becomes (suppression, `on bounce`), each
event once: a call whose events were all received before is refused (409),
as is an unsigned, wrongly signed or stale one (401). A provider the config
does not name has no webhook (404)."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from cadence.runtime.config import ConfigError, WebhooksConfig
from cadence.server.problems import Problem
from cadence.server.provider_events import (
    PayloadError,
    ProviderEvent,
    mailgun_events,
    postmark_events,
    sendgrid_events,
    ses_events,
)
from cadence.server.signatures import (
    Fetch,
    SignatureError,
    SnsVerifier,
    fetch_https,
    sns_address,
    verify_basic,
    verify_mailgun,
    verify_sendgrid,
)
from cadence.service import Application

router = APIRouter(prefix="/webhooks", include_in_schema=False)


@dataclass
class WebhookSecrets:
    sendgrid_key: str | None = None
    mailgun_key: str | None = None
    postmark: tuple[str, str] | None = None  # username, password
    ses: SnsVerifier | None = None

    @classmethod
    def from_config(
        cls,
        config: WebhooksConfig,
        environ: Mapping[str, str] = os.environ,
        fetch: Fetch = fetch_https,
    ) -> WebhookSecrets:
        """The secrets the config names, from the environment; a variable
        named but not set is a :class:`ConfigError` (at start, not at the
        first call)."""

        def secret(name: str | None, what: str) -> str | None:
            if name is None:
                return None
            value = environ.get(name)
            if not value:
                raise ConfigError(f"webhooks: set {what} in the environment variable {name}")
            return value

        password = secret(config.postmark_password_env, "Postmark's webhook password")
        if (password is None) != (config.postmark_username is None):
            raise ConfigError(
                "webhooks: give Postmark both postmark_username and postmark_password_env"
            )
        return cls(
            sendgrid_key=secret(config.sendgrid_key_env, "SendGrid's verification key"),
            mailgun_key=secret(config.mailgun_key_env, "Mailgun's signing key"),
            postmark=(config.postmark_username, password)
            if password and config.postmark_username
            else None,
            ses=SnsVerifier(config.ses_topics, fetch) if config.ses_topics else None,
        )


def _unconfigured(provider: str) -> Problem:
    return Problem(
        404, "not-found", f"this server takes no {provider} webhook (see [webhooks] in the config)"
    )


async def _record(
    request: Request, provider: str, events: Iterable[ProviderEvent], raw: bytes
) -> JSONResponse:
    found = [(event.id, event.classification(provider)) for event in events]
    application: Application = request.app.state.application
    done = await run_in_threadpool(application.provider_reports, provider, found, raw)
    if found and done.new == 0:
        raise Problem(
            409, "replayed", "every event of this call was received before: nothing was done"
        )
    return JSONResponse(done.model_dump())


def _now(request: Request) -> dt.datetime:
    application: Application = request.app.state.application
    return application.clock()


@dataclass(frozen=True)
class Events:
    """What a call reports, and the single-use token it was signed with (Mailgun
    signs a token and a timestamp, not the events: the token is taken once)."""

    events: list[ProviderEvent]
    once: str | None = None


Reading = Events | dict[str, Any]  # the events, or an answer of its own


def _sendgrid(key: str, body: bytes, headers: Headers, now: dt.datetime) -> Reading:
    signature = headers.get("x-twilio-email-event-webhook-signature")
    timestamp = headers.get("x-twilio-email-event-webhook-timestamp")
    verify_sendgrid(key, signature, timestamp, body, now)
    return Events(list(sendgrid_events(body)))


def _mailgun(key: str, body: bytes, headers: Headers, now: dt.datetime) -> Reading:
    payload = _object(body, "a Mailgun webhook sends a JSON object")
    token = verify_mailgun(key, payload.get("signature"), now)
    return Events(list(mailgun_events(payload)), once=f"mailgun:{token}")


def _postmark(
    credentials: tuple[str, str], body: bytes, headers: Headers, now: dt.datetime
) -> Reading:
    verify_basic(*credentials, headers.get("authorization"))
    return Events(list(postmark_events(body)))


def _ses(verifier: SnsVerifier, body: bytes, headers: Headers, now: dt.datetime) -> Reading:
    message = _object(body, "SNS sends a JSON object")
    verifier.verify(message, now)  # may fetch a certificate: this runs in a worker thread
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        try:
            verifier.fetch(sns_address(message.get("SubscribeURL")))
        except (OSError, HTTPException) as error:
            raise SignatureError(f"the subscription could not be confirmed: {error}") from None
        return {"confirmed": message.get("TopicArn")}
    if kind != "Notification":
        return {"new": 0, "read_before": 0, "outcomes": []}
    message_id = str(message.get("MessageId", ""))
    return Events(list(ses_events(str(message.get("Message", "")), message_id)))


def _object(body: bytes, what: str) -> dict[str, Any]:
    found = json.loads(body)
    if not isinstance(found, dict):
        raise PayloadError(what)
    return found


@dataclass(frozen=True)
class _Provider:
    name: str
    secret: Callable[[WebhookSecrets], Any]
    read: Callable[[Any, bytes, Headers, dt.datetime], Reading]


_PROVIDERS = {
    "sendgrid": _Provider("SendGrid", lambda found: found.sendgrid_key, _sendgrid),
    "mailgun": _Provider("Mailgun", lambda found: found.mailgun_key, _mailgun),
    "postmark": _Provider("Postmark", lambda found: found.postmark, _postmark),
    "ses": _Provider("Amazon SES", lambda found: found.ses, _ses),
}


@router.post("/{provider}")
async def webhook(request: Request, provider: str) -> JSONResponse:
    found = _PROVIDERS.get(provider)
    if found is None:
        raise Problem(
            404, "not-found", f"no webhook {provider!r} (there are: {', '.join(_PROVIDERS)})"
        )
    secret = found.secret(request.app.state.webhooks)
    if secret is None:
        raise _unconfigured(found.name)
    body = await request.body()
    try:
        read = await run_in_threadpool(found.read, secret, body, request.headers, _now(request))
    except (ValueError, RecursionError, SignatureError) as error:
        raise _refusal(error) from None
    if isinstance(read, dict):
        return JSONResponse(read)
    application: Application = request.app.state.application
    if read.once is not None and not await run_in_threadpool(application.first_use, read.once):
        raise Problem(409, "replayed", "this signature was used before: nothing was done")
    return await _record(request, provider, read.events, body)


def _refusal(error: Exception) -> Problem:
    if isinstance(error, SignatureError):
        return Problem(401, "bad-signature", str(error))
    if isinstance(error, PayloadError):
        return Problem(422, "invalid-input", str(error))
    return Problem(400, "malformed-json", "the body is not valid JSON")
