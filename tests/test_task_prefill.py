"""An email task's prefilled email is signed as the person's automatic emails
are: the CLI's `tasks`, the application layer (what the API and the compose
view show) and a task email cadence sends for the person all render
`{{ sender.signature }}` with the mailbox that writes to them. On SQLite and
PostgreSQL (the `engine` fixture)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from click.testing import CliRunner

from cadence.cli import cli
from cadence.compiler import compile_source
from cadence.runtime.config import RuntimeConfig
from cadence.runtime.dispatch import Dispatcher
from cadence.runtime.engine import Engine
from cadence.runtime.mailboxes import Sender, Senders
from cadence.service import Application
from tests.test_mailboxes import Recorder

T0 = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC)
SOURCE = """campaign "Signed" {
  timezone "UTC"
  day 1 {
    email personal {
      send task
      subject "For {{ first_name }}"
      body "Hi {{ first_name }},\\n\\nA note.\\n\\n{{ sender.signature }}"
    }
  }
}"""
CONFIG = {
    "mailboxes": {
        "sam": {"email": "sam@example.com", "name": "Sam", "signature": "-- Sam, Acme"},
        "kim": {"email": "kim@example.com", "name": "Kim", "signature": "-- Kim, Acme"},
    },
    "routing": {"person_field": "owner", "default": "sam"},
}


def enrolled(engine: Engine) -> None:
    ir = compile_source(SOURCE, "signed.campaign").ir
    assert ir is not None
    people = [{"email": "ada@example.com", "first_name": "Ada"},
              {"email": "bo@example.com", "first_name": "Bo", "owner": "kim"}]  # fmt: skip
    engine.enroll(ir, people, T0, now=T0)


def test_the_prefilled_email_is_signed_by_the_persons_mailbox(engine: Engine) -> None:
    enrolled(engine)
    senders = Senders.from_config(RuntimeConfig.model_validate(CONFIG))
    views = {v.person: v for v in Application(engine, lambda: T0, senders=senders).tasks()}
    assert views["ada@example.com"].body == "Hi Ada,\n\nA note.\n\n-- Sam, Acme"
    assert views["bo@example.com"].body == "Hi Bo,\n\nA note.\n\n-- Kim, Acme"


def test_an_email_task_cadence_sends_carries_the_signature(engine: Engine) -> None:
    enrolled(engine)
    config = RuntimeConfig.model_validate(CONFIG)
    application = Application(engine, lambda: T0, senders=Senders.from_config(config))
    ada = next(v for v in application.tasks() if v.person == "ada@example.com")
    application.schedule_task(ada.id)  # as prefilled, now
    outbox = Recorder()
    Dispatcher(engine, outbox, Sender("Sam", "sam@example.com", "-- Sam, Acme")).run_once(T0)
    (sent,) = outbox.messages
    assert sent.get_content().rstrip("\n").endswith("-- Sam, Acme")


def test_tasks_on_the_command_line_read_the_config(tmp_path: Path) -> None:
    (tmp_path / "signed.campaign").write_text(SOURCE)
    (tmp_path / "people.csv").write_text("email,first_name\nada@example.com,Ada\n")
    config = tmp_path / "cadence.toml"
    config.write_text('[sender]\nemail = "sam@example.com"\nsignature = "-- Sam"\n')
    db = str(tmp_path / "c.db")
    runner = CliRunner()
    enroll = ["enroll", str(tmp_path / "signed.campaign"), "--people", str(tmp_path / "people.csv")]
    when = ["--start", "2026-12-07T09:00Z", "--now", "2026-12-07T08:00Z"]
    assert runner.invoke(cli, [*enroll, *when, "--db", db]).exit_code == 0
    listed = runner.invoke(cli, ["tasks", "--db", db, "--config", str(config), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    (task,) = json.loads(listed.stdout)
    assert task["body"].endswith("-- Sam")
