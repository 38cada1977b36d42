"""Outgoing emails built from stored header text are, byte for byte, the
emails the email package builds from the same values."""

from __future__ import annotations

import email.policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import getaddresses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cadence.runtime.addresses import has_control
from cadence.runtime.outgoing import add, envelope, recipient, set_text, shared, stored, text_of

NAMES = ["Subject", "To", "From", "Message-ID", "In-Reply-To", "References", "Date"]
TRICKY = [*"ab Z09 <>@.=?\"()[],;:\\\t_-'", "é", "ß", "\u2028", "\r\n", "漢", "\x00"]
VALUES = st.one_of(
    st.lists(st.sampled_from(TRICKY), max_size=90).map("".join),
    st.text(max_size=40),
    st.from_regex(r"[a-z0-9.+_-]{1,20}@[a-z0-9-]{1,12}(\.[a-z]{2,5}){0,2}", fullmatch=True),
    st.from_regex(r"<[a-z0-9.]{1,30}@[a-z0-9.-]{1,20}>", fullmatch=True),
    st.from_regex(r"[A-Za-z,!?' ]{0,100}", fullmatch=True),
    st.sampled_from(["Mon, 02 Mar 2026 08:00:00 +0000", "Bench <bench@example.com>"]),
)
BODIES = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(["a", " ", "\n", "\r", "\r\n", "é", "x" * 79]), max_size=30).map(
        "".join
    ),
)
POLICIES = [email.policy.default, email.policy.SMTP, email.policy.SMTPUTF8]


def by_the_package(name: str, value: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message[name] = value
    message.set_content(body)
    return message


def stored_text(name: str, value: str, body: str) -> EmailMessage:
    message = EmailMessage()
    add(message, name, stored(name, value))
    set_text(message, body)
    return message


@settings(max_examples=600, deadline=None)
@given(name=st.sampled_from(NAMES), value=VALUES, body=BODIES)
def test_a_message_from_stored_text_is_the_one_the_package_writes(
    name: str, value: str, body: str
) -> None:
    try:
        expected = by_the_package(name, value, body)
        wire = [expected.as_bytes(policy=policy) for policy in POLICIES]
    except Exception as error:  # the package refuses the value: so does this (or sooner)
        with pytest.raises((type(error), ValueError)):
            built = stored_text(name, value, body)
            [built.as_bytes(policy=policy) for policy in POLICIES]
        return
    if has_control(value) or has_control(str(expected[name])):
        with pytest.raises(ValueError, match="line break"):
            stored(name, value)
        return
    built = stored_text(name, value, body)
    assert [built.as_bytes(policy=policy) for policy in POLICIES] == wire
    assert str(built[name]) == str(expected[name]) == text_of(built, name)
    assert built.get_content() == expected.get_content()


def test_plain_values_are_stored_as_they_are_and_others_folded_once() -> None:
    # (Header objects are str too: `type` tells text from them.)
    assert type(stored("Subject", "Quick question, Ann")) is str
    assert stored("To", "ann@example.com") == "ann@example.com"
    folded = stored("Subject", ("word " * 30).strip())
    assert type(folded) is str and "\n " in folded  # folded once, kept as text
    assert type(stored("Subject", "Hej Åsa")) is not str  # non-ASCII: the header object
    assert shared("Date", "Mon, 02 Mar 2026 08:00:00 +0000") is shared(
        "Date", "Mon, 02 Mar 2026 08:00:00 +0000"
    )


def test_a_line_break_in_a_header_is_refused() -> None:
    for value in ["a\nBcc: x@example.com", "=?utf-8?q?a=0ABcc:_x@example.com?=", "a\u2028b"]:
        with pytest.raises(ValueError, match="line break"):
            stored("Subject", value)


@settings(max_examples=300, deadline=None)
@given(addr_spec=st.one_of(VALUES, st.emails()))
def test_a_recipient_is_the_address_the_package_writes(addr_spec: str) -> None:
    try:
        expected = EmailMessage()
        expected["To"] = Address(addr_spec=addr_spec)
        wire = [expected.as_bytes(policy=policy) for policy in POLICIES]
    except Exception as error:
        with pytest.raises(type(error)):
            built = EmailMessage()
            add(built, "To", recipient("To", addr_spec))
            [built.as_bytes(policy=policy) for policy in POLICIES]
        return
    built = EmailMessage()
    add(built, "To", recipient("To", addr_spec))
    assert [built.as_bytes(policy=policy) for policy in POLICIES] == wire
    assert built["To"].addresses == expected["To"].addresses


@settings(max_examples=200, deadline=None)
@given(display=st.one_of(VALUES, st.text(max_size=30)), addr_spec=st.emails())
def test_a_sender_is_the_address_the_package_writes(display: str, addr_spec: str) -> None:
    try:
        sender = Address(display, addr_spec=addr_spec)
        expected = EmailMessage()
        expected["From"] = sender
        wire = [expected.as_bytes(policy=policy) for policy in POLICIES]
    except Exception:
        return  # a sender the package cannot write is refused when configured
    if has_control(str(sender)) or has_control(str(expected["From"])):
        with pytest.raises(ValueError, match="line break"):
            stored("From", sender)
        return
    built = EmailMessage()
    add(built, "From", stored("From", sender))
    assert [built.as_bytes(policy=policy) for policy in POLICIES] == wire


def smtplib_envelope(message: EmailMessage) -> tuple[str, list[str]]:
    """The envelope as smtplib.send_message works it out."""
    sender = getaddresses([message["From"]])[0][1]
    fields = [f for f in (message["To"], message["Bcc"], message["Cc"]) if f is not None]
    return sender, [address for _, address in getaddresses(fields)]


@settings(max_examples=300, deadline=None)
@given(display=st.text(max_size=20), sender=st.emails(), to=st.one_of(VALUES, st.emails()))
def test_the_envelope_is_the_one_smtplib_would_send_to(display: str, sender: str, to: str) -> None:
    try:
        message = EmailMessage()
        add(message, "From", stored("From", Address(display, addr_spec=sender)))
        add(message, "To", recipient("To", to))
        set_text(message, "Hi")
        expected = smtplib_envelope(message)
    except Exception:
        return
    found = envelope(message)
    assert found is None or found == expected  # None: smtplib works it out itself


def test_headers_that_change_the_envelope_leave_it_to_smtplib() -> None:
    message = EmailMessage()
    add(message, "From", stored("From", "Ann <ann@example.com>"))
    add(message, "To", recipient("To", "bo@example.com"))
    assert envelope(message) == ("ann@example.com", ["bo@example.com"])
    message["Bcc"] = "cy@example.com"
    assert envelope(message) is None


def test_the_smtp_shortcut_sends_the_bytes_send_message_sends() -> None:
    """Over SMTP a plain message skips send_message's header parsing; what
    goes on the wire is still what send_message sends (a body line starting
    "From " quoted as ">From ", mbox style, included)."""
    import smtplib

    from cadence.runtime.smtp import _as_sent

    sent: list[tuple[str, list[str], bytes]] = []

    class Recorder(smtplib.SMTP):
        def ehlo_or_helo_if_needed(self) -> None:
            pass  # no server: only what would be sent is looked at

        def sendmail(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=()):  # type: ignore[no-untyped-def, override]
            sent.append((from_addr, list(to_addrs), msg))
            return {}

    message = EmailMessage()
    add(message, "From", stored("From", "Ann <ann@example.com>"))
    add(message, "To", recipient("To", "bo@example.com"))
    add(message, "Subject", stored("Subject", "Hi"))
    set_text(message, "From me, hello\nbye\n")
    Recorder().send_message(message)
    found = envelope(message)
    assert found is not None
    assert sent == [(found[0], found[1], _as_sent(message))]
    assert b"\r\n>From me, hello\r\n" in _as_sent(message)
