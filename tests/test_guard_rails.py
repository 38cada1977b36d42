"""A start in the past never sends a campaign's worth of email at once: it is
refused unless the enroll says what becomes of the steps already due."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from cadence.cli import cli
from cadence.compiler import compile_source
from cadence.compiler.ir import Campaign
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.engine import Engine, LatePolicy, PastStart
from cadence.runtime.mailboxes import Sender
from cadence.runtime.schema import actions, enrollments
from tests.test_mailboxes import Recorder

T0 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
SOURCE = """campaign "Late" {
  timezone "UTC"
  day 1 { email intro { send at 09:00 subject "Hi" body "Hello" } }
  day 3 {
    email bump { send at 09:00 follow up body "Again" }
    call ring { notes "Call" }
  }
  day 8 { email last { send at 09:00 subject "Bye" body "Bye" } }
}
"""
LATER = T0 + dt.timedelta(days=3, hours=2)  # day 4, 10:00: intro, bump and ring are due


def ir() -> Campaign:
    compiled = compile_source(SOURCE, "late.campaign").ir
    assert compiled is not None
    return compiled


def statuses(engine: Engine) -> dict[str, tuple[str, str | None]]:
    with engine.store.read() as connection:
        rows = connection.execute(select(actions.c.step, actions.c.status, actions.c.due_at))
        return {row.step: (row.status, f"{row.due_at:%d %H:%M}" if row.due_at else None)
                for row in rows}  # fmt: skip


def test_a_start_in_the_past_is_refused_and_nothing_is_enrolled(engine: Engine) -> None:
    with pytest.raises(PastStart, match=r"the start 2026-12-07 08:00Z is 3 day\(s\) in the past"):
        engine.enroll(ir(), [{"email": "ann@a.example"}], T0, now=LATER)
    with engine.store.read() as connection:
        assert connection.execute(select(func.count()).select_from(enrollments)).scalar() == 0
    # A few minutes late is the time it took to type the command.
    report = engine.enroll(ir(), [{"email": "ann@a.example"}], T0, now=T0 + dt.timedelta(minutes=5))
    assert report.enrolled == 1 and report.caught_up == 0


def test_catch_up_skip_drops_what_was_due_and_keeps_the_rest(engine: Engine) -> None:
    report = engine.enroll(ir(), [{"email": "ann@a.example"}], T0, now=LATER, catch_up="skip")
    assert report.caught_up == 3
    assert statuses(engine) == {
        "intro": ("cancelled", "07 09:00"),
        "bump": ("cancelled", "09 09:00"),
        "ring": ("skipped", None),
        "last": ("pending", "14 09:00"),
    }
    skipped = [entry.message for entry in engine.feed() if entry.event == "skipped"]
    assert skipped[0] == "`intro` skipped: it was due before the enrollment (catch-up skip)"
    outbox = Recorder()
    assert Dispatcher(engine, outbox, Sender()).run_once(LATER).sent == 0
    later = Dispatcher(engine, outbox, Sender()).run_once(T0 + dt.timedelta(days=8))
    assert later.sent == 1 and outbox.messages[0]["Subject"] == "Bye"


def test_catch_up_send_sends_what_was_due_now_in_campaign_order(engine: Engine) -> None:
    report = engine.enroll(ir(), [{"email": "ann@a.example"}], T0, now=LATER, catch_up="send")
    assert report.caught_up == 3
    assert statuses(engine) == {
        "intro": ("pending", "10 10:00"),
        "bump": ("pending", "10 10:00"),
        "ring": ("open", None),  # overdue, and open: a call to make today
        "last": ("pending", "14 09:00"),
    }
    outbox = Recorder()
    assert Dispatcher(engine, outbox, Sender()).run_once(LATER).sent == 2
    assert [m["Subject"] for m in outbox.messages] == ["Hi", "Re: Hi"]  # in order, threaded
    (task,) = engine.open_tasks()
    assert (task.step, task.due_date) == ("ring", dt.date(2026, 12, 9))


def test_enroll_says_how_to_go_on_with_a_past_start(tmp_path: Path) -> None:
    (tmp_path / "late.campaign").write_text(SOURCE)
    (tmp_path / "people.csv").write_text("email\nann@a.example\n")
    db = str(tmp_path / "c.db")
    args = ["enroll", str(tmp_path / "late.campaign"), "--people", str(tmp_path / "people.csv"),
            "--start", "2026-12-07T08:00Z", "--now", "2026-12-10T10:00Z", "--db", db]  # fmt: skip
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2
    assert refused.stderr == (
        "cadence: error: the start 2026-12-07 08:00Z is 3 day(s) in the past: say what to do "
        "with the steps already due (skip them, or send them now): --catch-up skip, or "
        "--catch-up send; nothing was enrolled\n"
    )
    done = CliRunner().invoke(cli, [*args, "--catch-up", "skip"])
    assert done.exit_code == 0, done.stderr
    assert done.stderr.endswith("; 3 step(s) already due skipped\n")


TWO = """campaign "Two" {
  timezone "Europe/Stockholm"
  skip weekends
  day 1 { email intro { send at 09:00 subject "Hi" body "Hello" } }
  day 2 { email next { send at 08:00 subject "Next" body "More" } }
}
"""
MONDAY = dt.datetime(2026, 12, 7, 7, 0, tzinfo=dt.UTC)  # 08:00 in Stockholm


def enrolled_two(engine: Engine) -> None:
    compiled = compile_source(TWO, "two.campaign").ir
    assert compiled is not None
    engine.enroll(compiled, [{"email": "ann@a.example"}], MONDAY, now=MONDAY)


def test_a_dispatcher_back_after_days_reschedules_instead_of_bursting(engine: Engine) -> None:
    enrolled_two(engine)
    friday_noon = dt.datetime(2026, 12, 11, 11, 0, tzinfo=dt.UTC)
    outbox = Recorder()
    late = LatePolicy()  # reschedule what is more than 4 hours late
    assert Dispatcher(engine, outbox, Sender(), late=late).run_once(friday_noon).sent == 0
    # `intro` to its time of day on the next counted day, Monday (no weekend);
    # `next` moves with it, keeping its day after: Tuesday, at its own time.
    assert statuses(engine) == {"intro": ("pending", "14 08:00"), "next": ("pending", "15 07:00")}
    moved = [entry.message for entry in engine.feed() if entry.event == "late"]
    assert moved == [
        "send `intro` moved to 2026-12-14 08:00Z: 99 hours late (late = reschedule); "
        "the rest moves 5 day(s)"
    ]
    monday = dt.datetime(2026, 12, 14, 8, 0, tzinfo=dt.UTC)
    assert Dispatcher(engine, outbox, Sender(), late=late).run_once(monday).sent == 1
    tuesday = dt.datetime(2026, 12, 15, 7, 0, tzinfo=dt.UTC)
    assert Dispatcher(engine, outbox, Sender(), late=late).run_once(tuesday).sent == 1
    assert [m["Subject"] for m in outbox.messages] == ["Hi", "Next"]


def test_late_sends_can_be_skipped_or_sent(engine: Engine) -> None:
    enrolled_two(engine)
    tuesday = dt.datetime(2026, 12, 8, 10, 0, tzinfo=dt.UTC)  # intro 26 h late, next 3 h
    outbox = Recorder()
    skip = LatePolicy("skip")
    assert Dispatcher(engine, outbox, Sender(), late=skip).run_once(tuesday).sent == 1
    assert [m["Subject"] for m in outbox.messages] == ["Next"]  # within 4 hours: sent
    assert statuses(engine)["intro"] == ("cancelled", "07 08:00")


def test_run_reschedules_late_sends_by_default(tmp_path: Path) -> None:
    (tmp_path / "two.campaign").write_text(TWO)
    (tmp_path / "people.csv").write_text("email\nann@a.example\n")
    db = str(tmp_path / "c.db")
    runner = CliRunner()
    assert runner.invoke(cli, [
        "enroll", str(tmp_path / "two.campaign"), "--people", str(tmp_path / "people.csv"),
        "--start", "2026-12-07T07:00Z", "--now", "2026-12-07T07:00Z", "--db", db,
    ]).exit_code == 0  # fmt: skip
    run = ["run", "--db", db, "--outbox", str(tmp_path / "out")]
    first = runner.invoke(cli, [*run, "--now", "2026-12-11T11:00Z"])
    assert first.exit_code == 0 and "sent 0," in first.stderr
    feed = runner.invoke(cli, ["feed", "--db", db]).stdout
    assert "moved to 2026-12-14 08:00Z" in feed
    sent = runner.invoke(cli, [*run, "--now", "2026-12-14T12:00Z", "--late-after", "1d"])
    assert "sent 1," in sent.stderr  # `next` keeps its day after: Tuesday
    bad = runner.invoke(cli, [*run, "--late-after", "soon"])
    assert bad.exit_code == 2 and "is not a duration" in bad.stderr


def test_a_stopped_dispatcher_finishes_the_send_under_way_and_gives_the_rest_back(
    engine: Engine,
) -> None:
    people = [{"email": f"p{n}@x.example"} for n in range(5)]
    engine.enroll(ir(), people, T0, now=T0)
    outbox = Recorder()
    dispatcher = Dispatcher(engine, outbox, Sender())
    deliver = outbox.deliver

    def deliver_then_stop(message: Any) -> None:
        deliver(message)
        dispatcher.stop()  # SIGTERM arrives while the first send is under way

    outbox.deliver = deliver_then_stop  # type: ignore[method-assign]
    report = dispatcher.run_once(T0 + dt.timedelta(hours=2))
    assert report.sent == 1 and len(outbox.messages) == 1
    due = engine.due(T0 + dt.timedelta(hours=2))
    assert len(due) == 4 and {send.attempts for send in due} == {0}  # given back, not counted


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_run_stops_at_once_on_sigterm_or_ctrl_c(stop: str, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    db = str(tmp_path / "c.db")
    command = [sys.executable, "-m", "cadence", "run", "--db", db, "--outbox", str(tmp_path / "o"),
               "--sender-email", "sam@example.com"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # the first pass is done: it waits for the next
        assert "sent 0," in first
        process.send_signal(getattr(signal, stop))
        assert process.wait(timeout=20) == 0  # not the 30 s until the next pass
        assert "stopped: the rest of the batch was given back" in process.stderr.read()
    finally:
        process.kill()


def test_a_send_held_back_by_a_late_task_goes_when_the_task_closes(engine: Engine) -> None:
    source = """campaign "Held" {
  timezone "UTC"
  day 1 {
    call ring { notes "Call first" }
    email after { send at 09:00 subject "As promised" body "Hi" }
  }
}
"""
    compiled = compile_source(source, "held.campaign").ir
    assert compiled is not None
    engine.enroll(compiled, [{"email": "ann@a.example"}], T0, now=T0)
    two_days_later = T0 + dt.timedelta(days=2, hours=7)
    (task,) = engine.open_tasks()
    # The call was made late (semantics §6: it blocks).
    engine.complete_task(task.id, two_days_later)
    outbox = Recorder()
    report = Dispatcher(engine, outbox, Sender(), late=LatePolicy()).run_once(two_days_later)
    assert report.sent == 1  # not late: it went as soon as the task let it
    assert not [entry for entry in engine.feed() if entry.event == "late"]


def test_catch_up_skip_also_skips_an_email_waiting_for_a_skipped_task_email(
    engine: Engine,
) -> None:
    source = """campaign "Waits" {
  timezone "UTC"
  day 1 { email note { send task subject "Hand" body "Hello" } }
  day 2 { email ps { send with previous subject "PS" body "ps" } }
  day 3 { email later { send at 09:00 subject "L" body "l" } }
}
"""
    compiled = compile_source(source, "waits.campaign").ir
    assert compiled is not None
    report = engine.enroll(compiled, [{"email": "ann@a.example"}], T0,
                           now=T0 + dt.timedelta(days=1, hours=12), catch_up="skip")  # fmt: skip
    assert report.caught_up == 2
    assert statuses(engine) == {
        "note": ("skipped", None),
        "ps": ("cancelled", None),
        "later": ("pending", "09 09:00"),
    }  # never waiting forever for a task nobody will do


def test_a_late_send_moved_to_tomorrow_holds_the_persons_later_sends(engine: Engine) -> None:
    enrolled_two(engine)
    # Monday's intro is a day late; Tuesday's `next` is 3 hours late, within
    # the limit, but it waits for intro: never before it.
    tuesday = dt.datetime(2026, 12, 8, 10, 0, tzinfo=dt.UTC)
    outbox = Recorder()
    assert Dispatcher(engine, outbox, Sender(), late=LatePolicy()).run_once(tuesday).sent == 0
    # intro to Wednesday 09:00 in Stockholm; `next` a counted day after it, at its own time.
    assert statuses(engine) == {"intro": ("pending", "09 08:00"), "next": ("pending", "10 07:00")}


def test_a_send_queued_again_by_hand_is_not_late(engine: Engine) -> None:
    engine.enroll(ir(), [{"email": "ann@a.example"}], T0, now=T0)
    failing = Recorder()

    def refuse(message: Any) -> None:
        from cadence.runtime.delivery import DeliveryError

        raise DeliveryError("550 no such user", permanent=True)

    failing.deliver = refuse  # type: ignore[method-assign]
    Dispatcher(engine, failing, Sender()).run_once(T0 + dt.timedelta(hours=1))
    two_days_later = T0 + dt.timedelta(days=2, hours=8)
    assert engine.retry_failed(two_days_later, by="sam") == 1
    outbox = Recorder()
    report = Dispatcher(engine, outbox, Sender(), late=LatePolicy()).run_once(two_days_later)
    assert [m["Subject"] for m in outbox.messages][:1] == ["Hi"] and report.sent >= 1
