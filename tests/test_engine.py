"""The durable engine on real databases: the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from cadence.compiler import compile_source
from cadence.compiler.ir import Campaign
from cadence.runtime.engine import Engine, EngineError, LatePolicy, PastStart
from cadence.runtime.migrations import LATEST, SchemaError
from cadence.runtime.schema import actions, schema_version
from cadence.runtime.store import Store
from cadence.runtime.store import database_url as database_url_of
from tests.engine_db import database

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)  # a Monday
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)

SOURCE = """campaign "Engine" {
  timezone "UTC"
  on reply end
  on bounce remove
  day 1 {
    email intro { send choose subject "Hi" body "Hello {{ first_name }}" }
    call ring { notes "call" }
    email second { send at 12:00 subject "Second" body "b" }
  }
  day 2 {
    email personal { send task subject "Personal" body "p" }
  }
  day 3 {
    email aligned { send with previous follow up body "a" }
  }
}
"""


def compiled(source: str = SOURCE) -> Campaign:
    result = compile_source(source, "engine.campaign")
    assert result.ir is not None, result.diagnostics
    return result.ir


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, dict[str, object]]]:
    with database(request.param, tmp_path) as found:
        yield found


@pytest.fixture
def engine(database_url: tuple[str, dict[str, object]]) -> Iterator[Engine]:
    url, options = database_url
    engine = Engine(Store.open(url, now=T0, **options))
    try:
        yield engine
    finally:
        engine.close()


PEOPLE = [{"email": "ada@example.com", "first_name": "Ada"},
          {"email": "bo@example.com", "first_name": "Bo"}]  # fmt: skip


def test_enroll_queues_sends_and_opens_tasks(engine: Engine) -> None:
    report = engine.enroll(compiled(), PEOPLE, T0, now=T0)
    assert (report.enrolled, report.actions, report.problems) == (2, 10, [])
    assert [s.step for s in engine.due(T0)] == ["intro", "intro"]
    # `personal` waits behind `ring` (semantics §6): the command center shows what can be done.
    tasks = engine.open_tasks()
    assert [(t.person, t.step) for t in tasks] == [
        ("ada@example.com", "ring"), ("bo@example.com", "ring"),
    ]  # fmt: skip
    engine.complete_task(tasks[0].id, T0)
    assert [t.step for t in engine.open_tasks(person="ada@example.com")] == ["personal"]
    ada = [(e.event, e.step, e.message) for e in engine.feed() if e.person == "ada@example.com"]
    assert ada[:6] == [
        ("enrolled", None, "enrolled: 3 sends queued, 2 tasks opened"),
        ("queued", "intro", "queued `intro` for 2026-01-05 08:00 UTC"),
        ("task_opened", "ring", "task opened: call `ring` due 2026-01-05"),
        ("queued", "second", "queued `second` for 2026-01-05 12:00 UTC"),
        ("task_opened", "personal", "task opened: email task `personal` due 2026-01-06"),
        ("queued", "aligned", "queued `aligned` on 2026-01-07, after `personal`"),
    ]


def test_a_person_already_active_with_another_start_is_refused(engine: Engine) -> None:
    ir = compiled()
    engine.enroll(ir, PEOPLE[:1], T0, now=T0)
    report = engine.enroll(ir, [{"email": "ADA@example.com", "first_name": "A"}, PEOPLE[1]],
                           T0 + HOUR, now=T0)  # fmt: skip
    assert report.enrolled == 1 and report.already == 0
    assert [(p.line, p.message) for p in report.problems] == [
        (1, "`ADA@example.com` is already active in this campaign (started 2026-01-05 08:00Z)")
    ]


def test_enrolling_again_with_the_same_start_enrolls_only_the_rest(engine: Engine) -> None:
    ir = compiled()
    first = engine.enroll(ir, PEOPLE[:1], T0, now=T0)
    # An interrupted enroll, run again an hour later: the rest are late, and
    # the run says what becomes of what they missed.
    with pytest.raises(PastStart):
        engine.enroll(ir, PEOPLE, T0, now=T0 + HOUR)
    again = engine.enroll(ir, PEOPLE, T0, now=T0 + HOUR, catch_up="send")
    assert (first.enrolled, again.enrolled, again.already, again.problems) == (1, 1, 1, [])
    assert sorted(send.person for send in engine.due(T0 + 2 * HOUR)) == [
        "ada@example.com",
        "bo@example.com",
    ]


def test_an_enroll_commits_batch_by_batch(engine: Engine) -> None:
    ir = compiled()
    people = [{"email": f"p{n}@example.com", "first_name": f"P{n}"} for n in range(25)]
    seen: list[int] = []
    report = engine.enroll(ir, people, T0, now=T0, batch=10, on_batch=lambda r: seen.append(
        len({s.person for s in engine.due(T0 + HOUR, limit=1000)})))  # fmt: skip
    assert seen == [10, 20]  # what each batch committed was visible to others at once
    assert report.enrolled == 25


def test_an_open_task_holds_later_sends_until_it_closes(engine: Engine) -> None:
    engine.enroll(compiled(), PEOPLE[:1], T0, now=T0)
    noon = T0.replace(hour=12)
    intro = engine.claim(noon)[0]
    engine.mark_sent(intro, "<m@x>", noon)
    # `second` (12:00) comes after the open call task `ring`: held.
    assert engine.due(noon) == []
    ring = next(t for t in engine.open_tasks() if t.step == "ring")
    engine.complete_task(ring.id, noon + HOUR)
    assert [s.step for s in engine.due(noon + HOUR)] == ["second"]


def test_a_persons_due_sends_go_out_in_campaign_order(engine: Engine) -> None:
    ir = compiled(
        'campaign "order" { timezone "UTC" day 1 { call c { } } day 2 { '
        'email a { send at 15:00 subject "a" body "a" } '
        'email b { send at 09:00 subject "b" body "b" } } }'
    )
    engine.enroll(ir, PEOPLE[:1], T0, now=T0)
    late = T0 + 3 * DAY  # the call task was closed late: both sends are overdue
    engine.complete_task(engine.open_tasks()[0].id, late)
    first = engine.claim(late)
    assert [s.step for s in first] == ["a"]  # not `b`, though its time came first
    engine.mark_sent(first[0], "<a@x>", late)
    assert [s.step for s in engine.claim(late)] == ["b"]


def test_the_backlog_counts_what_is_due_and_not_what_is_held(engine: Engine) -> None:
    engine.enroll(compiled(), PEOPLE, T0, now=T0)
    noon = T0.replace(hour=12)
    assert engine.count_due(noon) == len(engine.due(noon, limit=1000)) > 0
    for send in engine.claim(noon, limit=1000):  # claimed: no longer due
        engine.mark_sent(send, f"<{send.action_id}@x>", noon)
    # Each person's `second` waits for the open call task: nothing is due.
    assert engine.count_due(noon + HOUR) == len(engine.due(noon + HOUR)) == 0


def test_claims_are_leases_and_marking_is_idempotent(engine: Engine) -> None:
    engine.enroll(compiled(), PEOPLE, T0, now=T0)
    first = engine.claim(T0, 10, worker="a", lease=dt.timedelta(minutes=5))
    assert len(first) == 2
    assert engine.claim(T0, 10, worker="b") == []  # claimed, lease running
    engine.mark_sent(first[0].action_id, "<m1@x>", T0)
    engine.mark_sent(first[0].action_id, "<m1@x>", T0)  # again: harmless
    # The other claim's dispatcher died: after the lease another one takes it.
    later = T0 + dt.timedelta(minutes=6)
    taken = engine.claim(later, 10, worker="b")
    assert [s.action_id for s in taken] == [first[1].action_id]
    assert taken[0].attempts == 2
    with pytest.raises(EngineError, match="is sent, not claimed"):
        engine.mark_failed(first[0].action_id, "boom", later)


def test_failed_delivery_is_retried_or_failed_for_good(engine: Engine) -> None:
    engine.enroll(compiled(), PEOPLE[:1], T0, now=T0)
    send = engine.claim(T0)[0]
    engine.mark_failed(send.action_id, "421 try later", T0, retry_at=T0 + 2 * HOUR)
    assert engine.due(T0 + HOUR) == []
    again = engine.claim(T0 + 2 * HOUR)[0]
    engine.mark_failed(again.action_id, "550 no such user", T0 + 2 * HOUR)
    assert engine.due(T0 + DAY) == []
    messages = [e.message for e in engine.feed() if e.event in ("retry", "failed")]
    assert messages == [
        "delivery of `intro` failed: 421 try later, retrying at 2026-01-05 10:00:00Z",
        "delivery of `intro` failed: 550 no such user",
    ]


def test_sending_a_task_email_times_the_emails_aligned_with_it(engine: Engine) -> None:
    engine.enroll(compiled(), PEOPLE[:1], T0, now=T0)
    for task in engine.open_tasks():
        if task.step == "ring":
            engine.complete_task(task.id, T0)
    personal = next(t for t in engine.open_tasks() if t.step == "personal")
    sent_at = dt.datetime(2026, 1, 6, 15, 45, tzinfo=dt.UTC)
    engine.send_task(personal.id, "Edited subject", "Edited body", sent_at)
    with engine.store.read() as connection:
        due = dict(connection.execute(select(actions.c.step, actions.c.due_at)).all())
    assert due["aligned"] == dt.datetime(2026, 1, 7, 15, 45, tzinfo=dt.UTC)  # day 3, 15:45


def test_task_errors_change_nothing(engine: Engine) -> None:
    engine.enroll(compiled(), PEOPLE[:1], T0, now=T0)
    with pytest.raises(EngineError, match="no task 9999"):
        engine.complete_task(9999, T0)
    ring = next(t for t in engine.open_tasks() if t.step == "ring")
    with pytest.raises(EngineError, match="only email tasks are sent"):
        engine.send_task(ring.id, "s", "b", T0)
    engine.skip_task(ring.id, T0)
    with pytest.raises(EngineError, match="already skipped"):
        engine.complete_task(ring.id, T0)
    before = len(engine.feed())
    with pytest.raises(EngineError, match="not active"):
        engine.reply("nobody@example.com", T0)
    assert len(engine.feed()) == before


def _personal_ready(engine: Engine) -> int:
    """Ada enrolled, her call done: her `personal` email task is open."""
    engine.enroll(compiled(), PEOPLE[:1], T0, now=T0)
    ring = next(t for t in engine.open_tasks() if t.step == "ring")
    engine.complete_task(ring.id, T0)
    return next(t.id for t in engine.open_tasks() if t.step == "personal")


def _deliver(engine: Engine, now: dt.datetime) -> list[str]:
    """What a dispatcher sends at ``now`` (steps, in order)."""
    sent = []
    while due := engine.claim(now):
        for send in due:
            engine.mark_sent(send, f"<{send.action_id}@example.com>", now)
            sent.append(send.step)
    return sent


def test_an_email_task_cadence_sends_goes_at_its_time_and_holds_what_follows(
    engine: Engine,
) -> None:
    personal = _personal_ready(engine)
    assert _deliver(engine, T0 + DAY) == ["intro", "second"]
    when = dt.datetime(2026, 1, 8, 9, 30, tzinfo=dt.UTC)  # day 4: after `aligned`'s own day
    assert engine.schedule_task(personal, "Edited", "Edited body", when, T0 + DAY) == when
    assert engine.open_tasks() == []
    with engine.store.read() as connection:
        due = dict(connection.execute(select(actions.c.step, actions.c.due_at)).all())
    assert due["personal"] == when
    assert due["aligned"] == when  # its time of day; its day has passed by then (§4.4)
    # Nothing goes before it (§6), then it and what waited, in campaign order.
    assert _deliver(engine, when - dt.timedelta(minutes=1)) == []
    assert _deliver(engine, when) == ["personal", "aligned"]
    said = [e.message for e in engine.feed() if e.event == "task_scheduled"]
    assert said == ["email task `personal` goes at 2026-01-08 09:30 UTC"]


def test_an_email_task_scheduled_in_the_past_or_without_a_time_goes_now(engine: Engine) -> None:
    personal = _personal_ready(engine)
    now = T0 + DAY
    assert engine.schedule_task(personal, "s", "b", T0, now) == now
    messages = [e.message for e in engine.feed() if e.event == "task_scheduled"]
    assert messages == ["email task `personal` goes now"]


def test_scheduling_what_cannot_be_scheduled_changes_nothing(engine: Engine) -> None:
    engine.enroll(compiled(), PEOPLE[:1], T0, now=T0)
    ring = next(t for t in engine.open_tasks() if t.step == "ring")
    with pytest.raises(EngineError, match="only email tasks are sent"):
        engine.schedule_task(ring.id, "s", "b", None, T0)
    with engine.store.read() as connection:
        personal = connection.execute(
            select(actions.c.id).where(actions.c.step == "personal")
        ).scalar_one()
    with pytest.raises(EngineError, match="waits for task"):
        engine.schedule_task(personal, "s", "b", None, T0)
    engine.complete_task(ring.id, T0)
    with pytest.raises(EngineError, match="at most 366 days ahead"):
        engine.schedule_task(personal, "s", "b", T0 + 400 * DAY, T0)
    with pytest.raises(EngineError, match="the subject holds"):
        engine.schedule_task(personal, "two\nlines", "b", None, T0)
    before = len(engine.feed())
    engine.schedule_task(personal, "s", "b", None, T0)
    with pytest.raises(EngineError, match="scheduled already"):
        engine.schedule_task(personal, "s", "b", None, T0)
    with pytest.raises(EngineError, match="scheduled already"):
        engine.send_task(personal, "s", "b", T0)
    assert len(engine.feed()) == before + 1


def test_a_reply_cancels_an_email_task_that_was_to_go_later(engine: Engine) -> None:
    personal = _personal_ready(engine)
    engine.schedule_task(personal, "s", "b", T0 + 3 * DAY, T0)
    engine.reply("ada@example.com", T0 + HOUR)
    assert _deliver(engine, T0 + 10 * DAY) == []
    assert ("cancelled", "personal") in [(e.event, e.step) for e in engine.feed()]


def test_a_paused_persons_email_task_is_not_sent(engine: Engine) -> None:
    personal = _personal_ready(engine)
    engine.pause("ada@example.com", dt.date(2026, 1, 12), T0, reason="away")
    for act in (
        lambda: engine.schedule_task(personal, "s", "b", None, T0),
        lambda: engine.send_task(personal, "s", "b", T0),
    ):
        with pytest.raises(EngineError, match="paused until 2026-01-12: resume them first"):
            act()


def test_a_resume_leaves_an_email_task_where_the_person_scheduled_it(engine: Engine) -> None:
    personal = _personal_ready(engine)
    when = dt.datetime(2026, 1, 20, 9, 30, tzinfo=dt.UTC)
    engine.schedule_task(personal, "s", "b", when, T0)
    engine.pause("ada@example.com", dt.date(2026, 1, 12), T0 + DAY, reason="away")
    engine.resume("ada@example.com", dt.datetime(2026, 1, 12, 8, tzinfo=dt.UTC))
    with engine.store.read() as connection:
        row = connection.execute(
            select(actions.c.due_at, actions.c.due_date).where(actions.c.step == "personal")
        ).one()
    assert (row.due_at, row.due_date) == (when, dt.date(2026, 1, 20))


def test_an_email_task_cadence_cannot_deliver_is_the_persons_again(engine: Engine) -> None:
    personal = _personal_ready(engine)
    _deliver(engine, T0 + DAY)
    engine.schedule_task(personal, "s", "b", None, T0 + DAY)
    [send] = engine.claim(T0 + DAY)
    engine.mark_failed(send, "550 no such user", T0 + DAY)
    assert [t.id for t in engine.open_tasks()] == [personal]
    # It holds what follows again (§6): `aligned` waits for it.
    assert _deliver(engine, T0 + 10 * DAY) == []
    said = [e.message for e in engine.feed() if e.event == "task_reopened"]
    assert said == ["email task `personal` is open again: delivery failed: 550 no such user"]


def test_a_late_skip_gives_a_scheduled_email_task_back_instead(engine: Engine) -> None:
    personal = _personal_ready(engine)
    _deliver(engine, T0 + DAY)
    engine.schedule_task(personal, "s", "b", None, T0 + DAY)
    late = LatePolicy(after=dt.timedelta(hours=2), action="skip")
    assert engine.claim(T0 + 2 * DAY, late=late) == []
    assert [t.id for t in engine.open_tasks()] == [personal]


WINDOWED = """campaign "Windowed" {
  timezone "UTC"
  send window 08:00-17:30
  day 1 {
    call ring { notes "call" }
    email personal { send task subject "Personal" body "p" }
  }
  day 3 { email nudge { send with previous follow up body "nudge" } }
  day 4 { email note { send at 09:00 subject "Note" body "n" } }
}
"""


def _windowed(engine: Engine) -> int:
    """Ada enrolled in WINDOWED, her call done: her email task is open."""
    engine.enroll(compiled(WINDOWED), PEOPLE[:1], T0, now=T0)
    engine.complete_task(next(t.id for t in engine.open_tasks() if t.step == "ring"), T0)
    return next(t.id for t in engine.open_tasks() if t.step == "personal")


def test_a_time_learned_from_a_task_email_keeps_to_the_window(engine: Engine) -> None:
    personal = _windowed(engine)
    # Sent by hand at 19:10: `nudge` would take 19:10 on day 3, past the window.
    engine.send_task(personal, "s", "b", dt.datetime(2026, 1, 5, 19, 10, tzinfo=dt.UTC))
    with engine.store.read() as connection:
        due = dict(connection.execute(select(actions.c.step, actions.c.due_at)).all())
    assert due["nudge"] == dt.datetime(2026, 1, 8, 8, 0, tzinfo=dt.UTC)  # day 4, at opening


def test_sends_a_late_task_held_back_wait_for_the_window(engine: Engine) -> None:
    personal = _windowed(engine)
    # The email task is sent only on day 5 at 20:00: `note` (day 4, 09:00) was held by
    # it, and `nudge` takes 20:00; both past the window, so both go at its next opening.
    closed = dt.datetime(2026, 1, 9, 20, 0, tzinfo=dt.UTC)
    engine.send_task(personal, "s", "b", closed)
    assert _deliver(engine, closed) == []
    assert _deliver(engine, dt.datetime(2026, 1, 10, 8, 0, tzinfo=dt.UTC)) == ["nudge", "note"]


def test_an_email_task_cadence_sends_after_hours_holds_what_follows_to_the_window(
    engine: Engine,
) -> None:
    personal = _windowed(engine)
    evening = dt.datetime(2026, 1, 9, 19, 0, tzinfo=dt.UTC)  # day 5, past the window
    engine.schedule_task(personal, "s", "b", evening, T0)
    assert _deliver(engine, evening) == ["personal"]  # a person's chosen time is theirs
    assert _deliver(engine, dt.datetime(2026, 1, 10, 7, 59, tzinfo=dt.UTC)) == []
    assert _deliver(engine, dt.datetime(2026, 1, 10, 8, 0, tzinfo=dt.UTC)) == ["nudge", "note"]


def test_a_resume_after_hours_sends_what_is_due_when_the_window_opens(engine: Engine) -> None:
    personal = _windowed(engine)
    engine.send_task(personal, "s", "b", T0 + HOUR)
    engine.pause("ada@example.com", dt.date(2026, 1, 20), T0 + HOUR, reason="away")
    back = dt.datetime(2026, 1, 8, 20, 0, tzinfo=dt.UTC)  # resumed by hand, in the evening
    engine.resume("ada@example.com", back)
    assert _deliver(engine, back) == []
    assert _deliver(engine, dt.datetime(2026, 1, 9, 8, 0, tzinfo=dt.UTC)) == ["nudge"]


CHAINED = """campaign "Chained" {
  timezone "UTC"
  send window 08:00-17:30
  day 1 { email personal { send task subject "Personal" body "p" } }
  day 3 { email x { send with previous follow up body "x" } }
  day 5 {
    email y {
      send with previous
      send window 17:00-20:00
      follow up
      body "y"
    }
  }
}
"""


def test_a_chain_on_a_task_email_takes_each_anchors_moved_time(engine: Engine) -> None:
    engine.enroll(compiled(CHAINED), PEOPLE[:1], T0, now=T0)
    [personal] = engine.open_tasks()
    engine.send_task(personal.id, "s", "b", dt.datetime(2026, 1, 5, 19, 0, tzinfo=dt.UTC))
    with engine.store.read() as connection:
        due = dict(connection.execute(select(actions.c.step, actions.c.due_at)).all())
    # `x` would take 19:00 on day 3, past its window: day 4 at 08:00. `y` takes that
    # 08:00 (as the planner would), before its own window: 17:00 on day 5.
    assert due["x"] == dt.datetime(2026, 1, 8, 8, 0, tzinfo=dt.UTC)
    assert due["y"] == dt.datetime(2026, 1, 9, 17, 0, tzinfo=dt.UTC)


def test_a_late_reschedule_moves_the_later_sends_within_their_windows(engine: Engine) -> None:
    source = """campaign "Late" {
  timezone "UTC"
  send window 08:00-17:30
  day 1 { email a { send at 18:30 send window 17:00-20:00 subject "A" body "a" } }
  day 2 { email b { send at 09:00 subject "B" body "b" } }
}
"""
    engine.enroll(compiled(source), PEOPLE[:1], T0, now=T0)
    back = dt.datetime(2026, 1, 7, 10, 0, tzinfo=dt.UTC)  # the dispatchers were away
    assert engine.claim(back, late=LatePolicy(after=4 * HOUR)) == []
    with engine.store.read() as connection:
        due = dict(connection.execute(select(actions.c.step, actions.c.due_at)).all())
    assert due["a"] == dt.datetime(2026, 1, 7, 18, 30, tzinfo=dt.UTC)  # its time of day
    # `b` moves with `a`, keeping its day after, at its own time (in its window).
    assert due["b"] == dt.datetime(2026, 1, 8, 9, 0, tzinfo=dt.UTC)


def test_reply_ends_the_enrollment_and_cancels_what_is_pending(engine: Engine) -> None:
    engine.enroll(compiled(), PEOPLE, T0, now=T0)
    engine.reply("ada@example.com", T0 + HOUR)
    assert {s.person for s in engine.due(T0 + 10 * DAY)} == {"bo@example.com"}
    assert {t.person for t in engine.open_tasks()} == {"bo@example.com"}
    ada = [(e.event, e.step, e.message) for e in engine.feed() if e.person == "ada@example.com"]
    assert ("reply", None, "ada@example.com replied") in ada
    assert ("cancelled", "intro", "send `intro` cancelled: replied") in ada
    assert ada[-1] == ("ended", None, "enrollment ended: replied")


def test_on_reply_continue_and_bounce_continue_change_nothing(engine: Engine) -> None:
    ir = compiled(SOURCE.replace("on reply end", "on reply continue")
                  .replace("on bounce remove", "on bounce continue"))  # fmt: skip
    engine.enroll(ir, PEOPLE[:1], T0, now=T0)
    engine.reply("ada@example.com", T0)
    engine.bounce("ada@example.com", T0)
    assert [s.step for s in engine.due(T0)] == ["intro"]


def test_bounce_removes_and_end_of_campaign_says_so(engine: Engine) -> None:
    ir = compiled()
    report = engine.enroll(ir, PEOPLE, T0, now=T0)
    engine.bounce("bo@example.com", T0)
    assert engine.end(report.campaign_id, T0 + HOUR) == 1
    messages = [e.message for e in engine.feed() if e.event in ("cancelled", "ended")]
    assert "enrollment ended: bounced" in messages
    assert "send `intro` cancelled: campaign has ended" in messages
    with pytest.raises(EngineError, match="has ended"):
        engine.enroll(ir, [{"email": "cy@example.com", "first_name": "Cy"}], T0, now=T0)


def test_a_version_1_database_is_migrated_with_its_data(
    database_url: tuple[str, dict[str, object]],
) -> None:
    url, options = database_url
    engine = Engine(Store.open(url, now=T0, **options))
    engine.enroll(compiled(), PEOPLE, T0, now=T0)
    with engine.store.transaction() as connection:  # back to what version 1 was
        connection.execute(text("DROP TABLE suppressions"))
        connection.execute(text("DROP TABLE inbound"))
        connection.execute(text("DROP TABLE mailbox_usage"))
        connection.execute(text("DROP TABLE mailbox_sends"))
        for index in ("enrollments_paused", "actions_pending_in_order", "actions_claimed_by_lease"):
            connection.execute(text(f"DROP INDEX {index}"))
        connection.execute(text("ALTER TABLE enrollments DROP COLUMN paused_until"))
        connection.execute(schema_version.delete().where(schema_version.c.version > 1))
    engine.close()
    engine = Engine(Store.open(url, now=T0, **options))
    with engine.store.read() as connection:
        versions = connection.execute(select(schema_version.c.version)).scalars().all()
    assert sorted(versions) == list(range(1, LATEST + 1))
    assert len(engine.due(T0)) == 2  # the data came along
    assert engine.suppressions() == []
    catalog = (
        "SELECT name FROM sqlite_master WHERE type = 'index'"
        if engine.store.dialect == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()"
    )
    with engine.store.read() as connection:
        indexes = set(connection.execute(text(catalog)).scalars())
    assert {"actions_pending_in_order", "actions_claimed_by_lease", "enrollments_paused"} <= indexes
    engine.close()


def test_a_database_of_a_newer_schema_is_refused_untouched(
    database_url: tuple[str, dict[str, object]],
) -> None:
    url, options = database_url
    store = Store.open(url, now=T0, **options)
    with store.transaction() as connection:
        connection.execute(schema_version.insert().values(version=LATEST + 1, applied_at=T0))
    store.close()
    with pytest.raises(SchemaError, match=f"schema version {LATEST + 1}.*upgrade cadence"):
        Store.open(url, now=T0, **options)
    again = Store(create_engine(database_url_of(url), **options))
    with again.transaction() as connection:
        versions = connection.execute(select(schema_version.c.version)).scalars().all()
    again.close()
    assert sorted(versions) == [*range(1, LATEST + 1), LATEST + 1]


def test_bulk_inserts_store_what_sqlalchemy_would(engine: Engine) -> None:
    # Enroll writes its actions and feed rows with executemany (SQLite) or
    # COPY (PostgreSQL), converting each distinct value once: times, dates,
    # flags, JSON and text with tabs, line breaks and backslashes read back
    # as they went in, beside the same rows inserted the ordinary way.
    from sqlalchemy import insert

    from cadence.runtime.schema import enrollments, feed
    from cadence.runtime.store import insert_rows

    engine.enroll(compiled(), [], T0, now=T0)  # the campaign row
    with engine.store.read() as connection:
        key = connection.execute(select(text("id")).select_from(text("campaigns"))).scalar()
    people = [
        {"campaign_id": key, "person": f"p{n}@example.com", "zone": "Asia/Tokyo",
         "fields": {"note": 'tab\there\nline "q" \\ back', "n": n, "ok": True, "none": None},
         "start_at": T0, "status": "active", "success": n % 2 == 0, "created_at": T0}
        for n in range(4)
    ]  # fmt: skip
    with engine.store.transaction() as connection:
        insert_rows(connection, enrollments, people[:2])
        connection.execute(insert(enrollments), people[2:])
        events = [
            {"at": T0 + n * HOUR, "campaign_id": key, "enrollment_id": None, "person": None,
             "event": "enrolled", "step": None if n else "x", "message": "a\tb\\n\nc"}
            for n in range(4)
        ]  # fmt: skip
        insert_rows(connection, feed, events[:2])
        connection.execute(insert(feed), events[2:])
    columns = [enrollments.c[name] for name in people[0]]
    with engine.store.read() as connection:
        stored = connection.execute(select(*columns).order_by(enrollments.c.id)).all()
        said = connection.execute(
            select(*[feed.c[name] for name in events[0]]).order_by(feed.c.id)
        ).all()
    assert [dict(row._mapping) for row in stored] == people
    assert [dict(row._mapping) for row in said] == events


def test_a_pooled_connection_the_server_closed_is_replaced_after_a_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL: a connection that rested is pinged before use; one the
    # server closed meanwhile is replaced, and the caller never sees it.
    import psycopg

    from cadence.runtime import store
    from tests.engine_db import POSTGRES, engine_on

    def backend(engine: Engine) -> int:
        with engine.store.read() as connection:
            return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())

    with engine_on("postgresql", tmp_path, T0) as engine:
        first = backend(engine)
        with psycopg.connect(POSTGRES, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        monkeypatch.setattr(store, "IDLE_PING", 0.0)  # it has rested long enough
        assert backend(engine) != first


def test_bulk_inserts_tell_apart_the_two_times_a_clock_shows_twice(engine: Engine) -> None:
    # 01:30 comes twice in New York on 2026-11-01; the two compare equal in
    # Python, and each is stored as its own instant.
    from zoneinfo import ZoneInfo

    from cadence.runtime.schema import feed
    from cadence.runtime.store import insert_rows

    york = ZoneInfo("America/New_York")
    first = dt.datetime(2026, 11, 1, 1, 30, tzinfo=york)
    second = first.replace(fold=1)
    assert first == second
    rows = [
        {"at": when, "campaign_id": "k", "enrollment_id": None, "person": None,
         "event": "x", "step": None, "message": "m"}
        for when in (first, second)
    ]  # fmt: skip
    with engine.store.transaction() as connection:
        insert_rows(connection, feed, rows)
    with engine.store.read() as connection:
        stored = connection.execute(select(feed.c.at).order_by(feed.c.id)).scalars().all()
    assert [at.strftime("%H:%M") for at in stored] == ["05:30", "06:30"]


def test_a_copy_the_database_refuses_is_an_error_sqlalchemy_callers_know(
    tmp_path: Path,
) -> None:
    # PostgreSQL: COPY's errors reach callers as SQLAlchemy's, like any statement's.
    from sqlalchemy.exc import DataError

    from cadence.runtime.schema import feed
    from cadence.runtime.store import insert_rows
    from tests.engine_db import engine_on

    row = {"at": T0, "campaign_id": "k", "enrollment_id": None, "person": None,
           "event": "x", "step": None, "message": "a NUL \x00 here"}  # fmt: skip
    with (
        engine_on("postgresql", tmp_path, T0) as engine,
        pytest.raises(DataError),
        engine.store.transaction() as connection,
    ):
        insert_rows(connection, feed, [row])


def test_a_zone_a_people_file_names_is_noted_escaped(engine: Engine) -> None:
    ir = compiled('campaign "zones" { timezone recipient else "UTC" day 1 { call c { } } }')
    report = engine.enroll(ir, [{"email": "a@x.example", "timezone": "Bad\x00Zone\nX"}], T0,
                           now=T0)  # fmt: skip
    assert report.enrolled == 1
    with engine.store.read() as connection:
        notes = connection.execute(select(actions.c.note)).scalars().all()
    assert notes == ['timezone "Bad\\x00Zone\\nX" is not a known zone: using UTC']


def test_claims_walk_due_sends_in_order_once_the_tables_have_grown(tmp_path: Path) -> None:
    # SQLite: after enrolls, small or big, the planner knows the tables and
    # reads pending sends through the index in the order they go out (no sort
    # of every due send). The plan is checked, not the time.
    from cadence.runtime.store import Store

    engine = Engine(Store.open(str(tmp_path / "c.db"), now=T0))
    for batch in range(5):
        people = [{"email": f"p{batch}-{n}@example.com", "first_name": "P"} for n in range(40)]
        engine.enroll(compiled(), people, T0, now=T0)
    query = engine._due_query(T0 + 4 * DAY, 200)
    with engine.store.read() as connection:
        sql = str(query.compile(connection, compile_kwargs={"literal_binds": True}))
        plan = [row[3] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    engine.close()
    assert any("actions_pending_in_order" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


def test_a_migration_deadlocked_by_a_running_enroll_tries_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from cadence.runtime import store

    class Deadlock(Exception):
        sqlstate = "40P01"

    calls: list[int] = []
    real = store.migrate

    def once_deadlocked(connection: object, now: dt.datetime) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("CREATE INDEX …", {}, Deadlock("deadlock detected"))
        return real(connection, now)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "migrate", once_deadlocked)
    monkeypatch.setattr(store.time, "sleep", lambda seconds: None)
    opened = store.Store.open(str(tmp_path / "c.db"), now=T0)
    opened.close()
    assert len(calls) == 2


def test_an_enroll_is_done_even_when_the_statistics_cannot_be_refreshed(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    from cadence.runtime import engine as engine_module
    from cadence.runtime import store

    def busy(connection: object) -> None:
        raise OperationalError("ANALYZE actions", {}, Exception("database is locked"))

    monkeypatch.setattr(store, "analyze", busy)
    monkeypatch.setattr(engine_module, "RESTATS_AFTER", 1)
    report = engine.enroll(compiled(), PEOPLE, T0, now=T0)
    assert report.enrolled == len(PEOPLE)
