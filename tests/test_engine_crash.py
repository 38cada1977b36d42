"""A dispatcher killed with SIGKILL mid-batch, then restarted: every send
delivered, the one in flight at most once more, with the same Message-ID."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from cadence.compiler import compile_source
from cadence.runtime.engine import Engine
from cadence.runtime.schema import actions
from cadence.runtime.store import Store
from tests.test_dispatch import free_port

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)


class KillingInbox:
    """Accepts mail; on the Nth message kills the dispatcher before answering,
    so it dies after the server has the message and before it could mark it."""

    def __init__(self, kill_at: int) -> None:
        self.kill_at, self.pid = kill_at, 0
        self.ids: list[str] = []
        self.killed = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.ids.append(str(message["Message-ID"]))
        if len(self.ids) == self.kill_at and self.pid:
            os.kill(self.pid, signal.SIGKILL)
            self.killed.set()
        return "250 OK"


def enrolled_database(tmp_path: Path) -> str:
    """40 people due at T0 in a new SQLite database."""
    db = str(tmp_path / "cadence.db")
    ir = compile_source(
        'campaign "crash" { day 1 { email e { send choose subject "s" body "b" } } }',
        "crash.campaign",
    ).ir
    assert ir is not None
    engine = Engine(Store.open(db, now=T0))
    engine.enroll(ir, [{"email": f"p{n}@example.com"} for n in range(40)], T0, now=T0)
    engine.close()
    return db


def run_command(db: str, port: int, worker: str) -> list[str]:
    return [sys.executable, "-m", "cadence", "run", "--db", db, "--smtp", f"127.0.0.1:{port}",
            "--worker", worker, "--sender-email", "sam@example.com"]  # fmt: skip


def kill_mid_batch(db: str, inbox: KillingInbox, port: int) -> None:
    """A dispatcher killed by the SMTP server as it accepts the 15th message."""
    first = subprocess.Popen(
        [*run_command(db, port, "first"), "--now", T0.isoformat()], stderr=subprocess.PIPE
    )
    inbox.pid = first.pid
    first.wait(timeout=120)
    assert inbox.killed.is_set() and first.returncode == -signal.SIGKILL


def status_counts(db: str) -> dict[str, int]:
    engine = Engine(Store.open(db, now=T0))
    with engine.store.read() as connection:
        found = dict(
            connection.execute(
                select(actions.c.status, func.count()).group_by(actions.c.status)
            ).all()
        )
    engine.close()
    return found  # type: ignore[return-value]


@pytest.mark.slow
def test_kill_9_mid_batch_then_restart_doubles_nothing_but_the_send_in_flight(
    tmp_path: Path,
) -> None:
    db = enrolled_database(tmp_path)
    inbox = KillingInbox(kill_at=15)
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        kill_mid_batch(db, inbox, port)
        # After the lease (15 minutes) another dispatcher takes over what was claimed.
        later = (T0 + dt.timedelta(minutes=16)).isoformat()
        second = subprocess.run(
            [*run_command(db, port, "second"), "--now", later], capture_output=True, timeout=120
        )
        assert second.returncode == 0, second.stderr
    finally:
        controller.stop()
    assert status_counts(db) == {"sent": 40}
    assert len(set(inbox.ids)) == 40  # every send arrived
    assert len(inbox.ids) - len(set(inbox.ids)) <= 1  # only the one in flight came twice


@pytest.mark.slow
def test_kill_9_mid_batch_then_end_settles_every_claim(tmp_path: Path) -> None:
    db = enrolled_database(tmp_path)
    inbox = KillingInbox(kill_at=15)
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        kill_mid_batch(db, inbox, port)
    finally:
        controller.stop()
    after_the_lease = (T0 + dt.timedelta(minutes=16)).isoformat()
    ended = subprocess.run(
        [sys.executable, "-m", "cadence", "end", "crash", "--db", db, "--at", after_the_lease],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ended.returncode == 0, ended.stderr
    # 14 marked; the 15th reached the server (the kill came before the mark): it
    # is the one unconfirmed send; the other 25 were never attempted.
    assert status_counts(db) == {"sent": 14, "unconfirmed": 1, "cancelled": 25}
    engine = Engine(Store.open(db, now=T0))
    with engine.store.read() as connection:
        unconfirmed = connection.execute(
            select(actions.c.id).where(actions.c.status == "unconfirmed")
        ).scalar_one()
    feed = engine.feed(limit=10_000)
    engine.close()
    assert re.fullmatch(rf"<cadence\.[0-9a-f]{{12}}\.{unconfirmed}\.[a-z2-7]{{20}}@example\.com>",
                        inbox.ids[-1])  # fmt: skip
    assert sum(entry.event == "unconfirmed" for entry in feed) == 1
    assert sum(entry.event == "cancelled" for entry in feed) == 25
