"""Provider webhooks (SendGrid, Mailgun, Postmark, Amazon SES through SNS):
payloads shaped like each provider's documented examples, signed with keys
made here the way each provider signs, against the real app on SQLite and
PostgreSQL. A bounce, complaint or unsubscribe does what the same news by
mail does; unsigned, wrongly signed, stale or replayed calls change nothing."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from cadence.runtime.config import ConfigError, WebhooksConfig
from cadence.runtime.engine import Engine
from cadence.runtime.inbox import InboxSettings
from cadence.server import create_app
from cadence.server.signatures import SnsVerifier
from cadence.server.webhooks import WebhookSecrets
from cadence.service import Application
from tests.conftest import EXAMPLES

T0 = dt.datetime(2026, 1, 5, 13, tzinfo=dt.UTC)
ADA = "ada@example.com"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
CERT_URL = (
    "https://sns.us-east-1.amazonaws.com/"
    "SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem"
)
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SNS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate() -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    made = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(SNS_KEY.public_key())
        .serial_number(1)
        .not_valid_before(T0 - dt.timedelta(days=1))
        .not_valid_after(T0 + dt.timedelta(days=365))
        .sign(SNS_KEY, hashes.SHA256())
    )
    return made.public_bytes(serialization.Encoding.PEM)


CERTIFICATE = _certificate()


class Hooks:
    def __init__(self, engine: Engine) -> None:
        self.fetched: list[str] = []
        self.application = Application(engine, lambda: T0, InboxSettings(soft_bounce_limit=2))
        public = SENDGRID_KEY.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        keys = WebhookSecrets(
            sendgrid_key=base64.b64encode(public).decode(),
            mailgun_key=MAILGUN_KEY,
            postmark=("postmark", "s3cret"),
            ses=SnsVerifier([TOPIC], self.fetch),
        )
        self.hooks_verifier = keys.ses
        self.client = TestClient(create_app(self.application, webhooks=keys))
        source = (EXAMPLES / "q1-outbound.campaign").read_text()
        templates = {"templates/bump.txt.j2": (EXAMPLES / "templates" / "bump.txt.j2").read_text()}
        campaign = self.application.add_campaign(source, "q1.campaign", templates).identity
        people = [
            {"email": f"{n}@example.com", "first_name": "A", "company": "C"} for n in ("ada", "bob")
        ]
        self.application.enroll(campaign, people, start="2026-01-05T09:00")

    def fetch(self, url: str) -> bytes:
        self.fetched.append(url)
        return CERTIFICATE if url == CERT_URL else b"<ConfirmSubscriptionResponse/>"

    def suppressed(self) -> dict[str, str]:
        return {s.email: s.reason for s in self.application.suppressions()}

    def state(self, person: str = ADA) -> str:
        return self.application.status(person).enrollments[0].state


@pytest.fixture
def hooks(engine: Engine) -> Iterator[Hooks]:
    yield Hooks(engine)


# ---- how each provider signs ---------------------------------------------------------------
def sendgrid(
    hooks: Hooks, events: list[dict[str, Any]], *, at: dt.datetime = T0, key: Any = SENDGRID_KEY
) -> Any:
    body = json.dumps(events).encode()
    timestamp = str(int(at.timestamp()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }
    return hooks.client.post("/webhooks/sendgrid", content=body, headers=headers)


def sendgrid_bounce(event_id: str = "6g4ZI7SA-xmRDv57GoPIPw==", **extra: Any) -> dict[str, Any]:
    return {
        "email": ADA, "timestamp": int(T0.timestamp()),
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "bounce", "category": "cat facts", "sg_event_id": event_id,
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        "reason": "500 unknown recipient", "status": "5.0.0", "type": "bounce", **extra,
    }  # fmt: skip


def mailgun(
    hooks: Hooks,
    data: dict[str, Any],
    *,
    at: dt.datetime = T0,
    key: str = MAILGUN_KEY,
    token: str | None = None,
    signature: str | None = None,
) -> Any:
    # Mailgun signs each call with a fresh random token (50 hex characters).
    timestamp, token = str(int(at.timestamp())), token or secrets.token_hex(25)
    wanted = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    signature = signature or wanted
    body = {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": data,
    }
    return hooks.client.post("/webhooks/mailgun", json=body)


def mailgun_failure(severity: str, event_id: str = "G9Bn5sl1TC6nu79C8C0bwg") -> dict[str, Any]:
    return {
        "event": "failed", "id": event_id, "timestamp": T0.timestamp(), "severity": severity,
        "reason": "bounce" if severity == "permanent" else "generic", "recipient": ADA,
        "delivery-status": {"code": 550, "enhanced-code": "5.1.1", "message": "No such user"},
    }  # fmt: skip


def postmark(hooks: Hooks, body: dict[str, Any], password: str = "s3cret") -> Any:
    credentials = base64.b64encode(f"postmark:{password}".encode()).decode()
    return hooks.client.post(
        "/webhooks/postmark", json=body, headers={"Authorization": f"Basic {credentials}"}
    )


POSTMARK_BOUNCE = {
    "RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce", "TypeCode": 1,
    "Name": "Hard bounce", "Tag": "Test", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "ServerID": 23, "MessageStream": "outbound",
    "Description": "The server was unable to deliver your message",
    "Details": "Test bounce details", "Email": ADA, "From": "sender@example.com",
    "BouncedAt": "2026-01-05T13:00:00.0000000Z", "DumpAvailable": True, "Inactive": True,
    "CanActivate": True, "Subject": "Test subject", "Content": "Return-Path:...",
}  # fmt: skip


def sns(
    hooks: Hooks,
    kind: str,
    fields: dict[str, Any],
    *,
    at: dt.datetime = T0,
    topic: str = TOPIC,
    cert: str = CERT_URL,
) -> Any:
    message = {
        "Type": kind, "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324", "TopicArn": topic,
        "Timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "SignatureVersion": "1",
        "SigningCertURL": cert, **fields,
    }  # fmt: skip
    names = {
        "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    }.get(kind, ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"))
    text = "".join(f"{name}\n{message[name]}\n" for name in names if name in message)
    signature = SNS_KEY.sign(text.encode(), padding.PKCS1v15(), hashes.SHA1())
    message["Signature"] = base64.b64encode(signature).decode()
    headers = {"x-amz-sns-message-type": kind, "Content-Type": "text/plain; charset=UTF-8"}
    return hooks.client.post("/webhooks/ses", content=json.dumps(message), headers=headers)


def ses_notification(kind: str = "Bounce", bounce_type: str = "Permanent") -> str:
    if kind == "Complaint":
        inner: dict[str, Any] = {
            "notificationType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": ADA}],
                "complaintFeedbackType": "abuse",
                "feedbackId": "0100017c-complaint",
                "timestamp": "2026-01-05T13:00:00.000Z",
            },
        }
    else:
        inner = {
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": bounce_type,
                "bounceSubType": "General",
                "feedbackId": "0100017c-bounce",
                "bouncedRecipients": [
                    {
                        "emailAddress": ADA,
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
                "timestamp": "2026-01-05T13:00:00.000Z",
            },
        }
    inner["mail"] = {
        "source": "sam@example.com",
        "messageId": "0000014a-f4d4",
        "destination": [ADA],
    }
    return json.dumps(inner)  # fmt: skip


# ---- what they do --------------------------------------------------------------------------
def test_a_sendgrid_bounce_suppresses_and_runs_on_bounce_once(hooks: Hooks) -> None:
    events = [{"email": ADA, "event": "delivered", "sg_event_id": "d1"}, sendgrid_bounce()]
    answer = sendgrid(hooks, events)
    assert answer.status_code == 200, answer.text
    assert answer.json()["new"] == 1 and "suppressed" in answer.json()["outcomes"][0]
    assert hooks.suppressed() == {ADA: "bounced"} and hooks.state() == "ended"
    replayed = sendgrid(hooks, events)
    assert replayed.status_code == 409 and replayed.json()["type"] == "urn:cadence:problem:replayed"


def test_sendgrid_spam_reports_and_unsubscribes(hooks: Hooks) -> None:
    events = [
        {"email": ADA, "event": "spamreport", "sg_event_id": "s1", "timestamp": 1},
        {
            "email": "bob@example.com",
            "event": "group_unsubscribe",
            "sg_event_id": "u1",
            "asm_group_id": 1,
        },
    ]
    assert sendgrid(hooks, events).json()["new"] == 2
    assert hooks.suppressed() == {ADA: "complained", "bob@example.com": "unsubscribed"}
    assert hooks.state("bob@example.com") == "ended"


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("unsigned", "not signed"),
        ("other key", "does not match"),
        ("stale", "too long ago"),
        ("future", "in the future"),
    ],
)
def test_a_sendgrid_call_not_signed_now_by_sendgrid_changes_nothing(
    hooks: Hooks, how: str, message: str
) -> None:
    if how == "unsigned":
        answer = hooks.client.post("/webhooks/sendgrid", json=[sendgrid_bounce()])
    elif how == "other key":
        answer = sendgrid(hooks, [sendgrid_bounce()], key=ec.generate_private_key(ec.SECP256R1()))
    else:
        moved = dt.timedelta(minutes=6 if how == "stale" else -6)
        answer = sendgrid(hooks, [sendgrid_bounce()], at=T0 - moved)
    assert answer.status_code == 401 and message in answer.json()["detail"]
    assert hooks.suppressed() == {} and hooks.state() == "active"


def test_mailgun_counts_temporary_failures_until_the_limit(hooks: Hooks) -> None:
    first = mailgun(hooks, mailgun_failure("temporary", "t1")).json()
    assert "temporary failure 1 of 2" in first["outcomes"][0] and hooks.suppressed() == {}
    second = mailgun(hooks, mailgun_failure("temporary", "t2")).json()
    assert "2 temporary failures make a permanent one" in second["outcomes"][0]
    assert hooks.suppressed() == {ADA: "bounced"}


def test_mailgun_refuses_a_wrong_signature_and_a_replay(hooks: Hooks) -> None:
    assert mailgun(hooks, mailgun_failure("permanent"), key="key-wrong").status_code == 401
    assert hooks.suppressed() == {}
    assert mailgun(hooks, mailgun_failure("permanent")).status_code == 200
    assert mailgun(hooks, mailgun_failure("permanent")).status_code == 409
    complained = {"event": "complained", "id": "c1", "recipient": "bob@example.com"}
    assert mailgun(hooks, complained).json()["new"] == 1
    assert hooks.suppressed() == {ADA: "bounced", "bob@example.com": "complained"}


def test_a_mailgun_signature_is_taken_once(hooks: Hooks) -> None:
    token = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0"
    assert mailgun(hooks, mailgun_failure("permanent", "e1"), token=token).status_code == 200
    # The signature covers the token, not the events: the same token with
    # other events is a replay (someone who saw one call), refused.
    other = {**mailgun_failure("permanent", "e2"), "recipient": "bob@example.com"}
    replayed = mailgun(hooks, other, token=token)
    assert replayed.status_code == 409 and "signature was used before" in replayed.json()["detail"]
    assert hooks.suppressed() == {ADA: "bounced"}
    odd = mailgun(hooks, mailgun_failure("permanent", "e3"), signature="\u00e9")
    assert odd.status_code == 401


def test_postmark_bounces_complaints_and_subscription_changes(hooks: Hooks) -> None:
    assert postmark(hooks, POSTMARK_BOUNCE).json()["new"] == 1
    assert hooks.suppressed() == {ADA: "bounced"}
    change = {
        "RecordType": "SubscriptionChange", "MessageID": "883953f4", "ServerID": 123,
        "MessageStream": "outbound", "ChangedAt": "2026-01-05T13:00:00Z",
        "Recipient": "bob@example.com",
        "Origin": "Recipient", "SuppressSending": True, "SuppressionReason": "ManualSuppression",
    }  # fmt: skip
    assert postmark(hooks, change).json()["new"] == 1
    assert hooks.suppressed()["bob@example.com"] == "unsubscribed"
    assert postmark(hooks, POSTMARK_BOUNCE).status_code == 409


def test_postmark_needs_its_credentials(hooks: Hooks) -> None:
    assert postmark(hooks, POSTMARK_BOUNCE, password="guess").status_code == 401
    assert hooks.client.post("/webhooks/postmark", json=POSTMARK_BOUNCE).status_code == 401
    assert hooks.suppressed() == {}


def test_ses_notifications_through_sns(hooks: Hooks) -> None:
    answer = sns(hooks, "Notification", {"Message": ses_notification()})
    assert answer.status_code == 200, answer.text
    assert hooks.suppressed() == {ADA: "bounced"} and hooks.fetched == [CERT_URL]
    complaint = sns(
        hooks, "Notification", {"Message": ses_notification("Complaint"), "MessageId": "m2"}
    )
    assert complaint.json()["new"] == 1
    assert hooks.suppressed() == {ADA: "bounced"}  # suppressed once: the first reason stays
    assert hooks.fetched == [CERT_URL]  # the certificate is kept


def test_an_sns_subscription_is_confirmed_for_a_configured_topic_only(hooks: Hooks) -> None:
    confirm = (
        "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=x&Token=2336"
    )
    fields = {"Message": "You have chosen to subscribe", "SubscribeURL": confirm, "Token": "2336"}
    assert sns(hooks, "SubscriptionConfirmation", fields).status_code == 200
    assert hooks.fetched == [CERT_URL, confirm]
    other = sns(hooks, "SubscriptionConfirmation", fields, topic="arn:aws:sns:us-east-1:1:other")
    assert other.status_code == 401 and "topic" in other.json()["detail"]


@pytest.mark.parametrize(
    "cert",
    [
        "https://evil.example\\@sns.us-east-1.amazonaws.com/cert.pem",
        "https://user:1@sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.pem?n=1",
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
    ],
)
def test_sns_certificates_come_only_from_sns_itself(hooks: Hooks, cert: str) -> None:
    answer = sns(hooks, "Notification", {"Message": ses_notification()}, cert=cert)
    assert answer.status_code == 401
    assert hooks.fetched == [] and hooks.suppressed() == {}


def test_an_sns_certificate_that_cannot_be_fetched_is_a_refusal(hooks: Hooks) -> None:
    def unreachable(url: str) -> bytes:
        raise OSError("connection refused")

    assert hooks.hooks_verifier is not None
    hooks.hooks_verifier.fetch = unreachable
    answer = sns(hooks, "Notification", {"Message": ses_notification()})
    assert answer.status_code == 401 and "cannot be fetched" in answer.json()["detail"]
    assert hooks.suppressed() == {}


def test_a_stale_sns_message_is_refused(hooks: Hooks) -> None:
    answer = sns(
        hooks, "Notification", {"Message": ses_notification()}, at=T0 - dt.timedelta(hours=2)
    )
    assert answer.status_code == 401 and hooks.suppressed() == {}


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/webhooks/mailgun", b"{not json", 400),
        ("/webhooks/ses", b"[1, 2]", 422),
        ("/webhooks/sendgrid", b"{}", 401),
        ("/webhooks/nowhere", b"{}", 404),
    ],
)
def test_malformed_calls_are_problems(hooks: Hooks, path: str, body: bytes, status: int) -> None:
    answer = hooks.client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


def test_a_provider_the_config_does_not_name_has_no_webhook(engine: Engine) -> None:
    client = TestClient(create_app(Application(engine, lambda: T0)))
    assert client.post("/webhooks/sendgrid", json=[]).status_code == 404


def test_the_config_names_secrets_that_must_be_in_the_environment() -> None:
    config = WebhooksConfig(mailgun_key_env="MAILGUN_KEY_FOR_TEST")
    with pytest.raises(ConfigError, match="MAILGUN_KEY_FOR_TEST"):
        WebhookSecrets.from_config(config, environ={})
    found = WebhookSecrets.from_config(config, environ={"MAILGUN_KEY_FOR_TEST": "k"})
    assert found.mailgun_key == "k" and found.sendgrid_key is None
    with pytest.raises(ConfigError, match="both"):
        WebhookSecrets.from_config(WebhooksConfig(postmark_username="p"), environ={})
