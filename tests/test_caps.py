"""Daily caps of the sender's mailbox hold across every dispatcher (they live
in the database), and what does not fit rolls to the next day, said in the feed."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from cadence.compiler import compile_source
from cadence.runtime.caps import DailyCap, rolled, usage
from cadence.runtime.delivery import OutboxTransport
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.engine import Engine
from cadence.runtime.mailboxes import Sender
from cadence.runtime.schema import actions
from cadence.runtime.store import Store
from tests.engine_db import database

T0 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
SOURCE = 'campaign "c" { timezone "UTC" day 1 { email e { send at 09:00 subject "s" body "b" } } }'


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with database(request.param, tmp_path) as (url, options):
        engine = Engine(Store.open(url, now=T0, **options))
        ir = compile_source(SOURCE, "c.campaign").ir
        assert ir is not None
        engine.enroll(ir, [{"email": f"p{n:03}@example.com"} for n in range(30)], T0, now=T0)
        yield engine
        engine.close()


def sent_count(engine: Engine) -> int:
    with engine.store.read() as connection:
        return int(
            connection.execute(select(func.count()).where(actions.c.status == "sent")).scalar_one()
        )


def test_a_cap_rolls_the_rest_to_the_next_day(engine: Engine, tmp_path: Path) -> None:
    cap = DailyCap("sam@example.com", 12)
    outbox = OutboxTransport(tmp_path / "out")
    sender = Sender(email="sam@example.com")
    dispatcher = Dispatcher(engine, outbox, sender, daily_cap=cap, batch=5)
    report = dispatcher.run_once(T0 + dt.timedelta(hours=2))
    assert report.sent == 12 and sent_count(engine) == 12
    rolled_entries = [e for e in engine.feed() if e.event == "rolled"]
    assert len(rolled_entries) == 18
    assert rolled_entries[0].message.endswith(
        "reached: `e` moved to 2026-12-08 09:00Z; the rest moves 1 day(s)"
    )
    assert dispatcher.run_once(T0 + dt.timedelta(hours=5)).sent == 0  # still today
    assert dispatcher.run_once(T0 + dt.timedelta(days=1, hours=2)).sent == 12  # tomorrow
    assert dispatcher.run_once(T0 + dt.timedelta(days=2, hours=2)).sent == 6
    with engine.store.read() as connection:
        assert usage(connection, "SAM@example.com", dt.date(2026, 12, 7)) == 12


def test_the_day_begins_where_the_mailbox_lives() -> None:
    cap = DailyCap("x@y.z", 1, ZoneInfo("America/New_York"))
    late = dt.datetime(2026, 12, 8, 3, 0, tzinfo=dt.UTC)  # still the 7th in New York
    assert cap.day(late) == dt.date(2026, 12, 7)
    assert cap.next_day(late) == dt.datetime(2026, 12, 8, 5, 0, tzinfo=dt.UTC)
    nine = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
    assert rolled(nine, dt.datetime(2026, 12, 8, 5, 0, tzinfo=dt.UTC)) == nine + dt.timedelta(7)


WORKER = """
import datetime as dt, json, pathlib, sys, time
from cadence.runtime.caps import DailyCap
from cadence.runtime.delivery import OutboxTransport
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.mailboxes import Sender
from cadence.runtime.engine import Engine
from cadence.runtime.store import Store
url, options, name, folder = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
now = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
engine = Engine(Store.open(url, now=now, **options))
pathlib.Path(folder, f"ready-{name}").touch()
deadline = time.monotonic() + 60
while len(list(pathlib.Path(folder).glob("ready-*"))) < 4 and time.monotonic() < deadline:
    time.sleep(0.005)
dispatcher = Dispatcher(engine, OutboxTransport(pathlib.Path(folder, "out")),
                        Sender(email="sam@example.com"), worker=name, batch=7,
                        daily_cap=DailyCap("sam@example.com", 50))
print(dispatcher.run_once(now).sent)
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_four_dispatchers_share_one_cap(kind: str, tmp_path: Path) -> None:
    with database(kind, tmp_path) as (url, options):
        engine = Engine(Store.open(url, now=T0, **options))
        ir = compile_source(SOURCE, "c.campaign").ir
        assert ir is not None
        engine.enroll(ir, [{"email": f"p{n:03}@example.com"} for n in range(200)], T0, now=T0)
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, url, json.dumps(options), f"w{n}", str(tmp_path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(4)
        ]
        outputs = [worker.communicate(timeout=240) for worker in workers]
        assert [worker.returncode for worker in workers] == [0, 0, 0, 0], outputs
        sent = [int(out.strip()) for out, _ in outputs]
        assert sum(sent) == 50 and sent_count(engine) == 50  # not 200
        assert len(list((tmp_path / "out").glob("*.eml"))) == 50
        assert sum(1 for e in engine.feed(limit=10_000) if e.event == "rolled") == 150
        engine.close()


def test_run_takes_the_cap_from_its_config(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cadence.cli import cli

    db = str(tmp_path / "c.db")
    campaign = tmp_path / "c.campaign"
    campaign.write_text(SOURCE)
    people = tmp_path / "p.csv"
    people.write_text("email\n" + "".join(f"p{n}@example.com\n" for n in range(5)))
    runner = CliRunner()
    assert runner.invoke(cli, ["enroll", str(campaign), "--people", str(people), "--start",
                               "2026-12-07T08:00Z", "--now", "2026-12-07T08:00Z", "--db", db]
                         ).exit_code == 0  # fmt: skip
    config = tmp_path / "cadence.toml"
    config.write_text('[sender]\nemail = "sam@example.com"\ndaily_cap = 2\n'
                      'cap_timezone = "America/New_York"\n')  # fmt: skip
    args = ["run", "--config", str(config), "--db", db, "--outbox", str(tmp_path / "out")]
    first = runner.invoke(cli, [*args, "--now", "2026-12-07T10:00:00Z"])
    assert first.exit_code == 0 and "sent 2," in first.stderr
    config.write_text('[sender]\ndaily_cap = 2\ncap_timezone = "Mars/Olympus"\n')
    bad = runner.invoke(cli, [*args, "--now", "2026-12-07T15:00:00Z"])
    assert bad.exit_code == 2 and "is not a time zone" in bad.stderr


class Clock:
    """One wall clock for several dispatchers in a test; sleeping moves it."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def test_a_throttle_holds_across_dispatchers(engine: Engine, tmp_path: Path) -> None:
    from cadence.runtime.caps import SharedThrottle

    clock = Clock(T0 + dt.timedelta(hours=2))
    delivered: list[dt.datetime] = []

    class Recorder:
        def deliver(self, message: object) -> None:
            delivered.append(clock.now)

        def close(self) -> None:
            pass

    class Stopped(Exception):
        pass

    def stop(_seconds: float) -> None:  # the first dispatcher goes away when it must wait
        raise Stopped

    throttle = SharedThrottle("sam@example.com", 3, 60)
    sender = Sender(email="sam@example.com")
    one = Dispatcher(engine, Recorder(), sender, worker="one", clock=clock, sleep=stop,
                     shared_throttle=throttle)  # fmt: skip
    two = Dispatcher(engine, Recorder(), sender, worker="two", clock=clock, sleep=clock.sleep,
                     shared_throttle=throttle)  # fmt: skip
    with pytest.raises(Stopped):
        one.run_once(T0 + dt.timedelta(hours=2))
    assert len(delivered) == 3  # the minute's three places
    second = two.run_once(T0 + dt.timedelta(hours=2))  # must wait: the window counts one's
    assert second.sent == 27 and delivered[3] >= delivered[0] + dt.timedelta(seconds=60)
    for sent in delivered:  # never more than 3 in any minute, between them
        window = [t for t in delivered if sent <= t < sent + dt.timedelta(seconds=60)]
        assert len(window) <= 3
    assert clock.now - (T0 + dt.timedelta(hours=2)) >= dt.timedelta(minutes=9)


def test_a_send_rolled_over_a_change_of_clocks_keeps_the_persons_time_of_day() -> None:
    where = ZoneInfo("Europe/Stockholm")  # clocks go forward in the night to 29 March 2026
    due = dt.datetime(2026, 3, 28, 17, 15, tzinfo=where).astimezone(dt.UTC)  # 16:15Z
    next_day = dt.datetime(2026, 3, 29, 0, 0, tzinfo=where).astimezone(dt.UTC)
    moved = rolled(due, next_day, where)
    assert moved.astimezone(where).replace(tzinfo=None) == dt.datetime(2026, 3, 29, 17, 15)
    assert rolled(due, next_day) == due + dt.timedelta(days=1)  # without a zone: 24 hours
