"""A person's state in a campaign, read in one place: nobody whose enrollment
ended or finished is enrolled again by a re-run enroll (unless asked), and
`status`, `campaigns`, the enroll refusals and the API agree on the state and
say why a step waits. On SQLite and PostgreSQL (the `engine` fixture)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cadence.cli import cli
from cadence.compiler import compile_source
from cadence.runtime.engine import Engine, EngineError
from cadence.runtime.overview import campaign_overviews, person_status
from tests.engine_db import database_url

T0 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)  # a Monday
SOURCE = """campaign "Life" {
  timezone "UTC"
  skip weekends
  day 1 { email intro { send at 09:00 subject "Hi" body "Hello" } }
  day 2 { call ring { notes "call" } }
  day 3 { email bump { send at 09:00 subject "Again" body "Bumping" } }
}"""
PEOPLE = [{"email": f"{name}@example.com"} for name in ("kate", "lee", "max", "ned")]


def campaign() -> object:
    ir = compile_source(SOURCE, "life.campaign").ir
    assert ir is not None
    return ir


def work_through(engine: Engine, person: str) -> None:
    """Every step of ``person`` done: the sends sent, the call completed."""
    at = T0
    for _ in range(3):
        at += dt.timedelta(days=1)
        for send in engine.claim(at + dt.timedelta(hours=3), 100, worker="w"):
            if send.person == person:
                engine.mark_sent(send, f"<{send.action_id}@x>", at)
            else:
                engine.release([send])
        for task in engine.open_tasks(person=person):
            engine.complete_task(task.id, at + dt.timedelta(hours=4))


def test_a_rerun_enroll_does_not_mail_people_who_stopped(engine: Engine) -> None:
    ir = campaign()
    engine.enroll(ir, PEOPLE, T0 + dt.timedelta(hours=1), now=T0)  # type: ignore[arg-type]
    day2 = T0 + dt.timedelta(days=1)
    engine.reply("kate@example.com", day2)
    engine.remove("lee@example.com", day2)
    engine.unsubscribe("max@example.com", day2)
    # The pipeline runs its enroll again, a week later, with an edited campaign.
    edited = compile_source(SOURCE.replace('"Hello"', '"Hello there"'), "life.campaign").ir
    assert edited is not None
    later = T0 + dt.timedelta(days=7)
    report = engine.enroll(edited, PEOPLE, later, now=later)
    said = {problem.message for problem in report.problems}
    assert said == {
        f"`kate@example.com` replied on {day2:%Y-%m-%d}: not enrolled again; "
        "`--again` enrolls them anew",
        f"`lee@example.com` was removed on {day2:%Y-%m-%d}: not enrolled again; "
        "`--again` enrolls them anew",
        "`max@example.com` is on the suppression list (unsubscribed on 2026-12-08)",
        "`ned@example.com` is already active in version 1 of this campaign "
        "(`cadence migrate` moves people to a new version)",
    }
    assert report.enrolled == 0
    # Asked to, it enrolls the ended again; a suppressed address stays refused.
    again = engine.enroll(edited, PEOPLE, later, now=later, again=True)
    assert again.enrolled == 2
    assert {p.message.split("`")[1] for p in again.problems} == {
        "max@example.com", "ned@example.com"
    }  # fmt: skip
    states = {e.version: e.state for e in person_status(engine.store, "kate@example.com")
              .enrollments}  # fmt: skip
    assert states == {2: "active", 1: "ended"}


def test_a_finished_person_is_not_enrolled_again_unless_asked(engine: Engine) -> None:
    ir = campaign()
    engine.enroll(ir, PEOPLE[:2], T0 + dt.timedelta(hours=1), now=T0)  # type: ignore[arg-type]
    work_through(engine, "kate@example.com")
    (kate,) = person_status(engine.store, "kate@example.com").enrollments
    assert kate.state == "finished" and kate.next is None
    (version,) = campaign_overviews(engine.store)[0].versions
    assert (version.active, version.finished, version.ended) == (1, 1, 0)
    later = T0 + dt.timedelta(days=10)
    report = engine.enroll(ir, PEOPLE[:1], later, now=later)  # type: ignore[arg-type]
    (problem,) = report.problems
    assert problem.message == (
        "`kate@example.com` went through every step on 2026-12-09: not enrolled again; "
        "`--again` enrolls them anew"
    )
    again = engine.enroll(ir, PEOPLE[:1], later, now=later, again=True)  # type: ignore[arg-type]
    assert again.enrolled == 1 and not again.problems
    found = person_status(engine.store, "kate@example.com").enrollments
    assert [e.state for e in found] == ["active", "finished"]
    assert found[1].ended_at is not None and found[1].ended_at.date() == dt.date(2026, 12, 9)
    (version,) = campaign_overviews(engine.store)[0].versions
    assert (version.active, version.finished, version.ended) == (2, 1, 0)


def test_status_says_why_a_step_waits(engine: Engine) -> None:
    ir = campaign()
    engine.enroll(ir, PEOPLE[:1], T0 + dt.timedelta(hours=1), now=T0)  # type: ignore[arg-type]
    work = T0 + dt.timedelta(days=1, hours=3)
    for send in engine.claim(work, 100, worker="w"):
        engine.mark_sent(send, f"<{send.action_id}@x>", work)
    (kate,) = person_status(engine.store, "kate@example.com").enrollments
    assert kate.next is not None and kate.next.step == "ring" and kate.next.waits_for is None
    bump = next(step for step in kate.history if step.step == "bump")
    assert bump.waits_for == "ring"  # §6: the call first
    engine.pause("kate@example.com", dt.date(2026, 12, 20), work, reason="on leave, said Kim")
    (kate,) = person_status(engine.store, "kate@example.com").enrollments
    assert kate.state == "paused" and kate.paused is not None
    assert kate.paused.why == "on leave, said Kim"
    assert kate.paused.until == dt.datetime(2026, 12, 20, tzinfo=dt.UTC)
    assert kate.reason == "paused until 2026-12-20 00:00Z: on leave, said Kim"


# ---- the command line ------------------------------------------------------------------------
def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_enroll_again_from_the_command_line(kind: str, tmp_path: Path) -> None:
    source = tmp_path / "life.campaign"
    source.write_text(SOURCE)
    people = tmp_path / "people.csv"
    people.write_text("email\nkate@example.com\nlee@example.com\n")
    with database_url(kind, tmp_path) as db:

        def enroll(*more: str) -> Result:
            when = ("--start", "2026-12-07T09:00", "--now", "2026-12-07T08:00Z")
            return run("enroll", str(source), "--people", str(people), "--db", db, *when, *more)

        assert enroll().exit_code == 0
        assert run("reply", "kate@example.com", "--db", db,
                   "--at", "2026-12-07T10:00Z").exit_code == 0  # fmt: skip
        again = enroll()
        assert again.exit_code == 3
        assert (f"cadence: {people}:2: skipped: `kate@example.com` replied on 2026-12-07: not "
                "enrolled again; `--again` enrolls them anew") in again.stderr  # fmt: skip
        assert "1 already enrolled with this start" in again.stderr
        anew = enroll("--again")
        assert anew.exit_code == 0, anew.stderr
        assert "enrolled 1 person" in anew.stderr
        status = json.loads(run("status", "kate@example.com", "--db", db, "--format",
                                "json").stdout)  # fmt: skip
        assert [e["state"] for e in status["enrollments"]] == ["active", "ended"]
        text = run("status", "kate@example.com", "--db", db).stdout
        assert "next: day 1 email `intro`" in text


def test_ending_a_campaign_or_pausing_leaves_a_finished_person_finished(engine: Engine) -> None:
    ir = campaign()
    engine.enroll(ir, PEOPLE[:2], T0 + dt.timedelta(hours=1), now=T0)  # type: ignore[arg-type]
    work_through(engine, "kate@example.com")
    later = T0 + dt.timedelta(days=5)
    with pytest.raises(EngineError, match="not active in any campaign"):
        engine.pause("kate@example.com", dt.date(2026, 12, 30), later, reason="by hand")
    assert engine.end(engine.find_campaign("Life"), later) == 1  # lee, who had steps to come
    (version,) = campaign_overviews(engine.store)[0].versions
    assert (version.active, version.finished, version.ended) == (0, 1, 1)
    (kate,) = person_status(engine.store, "kate@example.com").enrollments
    assert kate.state == "finished" and kate.reason is None
