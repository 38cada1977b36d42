"""A program that embeds cadence, as a tool would: written against the
public names only (``cadence.*``), and type-checked with ``mypy --strict``
by tests/test_public_api.py, which also runs it.

Usage: python embedder.py CAMPAIGN DB
"""

from __future__ import annotations

import datetime as dt
import sys
from zoneinfo import ZoneInfo

import cadence


def main(campaign: str, db: str) -> int:
    result: cadence.CompileResult = cadence.compile_file(campaign)
    if not result.ok or result.ir is None:
        print(result.render(), file=sys.stderr)
        return 1
    ir: cadence.Campaign = result.ir
    people = [
        {"email": "ada@example.com", "first_name": "Ada", "company": "Acme"},
        {"first_name": "NoMail", "company": "X"},
    ]
    start = dt.datetime(2026, 1, 5, 9, tzinfo=ZoneInfo("America/New_York"))
    planned: cadence.Plan = cadence.plan(ir, people, start, overrides={"breakup": "10:15"})
    actions: list[cadence.Action] = list(planned)
    problems: list[cadence.RowProblem] = planned.problems
    print(f"{len(actions)} actions; skipped: {'; '.join(str(p) for p in problems)}")
    print(actions[0].model_dump_json())
    try:
        cadence.plan(ir, people, start, overrides={"value": "10:15"})
    except cadence.CadenceError as error:
        print(f"refused: {error}")
    now = dt.datetime(2026, 1, 5, 8, tzinfo=dt.UTC)
    try:
        engine = cadence.Engine.open(db, now=now)
    except cadence.StoreError as error:
        print(f"no database: {error}", file=sys.stderr)
        return 2
    try:
        report = engine.enroll(ir, people, start, now=now)
        print(f"enrolled {report.enrolled}; refused {len(report.problems)}")
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
