"""Two dispatcher processes racing over 2,000 due sends: none lost, none doubled."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cadence.compiler import compile_source
from cadence.runtime.engine import Engine
from cadence.runtime.schema import actions
from cadence.runtime.store import Store
from tests.engine_db import database

T0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
WORKER = """
import datetime as dt, json, pathlib, sys, time
from cadence.runtime.engine import Engine
from cadence.runtime.store import Store
url, options, name, folder = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
now = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
engine = Engine(Store.open(url, now=now, **options))
# Start together, so the two really race.
pathlib.Path(folder, f"ready-{name}").touch()
deadline = time.monotonic() + 60
while len(list(pathlib.Path(folder).glob("ready-*"))) < 2 and time.monotonic() < deadline:
    time.sleep(0.005)
claimed = []
while True:
    batch = engine.claim(now, 25, worker=name)
    if not batch:
        break
    for send in batch:
        engine.mark_sent(send.action_id, f"<cadence.{send.action_id}@test>", now)
        claimed.append(send.action_id)
print(json.dumps(claimed))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_two_dispatchers_share_the_work_exactly(kind: str, tmp_path: Path) -> None:
    ir = compile_source(
        'campaign "race" { day 1 { email e { send choose subject "s" body "b" } } }',
        "race.campaign",
    ).ir
    assert ir is not None
    with database(kind, tmp_path) as (url, options):
        engine = Engine(Store.open(url, now=T0, **options))
        people = [{"email": f"p{n}@example.com"} for n in range(2000)]
        assert engine.enroll(ir, people, T0, now=T0).enrolled == 2000
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, url, json.dumps(options), name, str(tmp_path)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for name in ("one", "two")
        ]
        results = [json.loads(worker.communicate(timeout=240)[0]) for worker in workers]
        assert all(worker.returncode == 0 for worker in workers)
        one, two = (set(result) for result in results)
        assert len(results[0]) == len(one) and len(results[1]) == len(two)  # none twice
        assert not one & two  # never both
        assert len(one | two) == 2000  # none lost
        assert one and two  # both took part
        with engine.store.transaction() as connection:
            statuses = dict(
                connection.execute(
                    select(actions.c.status, func.count()).group_by(actions.c.status)
                ).all()
            )
        assert statuses == {"sent": 2000}
        assert sum(1 for e in engine.feed(limit=10_000) if e.event == "sent") == 2000
        engine.close()
