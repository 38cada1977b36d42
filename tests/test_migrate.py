"""Moving people to a new version of their campaign: what they had stays, what
is left takes the new version's times, removed steps are cancelled, new steps
after where they are are scheduled; a dry run prints it and changes nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from cadence.cli import cli
from cadence.compiler import compile_source
from cadence.compiler.ir import Campaign
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.engine import Engine, EngineError
from cadence.runtime.mailboxes import Sender
from cadence.runtime.moving import move_people
from cadence.runtime.planner import pick_variant
from cadence.runtime.schema import actions, enrollments, feed
from tests.engine_db import engine_on
from tests.helpers import check_golden
from tests.test_mailboxes import Recorder

T0 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
V1 = """campaign "Q1" {
  timezone "UTC"
  day 1 { email intro { send at 09:00 subject "Hi" body "Hello" } }
  day 3 {
    email bump { send at 09:00 follow up body "Again" }
    call ring { notes "Call" }
  }
  day 5 { email breakup { send at 09:00 subject "Bye" body "Bye" } }
}
"""
V2 = (
    V1.replace("email bump { send at 09:00", "email bump { send at 10:15")
    .replace('    call ring { notes "Call" }\n', "")
    .replace("  day 5", '  day 4 { email extra { send at 09:00 subject "PS" body "PS" } }\n  day 5')
)
# `breakup`, still to come, moves before `intro`, which Ann and Bob already had.
BACKWARDS = V1.replace(
    'day 1 { email intro { send at 09:00 subject "Hi" body "Hello" } }',
    'day 1 {\n    email breakup { send at 08:00 subject "Bye" body "Bye" }\n'
    '    email intro { send at 09:00 subject "Hi" body "Hello" }\n  }',
).replace('  day 5 { email breakup { send at 09:00 subject "Bye" body "Bye" } }\n', "")
GOLDEN = Path(__file__).parent / "cases" / "migrate"


def ir(source: str) -> Campaign:
    compiled = compile_source(source, "q1.campaign").ir
    assert compiled is not None
    return compiled


def setup(engine: Engine) -> None:
    """Ann and Bob had the intro; Cy starts two days later; version 2 exists."""
    people = [{"email": "ann@a.example"}, {"email": "bob@b.example"}]
    engine.enroll(ir(V1), people, T0, now=T0)
    engine.enroll(ir(V1), [{"email": "cy@c.example"}], T0 + dt.timedelta(days=2), now=T0)
    Dispatcher(engine, Recorder(), Sender()).run_once(T0 + dt.timedelta(hours=2))
    assert engine.enroll(ir(V2), [], T0, now=T0).version == 2


def steps_of(engine: Engine, person: str) -> dict[str, tuple[str, str]]:
    with engine.store.read() as connection:
        rows = connection.execute(
            select(actions.c.step, actions.c.status, actions.c.due_at, actions.c.due_date)
            .join(enrollments, enrollments.c.id == actions.c.enrollment_id)
            .where(enrollments.c.person == person)
            .order_by(actions.c.position)
        )
        return {
            row.step: (row.status, f"{row.due_at:%d %H:%M}" if row.due_at else f"{row.due_date}")
            for row in rows
        }


def test_moving_keeps_what_was_done_and_retimes_what_is_left(engine: Engine) -> None:
    setup(engine)
    before = steps_of(engine, "ann@a.example")
    dry = move_people(engine, "Q1", 2, T0 + dt.timedelta(hours=3), dry_run=True)
    assert [(m.person, m.problem) for m in dry.moves] == [
        ("ann@a.example", None),
        ("bob@b.example", None),
        ("cy@c.example", None),
    ]
    assert steps_of(engine, "ann@a.example") == before  # a dry run changes nothing
    report = move_people(engine, "Q1", 2, T0 + dt.timedelta(hours=3))
    assert len(report.moves) == 3
    assert steps_of(engine, "ann@a.example") == {
        "intro": ("sent", "07 09:00"),
        "bump": ("pending", "09 10:15"),
        "ring": ("cancelled", "2026-12-09"),
        "extra": ("pending", "10 09:00"),
        "breakup": ("pending", "11 09:00"),
    }
    assert steps_of(engine, "cy@c.example")["bump"] == ("pending", "11 10:15")
    assert engine.enroll(ir(V2), [{"email": "ann@a.example"}], T0, now=T0).already == 1
    moved = [entry.message for entry in engine.feed() if entry.event == "migrated"]
    assert moved[0] == "moved from version 1: 1 step(s) changed, 1 added, 1 cancelled"


def test_a_move_backwards_is_refused_and_nobody_moves(engine: Engine) -> None:
    setup(engine)
    engine.enroll(ir(BACKWARDS), [], T0, now=T0)
    report = move_people(engine, "Q1", 3, T0 + dt.timedelta(hours=3))
    assert report.refused[0].problem == (
        "`breakup` would come before `intro`, which they already had (that would move them "
        "backwards)"
    )
    assert [m.person for m in report.refused] == ["ann@a.example", "bob@b.example"]
    assert steps_of(engine, "cy@c.example")["ring"] == ("open", "2026-12-11")  # Cy stayed too
    with pytest.raises(EngineError, match=r"has no version 9 \(it has 1, 2, 3\)"):
        move_people(engine, "Q1", 9, T0)


def test_migrate_dry_run_prints_a_plan_per_person(tmp_path: Path, update_goldens: bool) -> None:
    (tmp_path / "q1.campaign").write_text(V1)
    (tmp_path / "people.csv").write_text("email\nann@a.example\nbob@b.example\n")
    db = str(tmp_path / "c.db")
    runner = CliRunner()

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(cli, [*args, "--db", db])
        return result.exit_code, result.stdout, result.stderr

    enroll = ["enroll", str(tmp_path / "q1.campaign"), "--people", str(tmp_path / "people.csv"),
              "--start", "2026-12-07T08:00Z", "--now", "2026-12-07T08:00Z"]  # fmt: skip
    assert run(*enroll)[0] == 0
    assert run("run", "--outbox", str(tmp_path / "out"), "--now", "2026-12-07T10:00Z")[0] == 0
    (tmp_path / "q1.campaign").write_text(V2)
    assert run(*enroll)[0] == 3  # version 2 exists; both are active in version 1
    (tmp_path / "ann.csv").write_text("email\nANN@a.example\n")
    only_ann = ["--people", str(tmp_path / "ann.csv"), "--at", "2026-12-07T11:00Z"]
    code, out, err = run("migrate", "Q1", "--to-version", "2", "--dry-run", *only_ann)
    assert code == 0, err
    check_golden(GOLDEN / "dry-run.txt", out, update_goldens)
    assert err == "would move 1 person to version 2\n"
    code, out, err = run("migrate", "Q1", "--to-version", "2", "--at", "2026-12-07T11:00Z")
    assert code == 0 and err == "moved 2 people to version 2\n"
    code, _, err = run("migrate", "Q1", "--to-version", "7")
    assert code == 2 and err == "cadence: error: campaign 'Q1' has no version 7 (it has 1, 2)\n"


def test_a_move_keeps_what_moved_a_persons_steps_since_they_were_planned(engine: Engine) -> None:
    setup(engine)
    # Ann was away: paused, then resumed, so her steps moved days later.
    engine.pause("ann@a.example", dt.date(2026, 12, 14), T0 + dt.timedelta(hours=3), reason="ooo")
    engine.resume("ann@a.example", T0 + dt.timedelta(days=7, hours=2))
    held = steps_of(engine, "ann@a.example")
    assert held["breakup"] == ("pending", "16 09:00")
    move_people(engine, "Q1", 2, T0 + dt.timedelta(days=7, hours=3))
    moved = steps_of(engine, "ann@a.example")
    assert moved["breakup"] == held["breakup"]  # unchanged in version 2: stays where it moved
    assert moved["bump"] == ("pending", f"{int(held['bump'][1][:2]):02d} 10:15")  # 09:00 → 10:15


def test_a_step_that_changes_kind_is_a_new_step(engine: Engine) -> None:
    engine.enroll(ir(V1), [{"email": "ann@a.example"}], T0, now=T0)
    email_ring = V1.replace(
        'call ring { notes "Call" }', 'email ring { send at 11:00 subject "R" body "R" }'
    )
    engine.enroll(ir(email_ring), [], T0, now=T0)
    report = move_people(engine, "Q1", 2, T0)
    assert [(c.sign, c.step, c.text) for c in report.moves[0].changes] == [
        ("-", "ring", "cancelled (now email)"),
        ("+", "ring", "2026-12-09 11:00"),
    ]
    with engine.store.read() as connection:
        rows = connection.execute(
            select(actions.c.step, actions.c.is_task, actions.c.status).where(
                actions.c.step == "ring"
            )
        ).all()
    assert sorted(map(tuple, rows)) == [("ring", False, "pending"), ("ring", True, "cancelled")]


def test_a_step_renamed_after_it_was_sent_is_not_sent_again(engine: Engine) -> None:
    setup(engine)
    renamed = V1.replace("email intro", "email hello").replace("follow up", "follow up")
    engine.enroll(ir(renamed), [], T0, now=T0)
    report = move_people(engine, "Q1", 3, T0 + dt.timedelta(hours=3))
    ann = next(m for m in report.moves if m.person == "ann@a.example")
    assert ("+", "hello") not in [(c.sign, c.step) for c in ann.changes]  # she had it as `intro`


def test_a_version_in_another_zone_moves_the_persons_zone(engine: Engine) -> None:
    engine.enroll(ir(V1), [{"email": "ann@a.example"}], T0, now=T0)
    engine.enroll(ir(V1.replace('timezone "UTC"', 'timezone "Asia/Tokyo"')), [], T0, now=T0)
    move_people(engine, "Q1", 2, T0)
    with engine.store.read() as connection:
        assert connection.execute(select(enrollments.c.zone)).scalar() == "Asia/Tokyo"


def crowd(engine: Engine) -> list[str]:
    """Forty people in a few states, many sharing one: twenty had the intro
    (seven of them were then away for days: their steps moved), twenty start
    two days later."""
    first = [f"a{n}@a.example" for n in range(20)]
    later = [f"b{n}@b.example" for n in range(20)]
    engine.enroll(ir(V1), [{"email": email} for email in first], T0, now=T0)
    engine.enroll(ir(V1), [{"email": email} for email in later], T0 + dt.timedelta(days=2), now=T0)
    Dispatcher(engine, Recorder(), Sender()).run_once(T0 + dt.timedelta(hours=2))
    for email in first[::3]:
        engine.pause(email, dt.date(2026, 12, 14), T0 + dt.timedelta(hours=3), reason="ooo")
        engine.resume(email, T0 + dt.timedelta(days=3, hours=2))
    engine.enroll(ir(V2), [], T0, now=T0)
    return first + later


def everything(engine: Engine) -> list[tuple[object, ...]]:
    """Every person's steps, version, zone and migration message (no ids)."""
    with engine.store.read() as connection:
        rows = connection.execute(
            select(
                enrollments.c.person, enrollments.c.campaign_id, enrollments.c.zone,
                actions.c.step, actions.c.status, actions.c.position, actions.c.day,
                actions.c.kind, actions.c.due_at, actions.c.due_date, actions.c.thread,
                actions.c.waits_for, actions.c.note, actions.c.retry_at,
            ).join(actions, actions.c.enrollment_id == enrollments.c.id)
        ).all()  # fmt: skip
        said = connection.execute(
            select(feed.c.person, feed.c.campaign_id, feed.c.message).where(
                feed.c.event == "migrated"
            )
        ).all()
    return sorted(map(tuple, rows)) + sorted(map(tuple, said))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_moving_a_crowd_at_once_matches_moving_each_person_alone(kind: str, tmp_path: Path) -> None:
    # Moving many people works out each shape of stored steps once and writes
    # it set-wise for the thirteen and the twenty who share one (row by row for
    # the seven who were away); each person moved alone is worked out alone.
    (tmp_path / "together").mkdir()
    (tmp_path / "alone").mkdir()
    later = T0 + dt.timedelta(days=3, hours=3)
    with engine_on(kind, tmp_path / "together", T0) as together:
        crowd(together)
        assert len(move_people(together, "Q1", 2, later).moves) == 40
        expected = everything(together)
    with engine_on(kind, tmp_path / "alone", T0) as alone:
        for email in crowd(alone):
            assert len(move_people(alone, "Q1", 2, later, people={email}).moves) == 1
        assert everything(alone) == expected
    assert sum(row[3:5] == ("ring", "cancelled") for row in expected) == 40
    assert {row[2] for row in expected if len(row) == 3} == {
        "moved from version 1: 1 step(s) changed, 1 added, 1 cancelled"
    }


def test_an_email_task_a_person_scheduled_stays_as_they_scheduled_it(engine: Engine) -> None:
    with_task = V1.replace(
        'call ring { notes "Call" }', 'email ring { send task subject "R" body "R" }'
    )
    engine.enroll(ir(with_task), [{"email": "ann@a.example"}], T0, now=T0)
    [ring] = [t for t in engine.open_tasks() if t.step == "ring"]
    when = dt.datetime(2026, 12, 9, 16, 45, tzinfo=dt.UTC)
    engine.schedule_task(ring.id, "Edited", "By hand", when, T0)
    # The next version drops the step and moves the rest: the person's email still goes.
    edited = with_task.replace('    email ring { send task subject "R" body "R" }\n', "")
    engine.enroll(ir(edited.replace("send at 09:00 follow", "send at 10:15 follow")), [], T0,
                  now=T0)  # fmt: skip
    report = move_people(engine, "Q1", 2, T0)
    assert report.moves[0].problem is None
    steps = steps_of(engine, "ann@a.example")
    assert steps["ring"] == ("pending", "09 16:45")
    assert steps["bump"] == ("pending", "09 10:15")


def test_a_scheduled_email_task_neither_blocks_a_move_nor_hides_new_steps(
    engine: Engine,
) -> None:
    with_task = V1.replace(
        'call ring { notes "Call" }', 'email ring { send task subject "R" body "R" }'
    )
    engine.enroll(ir(with_task), [{"email": "ann@a.example"}], T0, now=T0)
    [ring] = [t for t in engine.open_tasks() if t.step == "ring"]
    engine.schedule_task(ring.id, "Edited", "By hand", T0 + dt.timedelta(days=13), T0)
    # Version 2 adds a step after `ring`, while `intro` (before it) is still pending.
    extra = with_task.replace(
        "  day 5", '  day 4 { email extra { send at 09:00 subject "PS" body "PS" } }\n  day 5'
    )
    engine.enroll(ir(extra), [], T0, now=T0)
    report = move_people(engine, "Q1", 2, T0)
    assert report.moves[0].problem is None
    steps = steps_of(engine, "ann@a.example")
    assert steps["extra"] == ("pending", "10 09:00")
    assert steps["ring"] == ("pending", "20 08:00")


def test_a_test_added_in_a_new_version_gives_each_person_their_variant(engine: Engine) -> None:
    engine.enroll(ir(V1), [{"email": "ann@a.example"}, {"email": "bob@b.example"}], T0, now=T0)
    tested = V1.replace(
        'email breakup { send at 09:00 subject "Bye" body "Bye" }',
        'email breakup { send at 09:00 subject "Bye" '
        'variant a weight 1 { body "A" } variant b weight 1 { body "B" } }',
    )
    new = ir(tested)
    engine.enroll(new, [], T0, now=T0)
    move_people(engine, "Q1", 2, T0)
    with engine.store.read() as connection:
        stored = dict(
            connection.execute(
                select(enrollments.c.person, actions.c.variant)
                .join(enrollments, enrollments.c.id == actions.c.enrollment_id)
                .where(actions.c.step == "breakup")
            ).all()
        )
    weights = [("a", 1), ("b", 1)]
    assert stored == {person: pick_variant("Q1", "breakup", person, weights) for person in stored}
    assert len(stored) == 2


def test_a_move_says_when_a_persons_variant_changes(engine: Engine) -> None:
    engine.enroll(ir(V1), [{"email": "ann@a.example"}], T0, now=T0)
    tested = V1.replace(
        'email breakup { send at 09:00 subject "Bye" body "Bye" }',
        'email breakup { send at 09:00 subject "Bye" '
        'variant a weight 1 { body "A" } variant b weight 1 { body "B" } }',
    )
    engine.enroll(ir(tested), [], T0, now=T0)
    dry = move_people(engine, "Q1", 2, T0, dry_run=True)
    changes = [(c.sign, c.step, c.text) for c in dry.moves[0].changes]
    assert ("~", "breakup", "variant none → a") in changes


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_task_done_early_does_not_block_a_move(kind: str, tmp_path: Path) -> None:
    """Ann called before `bump` went out: `bump` is still before `ring` in both
    versions, so the move keeps that order — it does not move her backwards."""
    with engine_on(kind, tmp_path, T0) as engine:
        engine.enroll(ir(V1), [{"email": "ann@a.example"}, {"email": "bob@b.example"}], T0, now=T0)
        Dispatcher(engine, Recorder(), Sender()).run_once(T0 + dt.timedelta(hours=2))
        (ring,) = engine.open_tasks(person="ann@a.example")
        engine.complete_task(ring.id, T0 + dt.timedelta(hours=3))  # day 1: two days early
        edited = V1.replace('body "Again"', 'body "Again, in short"')
        assert engine.enroll(ir(edited), [], T0, now=T0).version == 2
        dry = move_people(engine, "Q1", 2, T0 + dt.timedelta(hours=4), dry_run=True)
        assert [move.problem for move in dry.moves] == [None, None]
        done = move_people(engine, "Q1", 2, T0 + dt.timedelta(hours=4))
        assert len(done.moves) == 2 and done.refused == []
        assert steps_of(engine, "ann@a.example")["bump"] == ("pending", "09 09:00")
        assert steps_of(engine, "ann@a.example")["ring"][0] == "completed"
