"""Progress of long commands (enroll, plan -o, migrate) on a terminal: a bar
with the count, the total and the time left, on stderr. Quiet when stderr is
not a terminal (CI, pipes, logs), so output stays clean for tools.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

Advance = Callable[[int], None]  # the count done so far


@contextmanager
def progress(
    label: str,
    total: int | None,
    *,
    enabled: bool = True,
    stream: IO[str] | None = None,
    force: bool = False,
) -> Iterator[Advance]:
    """A bar for ``label`` while the block runs; yields a function taking the
    count done so far. ``force`` draws it even off a terminal (tests)."""
    import sys

    out = stream or sys.stderr
    if not enabled or not (force or _is_terminal(out)):
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(file=out, force_terminal=force or None)
    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(label, total=total)

        def advance(done: int) -> None:
            bar.update(task, completed=done)

        yield advance


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


def count_rows(path: str) -> int | None:
    """About how many people a file holds (its lines, less a CSV header), read
    fast; ``None`` for standard input or what cannot be read."""
    if path == "-":
        return None
    try:
        with Path(path).open("rb") as handle:
            lines, first, last = 0, b"", b"\n"
            while chunk := handle.read(1 << 20):
                first = first or chunk[:1]
                lines += chunk.count(b"\n")
                last = chunk[-1:]
    except OSError:
        return None
    lines += last != b"\n"  # a last line without its newline
    return max(0, lines - (first != b"{"))  # JSON Lines have no header
