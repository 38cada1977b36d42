"""Opening the engine's database: SQLite (embedded default, one file, WAL) or
PostgreSQL (scale-out, several dispatchers). Every change happens inside
:meth:`Store.transaction`, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import operator
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Table, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    DBAPIError,
    DisconnectionError,
    OperationalError,
)
from sqlalchemy.types import TypeEngine

from cadence.errors import CadenceError
from cadence.runtime.migrations import (
    LATEST,
    analyze,
    current_version,
    lock_for_migration,
    migrate,
)
from cadence.runtime.redact import redact

DEFAULT_DB = "cadence.db"


def insert_if_absent(dialect: str, table: Table, row: dict[str, Any]) -> Any:
    """INSERT … ON CONFLICT DO NOTHING, on either database: two writers that
    make the same row at once both succeed."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).values(**row).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).values(**row).on_conflict_do_nothing()


def insert_rows(connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (every row with the same keys) with one executemany,
    without SQLAlchemy's per-row work: the statement is compiled once, and
    each column's conversion for the database runs once per distinct value
    (enroll writes the same times, steps and statuses for many people)."""
    if not rows:
        return
    dialect = connection.dialect
    names = list(rows[0])
    if dialect.name == "postgresql":
        _copy_rows(connection, table, names, rows)
        return
    compiled = table.insert().compile(dialect=dialect, column_keys=names)
    order = list(compiled.positiontup or ()) if compiled.positional else names
    values = _values(table, order, dialect)
    if compiled.positional:
        params: list[Any] = [tuple(values(row)) for row in rows]
    else:
        params = [dict(zip(order, values(row), strict=True)) for row in rows]
    connection.exec_driver_sql(str(compiled), params)


def _values(
    table: Table, names: list[str], dialect: Dialect
) -> Callable[[Mapping[str, Any]], list[Any]]:
    """A row's values for ``names``, converted for the database (only the
    columns whose type converts anything are touched)."""
    pick = operator.itemgetter(*names)
    single = len(names) == 1
    converting = [
        (index, convert)
        for index, convert in enumerate(_converter(table.c[name].type, dialect) for name in names)
        if convert is not _same
    ]

    def values(row: Mapping[str, Any]) -> list[Any]:
        found = [pick(row)] if single else list(pick(row))
        for index, convert in converting:
            found[index] = convert(found[index])
        return found

    return values


def insert_returning_ids(
    connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> list[int]:
    """Insert ``rows`` into ``table`` (an integer ``id`` from a sequence) and
    return their ids in order. PostgreSQL: the ids are taken from the
    sequence in one query and the rows copied with them (``COPY``), where
    ``INSERT … RETURNING`` sends statements of thousands of parameters."""
    if not rows:
        return []
    if connection.dialect.name != "postgresql":
        inserted = connection.execute(
            table.insert().returning(table.c.id, sort_by_parameter_order=True), list(rows)
        )
        return list(inserted.scalars().all())
    sequence = connection.execute(
        text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": table.name}
    ).scalar_one()
    ids = list(
        connection.execute(
            text("SELECT nextval(:sequence) FROM generate_series(1, :count)"),
            {"sequence": sequence, "count": len(rows)},
        ).scalars()
    )
    _copy_rows(
        connection,
        table,
        ["id", *rows[0]],
        [{"id": n, **row} for n, row in zip(ids, rows, strict=True)],
    )
    return ids


def _copy_rows(
    connection: Connection, table: Table, names: list[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """PostgreSQL: ``COPY … FROM STDIN``, many times faster than row-by-row
    INSERTs (psycopg's executemany sends one statement per row)."""
    quote = connection.dialect.identifier_preparer.quote
    values = _values(table, names, connection.dialect)
    columns = ", ".join(quote(name) for name in names)
    raw: Any = connection.connection.driver_connection
    statement = f"COPY {quote(table.name)} ({columns}) FROM STDIN"
    import psycopg

    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(values(row))
    except psycopg.Error as error:
        # As SQLAlchemy raises them for any statement (IntegrityError,
        # DataError…), so callers' handlers see the same exceptions.
        raise DBAPIError.instance(statement, None, error, psycopg.Error) from error


def _converter(kind: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any]:
    """The column type's conversion of a value for the database, remembered
    per distinct (hashable) value."""
    process = kind.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return _same
    done: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        # Aware times of one zone compare equal across a DST fold (01:30
        # twice): their offset tells them apart.
        key = (value, value.utcoffset()) if isinstance(value, dt.datetime) else value
        try:
            return done[key]
        except KeyError:
            result = done[key] = process(value)
            return result
        except TypeError:  # not hashable (a JSON object)
            return process(value)

    return convert


def _same(value: Any) -> Any:
    return value


def database_url(db: str) -> str:
    """``--db`` as a SQLAlchemy URL: a path is a SQLite file, a
    ``postgresql://`` URL uses psycopg 3."""
    if "://" not in db:
        return f"sqlite:///{Path(db)}"
    if db.startswith("postgresql://") or db.startswith("postgres://"):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    return db


class StoreError(CadenceError):
    """A database cadence cannot open: not a SQLite path or a PostgreSQL URL,
    a server that does not answer, a file that is not a database. The message
    names the database (its password hidden) and the reason."""


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    @classmethod
    def open(
        cls, db: str, *, now: dt.datetime, busy_timeout: float = 30.0, **engine_options: Any
    ) -> Store:
        """Open (and create or migrate) the database ``db``. On SQLite a writer
        waits up to ``busy_timeout`` seconds for another writer."""
        url = database_url(db)
        try:
            parsed = make_url(url)
        except ArgumentError as error:
            raise StoreError(
                f"{redact(db)!r} is not a SQLite path or a postgresql:// URL"
            ) from error
        except ValueError:  # what SQLAlchemy cannot take apart: a port of letters
            raise StoreError(
                f"{redact(db)!r} is not a database URL cadence can read: its host or port "
                "cannot be taken apart (a port is a number, like :5432)"
            ) from None
        try:
            if parsed.get_backend_name() == "sqlite":
                _create_private(parsed.database)
                engine = create_engine(url, **engine_options)
                _sqlite_settings(engine, busy_timeout)
            else:
                engine = create_engine(url, **engine_options)
                _ping_when_idle(engine)
        except ImportError as error:  # a database kind whose driver is not installed
            raise StoreError(
                f"{redact(db)}: cadence works with SQLite and PostgreSQL databases"
            ) from error
        except ArgumentError as error:  # NoSuchModuleError too: an unknown database kind
            raise StoreError(
                f"{redact(db)!r} is not a SQLite path or a postgresql:// URL"
            ) from error
        store = cls(engine)
        try:
            store._migrate(now)
        except (OperationalError, DatabaseError) as error:
            engine.dispose()
            reason = str(error.orig).strip() if error.orig else str(error)
            raise StoreError(f"cannot open the database {redact(db)}: {reason}") from error
        except BaseException:
            engine.dispose()
            raise
        return store

    def _migrate(self, now: dt.datetime) -> None:
        """Bring the schema up to date. The check only reads, so opening a
        current database never waits for a writer (a long enroll, a
        dispatcher); only a database that needs migrating takes the lock."""
        with self.read() as connection:
            if current_version(connection, strict=False) == LATEST:
                return
        for attempt in range(MIGRATION_ATTEMPTS):
            try:
                with self.transaction() as connection:
                    lock_for_migration(connection)
                    migrate(connection, now)
                return
            except OperationalError as error:
                # Building an index while an older cadence enrolls can deadlock
                # (PostgreSQL picks one to abort): the migration tries again.
                if attempt + 1 == MIGRATION_ATTEMPTS or not _deadlock(error):
                    raise
                time.sleep(0.2 * (attempt + 1))

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A transaction that only reads: on SQLite it does not take the write
        lock (WAL lets it read beside a writer)."""
        with self.engine.connect() as connection:
            connection.info["read_only"] = True
            try:
                with connection.begin():
                    yield connection
            finally:
                connection.info.pop("read_only", None)

    def refresh_statistics(self, *, full: bool) -> None:
        """Have the query planner look at the tables again: ``full`` after a
        big change (``ANALYZE``: without numbers, SQLite sorts every due send
        to find the first hundred; 300,000 actions take it about 50 ms), else
        SQLite's ``PRAGMA optimize`` (taken again only for tables that grew a
        lot; PostgreSQL's autovacuum does that). Best effort: what it follows
        is done and committed, so a busy database only means the numbers wait
        for the next time."""
        if not full and self.dialect != "sqlite":
            return
        try:
            with self.transaction() as connection:
                if full:
                    analyze(connection)
                else:
                    connection.exec_driver_sql("PRAGMA optimize")
        except (OperationalError, DatabaseError) as error:
            log.warning("cannot refresh the database's statistics (%s)", error.orig)

    def close(self) -> None:
        self.engine.dispose()


MIGRATION_ATTEMPTS = 5
log = logging.getLogger("cadence.store")


def _deadlock(error: OperationalError) -> bool:
    code = getattr(error.orig, "sqlstate", None)
    return code in ("40P01", "55P03")  # deadlock detected, lock not available


IDLE_PING = 10.0  # seconds a pooled connection may rest before it is pinged again


def _ping_when_idle(engine: Engine) -> None:
    """Ping a pooled connection before use only when it rested a while (the
    server may have closed it meanwhile): ``pool_pre_ping`` pings at every
    checkout, a round trip per transaction, which a busy dispatcher does
    thousands of times a minute on connections used a moment ago."""

    @event.listens_for(engine, "checkin")
    def _rested(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        rested = record.info.get("checked_in")
        if rested is None or time.monotonic() - rested < IDLE_PING:
            return  # new, or used a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError(str(error)) from error  # the pool opens another
        if not alive:
            raise DisconnectionError("the database closed the connection")


def _create_private(path: str | None) -> None:
    """A new SQLite database file, readable by its owner only: it holds
    people's data, inbound mail and password hashes. SQLite makes its -wal and
    -shm files with the database file's permissions, so they are private too.
    A file that exists keeps its permissions (its owner chose them); one that
    cannot be made here is left for SQLite to report."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    # It exists, or its folder does not: SQLite says which.
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_settings(engine: Engine, busy_timeout: float) -> None:
    """WAL (readers never wait for the writer), foreign keys, a busy timeout,
    and BEGIN IMMEDIATE so two writers queue instead of failing mid-way."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy issues BEGIN itself
        cursor = dbapi_connection.cursor()
        # The busy timeout first: even `journal_mode` needs a lock, and without
        # the timeout a busy database refuses it at once ("database is locked").
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        read_only = connection.info.get("read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
