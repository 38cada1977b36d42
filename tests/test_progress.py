"""Long commands show a bar with the count, the total and the time left on a
terminal, and nothing anywhere else."""

from __future__ import annotations

import io
from pathlib import Path

from cadence.progress import count_rows, progress


def test_a_bar_counts_up_to_the_total_on_a_terminal() -> None:
    out = io.StringIO()
    with progress("enroll", 3, stream=out, force=True) as advance:
        for done in (1, 2, 3):
            advance(done)
    shown = out.getvalue()
    assert "enroll" in shown and "3/3" in shown


def test_off_a_terminal_there_is_no_bar() -> None:
    out = io.StringIO()  # not a terminal: a pipe, a log, CI
    with progress("enroll", 3, stream=out) as advance:
        advance(3)
    assert out.getvalue() == ""


def test_rows_are_counted_fast_without_the_header(tmp_path: Path) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text("email\na@x.example\nb@x.example")  # no newline at the end
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"email": "a@x.example"}\n{"email": "b@x.example"}\n')
    assert (count_rows(str(csv)), count_rows(str(jsonl))) == (2, 2)
    assert count_rows("-") is None and count_rows(str(tmp_path / "missing.csv")) is None
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert count_rows(str(empty)) == 0


def _on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``cadence ARGS`` with its stderr on a pseudo-terminal; its exit
    code and what the terminal showed."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    env = os.environ | {"TERM": "xterm", "COLUMNS": "120"}
    child = subprocess.Popen(
        [sys.executable, "-m", "cadence", *args],
        cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower, env=env,
    )  # fmt: skip
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return child.wait(timeout=60), shown.decode("utf-8", "replace")


def test_run_shows_a_bar_while_it_catches_up_on_a_backlog(tmp_path: Path) -> None:
    import datetime as dt

    from cadence.compiler import compile_source
    from cadence.runtime.engine import Engine

    source = 'campaign "Launch" { day 1 { email hello { send choose subject "Hi" body "Hi" } } }'
    ir = compile_source(source, "launch.campaign").ir
    assert ir is not None
    start = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
    engine = Engine.open(str(tmp_path / "cadence.db"), now=start)
    people = [{"email": f"p{n}@example.com"} for n in range(150)]  # more than a batch
    engine.enroll(ir, people, start, now=start)
    assert engine.count_due(start) == 150
    engine.close()
    args = ["run", "--db", "cadence.db", "--outbox", "out", "--once", "--now", "2026-01-05T09:05Z"]
    code, shown = _on_a_terminal(args, tmp_path)
    assert code == 0, shown
    assert "catching up" in shown and "150/150" in shown
    assert len(list((tmp_path / "out").glob("*.eml"))) == 150
    # Nothing left: the next pass is the one-line summary, no bar.
    code, shown = _on_a_terminal(args, tmp_path)
    assert code == 0 and "catching up" not in shown and "sent 0" in shown
