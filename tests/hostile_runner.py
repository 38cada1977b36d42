"""Runs CLI cases in this one process under a memory limit and a time limit
per case, and prints what each did as JSON Lines (used by test_hostile_cli).

Usage: ``python -m tests.hostile_runner CASES.json`` where the file holds a list
of ``{"name": ..., "args": [...], "stdin": ...}``. One process for all the
cases: starting Python for each would cost most of the time.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
import traceback
from typing import Any

MEMORY_LIMIT = 1536 * 1024 * 1024
SECONDS_PER_CASE = 60


class CaseTimeout(BaseException):  # not caught by CliRunner as a crash
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise CaseTimeout


def main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    signal.signal(signal.SIGALRM, _alarm)
    from click.testing import CliRunner

    from cadence.cli import cli

    with open(sys.argv[1], encoding="utf-8") as handle:
        cases = json.load(handle)
    for case in cases:
        signal.alarm(SECONDS_PER_CASE)
        try:
            result = CliRunner().invoke(
                cli, case["args"], input=case.get("stdin"), catch_exceptions=True
            )
            crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
            error = "".join(traceback.format_exception(result.exception)) if crashed else None
            outcome = {
                "name": case["name"],
                "exit": result.exit_code,
                "stderr": result.stderr[-2000:],
                "traceback": error or ("Traceback" in result.output + result.stderr),
            }
        except CaseTimeout:
            outcome = {"name": case["name"], "exit": None, "stderr": "", "timeout": True}
        finally:
            signal.alarm(0)
        print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
