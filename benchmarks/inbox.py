"""Inbox speed: classify and act on 10,000 mixed messages from a Maildir
(replies, out-of-office replies, bounces, unsubscribe requests, newsletters),
store updates included, on SQLite.

Goal (issue 9): >= 1,000 messages/s.
Run: ``python benchmarks/inbox.py [--messages 10000] [--db URL]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import mailbox
import os
import tempfile
import time
from pathlib import Path

CAMPAIGN = """campaign "Inbox benchmark" {
  timezone "UTC"
  day 1 { email intro { send choose subject "Hi {{ first_name }}" body "Hello" } }
  day 3 { email bump { send with previous follow up body "Bumping" } }
}
"""
T0 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)


def message(kind: str, n: int, ours: str) -> bytes:
    """Message ``n`` of ``kind``, about the send whose Message-ID is ``ours``."""
    person = f"p{n}@example.com"
    date = "Mon, 07 Dec 2026 10:00:00 +0000"
    if kind == "reply":
        return (
            f"From: P {n} <{person}>\nTo: sam@example.com\nSubject: Re: Hi\nDate: {date}\n"
            f"Message-ID: <r{n}@mail.example.com>\nIn-Reply-To: {ours}\nReferences: {ours}\n"
            f"Content-Type: text/plain\n\nSounds good.\n\nOn Mon, Sam wrote:\n> Hello\n"
        ).encode()
    if kind == "ooo":
        return (
            f"From: {person}\nTo: sam@example.com\nSubject: Automatic reply: Hi\nDate: {date}\n"
            f"Message-ID: <o{n}@mail.example.com>\nIn-Reply-To: {ours}\n"
            "Auto-Submitted: auto-replied\nContent-Type: text/plain\n\n"
            "I am out of the office and will be back on December 14, 2026.\n"
        ).encode()
    if kind == "bounce":
        return (
            f"From: MAILER-DAEMON@mx.example.org\nTo: sam@example.com\nDate: {date}\n"
            "Subject: Undelivered Mail Returned to Sender\n"
            f"Message-ID: <b{n}@mx.example.org>\nMIME-Version: 1.0\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
            "--B\nContent-Type: text/plain\n\nNot delivered.\n\n"
            "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
            f"Final-Recipient: rfc822; {person}\nAction: failed\nStatus: 5.1.1\n\n"
            f"--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: {ours}\n\n--B--\n"
        ).encode()
    if kind == "unsubscribe":
        return (
            f"From: {person}\nTo: sam@example.com\nSubject: Re: Hi\nDate: {date}\n"
            f"Message-ID: <u{n}@mail.example.com>\nIn-Reply-To: {ours}\n"
            "Content-Type: text/plain\n\nPlease remove me from your list.\n"
        ).encode()
    return (
        f"From: news@list.example.org\nTo: sam@example.com\nSubject: News {n}\n"
        f"Date: {date}\nMessage-ID: <n{n}@list.example.org>\nList-Id: <news.example.org>\n"
        "Content-Type: text/plain\n\nThis week's news. Unsubscribe any time.\n"
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--db", help="database (default: a new SQLite file)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="cadence-inbox-bench-"))
    os.environ.setdefault("CADENCE_CACHE_DIR", str(folder / "cache"))

    from sqlalchemy import select

    from cadence.compiler import compile_source
    from cadence.runtime.engine import Engine
    from cadence.runtime.inbox import Inbox, InboxSettings
    from cadence.runtime.mailsources import maildir_messages
    from cadence.runtime.schema import actions, enrollments

    ir = compile_source(CAMPAIGN, "bench.campaign").ir
    assert ir is not None
    engine = Engine.open(args.db or str(folder / "bench.db"), now=T0)
    people = [{"email": f"p{n}@example.com", "first_name": f"P{n}"} for n in range(args.messages)]
    key = engine.enroll(ir, people, T0, now=T0).campaign_id
    with engine.store.read() as connection:
        intro = dict(
            connection.execute(
                select(enrollments.c.person, actions.c.id)
                .join(actions, actions.c.enrollment_id == enrollments.c.id)
                .where(actions.c.step == "intro")
            ).all()
        )
    kinds = ["reply", "ooo", "bounce", "unsubscribe", "news"]
    box = mailbox.Maildir(folder / "Maildir", create=True)
    signer = getattr(engine, "message_ids", None)  # a cadence before signed ids had none
    for n in range(args.messages):
        person, action = f"p{n}@example.com", intro[f"p{n}@example.com"]
        ours = (
            signer.make(key, action, person, "example.com")
            if signer is not None
            else f"<cadence.{key[:12]}.{action}@example.com>"
        )
        box.add(message(kinds[n % len(kinds)], n, ours))

    reader = Inbox(engine, InboxSettings(frozenset({"unsubscribe@example.com"})))
    counts: dict[str, int] = {}
    idle = 0  # outcomes that changed nothing: the newsletters, and nothing else
    began = time.perf_counter()
    for done in reader.process_all(
        maildir_messages(folder / "Maildir"), T0 + dt.timedelta(hours=3)
    ):
        assert not isinstance(done, tuple), done
        counts[done.kind] = counts.get(done.kind, 0) + 1
        idle += done.outcome.startswith(("ignored", "not acted on"))
    took = time.perf_counter() - began
    print(
        f"inbox            {args.messages / took:10,.0f} messages/s ({args.messages:,} in "
        f"{took:.2f} s, store updates included; goal >= 1,000)"
    )
    print(f"  classified as  {', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}")
    print(f"  changed nothing {idle:,} (the newsletters: {counts.get('ignore', 0):,})")
    engine.close()


if __name__ == "__main__":
    main()
