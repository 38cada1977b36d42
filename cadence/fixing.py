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

from cadence.diagnostics import Diagnostic, Edit, Fix
from cadence.source import line_starts, span_offsets


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
    starts = {file: line_starts(text) for file, text in texts.items()}
    claimed: dict[str, list[tuple[int, int]]] = {}
    edits: dict[str, list[tuple[int, int, str]]] = {}
    taken = 0
    for fix in fixes:
        ranges = [(edit, _range(texts, starts, edit)) for edit in fix.edits]
        if any(
            found is None or _overlaps(claimed.get(edit.span.file, []), found)
            for edit, found in ranges
        ):
            continue  # a file not read, a span past its end, or text another fix changes
        for edit, found in ranges:
            assert found is not None
            claimed.setdefault(edit.span.file, []).append(found)
            edits.setdefault(edit.span.file, []).append((*found, edit.text))
        taken += 1
    changed = {file: _edited(texts[file], found) for file, found in edits.items()}
    return Applied(changed, taken)


def _edited(text: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, new in sorted(edits, key=lambda edit: edit[:2], reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _overlaps(ranges: list[tuple[int, int]], found: tuple[int, int]) -> bool:
    start, end = found
    # Two insertions at one point would come out in either order: one waits.
    return any((start < other_end and other_start < end) or start == other_start
               for other_start, other_end in ranges)  # fmt: skip


def _range(
    texts: dict[str, str], starts: dict[str, list[int]], edit: Edit
) -> tuple[int, int] | None:
    """The edit's span as offsets into its file's text (columns count
    characters, as the parser counts them)."""
    text = texts.get(edit.span.file)
    if text is None:
        return None
    return span_offsets(starts[edit.span.file], len(text), tidied(edit, text).span)


def tidied(edit: Edit, text: str) -> Edit:
    """``edit`` as a person would make it: a deletion that leaves its line
    blank takes the whole line (its end included) with it."""
    span = edit.span
    lines = text.split("\n")
    if edit.text or span.end_line >= len(lines) or span.line < 1:
        return edit  # not a deletion, or no line end after it to take
    before = lines[span.line - 1][: span.column - 1]
    after = lines[span.end_line - 1][span.end_column - 1 :]
    if before.strip(" \t") or after.strip(" \t\r"):
        return edit
    whole = span.model_copy(update={"column": 1, "end_line": span.end_line + 1, "end_column": 1})
    return Edit(span=whole, text="")
