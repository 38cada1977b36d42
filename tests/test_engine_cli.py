"""The engine's commands: exit codes, one-line refusals, nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cadence.cli import cli
from tests.conftest import EXAMPLES

EXAMPLE = str(EXAMPLES / "q1-outbound.campaign")
PEOPLE = str(EXAMPLES / "people.csv")
START = "2026-01-05T09:00"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def enroll(start: str, db: str) -> Result:
    """The example's people, enrolled with the clock set before any start."""
    return run("enroll", EXAMPLE, "--people", PEOPLE, "--now", "2026-01-01T00:00Z",
               "--start", start, "--db", db)  # fmt: skip


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "cadence.db")
    result = enroll(START, path)
    assert result.exit_code == 0, result.stderr
    assert "enrolled 5 people (35 actions)" in result.stderr
    return path


def test_enrolling_people_already_active_exits_3(db: str) -> None:
    later = "2026-01-12T09:00"
    result = enroll(later, db)
    assert result.exit_code == 3
    assert "skipped: `ada@example.com` is already active in this campaign" in result.stderr


def test_enrolling_again_with_the_same_start_is_harmless(db: str) -> None:
    result = enroll(START, db)
    assert result.exit_code == 0, result.stderr
    assert "enrolled 0 people (0 actions)" in result.stderr
    assert "5 already enrolled with this start" in result.stderr


def open_tasks(db: str) -> list[dict[str, object]]:
    result = run("tasks", "--db", db, "--person", "ada@example.com", "--format", "json")
    found: list[dict[str, object]] = json.loads(result.stdout)
    return found


def close_until(db: str, step: str) -> dict[str, object]:
    """Complete Ada's tasks in order (semantics §6) until ``step`` is the one to do."""
    while True:
        first = open_tasks(db)[0]
        if first["step"] == step:
            return first
        assert run("task", "complete", str(first["id"]), "--db", db).exit_code == 0


def test_tasks_show_the_prefilled_email(db: str) -> None:
    personal = close_until(db, "personal")
    assert personal["to"] == "ada@example.com"
    assert personal["subject"] == "One more idea for Analytical Engines"
    text = run("tasks", "--db", db, "--due-before", "2026-01-08").stdout
    assert "call `ring`" in text and "notes: Ask about" in text


def test_task_commands_and_their_refusals(db: str, tmp_path: Path) -> None:
    tasks = json.loads(
        run("tasks", "--db", db, "--person", "ada@example.com", "--format", "json").stdout
    )
    ring = next(t["id"] for t in tasks if t["step"] == "ring")
    assert all(t["step"] != "personal" for t in tasks)  # it waits behind `ring` (semantics §6)
    blocked = run("task", "skip", str(ring + 1), "--db", db)  # `connect`, after `ring`
    assert blocked.exit_code == 2 and "close that one first" in blocked.stderr
    assert run("task", "complete", str(ring), "--db", db).exit_code == 0
    personal = close_until(db, "personal")["id"]
    again = run("task", "complete", str(ring), "--db", db)
    assert again.exit_code == 2
    assert again.stderr == f"cadence: error: task {ring} is already completed\n"
    assert run("task", "skip", "99999", "--db", db).stderr == "cadence: error: no task 99999\n"
    body = tmp_path / "body.txt"
    body.write_text("My own words")
    sent = run(
        "task",
        "send",
        str(personal),
        "--subject",
        "Mine",
        "--body-file",
        str(body),
        "--at",
        "2026-01-14T10:00:00Z",
        "--db",
        db,
    )
    assert sent.exit_code == 0, sent.stderr
    feed = run("feed", "--db", db, "--format", "jsonl").stdout.splitlines()
    assert json.loads(feed[-1])["message"] == "task `personal` sent"


def test_run_delivers_to_an_outbox(db: str, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    result = run(
        "run",
        "--db",
        db,
        "--outbox",
        str(outbox),
        "--now",
        "2026-01-05T15:00:00Z",
        "--sender-email",
        "sam@example.com",
    )
    assert result.exit_code == 0, result.stderr
    assert "sent 5, retrying 0, failed 0" in result.stderr
    assert len(list(outbox.glob("*.eml"))) == 5
    again = run("run", "--db", db, "--outbox", str(outbox), "--now", "2026-01-05T15:00:00Z")
    assert "sent 0" in again.stderr


def test_events_and_end(db: str) -> None:
    assert run("reply", "nobody@example.com", "--db", db).exit_code == 2
    assert run("reply", "ada@example.com", "--db", db).exit_code == 0
    ended = run("end", "Q1 Outbound - VP Engineering", "--db", db)
    assert ended.exit_code == 0 and "4 enrollments closed" in ended.stderr
    feed = run("feed", "--db", db).stdout
    assert "enrollment ended: replied" in feed and "cancelled: campaign has ended" in feed
    assert run("end", "no such campaign", "--db", db).exit_code == 2


def test_a_newer_database_is_refused_untouched(db: str) -> None:
    import sqlite3

    with sqlite3.connect(db) as connection:
        connection.execute("INSERT INTO schema_version VALUES (99, '2026-01-01 00:00:00')")
    result = run("tasks", "--db", db)
    assert result.exit_code == 2
    assert "schema version 99" in result.stderr and result.stderr.count("\n") == 1


def test_bad_database_urls_are_usage_errors(tmp_path: Path) -> None:
    assert run("feed", "--db", "nonsense://x").exit_code == 2
    for url in ("postgresql://u:hunter2@host:abc/x", "postgresql://[::1/x"):
        refused = run("feed", "--db", url)  # once a traceback
        assert refused.exit_code == 2 and "hunter2" not in refused.stderr
        assert refused.stderr.count("\n") == 1 and "a port is a number" in refused.stderr
    assert run("feed", "--db", str(tmp_path / "missing" / "dir" / "x.db")).exit_code == 2


def test_run_reads_its_runtime_config(db: str, tmp_path: Path) -> None:
    config = tmp_path / "cadence.toml"
    outbox = tmp_path / "from-config"
    config.write_text(
        f'outbox = "{outbox}"\nthrottle = "100 per 1"\n'
        '[sender]\nname = "Sam"\nemail = "sam@example.com"\n'
    )
    result = run("run", "--config", str(config), "--db", db, "--now", "2026-01-05T15:00:00Z")
    assert result.exit_code == 0, result.stderr
    sent = sorted(outbox.glob("*.eml"))
    assert len(sent) == 5 and b"From: Sam <sam@example.com>" in sent[0].read_bytes()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('throttle = "fast"', "write N per SECONDS"),
        ('colour = "blue"', "unknown setting 'colour'"),
        ("not = [toml", "not TOML"),
    ],
)
def test_bad_runtime_config_is_one_line(
    db: str, tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    result = run("run", "--config", str(config), "--db", db, "--now", "2026-01-05T15:00:00Z")
    assert result.exit_code == 2 and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_tasks_show_who_to_call_and_for_which_campaign(tmp_path: Path) -> None:
    campaign = tmp_path / "c.campaign"
    campaign.write_text(
        'campaign "Calls" {\n  day 1 { call ring { notes "Call {{ first_name }}" } }\n}\n'
    )
    people = tmp_path / "p.csv"
    people.write_text(
        "email,first_name,last_name,company,phone\nada@example.com,Ada,Lovelace,Engines,+44 20 1\n"
    )
    db = str(tmp_path / "c.db")
    assert run("enroll", str(campaign), "--people", str(people), "--start", "2026-01-05T09:00Z",
               "--now", "2026-01-05T09:00Z", "--db", db).exit_code == 0  # fmt: skip
    (task,) = json.loads(run("tasks", "--db", db, "--format", "json").stdout)
    assert {key: task[key] for key in ("name", "company", "phone", "campaign", "notes")} == {
        "name": "Ada Lovelace", "company": "Engines", "phone": "+44 20 1", "campaign": "Calls",
        "notes": "Call Ada",
    }  # fmt: skip
    text = run("tasks", "--db", db).stdout.splitlines()[0]
    assert text.endswith(
        "ada@example.com (Ada Lovelace · Engines · +44 20 1)  call `ring`  in Calls"
    )


def test_the_database_comes_from_the_option_the_environment_or_a_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home-config"))
    monkeypatch.delenv("CADENCE_DB", raising=False)
    (tmp_path / "home-config" / "cadence").mkdir(parents=True)
    (tmp_path / "home-config" / "cadence" / "cadence.toml").write_text('db = "from-home.db"\n')
    assert run("campaigns").exit_code == 0
    assert (tmp_path / "from-home.db").exists()  # the user's config folder
    (tmp_path / "cadence.toml").write_text('db = "from-here.db"\n')
    assert run("campaigns").exit_code == 0
    assert (tmp_path / "from-here.db").exists()  # ./cadence.toml comes first
    monkeypatch.setenv("CADENCE_DB", str(tmp_path / "from-env.db"))
    assert run("campaigns").exit_code == 0
    assert (tmp_path / "from-env.db").exists()  # the environment, before any config
    assert run("campaigns", "--db", str(tmp_path / "given.db")).exit_code == 0
    assert (tmp_path / "given.db").exists()  # the option, before everything
    (tmp_path / "cadence.toml").write_text("db = [")
    monkeypatch.delenv("CADENCE_DB")
    broken = CliRunner().invoke(cli, ["campaigns"])
    assert broken.exit_code == 2 and broken.stderr.startswith(
        "cadence: error: cadence.toml: not TOML"
    )
