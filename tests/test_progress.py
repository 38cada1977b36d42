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
