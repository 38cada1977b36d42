"""The store under contention and after crashes: claims are always settled,
an `end` stops batches already claimed, a busy database never loses a mark,
a silent SMTP server is a "maybe", failed sends can be queued again, and
concurrent first use of a database never fails."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from sqlalchemy import func, select

from cadence.cli import cli
from cadence.compiler import compile_source
from cadence.runtime.delivery import DeliveryError, OutboxTransport
from cadence.runtime.dispatch import Dispatcher, message_id
from cadence.runtime.engine import Engine
from cadence.runtime.mailboxes import Sender
from cadence.runtime.schema import actions
from cadence.runtime.smtp import SmtpTransport
from cadence.runtime.store import Store
from tests.engine_db import database, database_url
from tests.test_dispatch import free_port
from tests.test_engine_review import Recorder

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(minutes=5)
SOURCE = 'campaign "c" { timezone "UTC" day 1 { email e { send choose subject "s" body "b" } } }'


def campaign() -> Any:
    ir = compile_source(SOURCE, "c.campaign").ir
    assert ir is not None
    return ir


def statuses(engine: Engine) -> dict[str, int]:
    with engine.store.read() as connection:
        rows = connection.execute(select(actions.c.status, func.count()).group_by(actions.c.status))
        return dict(rows.all())  # type: ignore[arg-type]


def people(count: int) -> list[dict[str, str]]:
    return [{"email": f"p{n:03}@example.com"} for n in range(count)]


# ---- a dispatcher that died, then an end --------------------------------------------------------
def test_ending_after_a_dispatcher_died_settles_every_claim(engine: Engine) -> None:
    report = engine.enroll(campaign(), people(6), T0, now=T0)
    batch = engine.claim(T0, 100, worker="dead", lease=LEASE)  # then it was killed:
    for send in batch[:2]:
        engine.mark_sent(send, f"<m{send.action_id}@x>", T0)  # two marked; the third in flight
    # The two who had their only email are finished: the end ends the other four.
    assert engine.end(report.campaign_id, T0 + 2 * LEASE) == 4
    assert statuses(engine) == {"sent": 2, "unconfirmed": 1, "cancelled": 3}
    feed = [e for e in engine.feed() if e.at == T0 + 2 * LEASE]
    assert sum(e.event == "unconfirmed" for e in feed) == 1
    assert "may have been delivered" in next(e.message for e in feed if e.event == "unconfirmed")
    assert sum("dispatcher had stopped before sending it" in e.message for e in feed) == 3


def test_claims_still_leased_at_the_end_are_settled_when_the_lease_runs_out(
    engine: Engine,
) -> None:
    report = engine.enroll(campaign(), people(3), T0, now=T0)
    engine.claim(T0, 100, worker="dead", lease=LEASE)
    engine.end(report.campaign_id, T0 + dt.timedelta(minutes=1))  # the lease still runs
    assert statuses(engine) == {"claimed": 3}
    assert engine.claim(T0 + 2 * LEASE, 100, worker="next") == []  # the sweep settles them
    assert statuses(engine) == {"unconfirmed": 1, "cancelled": 2}
    (unsure,) = engine.unconfirmed()
    engine.resolve(unsure.action_id, True, T0 + 3 * LEASE)  # `cadence settle ID --sent`
    assert statuses(engine) == {"sent": 1, "cancelled": 2}


def test_the_outbox_tells_whether_an_unconfirmed_send_was_delivered(
    engine: Engine, tmp_path: Path
) -> None:
    report = engine.enroll(campaign(), people(2), T0, now=T0)
    sender = Sender("Sam", "sam@example.com")
    outbox = OutboxTransport(tmp_path / "outbox")
    first, _second = engine.claim(T0, 100, worker="dead", lease=LEASE)
    delivered = EmailMessage()
    delivered["Message-ID"] = message_id(engine.message_ids, first, sender.domain)
    outbox.deliver(delivered)  # it reached the outbox; the dispatcher died before the mark
    engine.end(report.campaign_id, T0 + 2 * LEASE)
    assert statuses(engine) == {"unconfirmed": 1, "cancelled": 1}
    Dispatcher(engine, outbox, sender).run_once(T0 + 3 * LEASE)
    assert statuses(engine) == {"sent": 1, "cancelled": 1}
    assert any("found delivered after its dispatcher stopped" in e.message for e in engine.feed())


# ---- an end while a dispatcher works through its batch ------------------------------------------
def test_an_end_stops_a_batch_already_claimed(engine: Engine) -> None:
    report = engine.enroll(campaign(), people(10), T0, now=T0)
    ended = []

    def end_after_the_first(_: EmailMessage) -> None:
        if not ended:
            ended.append(engine.end(report.campaign_id, T0))

    transport = Recorder(end_after_the_first)
    outcome = Dispatcher(engine, transport, Sender(), worker="one").run_once(T0)
    assert len(transport.messages) == 1
    assert (outcome.sent, outcome.cancelled) == (1, 9)
    assert statuses(engine) == {"sent": 1, "cancelled": 9}


def test_a_send_confirmed_with_the_last_mark_is_checked_again_when_that_is_old(
    engine: Engine,
) -> None:
    # Each mark confirms the next send in its transaction; a confirmation
    # older than a second (a slow render, a long pause) is asked again, so a
    # reply meanwhile still stops the send.
    engine.enroll(campaign(), people(3), T0, now=T0)
    clock = [0.0]

    class Slow(Dispatcher):
        def compose(self, send: Any, now: Any, person: Any = None) -> Any:
            if send.person == "p001@example.com":
                clock[0] += 5
                engine.reply(send.person, T0)
            return super().compose(send, now, person)

    transport = Recorder()
    outcome = Slow(engine, transport, Sender(), monotonic=lambda: clock[0]).run_once(T0)
    assert (outcome.sent, outcome.cancelled) == (2, 1)
    assert [str(m["To"]) for m in transport.messages] == ["p000@example.com", "p002@example.com"]


def test_a_mark_that_says_nothing_of_the_next_send_leaves_it_to_be_confirmed(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mark that does not answer for the next send (taken over meanwhile, or
    # a wrapped engine that drops the answer) means "ask again", never "lost".
    engine.enroll(campaign(), people(3), T0, now=T0)
    marked = engine.mark_sent

    def quiet(*args: Any, **kwargs: Any) -> None:
        marked(*args, **kwargs)

    monkeypatch.setattr(engine, "mark_sent", quiet)
    outcome = Dispatcher(engine, Recorder(), Sender()).run_once(T0)
    assert (outcome.sent, outcome.lost) == (3, 0)


def test_a_confirmation_made_before_a_lease_renewal_is_asked_again(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first mark confirms the second send, then the database keeps the
    # dispatcher waiting past its leases and another dispatcher takes the
    # rest over: the renewal finds them gone, and nothing is sent twice.
    engine.enroll(campaign(), people(3), T0, now=T0)
    clock = [0.0]
    taken: list[int] = []
    marked = engine.mark_sent

    def slow_mark(*args: Any, **kwargs: Any) -> Any:
        answer = marked(*args, **kwargs)
        if not taken:
            clock[0] += 16 * 60
            later = T0 + dt.timedelta(seconds=clock[0])
            taken.extend(s.action_id for s in engine.claim(later, 10, worker="other"))
        return answer

    monkeypatch.setattr(engine, "mark_sent", slow_mark)
    transport = Recorder()
    outcome = Dispatcher(engine, transport, Sender(), monotonic=lambda: clock[0]).run_once(T0)
    assert len(taken) == 2 and [str(m["To"]) for m in transport.messages] == ["p000@example.com"]
    assert (outcome.sent, outcome.lost) == (1, 2)


# ---- a busy database ----------------------------------------------------------------------------
def test_a_mark_waits_out_a_busy_database_instead_of_dying(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    engine = Engine(Store.open(str(db), now=T0, busy_timeout=0.05))
    engine.enroll(campaign(), people(1), T0, now=T0)
    holder = sqlite3.connect(db, isolation_level=None)
    waits: list[float] = []

    def take_the_write_lock(_: EmailMessage) -> None:
        holder.execute("BEGIN IMMEDIATE")  # a long enroll, say

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            holder.execute("COMMIT")

    transport = Recorder(take_the_write_lock)
    outcome = Dispatcher(engine, transport, Sender(), sleep=sleep).run_once(T0)
    assert outcome.sent == 1 and len(transport.messages) == 1
    assert waits == [0.1, 0.2, 0.4]
    assert statuses(engine) == {"sent": 1}


# ---- SMTP that goes silent after the message ----------------------------------------------------
class SilentAfterData:
    """Takes the whole message, then never answers."""

    def __init__(self) -> None:
        self.received = 0
        self.never = asyncio.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        await self.never.wait()
        return "250 OK"


def test_a_timeout_after_the_message_is_a_maybe_and_the_retry_keeps_the_message_id(
    engine: Engine,
) -> None:
    engine.enroll(campaign(), people(1), T0, now=T0)
    handler = SilentAfterData()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        transport = SmtpTransport("127.0.0.1", port, timeout=0.3)
        outcome = Dispatcher(engine, transport, Sender()).run_once(T0)
    finally:
        handler.never.set()
        controller.stop()
    assert handler.received == 1 and outcome.retried == 1
    retry = next(e for e in engine.feed() if e.event == "retry")
    assert "did not answer after the message was sent" in retry.message
    assert "may have been delivered" in retry.message


def test_the_smtp_client_waits_ten_minutes_for_the_final_reply() -> None:
    transport = SmtpTransport("127.0.0.1", 25)
    assert (transport.timeout, transport.connect_timeout) == (600.0, 30.0)
    error = DeliveryError("x", permanent=False, maybe_delivered=True)
    assert error.maybe_delivered and not error.permanent


# ---- failed sends queued again ------------------------------------------------------------------
def test_retry_queues_failed_sends_again_and_says_who(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    engine = Engine(Store.open(db, now=T0))
    engine.enroll(campaign(), people(2), T0, now=T0)
    for send in engine.claim(T0, 100, worker="w"):
        engine.mark_failed(send, "550 no such user", T0)
    assert statuses(engine) == {"failed": 2}
    result = CliRunner().invoke(
        cli, ["retry", "--db", db, "--person", "p001@example.com", "--by", "alice",
              "--at", T0.isoformat()],
    )  # fmt: skip
    assert result.exit_code == 0 and "queued 1 failed send again" in result.stderr
    assert statuses(engine) == {"failed": 1, "pending": 1}
    requeued = next(e for e in engine.feed() if e.event == "requeued")
    assert requeued.person == "p001@example.com"
    assert requeued.message == "send `e` queued again by alice (it had failed: 550 no such user)"
    assert [s.person for s in engine.due(T0 + LEASE)] == ["p001@example.com"]


# ---- the outbox after a kill --------------------------------------------------------------------
def test_the_outbox_removes_what_a_killed_dispatcher_left_half_written(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    folder.mkdir()
    (folder / ".abc123.tmp").write_bytes(b"half a mess")
    (folder / "kept.eml").write_bytes(b"whole")
    OutboxTransport(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["kept.eml"]


# ---- concurrent first use -----------------------------------------------------------------------
WORKER = """
import datetime as dt, json, sys
from cadence.compiler import compile_source
from cadence.runtime.engine import Engine
from cadence.runtime.store import Store
url, options, first = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
now = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
engine = Engine(Store.open(url, now=now, **options))
ir = compile_source(sys.argv[4], "c.campaign").ir
people = [{"email": f"p{n}@example.com"} for n in range(first, first + 300)]
print(engine.enroll(ir, people, now, now=now, batch=50).enrolled)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_concurrent_first_use_and_disjoint_enrolls_never_fail(kind: str, tmp_path: Path) -> None:
    import json

    with database(kind, tmp_path) as (url, options):
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, url, json.dumps(options), str(first), SOURCE],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for first in (0, 300, 600)
        ]
        outputs = [worker.communicate(timeout=120) for worker in workers]
        assert [worker.returncode for worker in workers] == [0, 0, 0], outputs
        assert [out.strip() for out, _ in outputs] == ["300", "300", "300"]
        engine = Engine(Store.open(url, now=T0, **options))
        assert statuses(engine) == {"pending": 900}
        engine.close()


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_four_commands_on_a_new_database_at_once_all_work(kind: str, tmp_path: Path) -> None:
    """The first use of a database migrates it; four `cadence tasks` started
    together wait for one another (the migration lock) instead of failing."""
    with database_url(kind, tmp_path) as db:
        commands = [
            subprocess.Popen(
                [sys.executable, "-m", "cadence", "tasks", "--db", db],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for _ in range(4)
        ]  # fmt: skip
        outputs = [command.communicate(timeout=120) for command in commands]
        assert [command.returncode for command in commands] == [0, 0, 0, 0], outputs
        assert all(err == "no open tasks\n" for _, err in outputs), outputs


# ---- SQLite: readers and a dispatcher beside a long enroll --------------------------------------
@pytest.mark.slow
def test_feed_tasks_and_run_work_while_a_long_enroll_runs(tmp_path: Path) -> None:
    db = str(tmp_path / "c.db")
    source = (
        'campaign "NAME" { timezone "UTC"\n'
        '  day 1 { email e { send at 09:00 subject "s" body "b" } call ring { notes "n" } } }\n'
    )
    small, large = tmp_path / "small.campaign", tmp_path / "large.campaign"
    small.write_text(source.replace("NAME", "small"))
    large.write_text(source.replace("NAME", "large"))
    few, many = tmp_path / "few.csv", tmp_path / "many.csv"
    few.write_text("email\n" + "".join(f"f{n}@example.com\n" for n in range(100)))
    many.write_text("email\n" + "".join(f"p{n}@example.com\n" for n in range(100_000)))
    cadence = [sys.executable, "-m", "cadence"]
    first = subprocess.run(
        [*cadence, "enroll", str(small), "--people", str(few), "--start", "2026-01-05T08:00Z",
         "--now", "2026-01-05T08:00Z", "--db", db],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    enroll = subprocess.Popen(
        [*cadence, "enroll", str(large), "--people", str(many), "--start", "2026-01-06T08:00Z",
         "--now", "2026-01-05T08:00Z", "--db", db],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    commands = [
        ["feed", "--db", db, "--after", "99999999", "--format", "jsonl"],
        ["tasks", "--db", db, "--person", "f1@example.com"],
        ["run", "--db", db, "--outbox", str(tmp_path / "out"), "--now", "2026-01-05T10:00:00Z"],
    ]
    _wait_for_first_batch(db, enroll)
    # (command, exit status, stderr, whether it ran wholly while the enroll wrote)
    results: list[tuple[str, int, str, bool]] = []
    turn = 0
    while enroll.poll() is None:  # one after another, for as long as the enroll runs
        command = commands[turn % len(commands)]
        done = subprocess.run([*cadence, *command], capture_output=True, text=True, timeout=300)
        results.append((command[0], done.returncode, done.stderr[-500:], enroll.poll() is None))
        turn += 1
    for command in commands:  # and each once more after it
        done = subprocess.run([*cadence, *command], capture_output=True, text=True, timeout=300)
        results.append((command[0], done.returncode, done.stderr[-500:], False))
    _, errors = enroll.communicate(timeout=600)
    assert enroll.returncode == 0, errors
    assert "enrolled 100000 people" in errors
    failures = [result for result in results if result[1] != 0]
    assert not failures, failures
    # The commands really ran beside the enroll's writes (how many fit in depends on
    # the machine's load; the first always does: it starts after the first commit).
    assert any(overlapped for *_, overlapped in results), results
    assert len(list((tmp_path / "out").glob("*.eml"))) == 100


def _wait_for_first_batch(db: str, enroll: subprocess.Popen[str]) -> None:
    """Until the long enroll has committed people of its own (a start-up wait
    with a deadline, not a timed test)."""
    import sqlite3
    import time

    deadline = time.monotonic() + 120
    while enroll.poll() is None and time.monotonic() < deadline:
        with sqlite3.connect(db, timeout=30) as connection:
            (count,) = connection.execute("SELECT count(*) FROM enrollments").fetchone()
        if count > 100:  # the small campaign's 100, and some of the large one's
            return
        time.sleep(0.05)
    raise AssertionError("the long enroll never committed a batch")


# ---- a slow server and a throttle never cost a dispatcher its leases ----------------------------
def test_a_slow_delivery_keeps_its_lease(engine: Engine) -> None:
    engine.enroll(campaign(), people(3), T0, now=T0)
    clock = [0.0]
    taken_over: list[int] = []

    def eleven_minutes(_: EmailMessage) -> None:
        clock[0] += 11 * 60  # a server that thinks about each message
        later = T0 + dt.timedelta(seconds=clock[0])
        taken_over.extend(s.action_id for s in engine.claim(later, 10, worker="other"))

    transport = Recorder(eleven_minutes)
    outcome = Dispatcher(engine, transport, Sender(), monotonic=lambda: clock[0]).run_once(T0)
    assert outcome.sent == 3 and taken_over == []


def test_a_throttled_dispatcher_waits_before_it_claims(engine: Engine) -> None:
    from cadence.runtime.mailboxes import Throttle

    engine.enroll(campaign(), people(2), T0, now=T0)
    clock = [0.0]
    claims_while_waiting: list[int] = []

    def sleep(seconds: float) -> None:
        clock[0] += seconds
        with engine.store.read() as connection:
            claimed = connection.execute(
                select(func.count()).where(actions.c.status == "claimed")
            ).scalar_one()
        claims_while_waiting.append(claimed)

    throttle = Throttle(1, 3600, clock=lambda: clock[0], sleep=sleep)
    dispatcher = Dispatcher(engine, Recorder(), Sender(), throttle=throttle,
                            monotonic=lambda: clock[0])  # fmt: skip
    assert dispatcher.run_once(T0).sent == 2
    assert claims_while_waiting == [0]  # the hour's wait came before the second claim
