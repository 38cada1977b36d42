"""Daily caps and throttles of a sender mailbox, held across every dispatcher:
the count of a day's sends, and the sends of the last throttle window, live
in the database, and a dispatcher reserves its share before it claims. Four
dispatchers with a cap of 50 send 50, not 200; with a throttle of 30 per 60
they send 30 a minute between them.

A reservation counts a send when it is claimed, so a cap is never exceeded,
even by sends whose delivery then fails (those are not given back: a
provider counts attempts too).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, delete, func, select, update

from cadence.runtime.calendar import UTC_ZONE, place
from cadence.runtime.schema import mailbox_sends, mailbox_usage
from cadence.runtime.store import insert_if_absent


@dataclass(frozen=True)
class DailyCap:
    mailbox: str  # the sender address
    limit: int
    zone: ZoneInfo = UTC_ZONE  # where the mailbox's day begins

    def day(self, now: dt.datetime) -> dt.date:
        return now.astimezone(self.zone).date()

    def next_day(self, now: dt.datetime) -> dt.datetime:
        """The instant the mailbox's next day begins."""
        tomorrow = self.day(now) + dt.timedelta(days=1)
        return dt.datetime.combine(tomorrow, dt.time(0, 0), self.zone).astimezone(dt.UTC)


def reserve(connection: Connection, cap: DailyCap, wanted: int, now: dt.datetime) -> int:
    """Reserve up to ``wanted`` of today's sends; returns how many were granted.
    The day's row is locked (PostgreSQL) or the database is (SQLite's writer
    lock), so two dispatchers never both take the last places."""
    key = {"mailbox": cap.mailbox.lower(), "day": cap.day(now)}
    row = {**key, "sent": 0}
    connection.execute(insert_if_absent(connection.dialect.name, mailbox_usage, row))
    query = select(mailbox_usage.c.sent).where(
        mailbox_usage.c.mailbox == key["mailbox"], mailbox_usage.c.day == key["day"]
    )
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()
    sent = int(connection.execute(query).scalar_one())
    granted = max(0, min(wanted, cap.limit - sent))
    if granted:
        connection.execute(
            update(mailbox_usage)
            .where(mailbox_usage.c.mailbox == key["mailbox"], mailbox_usage.c.day == key["day"])
            .values(sent=mailbox_usage.c.sent + granted)
        )
    return granted


def rolled(due: dt.datetime, next_day: dt.datetime, where: ZoneInfo | None = None) -> dt.datetime:
    """``due`` moved by whole days to the first one on or after ``next_day``:
    the send keeps its time of day — in ``where``, the person's zone, when
    given (a day across a change of clocks is not 24 hours there)."""
    if due >= next_day:
        return due
    days = -(-(next_day - due) // dt.timedelta(days=1))  # rounded up
    if where is None:
        return due + dt.timedelta(days=days)
    local = due.astimezone(where)
    wall = local.time().replace(tzinfo=None)
    moved = place(local.date() + dt.timedelta(days=days), wall, where).utc
    while moved < next_day:
        days += 1
        moved = place(local.date() + dt.timedelta(days=days), wall, where).utc
    return moved


def usage(connection: Connection, mailbox: str, day: dt.date) -> int:
    found = connection.execute(
        select(mailbox_usage.c.sent).where(
            mailbox_usage.c.mailbox == mailbox.lower(), mailbox_usage.c.day == day
        )
    ).scalar()
    return int(found or 0)


@dataclass(frozen=True)
class SharedThrottle:
    """At most ``count`` sends from ``mailbox`` in any ``seconds``, all
    dispatchers together."""

    mailbox: str
    count: int
    seconds: float


def reserve_window(
    connection: Connection, throttle: SharedThrottle, wanted: int, now: dt.datetime
) -> tuple[int, float]:
    """Take up to ``wanted`` places in the window ending ``now``: how many were
    granted, and (when none) how many seconds until one frees up. The places
    are rows, so the window holds across processes; old ones are pruned."""
    mailbox = throttle.mailbox.lower()
    since = now - dt.timedelta(seconds=throttle.seconds)
    connection.execute(
        delete(mailbox_sends).where(mailbox_sends.c.mailbox == mailbox, mailbox_sends.c.at <= since)
    )
    taken, oldest = connection.execute(
        select(func.count(), func.min(mailbox_sends.c.at)).where(mailbox_sends.c.mailbox == mailbox)
    ).one()
    granted = max(0, min(wanted, throttle.count - int(taken)))
    if granted:
        connection.execute(mailbox_sends.insert(), [{"mailbox": mailbox, "at": now}] * granted)
        return granted, 0.0
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=dt.UTC)
    wait = (oldest - since).total_seconds() if oldest is not None else throttle.seconds
    return 0, max(wait, 0.01)


def give_back(
    connection: Connection, throttle: SharedThrottle, count: int, at: dt.datetime
) -> None:
    """Return places taken at ``at`` that were not used (fewer sends were due)."""
    if count <= 0:
        return
    rows = (
        connection.execute(
            select(mailbox_sends.c.id)
            .where(mailbox_sends.c.mailbox == throttle.mailbox.lower(), mailbox_sends.c.at == at)
            .limit(count)
        )
        .scalars()
        .all()
    )
    if rows:
        connection.execute(delete(mailbox_sends).where(mailbox_sends.c.id.in_(rows)))
