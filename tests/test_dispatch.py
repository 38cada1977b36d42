"""The dispatcher against a real SMTP server on loopback (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from cadence.compiler import compile_source
from cadence.runtime.delivery import OutboxTransport
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.engine import Engine
from cadence.runtime.mailboxes import Sender, Throttle
from cadence.runtime.smtp import SmtpTransport
from cadence.runtime.store import Store
from tests.engine_db import database

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
SENDER = Sender("Sam", "sam@cadence.test", "-- Sam")
SOURCE = """campaign "Dispatch" {
  timezone "Europe/Stockholm"
  requires first_name
  day 1 {
    email intro { send choose subject "Hi {{ first_name }}" body "Hello {{ first_name }}" }
  }
  day 2 {
    email bump {
      send with previous
      follow up
      body "Bumping, {{ first_name }}. {{ sender.signature }}"
    }
  }
}
"""


class Inbox:
    """An SMTP server's handler: keeps what arrives, refuses some recipients."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with database(request.param, tmp_path) as (url, options):
        engine = Engine(Store.open(url, now=T0, **options))
        ir = compile_source(SOURCE, "dispatch.campaign").ir
        assert ir is not None
        engine.enroll(ir, [{"email": "ada@example.com", "first_name": "Ada"}], T0, now=T0)
        yield engine
        engine.close()


def test_sends_arrive_threaded_with_the_previous_email_quoted(
    engine: Engine, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    transport = SmtpTransport("127.0.0.1", port)
    dispatcher = Dispatcher(engine, transport, SENDER)
    assert dispatcher.run_once(T0).sent == 1
    assert dispatcher.run_once(T0 + DAY).sent == 1
    transport.close()
    intro, bump = inbox.messages
    assert intro["Subject"] == "Hi Ada"
    assert intro["From"] == "Sam <sam@cadence.test>" and intro["To"] == "ada@example.com"
    assert intro["Message-ID"].startswith("<cadence.") and intro["Message-ID"].endswith(
        "@cadence.test>"
    )
    assert bump["Subject"] == "Re: Hi Ada"
    assert bump["In-Reply-To"] == intro["Message-ID"]
    assert bump["References"] == intro["Message-ID"]
    body = bump.get_content().replace("\r\n", "\n")  # SMTP carries CRLF
    assert body.startswith("Bumping, Ada. -- Sam")
    assert "On Mon, 05 Jan 2026 at 09:00, Sam <sam@cadence.test> wrote:\n> Hello Ada" in body
    assert [e.event for e in engine.feed()][-2:] == ["sent", "sent"]


def test_a_permanent_refusal_fails_and_a_temporary_one_is_retried(
    engine: Engine, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    inbox.refuse["ada@example.com"] = "451 4.3.0 try again later"
    dispatcher = Dispatcher(engine, SmtpTransport("127.0.0.1", port), SENDER)
    report = dispatcher.run_once(T0)
    assert (report.sent, report.retried, report.failed) == (0, 1, 0)
    assert dispatcher.run_once(T0).sent == 0  # not before the backoff
    inbox.refuse["ada@example.com"] = "550 5.1.1 no such user"
    report = dispatcher.run_once(T0 + dt.timedelta(minutes=1))
    assert (report.sent, report.failed) == (0, 1)
    messages = [e.message for e in engine.feed() if e.event in ("retry", "failed")]
    assert messages[0].startswith("delivery of `intro` failed: 451 4.3.0 try again later")
    assert messages[1] == "delivery of `intro` failed: 550 5.1.1 no such user"


def test_an_unreachable_server_is_retried(engine: Engine) -> None:
    dispatcher = Dispatcher(engine, SmtpTransport("127.0.0.1", free_port(), timeout=2), SENDER)
    report = dispatcher.run_once(T0)
    assert report.retried == 1
    assert "cannot reach 127.0.0.1" in engine.feed()[-1].message


def test_outbox_writes_each_message_once(engine: Engine, tmp_path: Path) -> None:
    outbox = OutboxTransport(tmp_path / "outbox")
    dispatcher = Dispatcher(engine, outbox, SENDER)
    assert dispatcher.run_once(T0).sent == 1
    files = list((tmp_path / "outbox").glob("*.eml"))
    assert len(files) == 1
    written = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert written["Subject"] == "Hi Ada"
    # Delivered again (as after a crash before the mark): still one file, unchanged.
    before = files[0].read_bytes()
    outbox.deliver(written)  # type: ignore[arg-type]
    assert list((tmp_path / "outbox").glob("*.eml")) == files
    assert files[0].read_bytes() == before


def test_throttle_waits_for_room_in_the_window() -> None:
    clock = [0.0]
    waited: list[float] = []

    def sleep(seconds: float) -> None:
        waited.append(seconds)
        clock[0] += seconds

    throttle = Throttle(2, 10.0, clock=lambda: clock[0], sleep=sleep)
    for _ in range(5):
        throttle.wait()
        clock[0] += 1.0
    assert waited == [8.0, 8.0]


TASK_SOURCE = """campaign "Task email" {
  timezone "Europe/Stockholm"
  requires first_name
  day 1 {
    email intro { send task subject "Hi {{ first_name }}" body "Template for {{ first_name }}" }
  }
  day 2 {
    email bump { send with previous follow up body "Bumping, {{ first_name }}." }
  }
}
"""


def test_an_email_task_cadence_sends_arrives_as_edited_and_its_follow_up_quotes_the_template(
    engine: Engine, smtp: tuple[Inbox, int]
) -> None:
    ir = compile_source(TASK_SOURCE, "task.campaign").ir
    assert ir is not None
    engine.enroll(ir, [{"email": "bo@example.com", "first_name": "Bo"}], T0, now=T0)
    [task] = [t for t in engine.open_tasks() if t.person == "bo@example.com"]
    # 14:30 in Stockholm (no zone given: the recipient's) is 13:30 UTC.
    goes = engine.schedule_task(task.id, "Hi Bo, edited", "Typed by hand",
                                dt.datetime(2026, 1, 5, 14, 30), T0)  # fmt: skip
    assert goes == dt.datetime(2026, 1, 5, 13, 30, tzinfo=dt.UTC)
    inbox, port = smtp
    dispatcher = Dispatcher(engine, SmtpTransport("127.0.0.1", port), SENDER)
    assert dispatcher.run_once(T0).sent == 1  # Ada's intro; Bo's email waits for its time
    assert dispatcher.run_once(goes).sent == 1
    # The aligned follow-up takes the time of day the person chose (§4.4): 14:30 on day 2.
    assert dispatcher.run_once(goes + DAY - dt.timedelta(minutes=1)).sent == 1  # Ada's bump
    assert dispatcher.run_once(goes + DAY).sent == 1
    _, edited, _, bump = inbox.messages
    assert edited["To"] == "bo@example.com" and edited["Subject"] == "Hi Bo, edited"
    assert edited.get_content().strip() == "Typed by hand"
    assert bump["Subject"] == "Re: Hi Bo, edited" and bump["In-Reply-To"] == edited["Message-ID"]
    body = bump.get_content().replace("\r\n", "\n")
    assert "> Template for Bo" in body and "Typed by hand" not in body


FOLLOW_TASK = """campaign "Follow task" {
  timezone "UTC"
  day 1 { email intro { send choose subject "Hi {{ first_name }}" body "Hello {{ first_name }}" } }
  day 2 { email nudge { send task follow up body "Template nudge" } }
}
"""


def test_a_follow_up_task_email_cadence_sends_keeps_the_thread_and_quotes_it(
    engine: Engine, smtp: tuple[Inbox, int]
) -> None:
    ir = compile_source(FOLLOW_TASK, "follow.campaign").ir
    assert ir is not None
    engine.enroll(ir, [{"email": "cy@example.com", "first_name": "Cy"}], T0, now=T0)
    inbox, port = smtp
    dispatcher = Dispatcher(engine, SmtpTransport("127.0.0.1", port), SENDER)
    assert dispatcher.run_once(T0).sent == 2  # both intros
    [task] = [t for t in engine.open_tasks() if t.person == "cy@example.com"]
    # No subject given (the prefilled one is empty): the thread's.
    engine.schedule_task(task.id, "", "Typed nudge", None, T0 + DAY)
    assert dispatcher.run_once(T0 + DAY).sent == 2  # Ada's bump, and Cy's nudge
    intro, nudge = [m for m in inbox.messages if m["To"] == "cy@example.com"]
    assert nudge["Subject"] == "Re: Hi Cy" and nudge["In-Reply-To"] == intro["Message-ID"]
    body = nudge.get_content().replace("\r\n", "\n")
    assert body.startswith("Typed nudge\n\nOn Mon, 05 Jan 2026") and "> Hello Cy" in body
    assert "Template nudge" not in body
