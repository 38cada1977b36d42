"""The suppression list: addresses cadence never emails again, whatever
campaign asks — people who unsubscribed, addresses that bounced for good or
complained, and those added by hand or imported.

It is checked when people are enrolled (the row is refused with the reason)
and again when a send is claimed (the send is cancelled, with the reason in
the feed); adding an address ends its active enrollments in every campaign.
Functions here work inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, delete, func, select

from cadence.runtime.schema import suppressions

Reason = Literal["unsubscribed", "bounced", "complained", "manual", "imported"]
REASONS: tuple[Reason, ...] = ("unsubscribed", "bounced", "complained", "manual", "imported")


@dataclass(frozen=True)
class Suppression:
    email: str
    reason: str
    note: str | None
    source: str | None
    created_at: dt.datetime

    def describe(self) -> str:
        """Why, in a few words: "unsubscribed on 2026-03-02"."""
        return f"{self.reason} on {self.created_at:%Y-%m-%d}"


# Built once: bounces and unsubscribes read from a mailbox come by the thousand.
_KNOWN = select(suppressions.c.email).where(
    suppressions.c.email.in_(bindparam("b_emails", expanding=True))
)
_INSERT = suppressions.insert()


def key(email: str) -> str:
    """Addresses compare case-insensitively, as everywhere in cadence."""
    return email.strip().lower()


def add(
    connection: Connection,
    emails: Iterable[str],
    reason: Reason,
    at: dt.datetime,
    *,
    source: str | None = None,
    note: str | None = None,
) -> list[str]:
    """Suppress ``emails`` (normalised already); returns those that were not
    suppressed before (an address keeps its first reason)."""
    wanted = {key(email) for email in emails}
    if not wanted:
        return []
    known = set(connection.execute(_KNOWN, {"b_emails": sorted(wanted)}).scalars())
    new = sorted(wanted - known)
    if new:
        connection.execute(
            _INSERT,
            [
                {
                    "email": email,
                    "reason": reason,
                    "note": note,
                    "source": source,
                    "created_at": at,
                }
                for email in new
            ],
        )
    return new


def remove(connection: Connection, emails: Iterable[str]) -> int:
    wanted = {key(email) for email in emails}
    if not wanted:
        return 0
    return int(
        connection.execute(delete(suppressions).where(suppressions.c.email.in_(wanted))).rowcount
    )


def among(connection: Connection, emails: Iterable[str]) -> dict[str, Suppression]:
    """The suppressed addresses among ``emails``, by their key."""
    wanted = {key(email) for email in emails}
    if not wanted:
        return {}
    rows = connection.execute(select(suppressions).where(suppressions.c.email.in_(wanted)))
    return {row.email: _suppression(row) for row in rows}


def listing(connection: Connection, reason: str | None = None) -> list[Suppression]:
    query = select(suppressions).order_by(suppressions.c.email)
    if reason is not None:
        query = query.where(suppressions.c.reason == reason)
    return [_suppression(row) for row in connection.execute(query)]


def count(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(suppressions)).scalar_one())


def _suppression(row: Any) -> Suppression:
    return Suppression(row.email, row.reason, row.note, row.source, row.created_at)
