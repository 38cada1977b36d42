"""The suppression list: checked at enroll and at claim, filled by bounces,
unsubscribes, hand and import, and ending people in every campaign."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from cadence.cli import cli
from cadence.compiler import compile_source
from cadence.runtime.engine import Engine

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def campaign(name: str, on_bounce: str = "remove") -> Any:
    source = f"""campaign "{name}" {{ timezone "UTC" on bounce {on_bounce}
      day 1 {{ email a {{ send at 09:00 subject "s" body "b" }} call ring {{ notes "n" }} }}
      day 2 {{ email b {{ send at 09:00 subject "t" body "c" }} }} }}"""
    ir = compile_source(source, f"{name}.campaign").ir
    assert ir is not None
    return ir


PEOPLE = [{"email": "ada@example.com"}, {"email": "bo@example.com"}]


def test_suppressed_people_are_refused_at_enroll(engine: Engine) -> None:
    report = engine.suppress(
        ["ADA@Example.com"], "manual", T0, source="test", note="asked by phone"
    )
    assert (report.added, report.ended, report.problems) == (1, 0, [])
    enrolled = engine.enroll(campaign("one"), PEOPLE, T0, now=T0)
    assert enrolled.enrolled == 1
    assert [(p.line, p.message) for p in enrolled.problems] == [
        (1, "`ada@example.com` is on the suppression list (manual on 2026-01-05)")
    ]


def test_suppressing_ends_the_person_in_every_campaign(engine: Engine) -> None:
    engine.enroll(campaign("one"), PEOPLE, T0, now=T0)
    engine.enroll(campaign("two"), PEOPLE, T0, now=T0)
    report = engine.suppress(["ada@example.com", "not an address"], "complained", T0 + HOUR)
    assert (report.added, report.ended) == (1, 2)
    assert report.problems[0].startswith("`not an address` is not an email address")
    ended = [e for e in engine.feed() if e.event == "ended"]
    assert [e.message for e in ended] == ["enrollment ended: suppressed (complained)"] * 2
    assert {s.person for s in engine.due(T0 + 30 * HOUR)} == {"bo@example.com"}


def test_a_send_to_a_suppressed_address_is_cancelled_when_claimed(engine: Engine) -> None:
    engine.enroll(campaign("one"), PEOPLE, T0, now=T0)
    with engine.store.transaction() as connection:  # e.g. another tool wrote the list
        from cadence.runtime import suppression

        suppression.add(connection, ["bo@example.com"], "imported", T0)
    claimed = engine.claim(T0 + 2 * HOUR, 10, worker="w")
    assert [s.person for s in claimed] == ["ada@example.com"]
    cancelled = next(e for e in engine.feed() if e.event == "cancelled")
    assert cancelled.person == "bo@example.com"
    assert "on the suppression list (imported on 2026-01-05)" in cancelled.message


def test_a_bounce_suppresses_and_applies_every_campaigns_rule(engine: Engine) -> None:
    engine.enroll(campaign("strict", on_bounce="remove"), PEOPLE, T0, now=T0)
    engine.enroll(campaign("lenient", on_bounce="continue"), PEOPLE, T0, now=T0)
    assert engine.bounce("ada@example.com", T0 + HOUR) == 2
    assert [s.reason for s in engine.suppressions()] == ["bounced"]
    # "lenient" continues (its tasks go on), but no email reaches the address.
    tasks = [t for t in engine.open_tasks(person="ada@example.com")]
    assert len(tasks) == 1
    claimed = engine.claim(T0 + 30 * HOUR, 10, worker="w")
    assert {s.person for s in claimed} == {"bo@example.com"}
    # A bounce for someone in no campaign still suppresses the address.
    assert engine.bounce("cy@example.com", T0) == 0
    assert len(engine.suppressions("bounced")) == 2


def test_unsubscribe_ends_everywhere_and_unsuppress_allows_enrolling_again(
    engine: Engine,
) -> None:
    one, two = campaign("one"), campaign("two")
    engine.enroll(one, PEOPLE, T0, now=T0)
    engine.enroll(two, PEOPLE, T0, now=T0)
    assert engine.unsubscribe("ada@example.com", T0 + HOUR, source="a reply") == 2
    assert [(s.email, s.reason, s.source) for s in engine.suppressions()] == [
        ("ada@example.com", "unsubscribed", "a reply")
    ]
    assert engine.enroll(campaign("three"), PEOPLE[:1], T0, now=T0).enrolled == 0
    assert engine.unsuppress(["Ada@example.com"]) == 1
    assert engine.enroll(campaign("three"), PEOPLE[:1], T0, now=T0).enrolled == 1


# ---- the command line -----------------------------------------------------------------------
def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_suppress_commands(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    listed = tmp_path / "list.csv"
    listed.write_text("email,reason\nzed@example.com,x\nnot-an-address,y\nyan@example.com,z\n")
    imported = run("suppress", "import", str(listed), "--db", db)
    assert imported.exit_code == 3
    assert "skipped: `not-an-address` is not an email address" in imported.stderr
    assert "suppressed 2 addresses (0 already)" in imported.stderr
    added = run(
        "suppress", "add", "amy@example.com", "zed@example.com", "--note", "CEO", "--db", db
    )
    assert added.exit_code == 0 and "suppressed 1 address (1 already)" in added.stderr
    rows = json.loads(run("suppress", "list", "--format", "json", "--db", db).stdout)
    assert [(r["email"], r["reason"]) for r in rows] == [
        ("amy@example.com", "manual"), ("yan@example.com", "imported"),
        ("zed@example.com", "imported"),
    ]  # fmt: skip
    assert rows[0]["note"] == "CEO" and rows[1]["source"].startswith("imported from ")
    assert run("suppress", "remove", "yan@example.com", "--db", db).exit_code == 0
    csv_lines = run("suppress", "list", "--format", "csv", "--db", db).stdout.splitlines()
    assert csv_lines[0] == "email,reason,since,source,note" and len(csv_lines) == 3


def test_enroll_lists_suppressed_rows_and_exits_3(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    source = tmp_path / "c.campaign"
    source.write_text('campaign "c" { day 1 { email a { send choose subject "s" body "b" } } }')
    people = tmp_path / "p.csv"
    people.write_text("email\nada@example.com\nbo@example.com\n")
    assert run("unsubscribe", "ada@example.com", "--db", db).exit_code == 0
    result = run("enroll", str(source), "--people", str(people), "--start", "2026-01-05T09:00",
                 "--now", "2026-01-01T00:00Z", "--db", db)  # fmt: skip
    assert result.exit_code == 3
    assert "p.csv:2: skipped: `ada@example.com` is on the suppression list (unsubscribed" in (
        result.stderr
    )
    assert "enrolled 1 person" in result.stderr
