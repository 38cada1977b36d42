"""Dispatch speed, and how it grows with dispatchers.

1. To an outbox on SQLite (in this process), beside its floor: composing the
   same messages with ``email.message`` and writing them as files, one fsync
   per 100. Goal (issue 11): within 2x of the floor.
2. On PostgreSQL to an SMTP sink in another process, with one and with two
   ``cadence run --once`` processes sharing the database: sends per second,
   wall clock, process start included. Goal (issue 11): >= 1,000 sends/s with
   two dispatchers.

Run: ``python benchmarks/dispatch.py [--sends 3000] [--postgres URL]``
(the PostgreSQL part is skipped when the database cannot be reached).
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import email.policy
import hashlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

CAMPAIGN = """campaign "Dispatch benchmark" {
  timezone "Europe/Stockholm"
  requires first_name, company
  day 1 {
    email intro {
      send choose
      subject "Quick question, {{ first_name }}"
      body \"\"\"
        Hi {{ first_name }},

        How does {{ company }} ship releases today?
        \"\"\"
    }
  }
}
"""
START = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
SIGNED = re.compile(rb"\.[a-z2-7]{20}@")  # a Message-ID's token (runtime/message_ids.py)
EXPECTED_OUTBOX = "277ad8adbbe885bc5cce111a1a2a050fe1ed9f3e61d697dc0df05660d7d2e8f2"
SINK = """import sys
from aiosmtpd.controller import Controller

class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"""


def people(count: int) -> list[dict[str, str]]:
    return [
        {"email": f"p{n}@example.com", "first_name": f"P{n}", "company": f"Company {n % 97}"}
        for n in range(count)
    ]


def outbox_run(folder: Path, sends: int) -> float:
    """Seconds for a dispatcher to deliver ``sends`` due emails to an outbox."""
    from cadence.compiler import compile_source
    from cadence.runtime.delivery import OutboxTransport
    from cadence.runtime.dispatch import Dispatcher
    from cadence.runtime.engine import Engine
    from cadence.runtime.mailboxes import Sender

    ir = compile_source(CAMPAIGN, "bench.campaign").ir
    assert ir is not None
    engine = Engine.open(str(folder / "outbox.db"), now=START)
    engine.enroll(ir, people(sends), START, now=START)
    transport = OutboxTransport(folder / "outbox")
    dispatcher = Dispatcher(engine, transport, Sender("Bench", "bench@example.com"), batch=200)
    began = time.perf_counter()
    report = dispatcher.run_once(START)
    took = time.perf_counter() - began
    engine.close()
    assert report.sent == sends, report
    return took


def floor(outbox: Path, target: Path) -> float:
    """Seconds to compose the outbox's messages again with email.message and
    write them as files, one fsync per 100 (their headers and bodies read
    beforehand, outside the time)."""
    messages = []
    for path in sorted(outbox.glob("*.eml")):
        parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        headers = [
            (name, str(value))
            for name, value in parsed.items()
            if name.lower() not in ("content-type", "content-transfer-encoding", "mime-version")
        ]
        body = parsed.get_body()
        assert body is not None
        messages.append((path.name, headers, body.get_content()))
    target.mkdir()
    began = time.perf_counter()
    for number, (name, headers, text) in enumerate(messages, start=1):
        message = EmailMessage()
        for header, value in headers:
            message[header] = value
        message.set_content(text)
        with open(target / name, "wb") as out:
            out.write(message.as_bytes())
            if number % 100 == 0:
                out.flush()
                os.fsync(out.fileno())
    return time.perf_counter() - began


def postgres_run(url: str, sends: int, dispatchers: int, folder: Path) -> float | None:
    """Wall seconds for ``dispatchers`` processes to deliver ``sends`` emails
    to an SMTP sink, on a fresh PostgreSQL schema; ``None`` without PostgreSQL."""
    try:
        import psycopg

        admin = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except Exception:
        return None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    db = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        from cadence.compiler import compile_source
        from cadence.runtime.engine import Engine

        ir = compile_source(CAMPAIGN, "bench.campaign").ir
        assert ir is not None
        engine = Engine.open(db, now=START)
        engine.enroll(ir, people(sends), START, now=START)
        engine.close()
        command = [
            sys.executable, "-m", "cadence", "run", "--db", db, "--smtp", f"127.0.0.1:{port}",
            "--now", "2026-03-02T08:00:00Z", "--sender-email", "bench@example.com",
        ]  # fmt: skip
        began = time.perf_counter()
        running = [
            subprocess.Popen([*command, "--worker", f"bench{n}"], cwd=folder,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for n in range(dispatchers)
        ]  # fmt: skip
        for process in running:
            _, err = process.communicate(timeout=600)
            assert process.returncode == 0, err
        took = time.perf_counter() - began
        sent = admin.execute(
            f"SELECT count(*) FROM {schema}.actions WHERE status = 'sent'"
        ).fetchone()
        assert sent is not None and sent[0] == sends, (sent, sends)
        return took
    finally:
        assert sink.stdin is not None
        sink.stdin.close()
        sink.wait(timeout=30)
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sends", type=int, default=3000)
    parser.add_argument("--postgres", default="postgresql://root@127.0.0.1:5432/test")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cadence-dispatch-bench-"))
    os.environ.setdefault("CADENCE_CACHE_DIR", str(folder / "cache"))

    took = outbox_run(folder, args.sends)
    if args.sends == 3000:  # the default run: its messages, as every version so far wrote them
        # Message-IDs carry a token signed with the store's own random secret:
        # read without it, the messages are what every version wrote.
        digest = hashlib.sha256()
        unsigned = lambda data: SIGNED.sub(b"@", data)  # noqa: E731
        for path in sorted(
            (folder / "outbox").glob("*.eml"), key=lambda p: unsigned(p.name.encode())
        ):
            digest.update(unsigned(path.read_bytes()))
        assert digest.hexdigest() == EXPECTED_OUTBOX, "the messages changed"
    floor_took = floor(folder / "outbox", folder / "floor")
    print(f"outbox, SQLite   {args.sends / took:10,.0f} sends/s ({args.sends:,} in {took:.2f} s)")
    print(
        f"floor            {args.sends / floor_took:10,.0f} messages/s (email.message, a file "
        f"each, fsync per 100; dispatch is {took / floor_took:.1f}x the floor; goal <= 2x)"
    )
    rates = []
    for dispatchers in (1, 2):
        wall = postgres_run(args.postgres, args.sends, dispatchers, folder)
        if wall is None:
            print("PostgreSQL       not reachable: skipped")
            return
        rates.append(args.sends / wall)
        print(
            f"PostgreSQL, SMTP {rates[-1]:10,.0f} sends/s with {dispatchers} dispatcher(s) "
            f"({args.sends:,} in {wall:.2f} s, wall, process start included)"
        )
    print(
        f"scale-out        {rates[1] / rates[0]:10.2f}x from one dispatcher to two "
        f"({os.cpu_count()} CPU cores here; goal >= 1,000 sends/s with two)"
    )


if __name__ == "__main__":
    main()
