"""Versioned schema migrations: a `schema_version` table and ordered steps.

A database is brought to :data:`LATEST` inside one transaction; a database of
a newer version than this cadence knows is refused, untouched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import Connection, Table, inspect, select, text, update

from cadence.compiler.ir import IRError, behaviour_digest, identity, load_ir
from cadence.errors import CadenceError
from cadence.runtime import schema
from cadence.runtime.message_ids import SECRET_NAME, new_secret

Migration = Callable[[Connection], None]


def _initial(connection: Connection) -> None:
    tables = [schema.campaigns, schema.enrollments, schema.actions, schema.feed]
    schema.metadata.create_all(connection, tables=tables)


def _suppressions(connection: Connection) -> None:
    schema.suppressions.create(connection, checkfirst=True)


def _add_columns(connection: Connection, table: Table, *names: str) -> None:
    """Columns a later step added to ``table``, unless it has them: a new
    database got today's tables from the first step already."""
    have = {column["name"] for column in inspect(connection).get_columns(table.name)}
    for name in names:
        if name not in have:
            kind = table.c[name].type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"))


def _inbound(connection: Connection) -> None:
    _add_columns(connection, schema.enrollments, "paused_until")
    schema.metadata.create_all(connection, tables=[schema.inbound])


def _mailbox_usage(connection: Connection) -> None:
    schema.mailbox_usage.create(connection, checkfirst=True)


def _mailbox_sends(connection: Connection) -> None:
    schema.metadata.create_all(connection, tables=[schema.mailbox_sends])


def _enrollment_mailboxes(connection: Connection) -> None:
    _add_columns(connection, schema.enrollments, "mailbox")
    # Not `create(checkfirst=True)`: reflecting an expression index warns.
    connection.execute(
        text("CREATE INDEX IF NOT EXISTS enrollments_by_person ON enrollments (lower(person))")
    )


def _campaign_versions(connection: Connection) -> None:
    """Campaigns become versions of a campaign: the rows of one name are its
    versions, one per distinct behaviour, numbered in the order they came."""
    _add_columns(connection, schema.campaigns, "identity", "version", "behaviour")
    connection.execute(
        text("CREATE INDEX IF NOT EXISTS campaign_versions ON campaigns (identity, behaviour)")
    )
    table = schema.campaigns
    rows = connection.execute(
        select(table.c.id, table.c.name, table.c.ir)
        .where(table.c.identity.is_(None))
        .order_by(table.c.created_at, table.c.id)
    ).all()
    numbers: dict[str, dict[str, int]] = {}  # identity -> behaviour -> version
    for key, name, stored in rows:
        try:
            ir = load_ir(stored)
            who, digest = identity(ir), behaviour_digest(ir)
        except IRError:  # kept as it was: a version of its own
            who, digest = name, key
        versions = numbers.setdefault(who, {})
        version = versions.setdefault(digest, len(versions) + 1)
        connection.execute(
            update(table)
            .where(table.c.id == key)
            .values(identity=who, version=version, behaviour=digest)
        )


def _sends_in_order(connection: Connection) -> None:
    connection.execute(
        text(
            "CREATE INDEX IF NOT EXISTS actions_pending_in_order "
            "ON actions (due_at, enrollment_id, position) WHERE status = 'pending'"
        )
    )
    connection.execute(
        text(
            "CREATE INDEX IF NOT EXISTS actions_claimed_by_lease "
            "ON actions (lease_until) WHERE status = 'claimed'"
        )
    )
    connection.execute(
        text(
            "CREATE INDEX IF NOT EXISTS enrollments_paused "
            "ON enrollments (paused_until) WHERE paused_until IS NOT NULL"
        )
    )
    analyze(connection)  # so the planners use the new indexes from the first claim on


def _http_server(connection: Connection) -> None:
    schema.metadata.create_all(connection, tables=[schema.api_tokens, schema.idempotency_keys])


def _logins(connection: Connection) -> None:
    schema.metadata.create_all(connection, tables=[schema.users, schema.sessions])


def _open_tasks_in_order(connection: Connection) -> None:
    connection.execute(
        text(
            "CREATE INDEX IF NOT EXISTS actions_open_in_order "
            "ON actions (due_date, enrollment_id, position) WHERE status = 'open'"
        )
    )
    analyze(connection)


def _variants(connection: Connection) -> None:
    _add_columns(connection, schema.actions, "variant")


def _signed_message_ids(connection: Connection) -> None:
    """A secret of the store's own, with which Message-IDs are signed
    (runtime/message_ids.py). Message-IDs sent before stay recognised as the
    exact ids their sends were recorded with."""
    table = schema.store_secrets
    table.create(connection, checkfirst=True)
    if connection.execute(select(table.c.name).where(table.c.name == SECRET_NAME)).first():
        return  # a secret once made is kept: Message-IDs already signed stay ours
    row = {"name": SECRET_NAME, "value": new_secret(), "created_at": dt.datetime.now(dt.UTC)}
    connection.execute(table.insert().values(**row))


def _pause_reasons(connection: Connection) -> None:
    _add_columns(connection, schema.enrollments, "paused_why")
    connection.execute(
        text(
            "CREATE INDEX IF NOT EXISTS feed_moves ON feed (enrollment_id) "
            "WHERE event IN ('rolled', 'late')"
        )
    )


def analyze(connection: Connection) -> None:
    """Statistics for the planner on the tables claims read."""
    connection.execute(text("ANALYZE actions"))
    connection.execute(text("ANALYZE enrollments"))


MIGRATIONS: list[tuple[int, str, Migration]] = [
    (1, "campaigns, enrollments, actions and the live feed", _initial),
    (2, "the suppression list", _suppressions),
    (3, "inbound mail, and pauses", _inbound),
    (4, "daily caps of sender mailboxes", _mailbox_usage),
    (5, "throttles of sender mailboxes", _mailbox_sends),
    (6, "the mailbox each person sends from; people by address", _enrollment_mailboxes),
    (7, "campaigns with versions: one identity, a version per behaviour", _campaign_versions),
    (8, "due sends indexed in the order they go out; claims by lease; pauses", _sends_in_order),
    (9, "the HTTP server: API tokens, idempotency keys", _http_server),
    (10, "people who log in to the pages: users and their sessions", _logins),
    (11, "open tasks indexed in the order the command center lists them", _open_tasks_in_order),
    (12, "each person's variant of an email in a test", _variants),
    (13, "a secret of the store's own that signs Message-IDs", _signed_message_ids),
    (14, "why each paused person is paused; the feed's moves of a step", _pause_reasons),
]
LATEST = MIGRATIONS[-1][0]


class SchemaError(CadenceError, RuntimeError):
    """The database was written by a newer cadence, or is not cadence's."""


# Any number will do, as long as every cadence uses the same one.
MIGRATION_LOCK = 0x63616465  # "cade"


def current_version(connection: Connection, *, strict: bool = True) -> int:
    """The database's schema version (0: new); raises :class:`SchemaError` for
    one this cadence cannot use. Only reads. Not ``strict``, tables of ours
    without a version are no reason to refuse yet: another process may be
    migrating the database right now (only under the migration lock is that
    decided)."""
    inspector = inspect(connection)
    if not inspector.has_table("schema_version"):
        if not strict:
            return 0
        ours = sorted(
            name for name in schema.metadata.tables if name != "schema_version"
            if inspector.has_table(name)
        )  # fmt: skip
        if ours:
            raise SchemaError(
                f"not a cadence database: it has tables named {', '.join(ours)} that cadence "
                "did not make; use another database"
            )
        return 0
    found = connection.execute(select(schema.schema_version.c.version)).scalars().all()
    version = max(found, default=0)
    if version > LATEST:
        raise SchemaError(
            f"the database has schema version {version}; this cadence knows up to {LATEST}: "
            "upgrade cadence"
        )
    return version


def lock_for_migration(connection: Connection) -> None:
    """Let one process at a time migrate (PostgreSQL: a transaction-scoped
    advisory lock; SQLite's writer lock already does this). Without it, two
    commands on a new database create the same tables at once and one fails."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})


def migrate(connection: Connection, now: dt.datetime) -> int:
    """Apply every migration the database lacks; returns the version reached.
    Call it in a write transaction, after :func:`lock_for_migration`."""
    version = current_version(connection)
    schema.schema_version.create(connection, checkfirst=True)
    for number, _title, apply in MIGRATIONS:
        if number > version:
            apply(connection)
            connection.execute(
                schema.schema_version.insert().values(version=number, applied_at=now)
            )
            version = number
    return version
