"""Databases for engine tests: a SQLite file, or a fresh PostgreSQL schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

POSTGRES = os.environ.get("CADENCE_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432/test")


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(
            POSTGRES.replace("postgresql+psycopg", "postgresql"), connect_timeout=3
        ):
            return True
    except Exception:
        return False


@contextmanager
def _fresh_schema() -> Iterator[str]:
    """A new PostgreSQL schema, dropped afterwards (skips, or fails in CI, without one)."""
    if not postgres_available():
        if os.environ.get("CADENCE_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required but not reachable at {POSTGRES}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES}")
    import psycopg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A database URL and engine options, dropped afterwards."""
    if kind == "sqlite":
        yield str(tmp_path / "cadence.db"), {}
        return
    with _fresh_schema() as schema:
        yield POSTGRES, {"connect_args": {"options": f"-csearch_path={schema}"}}


@contextmanager
def database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    """A database the command line can be pointed at: for PostgreSQL the
    schema travels in the URL's connection options."""
    if kind == "sqlite":
        yield str(tmp_path / "cadence.db")
        return
    with _fresh_schema() as schema:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"


@contextmanager
def engine_on(kind: str, tmp_path: Path, now: Any) -> Iterator[Any]:
    """An engine on a fresh database of ``kind``, closed (and dropped) afterwards."""
    from cadence.runtime.engine import Engine
    from cadence.runtime.store import Store

    with database(kind, tmp_path) as (url, options):
        engine = Engine(Store.open(url, now=now, **options))
        try:
            yield engine
        finally:
            engine.close()
