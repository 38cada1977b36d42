"""A campaign is who it is (its `id`, else its name), and a change of what it
does is a new version of it: the same campaign compiled from another path, with
a comment added or by another cadence is the same version, and a person is
active once per campaign, whichever version."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from cadence.cli import cli
from cadence.compiler import compile_source
from cadence.compiler.ir import Campaign, behaviour_digest, dump_ir
from cadence.runtime.engine import Engine, EngineError
from cadence.runtime.migrations import _campaign_versions
from cadence.runtime.schema import campaigns, enrollments
from tests.engine_db import database_url

T0 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
SOURCE = """campaign "Q1 outbound" {
  timezone "UTC"
  day 1 { email intro { send at 09:00 subject "Hi" body "Hello" } }
  day 3 { call ring { notes "Call them" } }
}
"""
PEOPLE = [{"email": "ann@a.example"}, {"email": "bob@b.example"}]


def ir_of(source: str = SOURCE, path: str = "q1.campaign") -> Campaign:
    ir = compile_source(source, path).ir
    assert ir is not None
    return ir


def active(engine: Engine) -> list[tuple[str, str]]:
    with engine.store.read() as connection:
        rows = connection.execute(
            select(enrollments.c.person, enrollments.c.campaign_id)
            .where(enrollments.c.status == "active")
            .order_by(enrollments.c.person)
        )
        return [(row.person, row.campaign_id) for row in rows]


def test_where_and_by_which_cadence_it_was_compiled_is_not_behaviour() -> None:
    base = behaviour_digest(ir_of())
    assert behaviour_digest(ir_of(path="/home/sam/campaigns/q1.campaign")) == base
    assert behaviour_digest(ir_of("# the Q1 push\n" + SOURCE)) == base
    assert behaviour_digest(ir_of().model_copy(update={"compiler": "cadence 9.9"})) == base
    assert behaviour_digest(ir_of(SOURCE.replace("09:00", "09:30"))) != base
    assert behaviour_digest(ir_of(SOURCE.replace('"Hello"', '"Hello!"'))) != base


def test_the_same_campaign_from_two_paths_enrolls_nobody_twice(engine: Engine) -> None:
    first = engine.enroll(ir_of(path="q1.campaign"), PEOPLE, T0, now=T0)
    again = engine.enroll(ir_of(path="/abs/q1.campaign"), PEOPLE, T0, now=T0)
    later = ir_of(path="q1.campaign").model_copy(update={"compiler": "cadence 9.9"})
    upgraded = engine.enroll(later, PEOPLE, T0, now=T0)
    assert first.campaign_id == again.campaign_id == upgraded.campaign_id
    assert (again.version, again.enrolled, again.already) == (1, 0, 2)
    assert upgraded.already == 2 and len(active(engine)) == 2


def test_an_edit_is_a_new_version_that_refuses_those_already_active(engine: Engine) -> None:
    first = engine.enroll(ir_of(), PEOPLE, T0, now=T0)
    edited = ir_of(SOURCE.replace("09:00", "10:15"))
    people = [*PEOPLE, {"email": "cy@c.example"}]
    second = engine.enroll(edited, people, T0 + dt.timedelta(days=1), now=T0)
    assert (first.version, second.version) == (1, 2)
    assert second.enrolled == 1 and second.campaign_id != first.campaign_id
    assert [problem.message for problem in second.problems] == [
        f"`{email}` is already active in version 1 of this campaign (`cadence migrate` moves "
        "people to a new version)"
        for email in ("ann@a.example", "bob@b.example")
    ]
    assert active(engine) == [
        ("ann@a.example", first.campaign_id),  # people stay on their version
        ("bob@b.example", first.campaign_id),
        ("cy@c.example", second.campaign_id),
    ]
    # Going back to the first text is version 1 again, not a third.
    assert engine.enroll(ir_of(), [{"email": "di@d.example"}], T0, now=T0).version == 1


def test_a_renamed_campaign_with_an_id_stays_the_same_campaign(engine: Engine) -> None:
    source = SOURCE.replace('timezone "UTC"', 'id "q1"\n  timezone "UTC"')
    first = engine.enroll(ir_of(source), PEOPLE, T0, now=T0)
    renamed = ir_of(source.replace("Q1 outbound", "Q1 outbound (EMEA)"))
    second = engine.enroll(renamed, PEOPLE, T0, now=T0)
    assert second.version == 2 and second.enrolled == 0 and len(second.problems) == 2
    assert engine.find_campaign("Q1 outbound") == engine.find_campaign("q1") == "id:q1"
    assert engine.find_campaign(first.campaign_id[:4]) == "id:q1"


def test_ending_a_campaign_ends_every_version(engine: Engine) -> None:
    engine.enroll(ir_of(), PEOPLE[:1], T0, now=T0)
    engine.enroll(ir_of(SOURCE.replace("09:00", "11:00")), PEOPLE[1:], T0, now=T0)
    assert engine.end(engine.find_campaign("Q1 outbound"), T0) == 2
    assert active(engine) == []
    with pytest.raises(EngineError, match="has ended; it takes no more people"):
        engine.enroll(ir_of(SOURCE.replace("09:00", "12:00")), PEOPLE, T0, now=T0)


def test_a_campaign_named_like_another_ones_id_is_another_campaign(engine: Engine) -> None:
    with_id = SOURCE.replace('timezone "UTC"', 'id "welcome"\n  timezone "UTC"')
    engine.enroll(ir_of(with_id), PEOPLE, T0, now=T0)
    named = ir_of(SOURCE.replace("Q1 outbound", "welcome"))
    report = engine.enroll(named, PEOPLE, T0, now=T0)
    assert (report.version, report.enrolled) == (1, 2)  # not version 2 of the other


def test_an_ambiguous_name_lists_the_candidates(engine: Engine) -> None:
    for key in ("emea", "apac"):
        source = SOURCE.replace('timezone "UTC"', f'id "{key}"\n  timezone "UTC"')
        engine.enroll(ir_of(source), PEOPLE, T0, now=T0)
    with pytest.raises(EngineError) as caught:
        engine.find_campaign("Q1 outbound")
    message = str(caught.value)
    assert message.startswith("more than one campaign matches 'Q1 outbound': ")
    assert "(id apac, version 1, key " in message and "(id emea, version 1, key " in message
    with pytest.raises(EngineError, match="no campaign matches 'nope'"):
        engine.find_campaign("nope")
    with pytest.raises(EngineError, match="no campaign matches 'ab'"):
        engine.find_campaign("ab")  # a prefix needs 4 characters


def test_an_upgraded_database_numbers_the_versions_it_had(engine: Engine) -> None:
    """Before versions, the same campaign from two paths was two campaigns;
    upgraded, they are one version, and an enroll dedupes against both."""
    first = engine.enroll(ir_of(path="a/q1.campaign"), PEOPLE[:1], T0, now=T0)
    with engine.store.transaction() as connection:
        other = ir_of(path="/b/q1.campaign")  # as an older cadence stored it
        connection.execute(
            campaigns.insert().values(id="f" * 64, name=other.name, ir=dump_ir(other),
                                      created_at=T0 + dt.timedelta(hours=1))
        )  # fmt: skip
        edited = ir_of(SOURCE.replace("09:00", "10:00"))
        connection.execute(
            campaigns.insert().values(id="e" * 64, name=edited.name, ir=dump_ir(edited),
                                      created_at=T0 + dt.timedelta(hours=2))
        )  # fmt: skip
        connection.execute(update(campaigns).values(identity=None, version=None, behaviour=None))
        _campaign_versions(connection)
        rows = connection.execute(
            select(campaigns.c.id, campaigns.c.identity, campaigns.c.version).order_by(
                campaigns.c.created_at
            )
        ).all()
    assert [(row.identity, row.version) for row in rows] == [("name:Q1 outbound", 1)] * 2 + [
        ("name:Q1 outbound", 2)
    ]
    again = engine.enroll(ir_of(path="c/q1.campaign"), PEOPLE, T0, now=T0)
    assert (again.campaign_id, again.already, again.enrolled) == (first.campaign_id, 1, 1)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_enrolling_an_edited_campaign_says_who_is_active_and_exits_3(
    tmp_path: Path, kind: str
) -> None:
    (tmp_path / "q1.campaign").write_text(SOURCE)
    (tmp_path / "people.csv").write_text("email\nann@a.example\nbob@b.example\n")
    runner = CliRunner()
    with database_url(kind, tmp_path) as db:
        args = ["--people", str(tmp_path / "people.csv"), "--start", "2026-12-07T08:00Z",
                "--now", "2026-12-07T08:00Z",
                "--db", db]  # fmt: skip
        first = runner.invoke(cli, ["enroll", str(tmp_path / "q1.campaign"), *args])
        assert first.exit_code == 0, first.stderr
        assert "in 'Q1 outbound' version 1 (" in first.stderr
        absolute = runner.invoke(cli, ["enroll", str((tmp_path / "q1.campaign").resolve()), *args])
        assert absolute.exit_code == 0 and "2 already enrolled with this start" in absolute.stderr
        (tmp_path / "q1.campaign").write_text(SOURCE.replace("09:00", "10:15"))
        edited = runner.invoke(cli, ["enroll", str(tmp_path / "q1.campaign"), *args])
        assert edited.exit_code == 3
        assert "people.csv:2: skipped: `ann@a.example` is already active in version 1" in (
            edited.stderr
        )
        assert "enrolled 0 people (0 actions) in 'Q1 outbound' version 2" in edited.stderr
        ended = runner.invoke(cli, ["end", "Q1 outbound", "--db", db])
        assert ended.exit_code == 0, ended.stderr
        assert "2 enrollments closed" in ended.stderr


def test_campaigns_lists_versions_with_where_people_are(tmp_path: Path) -> None:
    one_step = (
        'campaign "Short" {\n  id "short"\n'
        '  day 1 { email hi { send at 09:00 subject "s" body "b" } }\n}\n'
    )
    (tmp_path / "short.campaign").write_text(one_step)
    (tmp_path / "q1.campaign").write_text(SOURCE)
    (tmp_path / "people.csv").write_text("email\nann@a.example\nbob@b.example\n")
    (tmp_path / "more.csv").write_text("email\ncy@c.example\n")
    db = str(tmp_path / "c.db")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, [*args, "--db", db])
        assert result.exit_code in (0, 3), result.stderr
        return result.stdout

    start = ["--start", "2026-12-07T08:00Z", "--now", "2026-12-07T08:00Z"]
    run("enroll", str(tmp_path / "q1.campaign"), "--people", str(tmp_path / "people.csv"), *start)
    (tmp_path / "q1.campaign").write_text(SOURCE.replace("09:00", "10:00"))
    run("enroll", str(tmp_path / "q1.campaign"), "--people", str(tmp_path / "more.csv"), *start)
    run("reply", "ann@a.example")
    run("enroll", str(tmp_path / "short.campaign"), "--people", str(tmp_path / "more.csv"), *start)
    run("run", "--outbox", str(tmp_path / "out"), "--now", "2026-12-07T10:00Z")
    listed = json.loads(run("campaigns", "--format", "json"))
    assert [(c["name"], c["id"], len(c["versions"])) for c in listed] == [
        ("Q1 outbound", "Q1 outbound", 2),
        ("Short", "short", 1),
    ]
    counts = [(v["version"], v["active"], v["finished"], v["ended"])
              for c in listed for v in c["versions"]]  # fmt: skip
    assert counts == [(1, 1, 0, 1), (2, 1, 0, 0), (1, 0, 1, 0)]
    table = run("campaigns").splitlines()
    assert table[0].split() == ["CAMPAIGN", "ID", "VERSION", "KEY", "ACTIVE", "FINISHED",
                                "ENDED", "CREATED", "ENDED", "AT"]  # fmt: skip
    assert table[1].startswith("Q1 outbound") and table[2].split()[0] == "2"
    assert table[3].split()[:3] == ["Short", "short", "1"]


def test_status_says_where_a_person_is_in_every_campaign(tmp_path: Path) -> None:
    (tmp_path / "q1.campaign").write_text(SOURCE)
    (tmp_path / "people.csv").write_text("email\nann@a.example\n")
    db = str(tmp_path / "c.db")
    runner = CliRunner()
    args = ["--people", str(tmp_path / "people.csv"), "--start", "2026-12-07T08:00Z",
            "--now", "2026-12-07T08:00Z", "--db", db]  # fmt: skip
    assert runner.invoke(cli, ["enroll", str(tmp_path / "q1.campaign"), *args]).exit_code == 0
    out = ["--outbox", str(tmp_path / "out"), "--db", db]
    assert runner.invoke(cli, ["run", *out, "--now", "2026-12-07T10:00Z"]).exit_code == 0
    shown = runner.invoke(cli, ["status", "ANN@a.example", "--format", "json", "--db", db])
    assert shown.exit_code == 0, shown.stderr
    found = json.loads(shown.stdout)
    assert found["person"] == "ann@a.example"
    (item,) = found["enrollments"]
    assert (item["campaign"], item["version"], item["state"], item["at_step"]) == (
        "Q1 outbound",
        1,
        "active",
        "intro",
    )
    assert (item["next"]["step"], item["next"]["status"], item["next"]["due_date"]) == (
        "ring",
        "open",
        "2026-12-09",
    )
    assert [(s["step"], s["status"]) for s in item["history"]] == [
        ("intro", "sent"),
        ("ring", "open"),
    ]
    assert item["history"][0]["sent_at"] == "2026-12-07T10:00:00Z"
    assert runner.invoke(cli, ["reply", "ann@a.example", "--db", db]).exit_code == 0
    table = runner.invoke(cli, ["status", "ann@a.example", "--db", db]).stdout.splitlines()
    assert table[:3] == [
        "ann@a.example",
        "  Q1 outbound, version 1: ended (replied); started 2026-12-07 08:00Z",
        "    + day 1 email `intro`: sent 2026-12-07 10:00Z",
    ]
    assert table[3].startswith("    x day 3 call `ring`: cancelled ")
    unknown = runner.invoke(cli, ["status", "nobody@x.example", "--db", db])
    assert unknown.exit_code == 2
    assert unknown.stderr == "cadence: error: nobody@x.example was never enrolled\n"


def test_a_pause_without_an_end_lasts_until_resumed(tmp_path: Path) -> None:
    (tmp_path / "q1.campaign").write_text(SOURCE)
    (tmp_path / "people.csv").write_text("email\nann@a.example\n")
    db = str(tmp_path / "c.db")
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(cli, [*args, "--db", db])

    at = "2026-12-07T08:00Z"
    enrolled = run("enroll", str(tmp_path / "q1.campaign"), "--people",
                   str(tmp_path / "people.csv"), "--start", at, "--now", at)  # fmt: skip
    assert enrolled.exit_code == 0
    paused = run("pause", "ann@a.example", "--at", "2026-12-07T08:30Z")
    assert paused.stderr == "paused ann@a.example until `cadence resume` in 1 campaign(s)\n"
    (item,) = json.loads(run("status", "ann@a.example", "--format", "json").stdout)["enrollments"]
    assert (item["state"], item["reason"]) == ("paused", "paused until resumed: paused by hand")
    assert item["paused"] == {"until": None, "why": "paused by hand"}
    later = run("run", "--outbox", str(tmp_path / "out"), "--now", "2027-06-01T10:00Z")
    assert "sent 0," in later.stderr  # months later, still paused
    assert run("resume", "ann@a.example", "--at", "2027-06-01T10:00Z").exit_code == 0
    (item,) = json.loads(run("status", "ann@a.example", "--format", "json").stdout)["enrollments"]
    assert item["state"] == "active" and item["next"]["due_at"] == "2027-06-01T09:00:00Z"
    assert run("pause", "nobody@x.example").exit_code == 2
