"""The engine's commands: enroll, the command center (tasks), the live feed,
events, and the dispatcher (`run`). Registered on the `cadence` group.

Every command takes ``--db`` (default ``./cadence.db``, SQLite; a
``postgresql://`` URL for PostgreSQL). A refused request (unknown task, a
closed task, an unknown person, a database of a newer schema) is one line on
stderr, exit status 2, and nothing changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import click

DEFAULT_DB = "cadence.db"  # as cadence.runtime.store.DEFAULT_DB, without importing SQLAlchemy

F = TypeVar("F", bound=Callable[..., Any])
EXIT_USAGE, EXIT_SKIPPED = 2, 3


def _fail(message: str) -> NoReturn:
    click.echo(f"cadence: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _db_option(function: F) -> F:
    return click.option(
        "--db",
        default=None,
        envvar="CADENCE_DB",
        help="SQLite file, or postgresql://user@host/db for PostgreSQL (else $CADENCE_DB, "
        f"else the config's db, else {DEFAULT_DB}).",
    )(function)


def _at_option(function: F) -> F:
    return click.option(
        "--at",
        "at_text",
        default="now",
        show_default=True,
        help="When it happened (ISO 8601 with offset, or now).",
    )(function)


def _instant(text: str) -> dt.datetime:
    if text.strip().lower() == "now":
        return dt.datetime.now(dt.UTC)
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        _fail(f"{text!r} is not an ISO 8601 time, like 2026-03-02T09:00:00Z")
    if value.tzinfo is None:
        _fail(f"{text!r} has no offset: add Z or +01:00")
    if not 1900 <= value.year <= 9000:
        _fail(f"{text!r}: times lie between the years 1900 and 9000")
    return value


CATCH_UP = 100  # due sends at the start of a pass from which `run` shows a bar


@contextmanager
def _catching_up(
    engine: Any, now: dt.datetime, show: bool, bar: list[Callable[[int], None]]
) -> Iterator[None]:
    """On a terminal, a bar with the total and the time left while ``run``
    works through a backlog (after days down, a big launch); ``bar`` holds
    its advance meanwhile."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    try:
        total = engine.count_due(now) if show else 0
    except (OperationalError, InterfaceError):  # the database away a moment: no bar this pass
        total = 0
    if total <= CATCH_UP:
        yield
        return
    from cadence.progress import progress

    with progress("catching up", total) as advance:
        bar.append(advance)
        yield


@contextmanager
def _engine(db: str | None) -> Iterator[Any]:
    """The engine on ``db`` (``None``: the config's, else the default);
    refusals become one line and exit 2."""
    from sqlalchemy.exc import DataError

    from cadence.runtime.engine import Engine, EngineError
    from cadence.runtime.migrations import SchemaError
    from cadence.runtime.redact import redact
    from cadence.runtime.store import StoreError

    db = db or _config(None).db or DEFAULT_DB
    try:
        engine = Engine.open(db, now=dt.datetime.now(dt.UTC))
    except SchemaError as error:
        _fail(f"{redact(db)}: {error}")
    except StoreError as error:
        _fail(str(error))
    try:
        yield engine
    except EngineError as error:
        _fail(str(error))
    except DataError as error:  # a value the database cannot store (PostgreSQL: a NUL)
        reason = str(error.orig).splitlines()[0] if error.orig else "invalid value"
        _fail(f"the database refused a value: {reason}")
    finally:
        engine.close()


def register(cli: click.Group) -> None:
    for command in (
        enroll, tasks, task, feed, run, reply, bounce, remove, unsubscribe, end, retry, settle,
        suppress, inbox, pause, resume, mailboxes, campaigns, status, migrate, serve, token, user,
        report,
    ):  # fmt: skip
        cli.add_command(command)


@click.command()
@click.argument("file")
@click.option("--people", "people_path", required=True, help="CSV or JSON Lines, or - for stdin.")
@click.option("--start", required=True, help="ISO 8601 (no offset: the campaign's zone) or now.")
@click.option(
    "--at",
    "overrides",
    multiple=True,
    metavar="STEP=HH:MM",
    help="A new send time for a `send at` step.",
)
@click.option(
    "--templates-root",
    type=click.Path(file_okay=False),
    default=None,
    help="The folder template files may come from (default: the campaign file's folder).",
)
@click.option(
    "--catch-up",
    type=click.Choice(["skip", "send"]),
    default=None,
    help="For a start in the past: skip the steps already due, or send them now.",
)
@click.option(
    "--again",
    is_flag=True,
    help="Enroll anew people whose enrollment in this campaign ended (replied, bounced, "
    "removed…) or finished; suppressed addresses stay refused.",
)
@click.option("--now", "now_text", default=None, help="Act as if it were this time (ISO 8601).")
@_db_option
def enroll(
    file: str,
    people_path: str,
    start: str,
    overrides: tuple[str, ...],
    templates_root: str | None,
    catch_up: str | None,
    again: bool,
    now_text: str | None,
    db: str,
) -> None:
    """Enroll PEOPLE in the campaign FILE (.campaign or compiled .json).

    People already in it, or whose enrollment in it ended or finished, are not
    enrolled again (each is listed; --again enrolls the ended and finished).
    Exit status 3 when some rows were skipped; the others are enrolled.
    """
    from cadence.cli import _load_campaign, _run
    from cadence.progress import count_rows, progress
    from cadence.runtime.engine import PastStart
    from cadence.runtime.people import PeopleError, format_of, open_people, read_people
    from cadence.runtime.plan_command import Options

    now = _instant(now_text) if now_text else dt.datetime.now(dt.UTC)
    ir = _load_campaign(_run("text", "auto"), file, templates_root)
    if ir is None:
        sys.exit(1)
    try:
        options = Options.parse(ir, start=start, overrides=overrides, now=now)
    except ValueError as error:
        _fail(str(error))
    with contextlib.ExitStack() as stack:
        try:
            stream = stack.enter_context(open_people(people_path))
        except OSError as error:
            _fail(f"{people_path}: {error.strerror or error}")
        engine = stack.enter_context(_engine(db))
        rows = read_people(stream, None if people_path == "-" else format_of(people_path))
        advance = stack.enter_context(progress("enroll", count_rows(people_path)))
        try:
            report = engine.enroll(
                ir, rows, options.start, options.overrides, now=now,
                catch_up=cast(Any, catch_up), again=again,
                on_batch=lambda done: advance(done.enrolled + done.already + len(done.problems)),
            )  # fmt: skip
            advance(report.enrolled + report.already + len(report.problems))
        except PastStart as error:
            _fail(f"{error}: --catch-up skip, or --catch-up send; nothing was enrolled")
        except PeopleError as error:
            _fail(f"{people_path}: {error}")
        except ValueError as error:
            _fail(str(error))
    label = "<stdin>" if people_path == "-" else people_path
    for problem in report.problems:
        click.echo(f"cadence: {label}:{problem.line}: skipped: {problem.message}", err=True)
    for line in report.zone_warnings:
        click.echo(f"cadence: {label}: warning: {line}", err=True)
    already = f"; {report.already} already enrolled with this start" if report.already else ""
    if report.caught_up:
        done = "skipped" if catch_up == "skip" else "due now"
        already += f"; {report.caught_up} step(s) already due {done}"
    click.echo(
        f"enrolled {report.enrolled} {'person' if report.enrolled == 1 else 'people'} "
        f"({report.actions} actions) in {ir.name!r} version {report.version} "
        f"({report.campaign_id[:12]}){already}",
        err=True,
    )
    sys.exit(EXIT_SKIPPED if report.problems else 0)


@click.command()
@click.argument("file")
@click.option("--people", "people_path", default=None, help="CSV or JSON Lines: plan for them.")
@click.option("--start", default=None, help="With --people: ISO 8601 (no offset: the campaign's "
              "zone) or now.")  # fmt: skip
@click.option("--db", default=None, help="A database: the results so far, per step and variant.")
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="The HTML file."
)
@click.option(
    "--templates-root",
    type=click.Path(file_okay=False),
    default=None,
    help="The folder template files may come from (default: the campaign file's folder).",
)
def report(
    file: str,
    people_path: str | None,
    start: str | None,
    db: str | None,
    output: str,
    templates_root: str | None,
) -> None:
    """One HTML file about the campaign FILE that opens anywhere, offline: its
    timeline; with --people and --start, the sends per day and hour; with
    --db, the results so far per step and variant, and whether variants differ."""
    from cadence.campaign_report import Volume, render_report
    from cadence.cli import _load_campaign, _run
    from cadence.files import write_atomically
    from cadence.runtime.people import PeopleError, format_of, open_people, read_people
    from cadence.runtime.plan_command import Options
    from cadence.runtime.planner import PlanError, plan

    if (people_path is None) != (start is None):
        _fail("--people and --start go together: the plan needs both")
    ir = _load_campaign(_run("text", "auto"), file, templates_root)
    if ir is None:
        sys.exit(1)
    volume, begins, results = None, None, None
    if people_path is not None and start is not None:
        try:
            options = Options.parse(ir, start=start, overrides=())
        except ValueError as error:
            _fail(str(error))
        begins = options.start
        skipped: list[Any] = []
        try:
            with open_people(people_path) as stream:
                rows = read_people(stream, None if people_path == "-" else format_of(people_path))
                volume = Volume().add(plan(ir, rows, options.start, on_problem=skipped.append))
        except OSError as error:
            _fail(f"{people_path}: {error.strerror or error}")
        except (PeopleError, PlanError) as error:
            _fail(f"{people_path}: {error}")
        if skipped:
            click.echo(
                f"cadence: {len(skipped)} {'person' if len(skipped) == 1 else 'people'} skipped "
                "(`cadence plan` says why)",
                err=True,
            )
    if db is not None:
        from cadence.runtime.funnel import funnel

        with _engine(db) as engine:
            results = funnel(engine, ir.settings.id or ir.name, [s.id for s in ir.steps])
    try:
        page = render_report(ir, volume=volume, start=begins, results=results).encode("utf-8")
        write_atomically(Path(output), lambda out: out.write(page))
    except OSError as error:
        _fail(f"cannot write {output}: {error.strerror or error}")
    click.echo(f"wrote {output}", err=True)


def _senders_option(command: Any) -> Any:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        help="Runtime config: its [sender] or [mailboxes.NAME] sign the prefilled emails "
        "(default: ./cadence.toml, if there is one).",
    )(command)


@click.command()
@click.option("--person", help="Only this person's tasks.")
@click.option("--due-before", help="Only tasks due before this date (YYYY-MM-DD).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@_senders_option
@_db_option
def tasks(
    person: str | None, due_before: str | None, fmt: str, config_path: str | None, db: str
) -> None:
    """The command center: open tasks, email tasks with their prefilled email
    (signed as the person's mailbox signs: [sender] or [mailboxes.NAME])."""
    before = None
    if due_before:
        try:
            before = dt.date.fromisoformat(due_before)
        except ValueError:
            _fail(f"--due-before {due_before!r} is not a date like 2026-03-02")
    with _engine(db) as engine:
        found = engine.open_tasks(person=person, due_before=before)
        rows = _task_views(engine, found, _senders(config_path))
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("no open tasks", err=True)
    for row in rows:
        who = " · ".join(
            _printable(str(row[key])) for key in ("name", "company", "phone") if row.get(key)
        )
        click.echo(
            f"#{row['id']}  due {row['due_date']}  {row['person']}"
            + (f" ({who})" if who else "")
            + f"  {row['kind'].replace('_', ' ')} `{row['step']}`"
            + f"  in {_printable(row['campaign'])}"
        )
        for key in ("to", "subject", "title", "notes", "message", "problem"):
            if row.get(key):
                click.echo(f"    {key}: {row[key]}")
        if row.get("body"):
            click.echo("    body:")
            for line in str(row["body"]).splitlines():
                click.echo(f"      {line}")


def _task_views(engine: Any, tasks: Any, senders: Any) -> list[dict[str, Any]]:
    """Tasks as the command center shows them (see cadence.service.task_views)."""
    from cadence.service.task_views import TaskViews

    views = TaskViews(engine, senders).views(tasks)
    return [view.model_dump(mode="json", exclude_none=True) for view in views]


def _senders(config_path: str | None) -> Any:
    """Who signs each person's emails, as the config says."""
    from cadence.runtime.mailboxes import Senders

    return Senders.from_config(_config(config_path))


@click.group()
def task() -> None:
    """Act on a task of the command center: send, complete or skip it."""


def _body_from(body_file: str | None) -> str | None:
    if not body_file:
        return None
    try:
        return Path(body_file).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        _fail(f"{body_file}: not UTF-8 text")
    except OSError as error:
        _fail(f"{body_file}: {error.strerror or error}")


@task.command(name="send")
@click.argument("task_id", type=click.IntRange(1, 2**62))
@click.option("--subject", help="The subject as sent (default: the prefilled one).")
@click.option("--body-file", type=click.Path(dir_okay=False), help="The body as sent.")
@_at_option
@_senders_option
@_db_option
def task_send(
    task_id: int,
    subject: str | None,
    body_file: str | None,
    at_text: str,
    config_path: str | None,
    db: str,
) -> None:
    """Record that a person sent email task TASK_ID themselves, from their own
    mail program (with their edits). For cadence to send it: `task schedule`."""
    from cadence.service import Application

    at = _instant(at_text)
    body = _body_from(body_file)
    with _engine(db) as engine:
        application = Application(engine, lambda: at, senders=_senders(config_path))
        application.send_task(task_id, subject=subject, body=body)
    click.echo(f"task {task_id} sent", err=True)


@task.command(name="schedule")
@click.argument("task_id", type=click.IntRange(1, 2**62))
@click.option("--subject", help="The subject to send (default: the prefilled one).")
@click.option("--body-file", type=click.Path(dir_okay=False), help="The body to send.")
@click.option(
    "--send-at",
    "send_at",
    default="now",
    show_default=True,
    help="When cadence sends it: ISO 8601 (no offset: the recipient's time), or now.",
)
@_senders_option
@_db_option
def task_schedule(
    task_id: int,
    subject: str | None,
    body_file: str | None,
    send_at: str,
    config_path: str | None,
    db: str,
) -> None:
    """Have cadence send email task TASK_ID (the dispatcher delivers it): now,
    or at --send-at; the steps after it wait until it is sent."""
    from cadence.service import Application

    when = None
    if send_at.strip().lower() != "now":
        try:
            when = dt.datetime.fromisoformat(send_at.strip())
        except ValueError:
            _fail(f"{send_at!r} is not an ISO 8601 time, like 2026-03-02T09:00")
    body = _body_from(body_file)
    with _engine(db) as engine:
        now = dt.datetime.now(dt.UTC)
        application = Application(engine, lambda: now, senders=_senders(config_path))
        goes = application.schedule_task(task_id, subject=subject, body=body, when=when)
    said = "now" if goes == now else f"at {goes:%Y-%m-%d %H:%M}Z"
    click.echo(f"task {task_id} goes {said} (with the next `cadence run`)", err=True)


def _close_command(name: str, done: str, help: str) -> click.Command:
    @task.command(name=name, help=help)
    @click.argument("task_id", type=click.IntRange(1, 2**62))
    @_at_option
    @_db_option
    def command(task_id: int, at_text: str, db: str) -> None:
        with _engine(db) as engine:
            getattr(engine, f"{name}_task")(task_id, _instant(at_text))
        click.echo(f"task {task_id} {done}", err=True)

    return command


task_complete = _close_command("complete", "completed", "Mark task TASK_ID done.")
task_skip = _close_command("skip", "skipped", "Skip task TASK_ID (later steps go ahead).")


@click.command()
@click.option("--follow", is_flag=True, help="Keep printing new entries as they come.")
@click.option(
    "--after", type=click.IntRange(0, 2**63 - 1), default=0, help="Only entries after this id."
)
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text")
@_db_option
def feed(follow: bool, after: int, fmt: str, db: str) -> None:
    """The live feed: enrolled, sent, task opened/closed, reply, bounce, cancelled…"""
    with _engine(db) as engine:
        while True:
            entries = engine.feed(after=after)
            for entry in entries:
                click.echo(_feed_line(entry, fmt))
                after = entry.id
            if not follow:
                return
            if not entries:
                time.sleep(1.0)


def _feed_line(entry: Any, fmt: str) -> str:
    if fmt == "jsonl":
        return json.dumps(
            {
                "id": entry.id,
                "at": entry.at.isoformat(),
                "campaign": entry.campaign_id,
                "person": entry.person,
                "event": entry.event,
                "step": entry.step,
                "message": entry.message,
            }
        )
    who = entry.person or f"campaign {entry.campaign_id[:12]}"
    return f"{entry.at:%Y-%m-%d %H:%M:%S}Z  {who}  {entry.message}"


def _event_command(name: str, help: str) -> click.Command:
    @click.command(name=name, help=help)
    @click.argument("person")
    @click.option("--campaign", help="Only in this campaign (id, id prefix or name).")
    @_at_option
    @_db_option
    def command(person: str, campaign: str | None, at_text: str, db: str) -> None:
        with _engine(db) as engine:
            key = engine.find_campaign(campaign) if campaign else None
            getattr(engine, name)(person, _instant(at_text), key)
        click.echo(f"{name}: {person}", err=True)

    return command


reply = _event_command("reply", "Record a reply from PERSON (the campaign's `on reply` decides).")
remove = _event_command("remove", "Remove PERSON: pending sends cancelled, open tasks closed.")


@click.command()
@click.argument("person")
@_at_option
@_db_option
def bounce(person: str, at_text: str, db: str) -> None:
    """Record a hard bounce for PERSON: the address goes on the suppression
    list, and every campaign's `on bounce` rule applies."""
    with _engine(db) as engine:
        reached = engine.bounce(
            person, _instant(at_text), source=f"cadence bounce by {_login_name()}"
        )
    click.echo(f"bounce: {person} suppressed; {reached} enrollment(s) reached", err=True)


@click.command()
@click.argument("person")
@_at_option
@_db_option
def unsubscribe(person: str, at_text: str, db: str) -> None:
    """PERSON asked to be removed: suppressed, and ended in every campaign."""
    with _engine(db) as engine:
        ended = engine.unsubscribe(
            person, _instant(at_text), source=f"cadence unsubscribe by {_login_name()}"
        )
    click.echo(f"unsubscribed: {person}; {ended} enrollment(s) ended", err=True)


@click.group()
def suppress() -> None:
    """The suppression list: addresses never emailed again."""


@suppress.command(name="add")
@click.argument("emails", nargs=-1, required=True)
@click.option(
    "--reason",
    type=click.Choice(["manual", "unsubscribed", "bounced", "complained"]),
    default="manual",
    show_default=True,
)
@click.option("--note", help="Why, for whoever reads the list later.")
@_at_option
@_db_option
def suppress_add(
    emails: tuple[str, ...], reason: str, note: str | None, at_text: str, db: str
) -> None:
    """Suppress EMAILS: their active enrollments end in every campaign.

    Exit status 3 when some addresses were not valid (each is listed)."""
    with _engine(db) as engine:
        report = engine.suppress(
            emails, reason, _instant(at_text), source=f"added by {_login_name()}", note=note
        )
    _suppress_summary(report)


@suppress.command(name="import")
@click.argument("file")
@click.option(
    "--reason",
    type=click.Choice(["imported", "manual", "unsubscribed", "bounced", "complained"]),
    default="imported",
    show_default=True,
)
@_at_option
@_db_option
def suppress_import(file: str, reason: str, at_text: str, db: str) -> None:
    """Suppress every address in FILE (CSV with an `email` column, or JSON Lines)."""
    emails, skipped = _emails_in(file)
    with _engine(db) as engine:
        report = engine.suppress(emails, reason, _instant(at_text), source=f"imported from {file}")
    report.problems[:0] = skipped
    _suppress_summary(report)


def _suppress_summary(report: Any) -> None:
    for problem in report.problems:
        click.echo(f"cadence: skipped: {problem}", err=True)
    click.echo(
        f"suppressed {report.added} address{'es' * (report.added != 1)} "
        f"({report.already} already); {report.ended} enrollment(s) ended",
        err=True,
    )
    sys.exit(EXIT_SKIPPED if report.problems else 0)


@suppress.command(name="remove")
@click.argument("emails", nargs=-1, required=True)
@_db_option
def suppress_remove(emails: tuple[str, ...], db: str) -> None:
    """Take EMAILS off the suppression list (ended enrollments stay ended)."""
    with _engine(db) as engine:
        removed = engine.unsuppress(emails)
    click.echo(f"removed {removed} address{'es' * (removed != 1)} from the list", err=True)


@suppress.command(name="list")
@click.option("--reason", help="Only addresses suppressed for this reason.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table")
@_db_option
def suppress_list(reason: str | None, fmt: str, db: str) -> None:
    """The suppressed addresses, with why and since when."""
    with _engine(db) as engine:
        found = engine.suppressions(reason)
    rows = [
        {"email": entry.email, "reason": entry.reason, "since": entry.created_at.isoformat(),
         "source": entry.source, "note": entry.note}
        for entry in found
    ]  # fmt: skip
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        import csv

        columns = ["email", "reason", "since", "source", "note"]
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        for row in rows:
            click.echo(
                f"{row['email']}  {row['reason']}  since {row['since'][:10]}  {row['source'] or ''}"
            )
        click.echo(f"{len(rows)} suppressed address{'es' * (len(rows) != 1)}", err=True)


@click.command()
@click.argument("campaign")
@_at_option
@_db_option
def end(campaign: str, at_text: str, db: str) -> None:
    """End CAMPAIGN (id, id prefix or name) for everyone in it."""
    with _engine(db) as engine:
        ended = engine.end(engine.find_campaign(campaign), _instant(at_text))
    click.echo(f"campaign ended: {ended} enrollments closed", err=True)


@click.command()
@click.option("--campaign", help="Only this campaign's sends (id, id prefix or name).")
@click.option("--person", help="Only this person's sends.")
@click.option("--since", "since_text", help="Only sends due at or after this time (ISO 8601).")
@click.option("--by", default=None, help="Who asks, for the feed (default: the login name).")
@_at_option
@_db_option
def retry(
    campaign: str | None,
    person: str | None,
    since_text: str | None,
    by: str | None,
    at_text: str,
    db: str,
) -> None:
    """Queue failed sends again (of people still active); the feed says who did it."""
    since = _instant(since_text) if since_text else None
    who = by or _login_name()
    with _engine(db) as engine:
        key = engine.find_campaign(campaign) if campaign else None
        count = engine.retry_failed(
            _instant(at_text), by=who, campaign=key, person=person, since=since
        )
    click.echo(f"queued {count} failed send{'s' * (count != 1)} again", err=True)


@click.command()
@click.argument("send_id", type=click.IntRange(1, 2**62))
@click.option("--sent/--not-sent", required=True, help="What the mail server's log says.")
@_at_option
@_db_option
def settle(send_id: int, sent: bool, at_text: str, db: str) -> None:
    """Settle an unconfirmed send (its dispatcher stopped while delivering it):
    it was delivered, or it was not."""
    with _engine(db) as engine:
        engine.resolve(send_id, sent, _instant(at_text))
    click.echo(f"send {send_id} settled as {'sent' if sent else 'cancelled'}", err=True)


@click.command()
@click.argument("files", nargs=-1)
@click.option("--maildir", help="Read every message of this Maildir (it is never changed).")
@click.option("--imap", "imap_url", help="Read an IMAP mailbox: imaps://USER@HOST/MAILBOX (the "
              "password from $CADENCE_IMAP_PASSWORD); opened read-only.")  # fmt: skip
@click.option("--follow", is_flag=True, help="Keep reading new mail (every --interval seconds).")
@click.option("--interval", type=click.IntRange(5, 3600), default=60, show_default=True)
@click.option("--explain", "explain_id", metavar="MESSAGE-ID", help="Say what was done with a "
              "message, and why, instead of reading mail.")  # fmt: skip
@click.option(
    "--away-days",
    type=click.IntRange(1, 366),
    default=None,
    help="How long an out-of-office pause lasts when the reply names no date (7).",
)
@click.option("--soft-bounces", type=click.IntRange(1, 100), default=None,
              help="Temporary failures that count as a permanent one (3).")  # fmt: skip
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Runtime config: [inbox], [unsubscribe], [sender] or [mailboxes.NAME]; "
              "without a source, reads the IMAP mailboxes it names.")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text")
@click.option("--now", "now_text", default="now", help="Act as if it were this time (ISO 8601).")
@_db_option
def inbox(
    files: tuple[str, ...],
    maildir: str | None,
    imap_url: str | None,
    follow: bool,
    interval: int,
    explain_id: str | None,
    away_days: int | None,
    soft_bounces: int | None,
    config_path: str | None,
    fmt: str,
    now_text: str,
    db: str,
) -> None:
    """Read inbound mail (an IMAP mailbox, a Maildir, FILE.eml..., or - for stdin)
    and act on replies, out-of-office replies, bounces and unsubscribe requests.

    Each message is read once, however often the mailbox is; nothing in the
    mailbox is moved, flagged or deleted."""
    from cadence.runtime.inbox import Inbox, InboxSettings
    from cadence.runtime.mailsources import (
        SourceError,
        file_messages,
        imap_messages,
        maildir_messages,
    )

    config = _config(config_path)
    fixed = None if now_text == "now" else _instant(now_text)
    accounts = _imap_accounts(config, imap_url) if not (maildir or files) else []
    chosen = [bool(maildir), bool(files), bool(accounts)]
    if explain_id is None and sum(chosen) != 1:
        _fail("read --maildir DIR, --imap URL, or FILE.eml... (- for stdin), or --explain ID")
    if follow and files:
        _fail("--follow reads a mailbox (--maildir or --imap), not files")
    from cadence.runtime.mailboxes import mailbox_settings

    mailto = config.unsubscribe.mailto
    unsubscribe_to = {mailto} if mailto else {b.email for b in mailbox_settings(config).values()}
    settings = InboxSettings(
        frozenset(address.lower() for address in unsubscribe_to),
        away_days or config.inbox.away_days,
        soft_bounces or config.inbox.soft_bounce_limit,
        config.inbox.authserv_id,
    )
    failed = False
    with _engine(db) as engine:
        reader = Inbox(engine, settings)
        if explain_id is not None:
            _explain(reader, explain_id)
            return
        counts: dict[str, int] = {}
        try:
            while True:
                now = fixed or dt.datetime.now(dt.UTC)
                try:
                    if maildir:
                        _read(reader, maildir_messages(maildir), now, fmt, counts)
                    elif files:
                        _read(reader, file_messages(list(files)), now, fmt, counts)
                except SourceError as error:
                    _fail(str(error))
                for account in accounts:
                    # One mailbox that cannot be read (a refused login) is a line
                    # here; the others are read all the same.
                    try:
                        _read(reader, imap_messages(account, reader.known), now, fmt, counts)
                    except SourceError as error:
                        click.echo(f"cadence: inbox: {error}", err=True)
                        failed = True
                if not follow:
                    break
                time.sleep(interval)
        except KeyboardInterrupt:
            pass
    summary = ", ".join(
        f"{count} {kind.replace('_', ' ')}" for kind, count in sorted(counts.items())
    )
    click.echo(f"read {sum(counts.values())} message(s): {summary or 'none'}", err=True)
    if failed:
        sys.exit(2)


def _imap_accounts(config: Any, url: str | None) -> list[Any]:
    """The IMAP mailboxes to read: ``--imap``, else the config's [inbox] imap and
    every mailbox's ``imap``. Bad settings are refused here, before any is read."""
    from cadence.runtime.mailsources import parse_imap

    wanted: list[tuple[str, str | None]] = []
    if url or config.inbox.imap:
        wanted.append((url or config.inbox.imap, config.inbox.password_env))
    if not url:
        wanted += [
            (box.imap, box.imap_password_env) for box in config.mailboxes.values() if box.imap
        ]
    accounts = []
    for text, password_env in wanted:
        try:
            account = parse_imap(text)
        except ValueError as error:
            _fail(str(error))
        accounts.append(
            dataclasses.replace(
                account,
                password_env=password_env or config.inbox.password_env,
                verify=config.inbox.verify,
                ca_file=config.inbox.ca_file,
            )
        )
    return accounts


def _read(reader: Any, messages: Any, now: dt.datetime, fmt: str, counts: dict[str, int]) -> None:
    """One pass over a mailbox: each message processed, and reported."""
    for done in reader.process_all(messages, now):
        if isinstance(done, tuple):  # nothing changed: the transaction rolled back
            click.echo(f"cadence: inbox: {done[0]}: not read: {done[1]}", err=True)
            counts["failed"] = counts.get("failed", 0) + 1
            continue
        label = done.kind if done.new else "read before"
        counts[label] = counts.get(label, 0) + 1
        if fmt == "jsonl":
            click.echo(json.dumps(dataclasses.asdict(done)))
        elif done.new:
            click.echo(f"{done.message_id or done.source}  {done.outcome}")


def _explain(reader: Any, message_id: str) -> None:
    records = reader.explain(message_id)
    if not records:
        _fail(f"no message {message_id} was read")
    for record in records:
        click.echo(f"message    {record.message_id}\nsource     {record.source}")
        click.echo(f"read at    {record.processed_at:%Y-%m-%d %H:%M:%S}Z")
        click.echo(f"kind       {record.kind}\nbecause    {record.reason}")
        click.echo(f"outcome    {record.outcome}")
        if record.person:
            click.echo(f"person     {record.person}")
        if record.raw:
            head = record.raw.split(b"\r\n\r\n")[0].split(b"\n\n")[0]
            click.echo("headers:")
            for line in head.decode("utf-8", errors="replace").splitlines()[:40]:
                click.echo(f"  {line}")


@click.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@_db_option
def campaigns(fmt: str, db: str) -> None:
    """Every campaign: its versions, and how many people are active, finished
    (every step done) or ended early in each."""
    from cadence.runtime.overview import campaign_overviews

    with _engine(db) as engine:
        found = campaign_overviews(engine.store)
    if fmt == "json":
        click.echo(json.dumps([item.model_dump(mode="json") for item in found], indent=2))
        return
    if not found:
        click.echo("no campaigns yet (`cadence enroll` makes one)", err=True)
        return
    rows = [("CAMPAIGN", "ID", "VERSION", "KEY", "ACTIVE", "FINISHED", "ENDED", "CREATED",
             "ENDED AT")]  # fmt: skip
    for item in found:
        for number, version in enumerate(item.versions):
            first = number == 0
            rows.append((
                _printable(item.name) if first else "",
                _printable(item.id) if first and item.id != item.name else "",
                str(version.version), version.key[:12], str(version.active),
                str(version.finished), str(version.ended), f"{version.created_at:%Y-%m-%d %H:%M}",
                f"{version.ended_at:%Y-%m-%d %H:%M}" if version.ended_at else "-",
            ))  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


@click.command()
@click.argument("person")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@_db_option
def status(person: str, fmt: str, db: str) -> None:
    """Where PERSON is in every campaign they were enrolled in: the step done
    last, what comes next and when, and every step's history."""
    from cadence.runtime.overview import person_status

    with _engine(db) as engine:
        found = person_status(engine.store, person)
    if not found.enrollments:
        _fail(f"{_printable(person)} was never enrolled")
    if fmt == "json":
        click.echo(found.model_dump_json(indent=2))
        return
    click.echo(_printable(found.person))
    for item in found.enrollments:
        why = f" ({_printable(item.reason)})" if item.reason else ""
        click.echo(
            f"  {_printable(item.campaign)}, version {item.version}: {item.state}{why}; "
            f"started {item.started_at:%Y-%m-%d %H:%M}Z"
        )
        if item.next is not None:
            click.echo(f"    next: {_step_line(item.next)}")
            for why in _waits(item.next):
                click.echo(f"      {_printable(why)}")
        for step in item.history:
            mark = {"sent": "+", "completed": "+", "skipped": "-", "failed": "!",
                    "cancelled": "x"}.get(step.status, " ")  # fmt: skip
            click.echo(f"    {mark} {_step_line(step)}")


def _step_line(step: Any) -> str:
    kind = step.kind.replace("_", " ")
    when = (
        f"sent {step.sent_at:%Y-%m-%d %H:%M}Z" if step.sent_at
        else f"{step.status} {step.closed_at:%Y-%m-%d %H:%M}Z" if step.closed_at
        else f"{step.status}, due {step.due_at:%Y-%m-%d %H:%M}Z" if step.due_at
        else f"{step.status}, due {step.due_date}"
    )  # fmt: skip
    return f"day {step.day} {kind} `{step.step}`: {when}"


def _waits(step: Any) -> list[str]:
    """Why a step still to come has not gone yet, beyond its time."""
    said = []
    if step.waits_for:
        said.append(f"waits for `{step.waits_for}`: a task before it, still open")
    if step.moved:
        said.append(f"moved: {step.moved}")
    if step.note:
        said.append(f"planned: {step.note}")
    return said


def _printable(text: str) -> str:
    """A name as one line of a table (a name is the author's text: escape what is not)."""
    return text if text.isprintable() else repr(text)[1:-1]


@click.command()
@click.argument("campaign")
@click.option("--to-version", "to_version", type=click.IntRange(1, 10**9), required=True)
@click.option("--people", "people_path", help="Only these people (CSV or JSON Lines with email).")
@click.option(
    "--dry-run", is_flag=True, help="Print what would change, per person; change nothing."
)
@_at_option
@_db_option
def migrate(
    campaign: str, to_version: int, people_path: str | None, dry_run: bool, at_text: str, db: str
) -> None:
    """Move the active people of CAMPAIGN to version N: what they had stays,
    what is left takes the new version's content and times, removed steps are
    cancelled, new steps after where they are are scheduled. All or nothing."""
    from cadence.progress import progress
    from cadence.runtime.moving import move_people

    wanted = None
    if people_path:
        wanted = {email.strip().lower() for email in _emails_in(people_path)[0]}
    with _engine(db) as engine, progress("migrate", None) as advance:
        identity = engine.find_campaign(campaign)
        report = move_people(
            engine, identity, to_version, _instant(at_text), people=wanted, dry_run=dry_run,
            on_progress=advance,
        )  # fmt: skip
    for move in report.moves:
        head = f"{_printable(move.person)}: version {move.from_version} → {report.to_version}"
        if move.problem is not None:
            click.echo(f"{head}: refused: {move.problem}")
            continue
        click.echo(head if move.changes else f"{head} (what is left is the same)")
        for change in move.changes:
            click.echo(f"  {change.sign} {change.step}: {change.text}")
    count = len(report.moves)
    if report.refused:
        _fail(f"{len(report.refused)} of {count} people cannot move (above); nobody was moved")
    verb = "would move" if dry_run else "moved"
    click.echo(f"{verb} {count} {'person' if count == 1 else 'people'} to version "
               f"{report.to_version}", err=True)  # fmt: skip


def _emails_in(path: str) -> tuple[list[str], list[str]]:
    """The addresses in a people file (CSV with an `email` column, or JSON
    Lines; - for stdin), and the rows it could not read."""
    from cadence.runtime.people import PeopleError, RowProblem, format_of, open_people, read_people

    emails, skipped = [], []
    try:
        with open_people(path) as stream:
            for row in read_people(stream, None if path == "-" else format_of(path)):
                if isinstance(row, RowProblem):
                    skipped.append(str(row))
                elif str(row.fields.get("email") or "").strip():
                    emails.append(str(row.fields["email"]))
    except OSError as error:
        _fail(f"{path}: {error.strerror or error}")
    except PeopleError as error:
        _fail(f"{path}: {error}")
    return emails, skipped


@click.group()
def mailboxes() -> None:
    """The sender mailboxes people send from."""


@mailboxes.command(name="move")
@click.argument("old")
@click.argument("new")
@_db_option
def mailboxes_move(old: str, new: str, db: str) -> None:
    """Let the active people of mailbox OLD (an address) send from NEW from now
    on: for a mailbox removed from the config, or whose address changed."""
    from cadence.runtime.addresses import AddressError, sender_address

    try:
        sender_address("", new)
    except AddressError as error:
        _fail(f"{new!r}: {error}")
    with _engine(db) as engine:
        moved = engine.move_mailbox(old, new)
    click.echo(
        f"moved {moved} {'person' if moved == 1 else 'people'} from {_printable(old)} to {new}",
        err=True,
    )


@click.command()
@click.argument("person")
@click.option(
    "--until",
    "until_text",
    default=None,
    help="The day they are back (YYYY-MM-DD); without it, until `cadence resume`.",
)
@click.option("--campaign", help="Only in this campaign (id, id prefix or name).")
@_at_option
@_db_option
def pause(person: str, until_text: str | None, campaign: str | None, at_text: str, db: str) -> None:
    """Hold everything for PERSON until a day (or until resumed); then the rest
    of the schedule moves so the next step falls on the day they are back."""
    from cadence.runtime.engine import UNTIL_RESUMED

    until = UNTIL_RESUMED
    if until_text is not None:
        try:
            until = dt.date.fromisoformat(until_text)
        except ValueError:
            _fail(f"--until {until_text!r} is not a date like 2026-03-02")
    with _engine(db) as engine:
        key = engine.find_campaign(campaign) if campaign else None
        count = engine.pause(person, until, _instant(at_text), reason="paused by hand",
                             campaign=key)  # fmt: skip
    when = f"until {until}" if until_text else "until `cadence resume`"
    click.echo(f"paused {person} {when} in {count} campaign(s)", err=True)


@click.command()
@click.argument("person")
@click.option("--campaign", help="Only in this campaign (id, id prefix or name).")
@_at_option
@_db_option
def resume(person: str, campaign: str | None, at_text: str, db: str) -> None:
    """Resume PERSON now: the rest of the schedule moves so the next step is today."""
    with _engine(db) as engine:
        key = engine.find_campaign(campaign) if campaign else None
        count = engine.resume(person, _instant(at_text), campaign=key)
    click.echo(f"resumed {person} in {count} campaign(s)", err=True)


def _login_name() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        return "someone"


def _config(path: str | None) -> Any:
    """The runtime config (TOML; see cadence.runtime.config): ``path``, else
    ./cadence.toml, else the user's config folder; refusals are one line."""
    from cadence.runtime.config import ConfigError, RuntimeConfig, find_config, load_config

    found = find_config(path)
    if found is None:
        return RuntimeConfig()
    try:
        return load_config(found)
    except ConfigError as error:
        _fail(str(error))


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Runtime config (TOML): smtp, outbox, throttle, [sender]. Options win.",
)
@click.option(
    "--smtp",
    help="Deliver over SMTP: HOST:PORT (no TLS), smtp://[USER@]HOST[:PORT] (STARTTLS) or "
    "smtps://[USER@]HOST[:PORT] (TLS); the password comes from $CADENCE_SMTP_PASSWORD.",
)
@click.option("--outbox", help="Write .eml files here instead (the default: ./outbox).")
@click.option("--once", is_flag=True, help="Deliver what is due, then stop.")
@click.option("--now", "now_text", help="Act as if it were this time (ISO 8601); implies --once.")
@click.option("--throttle", help="At most N sends per SECONDS: `30 per 60` (or 30/60).")
@click.option(
    "--worker",
    default=None,
    help="This dispatcher's name in claims and the feed (host and process id are added).",
)
@click.option(
    "--daily-cap",
    type=click.IntRange(1, 10_000_000),
    default=None,
    help="At most N sends a day from the sender's mailbox, across all dispatchers; "
    "the rest roll to the next day.",
)
@click.option(
    "--late",
    type=click.Choice(["reschedule", "skip", "send"]),
    default=None,
    help="A send more than --late-after behind its time (the dispatchers were down): "
    "reschedule it to when its time of day next comes (the default), skip it, or send it.",
)
@click.option("--late-after", default=None, help="How late is late: 90m, 4h (the default), 2d.")
@click.option("--sender-name", default=None)
@click.option("--sender-email", default=None)
@click.option("--sender-signature", default=None)
@click.option(
    "--db",
    default=None,
    envvar="CADENCE_DB",
    help=f"SQLite file or postgresql:// URL (else $CADENCE_DB, the config's db, {DEFAULT_DB}).",
)
def run(
    config_path: str | None,
    smtp: str | None,
    outbox: str | None,
    once: bool,
    now_text: str | None,
    throttle: str | None,
    worker: str | None,
    daily_cap: int | None,
    late: str | None,
    late_after: str | None,
    sender_name: str | None,
    sender_email: str | None,
    sender_signature: str | None,
    db: str | None,
) -> None:
    """The dispatcher: claim due sends, render, deliver, mark; retries with backoff.
    With [mailboxes.NAME] in the config it sends from each (routed as its
    [routing] says); --smtp or --outbox then delivers every mailbox's mail."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    from cadence.runtime.delivery import TransportError
    from cadence.runtime.dispatch import Dispatcher, worker_name
    from cadence.runtime.mailboxes import open_mailboxes
    from cadence.runtime.redact import redact

    config = _config(config_path)
    if smtp and outbox:
        _fail("choose --smtp or --outbox, not both")
    if config.mailboxes:
        given = [
            flag for flag, value in (
                ("--sender-name", sender_name), ("--sender-email", sender_email),
                ("--sender-signature", sender_signature), ("--daily-cap", daily_cap),
                ("--throttle", throttle),
            ) if value is not None
        ]  # fmt: skip
        if given:
            _fail(f"{given[0]} is for a config without mailboxes; set it in [mailboxes.NAME]")
        if smtp or outbox:  # every mailbox delivers there (a preview, a test relay)
            where = {"smtp": smtp, "outbox": None} if smtp else {"smtp": None, "outbox": outbox}
            boxes = {name: box.model_copy(update=where) for name, box in config.mailboxes.items()}
            config = config.model_copy(update={"mailboxes": boxes})
    else:
        sender = config.sender.model_copy(
            update={
                key: value for key, value in (
                    ("name", sender_name), ("email", sender_email),
                    ("signature", sender_signature), ("daily_cap", daily_cap),
                ) if value is not None
            }
        )  # fmt: skip
        update: dict[str, Any] = {"sender": sender, "throttle": throttle or config.throttle}
        if smtp or outbox:  # an option wins over the file
            update.update(smtp=smtp or None, outbox=outbox or None)
        elif config.smtp and config.outbox:
            _fail("the config has both smtp and outbox; choose one")
        config = config.model_copy(update=update)
    db = db or config.db or DEFAULT_DB
    stopped = threading.Event()  # SIGTERM: every wait ends at once

    def wait(seconds: float) -> None:
        stopped.wait(seconds)

    try:
        opened = open_mailboxes(config, sleep=wait)
    except ValueError as error:
        _fail(str(error))
    if not config.mailboxes and "email" not in config.sender.model_fields_set:
        # Real mail from cadence@localhost is refused or junked by every receiver.
        if config.smtp:
            opened.close()
            _fail("no sender to send as: set email in the config's [sender] (or "
                  "[mailboxes.NAME]), or give --sender-email")  # fmt: skip
        click.echo("cadence: warning: no sender set ([sender] email or --sender-email): "
                   "the outbox's emails come from cadence@localhost", err=True)  # fmt: skip
    for label, transport in opened.transports:
        check = getattr(transport, "check", None)
        try:
            if check is not None:
                check()  # a refused login is one line, before anything is claimed
        except TransportError as error:
            opened.close()
            _fail(f"{label}: {error}")
    from cadence.runtime.config import parse_duration
    from cadence.runtime.engine import LatePolicy

    try:
        after = parse_duration(late_after or config.late_after)
    except ValueError as error:
        _fail(f"--late-after: {error}")
    policy = LatePolicy(cast(Any, late or config.late), after)
    fixed = _instant(now_text) if now_text else None
    show = sys.stderr.isatty()
    bar: list[Callable[[int], None]] = []  # while catching up: the bar's advance

    def progress(report: Any) -> None:
        if bar:
            bar[0](report.sent + report.retried + report.failed)
        elif show:
            click.echo(
                f"\rsent {report.sent}, retrying {report.retried}, failed {report.failed}",
                err=True,
                nl=False,
            )

    import logging

    logging.basicConfig(format="cadence: %(message)s", level=logging.WARNING)
    with _engine(db) as engine:
        dispatcher = Dispatcher(
            engine,
            mailboxes=opened.mailboxes,
            routing=opened.routing,
            worker=worker_name(worker or config.worker),
            on_progress=progress,
            late=policy,
            sleep=wait,
        )

        def terminate(signum: int, frame: Any) -> None:
            # The send under way finishes, the rest of the batch goes back. A
            # second Ctrl-C does not wait (what was claimed waits for its lease).
            if signum == signal.SIGINT and stopped.is_set():
                raise KeyboardInterrupt
            stopped.set()
            dispatcher.stop()
            if signum == signal.SIGINT:
                click.echo("\nstopping: the send under way finishes (Ctrl-C again: now)", err=True)

        signal.signal(signal.SIGTERM, terminate)
        signal.signal(signal.SIGINT, terminate)
        try:
            while not stopped.is_set():
                now = fixed or dt.datetime.now(dt.UTC)
                with _catching_up(engine, now, show, bar):
                    report = dispatcher.run_once(fixed)  # without --now: the clock, per batch
                if show and not bar:
                    click.echo("", err=True)
                bar.clear()
                click.echo(
                    f"{now:%Y-%m-%d %H:%M:%S}Z: sent {report.sent}, retrying "
                    f"{report.retried}, failed {report.failed}",
                    err=True,
                )
                if once or fixed:
                    sys.exit(2 if report.down else 0)  # a mailbox that could not send
                stopped.wait(30)
            click.echo("stopped: the rest of the batch was given back", err=True)
        except KeyboardInterrupt:
            click.echo(
                "\ninterrupted: sends claimed but not marked go back when their lease runs out",
                err=True,
            )
            sys.exit(130)
        except TransportError as error:  # the batch was given back; nothing marked
            _fail(str(error))
        except (OperationalError, InterfaceError) as error:  # the database stayed away
            _fail(f"the database {redact(db)} cannot be reached: {error.orig}")
        finally:
            opened.close()


@click.command()
@_db_option
@click.option(
    "--config", "config_path", default=None, help="Runtime config (TOML): [webhooks], [inbox]."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option(
    "--max-body",
    type=click.IntRange(1024, 2**31),
    default=16 * 1024 * 1024,
    show_default=True,
    help="The largest request body taken, in bytes.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes serving requests (one per core).",
)
def serve(
    db: str | None, config_path: str | None, host: str, port: int, max_body: int, workers: int
) -> None:
    """The HTTP API (/api/v1, OpenAPI at /api/v1/openapi.json), the
    providers' webhooks (/webhooks/…) and the pages (/) over DB. Every API
    call needs a token (`cadence token create`), every page a login (`cadence
    user add`). Several `serve` processes and dispatchers may share one
    PostgreSQL database."""
    import uvicorn

    from cadence.runtime.config import ConfigError
    from cadence.runtime.migrations import SchemaError
    from cadence.runtime.redact import redact
    from cadence.runtime.store import StoreError
    from cadence.server import process

    found = _config_path(config_path)  # found once: the workers are told the same file
    config = _config(found)
    database = db or config.db or DEFAULT_DB
    try:  # everything checked here first: one line, not a failure in every worker
        app = process.build(database, config, max_body)
    except (ConfigError, StoreError) as error:
        _fail(str(error))
    except SchemaError as error:
        _fail(f"{redact(database)}: {error}")
    if host not in ("127.0.0.1", "::1", "localhost"):
        click.echo(f"cadence: serving on {host}: reachable from other machines", err=True)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "server_header": False,
    }
    if workers == 1:
        uvicorn.run(app, **options)
        return
    app.state.application.close()
    os.environ[process.SETTINGS] = process.settings_for_workers(database, found, max_body)
    try:
        listener = process.listening_socket(host, port)
    except OSError as error:
        _fail(f"cannot listen on {host}:{port}: {error.strerror or error}")
    from uvicorn.supervisors import Multiprocess

    settings = uvicorn.Config(
        f"{process.__name__}:app_from_environment", factory=True, workers=workers, **options
    )
    click.echo(f"cadence: serving on http://{host}:{port} with {workers} workers", err=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the workers stop, and so does serve
        Multiprocess(settings, sockets=[listener]).run()


def _config_path(path: str | None) -> str | None:
    from cadence.runtime.config import find_config

    found = find_config(path)
    return str(found) if found is not None else None


@click.group()
def token() -> None:
    """API tokens: what tools present to the HTTP API (`Authorization: Bearer …`)."""


@token.command(name="create")
@click.argument("name")
@click.option("--read-only", is_flag=True, help="It may read, and change nothing.")
@_db_option
def token_create(name: str, read_only: bool, db: str | None) -> None:
    """Make a token for NAME (a tool, a person); it is printed once, on stdout."""
    from cadence.service.credentials import CredentialError, create_token

    with _engine(db) as engine:
        try:
            made, info = create_token(
                engine.store, name, read_only=read_only, now=dt.datetime.now(dt.UTC)
            )
        except CredentialError as error:
            _fail(str(error))
    click.echo(made)
    what = "read-only token" if info.read_only else "token"
    click.echo(
        f"{what} {info.name!r} ({info.prefix}…): keep it now, it is not shown again", err=True
    )


@token.command(name="list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@_db_option
def token_list(fmt: str, db: str | None) -> None:
    """The tokens, revoked ones too (never the tokens themselves)."""
    from cadence.service.credentials import list_tokens

    with _engine(db) as engine:
        found = list_tokens(engine.store)
    if fmt == "json":
        click.echo(json.dumps([item.model_dump(mode="json") for item in found], indent=2))
        return
    for item in found:
        state = f"revoked {item.revoked_at:%Y-%m-%d}" if item.revoked_at else "active"
        used = f"used {item.last_used_at:%Y-%m-%d %H:%M}" if item.last_used_at else "never used"
        access = "read-only" if item.read_only else "read-write"
        click.echo(f"{item.prefix}…  {_printable(item.name)}  {access}  {state}  {used}")


@token.command(name="revoke")
@click.argument("name")
@_db_option
def token_revoke(name: str, db: str | None) -> None:
    """Revoke the token NAME (or whose prefix `token list` shows)."""
    from cadence.service.credentials import CredentialError, revoke_token

    with _engine(db) as engine:
        try:
            info = revoke_token(engine.store, name, dt.datetime.now(dt.UTC))
        except CredentialError as error:
            _fail(str(error))
    click.echo(f"token {info.name!r} revoked", err=True)


@click.group()
def user() -> None:
    """People who log in to the pages of `cadence serve`."""


@user.command(name="add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin (one line).")
@_db_option
def user_add(name: str, password_stdin: bool, db: str | None) -> None:
    """Add NAME; the password is asked for twice (never on the command line)."""
    from cadence.service.credentials import CredentialError
    from cadence.service.logins import add_user

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    with _engine(db) as engine:
        try:
            added = add_user(engine.store, name, password, dt.datetime.now(dt.UTC))
        except CredentialError as error:
            _fail(str(error))
    click.echo(f"user {added.name!r} added", err=True)


@user.command(name="list")
@_db_option
def user_list(db: str | None) -> None:
    """The users, and whether they may log in."""
    from cadence.service.logins import list_users

    with _engine(db) as engine:
        for found in list_users(engine.store):
            state = f"disabled {found.disabled_at:%Y-%m-%d}" if found.disabled_at else "active"
            click.echo(f"{_printable(found.name)}  {state}  added {found.created_at:%Y-%m-%d}")


@user.command(name="disable")
@click.argument("name")
@_db_option
def user_disable(name: str, db: str | None) -> None:
    """NAME can no longer log in; their sessions end now."""
    from cadence.service.credentials import CredentialError
    from cadence.service.logins import disable_user

    with _engine(db) as engine:
        try:
            disable_user(engine.store, name, dt.datetime.now(dt.UTC))
        except CredentialError as error:
            _fail(str(error))
    click.echo(f"user {name!r} disabled", err=True)
