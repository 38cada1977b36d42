"""Inbound mail: a corpus of messages shaped like real ones classified as
expected, and the whole loop — send, read the mailbox, act — on SQLite and
PostgreSQL with an injected clock."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import mailbox
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cadence.cli import cli
from cadence.compiler import compile_source
from cadence.runtime.classify import classify
from cadence.runtime.delivery import OutboxTransport
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.engine import Engine
from cadence.runtime.inbox import Inbox, InboxSettings
from cadence.runtime.mailboxes import Sender
from cadence.runtime.mailsources import maildir_messages
from cadence.runtime.store import Store
from tests.conftest import CASES
from tests.engine_db import database
from tests.helpers import check_golden

CORPUS = CASES / "inbound"
T0 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)  # a Monday
UNSUBSCRIBE = frozenset({"unsubscribe@example.com"})


def classified(path: Path) -> dict[str, Any]:
    """As the inbox reads it (compat32); the modern policy must agree."""
    data = path.read_bytes()
    found = classify(email.message_from_bytes(data), unsubscribe_addresses=UNSUBSCRIBE)
    modern = email.message_from_bytes(data, policy=email.policy.default)
    assert classify(modern, unsubscribe_addresses=UNSUBSCRIBE) == found, path.name
    return {
        "kind": found.kind,
        "reason": found.reason,
        "sender": found.sender,
        "refers_to": list(found.refers_to),
        "quoted": list(found.quoted),
        "recipients": [[r.address, r.status, r.permanent] for r in found.recipients],
        "back_on": found.back_on.isoformat() if found.back_on else None,
    }


def test_the_corpus_is_classified_as_expected(update_goldens: bool) -> None:
    found = {path.name: classified(path) for path in sorted(CORPUS.glob("*.eml"))}
    check_golden(CORPUS / "expected.json", json.dumps(found, indent=2) + "\n", update_goldens)


def test_a_quoted_unsubscribe_link_is_not_a_request() -> None:
    assert classified(CORPUS / "human-reply.eml")["kind"] == "reply"
    assert classified(CORPUS / "newsletter.eml")["kind"] == "ignore"


# ---- the whole loop --------------------------------------------------------------------------
SOURCE = """campaign "Loop" {
  timezone "UTC"
  skip weekends
  day 1 { email intro { send at 09:00 subject "Quick question" body "Hi" } }
  day 2 { call ring { notes "call" } }
  day 3 { email bump { send at 09:00 subject "Again" body "Bumping" } }
}"""
PEOPLE = ["ada", "bo", "cy", "dee", "eve", "grace", "ken", "margaret", "zoe"]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with database(request.param, tmp_path) as (url, options):
        engine = Engine(Store.open(url, now=T0, **options))
        ir = compile_source(SOURCE, "loop.campaign").ir
        assert ir is not None
        engine.enroll(ir, [{"email": f"{name}@example.com"} for name in PEOPLE], T0, now=T0)
        yield engine
        engine.close()


def sent_ids(engine: Engine, outbox: Path) -> dict[str, str]:
    """Deliver day 1; the Message-ID each person's intro went out with."""
    Dispatcher(engine, OutboxTransport(outbox), Sender("Sam", "sam@example.com")).run_once(
        T0 + dt.timedelta(hours=2)
    )
    found = {}
    for path in outbox.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found[str(message["To"]).split("@")[0]] = str(message["Message-ID"])
    return found


def as_sent_to(name: str, person: str, message_id: str) -> bytes:
    """A corpus message rewritten to be about ``person``'s real email."""
    text = (CORPUS / name).read_text(encoding="utf-8")
    text = re.sub(r"<cadence\.0123456789ab\.\d+@example\.com>", message_id, text)
    domains = r"@(example\.com|contoso\.com|gmail\.com)"
    for original in ("ada", "bo", "cy", "dee", "eve", "grace", "ken", "margaret", "zoe"):
        pattern = re.compile(rf"\b{original}{domains}", re.IGNORECASE)
        text = pattern.sub(f"{person}@example.com", text)
    return text.encode("utf-8")


def maildir_with(folder: Path, messages: list[bytes]) -> Path:
    box = mailbox.Maildir(folder, create=True)
    for data in messages:
        box.add(data)
    return folder


def statuses(engine: Engine) -> dict[str, str]:
    from sqlalchemy import select

    from cadence.runtime.schema import enrollments

    with engine.store.read() as connection:
        columns = (enrollments.c.person, enrollments.c.status, enrollments.c.reason)
        rows = connection.execute(select(*columns, enrollments.c.paused_until))
        return {row.person.split("@")[0]: (row.reason or row.status) +
                (f" until {row.paused_until:%m-%d}" if row.paused_until else "")
                for row in rows}  # fmt: skip


def test_the_inbox_closes_the_loop(engine: Engine, tmp_path: Path) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    assert len(ids) == len(PEOPLE)
    messages = [
        as_sent_to("human-reply.eml", "ada", ids["ada"]),
        as_sent_to("postfix-dsn.eml", "bo", ids["bo"]),
        as_sent_to("exim-bounce.eml", "cy", ids["cy"]),
        as_sent_to("ses-dsn.eml", "dee", ids["dee"]),  # a temporary failure: counted
        as_sent_to("outlook-ooo.eml", "eve", ids["eve"]),  # back Wednesday, December 9
        as_sent_to("gmail-vacation.eml", "grace", ids["grace"]),  # until 14/12
        as_sent_to("unsubscribe-reply.eml", "ken", ids["ken"]),
        as_sent_to("unsubscribe-mailto.eml", "margaret", ""),
        (CORPUS / "newsletter.eml").read_bytes(),
        (CORPUS / "garbage.eml").read_bytes(),
        as_sent_to("postfix-dsn.eml", "nobody", "<not-ours@x>").replace(
            b"8A1F2C1A0@mx",
            b"9B2E3D2B1@mx",  # another message: its own Message-ID
        ),  # about an address cadence never wrote to
    ]
    folder = maildir_with(tmp_path / "Maildir", messages)
    before = sorted(p.name for p in folder.rglob("*") if p.is_file())
    settings = InboxSettings(UNSUBSCRIBE, away_days=7, soft_bounce_limit=3)
    reader = Inbox(engine, settings)
    now = T0 + dt.timedelta(hours=3)
    done = [reader.process(source, raw, now) for source, raw in maildir_messages(folder)]
    kinds = sorted(d.kind for d in done)
    expected = ["reply", "bounce", "bounce", "bounce", "auto_reply", "auto_reply",
                "unsubscribe", "unsubscribe", "ignore", "ignore", "bounce"]  # fmt: skip
    assert kinds == sorted(expected)
    assert statuses(engine) == {
        "ada": "replied", "bo": "bounced", "cy": "bounced", "dee": "active",
        "eve": "active until 12-09", "grace": "active until 12-14", "ken": "unsubscribed",
        "margaret": "unsubscribed", "zoe": "active",
    }  # fmt: skip
    assert {s.email.split("@")[0]: s.reason for s in engine.suppressions()} == {
        "bo": "bounced",
        "cy": "bounced",
        "ken": "unsubscribed",
        "margaret": "unsubscribed",
    }
    never = next(d for d in done if "nobody@example.com" in d.outcome)
    assert never.outcome.startswith("ignored: nobody@example.com: cadence never wrote to it")
    # The mailbox is the user's: nothing moved, flagged or deleted.
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == before
    # Reading it again acts on nothing.
    again = [reader.process(source, raw, now) for source, raw in maildir_messages(folder)]
    assert all(not d.new for d in again)
    # Nothing goes to the paused, the replied, the bounced or the unsubscribed.
    day3 = T0 + dt.timedelta(days=2, hours=2)
    for task in engine.open_tasks():  # the day-2 calls of those still going
        engine.complete_task(task.id, day3)
    assert sorted(s.person for s in engine.due(day3)) == ["dee@example.com", "zoe@example.com"]


def test_soft_bounces_add_up_to_a_permanent_one(engine: Engine, tmp_path: Path) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    reader = Inbox(engine, InboxSettings(UNSUBSCRIBE, soft_bounce_limit=2))
    first = as_sent_to("ses-dsn.eml", "dee", ids["dee"])
    second = first.replace(b"Message-ID: <0100018c", b"Message-ID: <0200018c")
    outcomes = [
        reader.process(f"test:{n}", raw, T0).outcome for n, raw in enumerate([first, second])
    ]
    assert "temporary failure 1 of 2, counted" in outcomes[0]
    assert "2 temporary failures make a permanent one" in outcomes[1]
    assert statuses(engine)["dee"] == "bounced"


def test_an_out_of_office_moves_the_rest_of_the_schedule(engine: Engine, tmp_path: Path) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    reader = Inbox(engine, InboxSettings(UNSUBSCRIBE))
    reader.process("test:ooo", as_sent_to("outlook-ooo.eml", "eve", ids["eve"]), T0)
    assert engine.open_tasks(person="eve@example.com") == []  # nobody calls someone away
    back = dt.datetime(2026, 12, 9, 0, 0, tzinfo=dt.UTC)
    assert [s for s in engine.claim(back - dt.timedelta(hours=1), 100, worker="w")
            if s.person == "eve@example.com"] == []  # fmt: skip
    claimed = engine.claim(back + dt.timedelta(hours=10), 100, worker="w")  # resumes, moves
    (task,) = engine.open_tasks(person="eve@example.com")
    assert task.due_date == dt.date(2026, 12, 9)  # the call, next step, on the return day
    assert all(s.person != "eve@example.com" for s in claimed)  # the bump is a day later
    engine.complete_task(task.id, back + dt.timedelta(hours=11))
    bump = [s for s in engine.due(dt.datetime(2026, 12, 10, 10, 0, tzinfo=dt.UTC))
            if s.person == "eve@example.com"]  # fmt: skip
    assert bump and bump[0].due_at == dt.datetime(2026, 12, 10, 9, 0, tzinfo=dt.UTC)
    resumed = next(e for e in engine.feed() if e.event == "resumed")
    assert resumed.message == "resumed; the rest moves 1 day(s)"


def enrolled_by_the_cli(tmp_path: Path) -> tuple[CliRunner, str]:
    """ada@example.com enrolled in the loop campaign with `cadence enroll`: the
    runner and the database."""
    db = str(tmp_path / "c.db")
    source = tmp_path / "c.campaign"
    source.write_text(SOURCE)
    people = tmp_path / "p.csv"
    people.write_text("email\nada@example.com\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["enroll", str(source), "--people", str(people), "--start",
                               "2026-12-07T08:00Z", "--now", "2026-12-07T08:00Z", "--db", db]
                         ).exit_code == 0  # fmt: skip
    return runner, db


def test_inbox_command_reads_files_and_explains(tmp_path: Path) -> None:
    runner, db = enrolled_by_the_cli(tmp_path)
    message = tmp_path / "reply.eml"
    message.write_bytes(as_sent_to("reply-by-address.eml", "ada", ""))
    result = runner.invoke(cli, ["inbox", str(message), "--db", db, "--now", "2026-12-08T12:00Z"])
    assert result.exit_code == 0, result.stderr
    assert "reply: `on reply` ran in 1 campaign(s)" in result.stdout
    again = runner.invoke(cli, ["inbox", str(message), "--db", db])
    assert "1 read before" in again.stderr
    explained = runner.invoke(cli, ["inbox", "--explain", "CAnewthread@mail.example.com",
                                    "--db", db]).stdout  # fmt: skip
    assert "kind       reply" in explained and "because    from an address" in explained
    assert "Subject: your note" in explained
    missing = runner.invoke(cli, ["inbox", "--explain", "<nope@x>", "--db", db])
    assert missing.exit_code == 2
    assert runner.invoke(cli, ["inbox", "--db", db]).exit_code == 2  # nothing to read
    not_maildir = runner.invoke(cli, ["inbox", "--maildir", str(tmp_path), "--db", db])
    assert not_maildir.exit_code == 2 and "not a Maildir" in not_maildir.stderr


def test_a_message_that_cannot_be_processed_leaves_the_others_done(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = sent_ids(engine, tmp_path / "outbox")
    reader = Inbox(engine, InboxSettings(UNSUBSCRIBE))
    original = reader._act

    def failing(connection: Any, found: Any, now: dt.datetime, *rest: Any, **named: Any) -> Any:
        if found.sender == "bo@example.com":
            raise RuntimeError("the disk is full")
        return original(connection, found, now, *rest, **named)

    monkeypatch.setattr(reader, "_act", failing)
    messages = [
        ("m:1", as_sent_to("human-reply.eml", "ada", ids["ada"])),
        ("m:2", as_sent_to("human-reply.eml", "bo", ids["bo"]).replace(b"CAreply1", b"CAreply2")),
        ("m:3", as_sent_to("unsubscribe-reply.eml", "ken", ids["ken"])),
    ]
    done = list(reader.process_all(messages, T0 + dt.timedelta(hours=3)))
    failed = [item for item in done if isinstance(item, tuple)]
    assert [source for source, _ in failed] == ["m:2"]
    assert statuses(engine)["ada"] == "replied" and statuses(engine)["ken"] == "unsubscribed"
    assert statuses(engine)["bo"] == "active"  # nothing of the failed one was kept
    assert reader.known(["m:1", "m:2", "m:3"]) == {"m:1", "m:3"}  # m:2 is read again next time
