"""Versioned schema migrations: a `schema_version` table and ordered steps.

A database is brought to :data:`LATEST` inside one transaction; a database of
a newer version than this cadence knows is refused, untouched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import Connection, inspect, select

from cadence.runtime import schema

Migration = Callable[[Connection], None]


def _initial(connection: Connection) -> None:
    tables = [table for name, table in schema.metadata.tables.items() if name != "schema_version"]
    schema.metadata.create_all(connection, tables=tables)


MIGRATIONS: list[tuple[int, str, Migration]] = [
    (1, "campaigns, enrollments, actions and the live feed", _initial),
]
LATEST = MIGRATIONS[-1][0]


class SchemaError(RuntimeError):
    """The database was written by a newer cadence."""


def current_version(connection: Connection) -> int:
    if not inspect(connection).has_table("schema_version"):
        return 0
    found = connection.execute(select(schema.schema_version.c.version)).scalars().all()
    return max(found, default=0)


def migrate(connection: Connection, now: dt.datetime) -> int:
    """Apply every migration the database lacks; returns the version reached."""
    schema.schema_version.create(connection, checkfirst=True)
    version = current_version(connection)
    if version > LATEST:
        raise SchemaError(
            f"the database has schema version {version}; this cadence knows up to {LATEST}: "
            "upgrade cadence"
        )
    for number, _title, apply in MIGRATIONS:
        if number > version:
            apply(connection)
            connection.execute(
                schema.schema_version.insert().values(version=number, applied_at=now)
            )
            version = number
    return version
