"""After an outage the schedule keeps its shape: whatever the late policy, a
person never gets in one day what the campaign spaced over several, and a
follow-up never goes before its parent's next counted day. On SQLite and
PostgreSQL (the `engine` fixture)."""

from __future__ import annotations

import datetime as dt

import pytest

from cadence.compiler import compile_source
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.engine import Engine, LatePolicy
from cadence.runtime.mailboxes import Sender
from tests.test_mailboxes import Recorder

MONDAY = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
THREE_DAYS = """campaign "Three" {
  timezone "UTC"
  skip weekends
  day 1 { email intro { send at 09:00 subject "Hi" body "Hello" } }
  day 2 { email nudge { send at 09:00 follow up body "Any thoughts?" } }
  day 3 { email last { send at 09:00 subject "Last" body "Bye" } }
}"""


def delivered(engine: Engine, policy: LatePolicy, back: dt.datetime) -> list[tuple[str, dt.date]]:
    """Nothing runs until ``back``; then a dispatcher every three hours for ten days.
    Each email delivered, with the day it went."""
    ir = compile_source(THREE_DAYS, "three.campaign").ir
    assert ir is not None
    engine.enroll(ir, [{"email": "kate@example.com"}], MONDAY, now=MONDAY)
    outbox = Recorder()
    dispatcher = Dispatcher(engine, outbox, Sender(), late=policy)
    went = []
    now = back
    while now < back + dt.timedelta(days=10):
        before = len(outbox.messages)
        dispatcher.run_once(now)
        went += [(str(m["Subject"]), now.date()) for m in outbox.messages[before:]]
        now += dt.timedelta(hours=3)
    return went


def test_a_rescheduled_outage_keeps_the_days_between_emails(engine: Engine) -> None:
    thursday = MONDAY + dt.timedelta(days=3, hours=2)  # intro, nudge and last all late
    went = delivered(engine, LatePolicy("reschedule"), thursday)
    assert went == [
        ("Hi", dt.date(2026, 12, 11)),  # Friday 09:00: its time of day next comes
        ("Re: Hi", dt.date(2026, 12, 14)),  # a counted day later: Monday
        ("Last", dt.date(2026, 12, 15)),
    ]
    moved = [e.message for e in engine.feed() if e.event == "late"]
    assert moved == [
        "send `intro` moved to 2026-12-11 09:00Z: 73 hours late (late = reschedule); "
        "the rest moves 4 day(s)"
    ]


def test_late_sends_sent_anyway_move_the_rest_with_them(engine: Engine) -> None:
    thursday = MONDAY + dt.timedelta(days=3, hours=2)
    went = delivered(engine, LatePolicy("send"), thursday)
    assert went == [
        ("Hi", dt.date(2026, 12, 10)),  # now, late
        ("Re: Hi", dt.date(2026, 12, 11)),  # the next counted day, at 09:00
        ("Last", dt.date(2026, 12, 14)),  # over the weekend
    ]
    moved = [e.message for e in engine.feed() if e.event == "late"]
    assert moved == ["send `intro` goes now: 73 hours late (late = send); the rest moves 3 day(s)"]


def test_late_sends_skipped_leave_the_rest_on_their_days(engine: Engine) -> None:
    wednesday = MONDAY + dt.timedelta(days=2, hours=2)  # intro and nudge late; last 1 h
    went = delivered(engine, LatePolicy("skip"), wednesday)
    assert went == [("Last", dt.date(2026, 12, 9))]
    skipped = [e.message for e in engine.feed() if e.event == "late"]
    assert skipped == [
        "send `intro` skipped: 49 hours late (late = skip)",
        "send `nudge` skipped: 25 hours late (late = skip)",
    ]


@pytest.mark.parametrize("policy", ["reschedule", "send", "skip"])
@pytest.mark.parametrize("hours", [30, 75, 170])
def test_no_two_emails_on_one_day_after_an_outage(engine: Engine, policy: str, hours: int) -> None:
    went = delivered(engine, LatePolicy(policy), MONDAY + dt.timedelta(hours=hours))
    days = [day for _, day in went]
    assert len(days) == len(set(days)), went
    assert days == sorted(days)


def test_a_send_the_daily_cap_rolls_moves_the_rest_with_it(engine: Engine) -> None:
    """A cap of one a day: the second person's intro rolls to Tuesday, and
    their nudge and last keep their days after it — never two on one day."""
    from cadence.runtime.caps import DailyCap

    ir = compile_source(THREE_DAYS, "three.campaign").ir
    assert ir is not None
    engine.enroll(ir, [{"email": "kate@example.com"}, {"email": "lee@example.com"}], MONDAY,
                  now=MONDAY)  # fmt: skip
    outbox = Recorder()
    cap = DailyCap("sam@example.com", 1)
    dispatcher = Dispatcher(engine, outbox, Sender(email="sam@example.com"), daily_cap=cap)
    went: dict[str, list[dt.date]] = {}
    now = MONDAY + dt.timedelta(hours=1)
    while now < MONDAY + dt.timedelta(days=10):
        before = len(outbox.messages)
        dispatcher.run_once(now)
        for message in outbox.messages[before:]:
            went.setdefault(str(message["To"]), []).append(now.date())
        now += dt.timedelta(hours=3)
    for person, days in went.items():
        assert len(days) == 3 and len(set(days)) == 3, (person, days)


def test_a_late_send_given_back_is_not_moved_again(engine: Engine) -> None:
    ir = compile_source(THREE_DAYS, "three.campaign").ir
    assert ir is not None
    engine.enroll(ir, [{"email": "kate@example.com"}], MONDAY, now=MONDAY)
    thursday = MONDAY + dt.timedelta(days=3, hours=2)
    for minutes in range(4):  # the mail server refuses: each claim is given back
        claimed = engine.claim(thursday + dt.timedelta(minutes=minutes), 10, worker="w",
                               late=LatePolicy("send"))  # fmt: skip
        engine.release(claimed)
    moved = [e.message for e in engine.feed() if e.event == "late"]
    assert moved == ["send `intro` goes now: 73 hours late (late = send); the rest moves 3 day(s)"]
