"""What holds people's data stays theirs: a new SQLite store (and its -wal and
-shm files) is readable by its owner only, and a password a database URL
carries in its query string is never shown."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence.cli import cli
from cadence.runtime.redact import redact
from cadence.runtime.store import Store
from tests.engine_db import POSTGRES

T0 = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_sqlite_store_and_its_journal_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: files 0644 unless made otherwise
    try:
        store = Store.open(str(tmp_path / "c.db"), now=T0)  # writes: the schema
        files = sorted(p.name for p in tmp_path.iterdir())
        modes = {p.name: mode(p) for p in tmp_path.iterdir()}
        store.close()
    finally:
        os.umask(old)
    assert files == ["c.db", "c.db-shm", "c.db-wal"]
    assert modes == {"c.db": 0o600, "c.db-shm": 0o600, "c.db-wal": 0o600}


def test_an_existing_store_keeps_the_permissions_its_owner_chose(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    Store.open(str(path), now=T0).close()
    path.chmod(0o640)
    Store.open(str(path), now=T0).close()
    assert mode(path) == 0o640


@pytest.mark.parametrize("name", ["password", "PASSWORD", "sslpassword"])
def test_a_password_in_a_urls_query_string_is_never_shown(name: str) -> None:
    url = f"postgresql://app@db:5432/x?sslmode=require&{name}=hunter2"
    assert redact(url) == f"postgresql://app@db:5432/x?sslmode=require&{name}=***"
    bad_port = POSTGRES.replace("5432", "1") + f"?{name}=hunter2&connect_timeout=2"
    result = CliRunner().invoke(cli, ["tasks", "--db", bad_port])
    assert result.exit_code == 2, result.output
    assert "hunter2" not in result.stderr and f"{name}=***" in result.stderr
