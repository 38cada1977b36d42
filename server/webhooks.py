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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

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


def _secrets(request: Request) -> WebhookSecrets:
    found: WebhookSecrets = request.app.state.webhooks
    return found


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


@router.post("/sendgrid")
async def sendgrid(request: Request) -> JSONResponse:
    key = _secrets(request).sendgrid_key
    if key is None:
        raise _unconfigured("SendGrid")
    body = await request.body()
    try:
        verify_sendgrid(
            key,
            request.headers.get("x-twilio-email-event-webhook-signature"),
            request.headers.get("x-twilio-email-event-webhook-timestamp"),
            body,
            _now(request),
        )
        events = list(sendgrid_events(body))
    except (SignatureError, PayloadError) as error:
        raise _refusal(error) from None
    return await _record(request, "sendgrid", events, body)


@router.post("/mailgun")
async def mailgun(request: Request) -> JSONResponse:
    key = _secrets(request).mailgun_key
    if key is None:
        raise _unconfigured("Mailgun")
    body = await request.body()
    try:
        payload = json.loads(body)
        if not isinstance(payload, dict):
            raise PayloadError("a Mailgun webhook sends a JSON object")
        verify_mailgun(key, payload.get("signature"), _now(request))
        events = list(mailgun_events(payload))
    except (ValueError, RecursionError, SignatureError) as error:
        raise _refusal(error) from None
    return await _record(request, "mailgun", events, body)


@router.post("/postmark")
async def postmark(request: Request) -> JSONResponse:
    credentials = _secrets(request).postmark
    if credentials is None:
        raise _unconfigured("Postmark")
    body = await request.body()
    try:
        verify_basic(*credentials, request.headers.get("authorization"))
        events = list(postmark_events(body))
    except (SignatureError, PayloadError) as error:
        raise _refusal(error) from None
    return await _record(request, "postmark", events, body)


@router.post("/ses")
async def ses(request: Request) -> JSONResponse:
    verifier = _secrets(request).ses
    if verifier is None:
        raise _unconfigured("Amazon SES")
    body = await request.body()
    try:
        message = json.loads(body)
        if not isinstance(message, dict):
            raise PayloadError("SNS sends a JSON object")
        await run_in_threadpool(verifier.verify, message, _now(request))  # may fetch a certificate
        kind = message["Type"]
        if kind == "SubscriptionConfirmation":
            await run_in_threadpool(verifier.fetch, sns_address(message.get("SubscribeURL")))
            return JSONResponse({"confirmed": message.get("TopicArn")})
        if kind != "Notification":
            return JSONResponse({"new": 0, "read_before": 0, "outcomes": []})
        events = list(
            ses_events(str(message.get("Message", "")), str(message.get("MessageId", "")))
        )
    except (ValueError, RecursionError, SignatureError) as error:
        raise _refusal(error) from None
    return await _record(request, "ses", events, body)


def _refusal(error: Exception) -> Problem:
    if isinstance(error, SignatureError):
        return Problem(401, "bad-signature", str(error))
    if isinstance(error, PayloadError):
        return Problem(422, "invalid-input", str(error))
    return Problem(400, "malformed-json", "the body is not valid JSON")
