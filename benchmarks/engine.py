"""Engine speed: enroll 50,000 people in a 6-step campaign into SQLite, then
dispatch every due send to a local SMTP server (aiosmtpd on loopback).

Goals (issue 5): enroll >= 20k contact-steps/s into SQLite; dispatch limited
by SMTP, not by the store (the store's share of the time is reported).
Issue 9: dispatch with a daily cap kept in the database >= 80% of without.
Issue 10: migrate every active person to a new version >= 10,000 people/s.
Issue 11: enroll within 4x of inserting the same rows with sqlite3 alone.
Run: ``python benchmarks/engine.py [--people 50000] [--sends 5000] [--db URL]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

CAMPAIGN = """campaign "Engine benchmark" {
  timezone "Europe/Stockholm"
  requires first_name, company
  day 1 {
    email intro { send choose subject "Hi {{ first_name }}" body "About {{ company }}" }
  }
  day 3 {
    email bump { send with previous follow up body "Bumping this, {{ first_name }}." }
    call ring { notes "Call {{ first_name }}" }
    inmail connect { message "Hi {{ first_name }}" }
  }
  day 5 { email idea { send at 09:30 subject "An idea" body "For {{ company }}" } }
  day 8 { email breakup { send at 14:00 subject "Closing the loop" body "Thanks" } }
}
"""


class Sink:
    """An SMTP handler that accepts everything and keeps a count."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


def insert_floor(enrolled: Path, empty: Path, now: dt.datetime) -> float:
    """Seconds to insert the rows an enroll wrote (enrollments, actions, feed)
    into an empty database of the same schema with sqlite3 alone: one
    executemany a table, one transaction."""
    import sqlite3

    from cadence.runtime.engine import Engine

    Engine.open(str(empty), now=now).close()  # the schema, and the campaign row
    source = sqlite3.connect(enrolled)
    tables = {
        name: source.execute(f"SELECT * FROM {name} ORDER BY id").fetchall()
        for name in ("enrollments", "actions", "feed")
    }
    campaign = source.execute("SELECT * FROM campaigns").fetchall()
    target = sqlite3.connect(empty)
    target.executemany(
        f"INSERT INTO campaigns VALUES ({','.join('?' * len(campaign[0]))})", campaign
    )
    target.commit()
    began = time.perf_counter()
    with target:
        for name, rows in tables.items():
            marks = ",".join("?" * len(rows[0]))
            target.executemany(f"INSERT INTO {name} VALUES ({marks})", rows)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", type=int, default=50_000)
    parser.add_argument("--sends", type=int, default=5_000, help="how many to dispatch")
    parser.add_argument("--db", help="database (default: a new SQLite file)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cadence-engine-bench-"))
    os.environ.setdefault("CADENCE_CACHE_DIR", str(folder / "cache"))

    from aiosmtpd.controller import Controller

    from cadence.compiler import compile_source
    from cadence.runtime.dispatch import Dispatcher
    from cadence.runtime.engine import Engine
    from cadence.runtime.mailboxes import Sender
    from cadence.runtime.smtp import SmtpTransport

    ir = compile_source(CAMPAIGN, "bench.campaign").ir
    assert ir is not None
    start = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    engine = Engine.open(args.db or str(folder / "bench.db"), now=start)
    people = (
        {"email": f"p{n}@example.com", "first_name": f"P{n}", "company": "Acme"}
        for n in range(args.people)
    )
    began = time.perf_counter()
    report = engine.enroll(ir, people, start, now=start)
    took = time.perf_counter() - began
    print(
        f"enroll           {report.actions / took:10,.0f} contact-steps/s ({report.enrolled:,} "
        f"people, {report.actions:,} actions in {took:.2f} s; goal >= 20,000)"
    )
    if args.db is None:
        floor = insert_floor(folder / "bench.db", folder / "floor.db", start)
        print(
            f"enroll floor     {report.actions / floor:10,.0f} contact-steps/s (the same rows, "
            f"one executemany a table; enroll is {took / floor:.1f}x the floor; goal <= 4x)"
        )

    # Issue 10: move everyone still active to a new version of the campaign.
    from cadence.runtime.moving import move_people

    edited = compile_source(CAMPAIGN.replace("09:30", "10:15"), "bench.campaign").ir
    assert edited is not None
    engine.enroll(edited, [], start, now=start)
    began = time.perf_counter()
    moved = move_people(engine, ir.name, 2, start)
    took = time.perf_counter() - began
    assert not moved.refused, moved.refused[:3]
    print(
        f"migrate          {len(moved.moves) / took:10,.0f} people/s ({len(moved.moves):,} "
        f"people to version 2 in {took:.2f} s; goal >= 10,000)"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    transport = SmtpTransport("127.0.0.1", port)
    timed = {"store": 0.0, "smtp": 0.0}
    target = {"sends": args.sends}

    class Timed:
        def deliver(self, message: Any) -> None:
            t = time.perf_counter()
            transport.deliver(message)
            timed["smtp"] += time.perf_counter() - t

        def close(self) -> None:
            transport.close()

    dispatcher = Dispatcher(engine, Timed(), Sender("Bench", "bench@example.com"), batch=200)
    original_claim, original_mark = engine.claim_for, engine.mark_sent
    original_confirm = engine.confirm

    def confirm(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        found = original_confirm(*a, **k)
        timed["store"] += time.perf_counter() - t
        return found

    def claim(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        found = original_claim(*a, **k)
        timed["store"] += time.perf_counter() - t
        return dataclasses.replace(found, sends=found.sends[: max(0, target["sends"] - sink.count)])

    def mark_sent(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        answer = original_mark(*a, **k)
        timed["store"] += time.perf_counter() - t
        return answer

    original_history = dispatcher._people

    def history(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        found = original_history(*a, **k)
        timed["store"] += time.perf_counter() - t
        return found

    engine.claim_for, engine.mark_sent = claim, mark_sent  # type: ignore[method-assign]
    engine.confirm = confirm  # type: ignore[method-assign]
    dispatcher._people = history  # type: ignore[method-assign]
    began = time.perf_counter()
    result = dispatcher.run_once(start)
    took = time.perf_counter() - began
    # The same again with a daily cap kept in the database (issue 9: within 80%).
    from cadence.runtime.caps import DailyCap

    target["sends"] += args.sends
    capped = Dispatcher(
        engine, Timed(), Sender("Bench", "bench@example.com"), batch=200,
        daily_cap=DailyCap("bench@example.com", 10_000_000),
    )  # fmt: skip
    capped._people = history  # type: ignore[method-assign]
    first_phase = dict(timed)
    began = time.perf_counter()
    capped_result = capped.run_once(start)
    capped_took = time.perf_counter() - began
    timed.update(first_phase)  # the shares below are of the uncapped run
    controller.stop()
    other = took - timed["store"] - timed["smtp"]
    print(
        f"dispatch         {result.sent / took:10,.0f} sends/s ({result.sent:,} sends in "
        f"{took:.2f} s)"
    )
    print(f"  time in SMTP   {timed['smtp'] / took:10.0%}")
    print(
        f"  time in store  {timed['store'] / took:10.0%} (claim, read the history, check "
        "the person is still active, mark)"
    )
    print(f"  rendering etc. {other / took:10.0%} (templates, building the MIME message)")
    rate, capped_rate = result.sent / took, capped_result.sent / capped_took
    print(
        f"dispatch, capped {capped_rate:10,.0f} sends/s with a daily cap in the database "
        f"({capped_rate / rate:.0%} of uncapped in this run; goal >= 80%)"
    )
    engine.close()


if __name__ == "__main__":
    main()
