"""Cases a review found: long batches keep their leases, a reply during a
delivery, follow-ups wait for their email, a dispatcher that lost its claim."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from pathlib import Path

import pytest

from cadence.compiler import compile_source
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.engine import Engine, LostClaim
from cadence.runtime.mailboxes import Sender
from cadence.runtime.store import Store

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=300)


def engine_with(tmp_path: Path, source: str, people: int = 1) -> Engine:
    engine = Engine(Store.open(str(tmp_path / "review.db"), now=T0))
    ir = compile_source(source, "review.campaign").ir
    assert ir is not None
    engine.enroll(ir, [{"email": f"p{n}@example.com"} for n in range(people)], T0, now=T0)
    return engine


ONE_EMAIL = 'campaign "r" { timezone "UTC" day 1 { email e { send choose subject "s" body "b" } } }'
TWO_EMAILS = """campaign "r" { timezone "UTC"
  day 1 { email a { send choose subject "a" body "a" } }
  day 2 { email b { send with previous follow up body "b" } } }"""


class Recorder:
    def __init__(self, on_deliver: object = None) -> None:
        self.messages: list[EmailMessage] = []
        self.on_deliver = on_deliver

    def deliver(self, message: EmailMessage) -> None:
        self.messages.append(message)
        if callable(self.on_deliver):
            self.on_deliver(message)

    def close(self) -> None:
        pass


def test_a_long_batch_renews_its_leases_so_no_one_takes_them_over(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, ONE_EMAIL, people=6)
    clock = [0.0]

    def slow_delivery(_: EmailMessage) -> None:
        clock[0] += 200  # each send takes 200 s (a throttle, a slow server)
        other = engine.claim(T0 + dt.timedelta(seconds=clock[0]), worker="other", lease=LEASE)
        assert other == [], "another dispatcher took over a send this one holds"

    transport = Recorder(slow_delivery)
    dispatcher = Dispatcher(
        engine, transport, Sender(), worker="one", lease=LEASE, monotonic=lambda: clock[0]
    )
    report = dispatcher.run_once(T0)
    assert report.sent == 6 and len(transport.messages) == 6


def test_a_reply_while_a_send_is_in_flight(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, TWO_EMAILS)
    transport = Recorder(lambda _: engine.reply("p0@example.com", T0))
    report = Dispatcher(engine, transport, Sender()).run_once(T0)
    assert report.sent == 1  # delivered, and marked so: not reported as cancelled
    feed = [(e.event, e.step) for e in engine.feed()]
    assert ("sent", "a") in feed and ("cancelled", "a") not in feed
    assert ("cancelled", "b") in feed and feed[-1] == ("sent", "a")
    assert engine.due(T0 + dt.timedelta(days=5)) == []


def test_a_follow_up_waits_while_its_email_is_retried(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, TWO_EMAILS)
    a = engine.claim(T0)[0]
    later = T0 + dt.timedelta(days=1, hours=1)  # `b` is due now…
    engine.mark_failed(a, "421 later", T0, retry_at=later + dt.timedelta(hours=1))
    assert engine.due(later) == []  # …but not before `a` is sent
    assert [s.step for s in engine.due(later + dt.timedelta(hours=1))] == ["a"]


def test_a_dispatcher_that_lost_its_claim_cannot_mark_it(tmp_path: Path) -> None:
    engine = engine_with(tmp_path, ONE_EMAIL)
    mine = engine.claim(T0, worker="slow", lease=LEASE)[0]
    theirs = engine.claim(T0 + 2 * LEASE, worker="fast", lease=LEASE)[0]
    assert theirs.action_id == mine.action_id
    with pytest.raises(LostClaim, match="taken over by fast"):
        engine.mark_failed(mine, "timeout", T0 + 2 * LEASE)
    with pytest.raises(LostClaim):
        engine.mark_sent(mine, "<x@y>", T0 + 2 * LEASE)
    engine.mark_sent(theirs, "<x@y>", T0 + 2 * LEASE)
    engine.mark_sent(mine, "<x@y>", T0 + 2 * LEASE)  # sent already: harmless
