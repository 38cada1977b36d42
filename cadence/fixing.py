"""Applying the fixes diagnostics carry (``cadence check --fix``).

A fix is a set of edits over spans of one or more files. Fixes are applied
per file from the end of the text backwards, so an edit never moves the
positions of the next; a fix whose edits touch text another fix already
changed waits for the next round (after the file is checked again, its
diagnostic may be gone, or come back with a fresh span).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cadence.diagnostics import Diagnostic, Fix
from cadence.span import Span


@dataclass(frozen=True)
class Applied:
    """What one round changed: each file's new text, and how many fixes."""

    texts: dict[str, str]
    fixes: int


def chosen_fixes(diagnostics: Iterable[Diagnostic], *, unsafe: bool = False) -> list[Fix]:
    """The first fix of each diagnostic that has one (safe ones only, unless
    ``unsafe``)."""
    chosen = []
    for diagnostic in diagnostics:
        fix = next((f for f in diagnostic.fixes if f.safe or unsafe), None)
        if fix is not None:
            chosen.append(fix)
    return chosen


def apply_fixes(texts: dict[str, str], fixes: Sequence[Fix]) -> Applied:
    """``fixes`` applied to ``texts`` (file → text): those that can all go in
    together, in the order given; the others are left for another round."""
    taken: list[Fix] = []
    claimed: dict[str, list[tuple[int, int]]] = {}
    for fix in fixes:
        ranges = [
            (edit.span.file, _range(texts.get(edit.span.file), edit.span)) for edit in fix.edits
        ]
        if any(found is None for _, found in ranges):
            continue  # a file not read, or a span past its end
        if any(_overlaps(claimed.get(file, []), found) for file, found in ranges if found):
            continue
        for file, found in ranges:
            assert found is not None
            claimed.setdefault(file, []).append(found)
        taken.append(fix)
    edits: dict[str, list[tuple[int, int, str]]] = {}
    for fix in taken:
        for edit in fix.edits:
            found = _range(texts[edit.span.file], edit.span)
            assert found is not None
            edits.setdefault(edit.span.file, []).append((*found, edit.text))
    changed = {file: _edited(texts[file], found) for file, found in edits.items()}
    return Applied(changed, len(taken))


def _edited(text: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, new in sorted(edits, key=lambda edit: edit[:2], reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _overlaps(ranges: list[tuple[int, int]], found: tuple[int, int]) -> bool:
    start, end = found
    # Two insertions at one point would come out in either order: one waits.
    return any((start < other_end and other_start < end) or start == other_start
               for other_start, other_end in ranges)  # fmt: skip


def _range(text: str | None, span: Span) -> tuple[int, int] | None:
    """``span`` as offsets into ``text`` (lines end at ``\\n``; columns count
    characters, as the parser counts them)."""
    if text is None:
        return None
    start, end = (
        _offset(text, span.line, span.column),
        _offset(text, span.end_line, span.end_column),
    )
    if start is None or end is None or end < start:
        return None
    return start, end


def _offset(text: str, line: int, column: int) -> int | None:
    position = 0
    for _ in range(line - 1):
        position = text.find("\n", position) + 1
        if position == 0:
            return None
    line_end = text.find("\n", position)
    line_end = len(text) if line_end == -1 else line_end
    offset = position + column - 1
    return offset if position <= offset <= line_end + 1 else None
