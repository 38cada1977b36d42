"""Ten days of a campaign with an injected clock: every event of docs/semantics.md §7."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

from cadence.compiler import compile_source
from cadence.runtime.delivery import OutboxTransport
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.engine import Engine
from cadence.runtime.mailboxes import Sender
from cadence.runtime.store import Store

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)  # Monday, 09:00 in Stockholm
HOUR = dt.timedelta(hours=1)
SOURCE = """campaign "Simulation" {
  timezone "Europe/Stockholm"
  on reply end success
  on bounce remove
  requires first_name
  day 1 {
    email intro { send choose subject "Hi {{ first_name }}" body "Hello {{ first_name }}" }
    call ring { notes "Call {{ first_name }}" }
  }
  day 2 {
    email note { send task subject "A note" body "Written from the template" }
  }
  day 3 {
    email bump { send with previous follow up body "Following up" }
  }
  day 6 {
    email later { send at 10:00 subject "Later" body "Later, {{ first_name }}" }
  }
  day 12 {
    email last { send at 10:00 subject "Last" body "Last one" }
  }
}
"""
PEOPLE = ["ada", "bo", "cy", "di", "ed"]


def test_ten_days(tmp_path: Path) -> None:
    engine = Engine(Store.open(str(tmp_path / "sim.db"), now=T0))
    ir = compile_source(SOURCE, "sim.campaign").ir
    assert ir is not None
    people = [{"email": f"{name}@example.com", "first_name": name.title()} for name in PEOPLE]
    key = engine.enroll(ir, people, T0, now=T0).campaign_id
    outbox = OutboxTransport(tmp_path / "outbox")
    dispatcher = Dispatcher(engine, outbox, Sender("Sam", "sam@example.com"))

    def task(person: str, step: str) -> int:
        return next(
            t.id for t in engine.open_tasks(person=f"{person}@example.com") if t.step == step
        )

    script = {
        2: lambda now: engine.complete_task(task("di", "ring"), now),
        3: lambda now: engine.skip_task(task("ed", "ring"), now),
        4: lambda now: engine.complete_task(task("ada", "ring"), now),
        26: lambda now: engine.bounce("bo@example.com", now),
        27: lambda now: engine.send_task(task("di", "note"), "Edited subject", "Edited by Di", now),
        28: lambda now: engine.skip_task(task("ed", "note"), now),
        50: lambda now: engine.reply("ada@example.com", now),
        100: lambda now: engine.remove("cy@example.com", now),
        230: lambda now: engine.end(key, now),
    }
    for hour in range(10 * 24):
        now = T0 + hour * HOUR
        if hour in script:
            script[hour](now)
        dispatcher.run_once(now)

    entries = engine.feed(limit=10_000)
    events = {entry.event for entry in entries}
    assert {
        "enrolled",
        "task_opened",
        "sent",
        "task_closed",
        "reply",
        "bounce",
        "cancelled",
        "ended",
    } <= events
    messages = [(entry.person, entry.message) for entry in entries]
    assert ("ada@example.com", "enrollment ended: replied (success)") in messages
    assert ("bo@example.com", "enrollment ended: bounced") in messages
    assert ("cy@example.com", "enrollment ended: removed") in messages
    assert ("di@example.com", "send `last` cancelled: campaign has ended") in messages
    assert (
        "ed@example.com",
        "sent `bump`: sent as a new thread: `note` was never sent",
    ) in messages

    mail = {}
    for path in (tmp_path / "outbox").glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        mail[(str(message["To"]), str(message["Subject"]))] = message
    # The thread keeps the subject Di sent; the quote comes from the template.
    di_bump = mail[("di@example.com", "Re: Edited subject")]
    body = di_bump.get_content()
    # Quoted from the template, never from Di's edits (semantics §5); at the time Di
    # sent it (semantics §4).
    assert "> Written from the template" in body and "Edited by Di" not in body
    assert di_bump["In-Reply-To"] is None  # the task email was sent by hand, not by us
    ed_bump = mail[("ed@example.com", "A note")]  # a new thread: no "Re:", no quote
    assert ed_bump["In-Reply-To"] is None and "wrote:" not in ed_bump.get_content()
    assert ("di@example.com", "Later") in mail and ("di@example.com", "Last") not in mail
    assert not any(to == "bo@example.com" and subject != "Hi Bo" for to, subject in mail)
    engine.close()
