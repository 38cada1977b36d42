"""Parsing again after an edit, reusing what the edit did not touch (for the
language server, which re-checks on every keystroke).

An edit within one line of one day's block — typing in a subject, changing a
time — changes nothing outside that day: every other node keeps its place.
So only that day is parsed again: the new text with every other day blanked
out (spaces, line breaks kept, so positions stay exact), which is a campaign
of one day with the same header. Anything else — a line added or removed, an
edit in the settings, between days or across a day's edge, a file with syntax
errors before or after — is parsed whole, as ``parse_source`` does. A property
test holds the result to a whole parse of the new text.
"""

from __future__ import annotations

import bisect
import re

from cadence.grammar import ast
from cadence.grammar.parser import ParseResult, parse_source
from cadence.source import line_starts, source_from_text, span_offsets
from cadence.span import Span

_NOT_NEWLINE = re.compile(r"[^\n]")
_BLOCK = 256


def reparse(old: ParseResult, text: str, path: str) -> ParseResult:
    """The parse of ``text`` (the file at ``path``), given ``old``, the parse
    of the text before one edit."""
    reused = _one_day(old, text, path)
    return reused if reused is not None else parse_source(source_from_text(text, path))


def _one_day(old: ParseResult, text: str, path: str) -> ParseResult | None:
    before, campaign = old.source.text, old.campaign
    if before is None or campaign is None or old.diagnostics or not campaign.days:
        return None
    if old.source.had_bom or text.startswith("\ufeff") or old.source.path != path:
        return None
    start, old_end, new_end = _changed(before, text)
    if "\n" in before[start:old_end] or "\n" in text[start:new_end]:
        return None  # lines added or removed: every later position moves
    starts = line_starts(before)
    line = bisect.bisect_right(starts, start)  # 1-based: starts[0] is 0
    blocks = [_block(starts, len(before), day) for day in campaign.days]
    index = _day_holding(campaign, blocks, line, start, old_end)
    if index is None:
        return None
    day = campaign.days[index]
    shift = len(text) - len(before)
    pieces, done = [], 0
    for other, (begin, _, end) in enumerate(blocks):
        if other == index:
            continue
        if other > index:
            begin, end = begin + shift, end + shift
        pieces += [text[done:begin], _NOT_NEWLINE.sub(" ", text[begin:end])]
        done = end
    pieces.append(text[done:])
    parsed = parse_source(source_from_text("".join(pieces), path))
    if parsed.diagnostics or parsed.campaign is None or len(parsed.campaign.days) != 1:
        return None
    new_day = parsed.campaign.days[0]
    if new_day.number != day.number or parsed.campaign.settings != campaign.settings:
        return None
    days = list(campaign.days)
    days[index] = new_day

    # The old file's comments outside the edited day and off the edited line,
    # and the new parse's in the day or on that line (where columns moved);
    # another day's were blanked out of the new parse, and are kept from the old.
    def fresh(span: Span, within: Span) -> bool:
        return _within(span, within) or span.line == line

    comments = sorted(
        [c for c in old.comments if not fresh(c.span, day.span)]
        + [c for c in parsed.comments if fresh(c.span, new_day.span)],
        key=lambda comment: comment.span.start,
    )
    return ParseResult(
        source=source_from_text(text, path),
        campaign=campaign.model_copy(update={"days": tuple(days)}),
        comments=tuple(comments),
        diagnostics=(),
    )


def _changed(before: str, after: str) -> tuple[int, int, int]:
    """Where two texts differ: the start, and the end in each."""
    limit = min(len(before), len(after))
    start = _common_prefix(before, after, limit)
    end = _common_prefix(before[::-1], after[::-1], limit - start)
    return start, len(before) - end, len(after) - end


def _common_prefix(first: str, second: str, limit: int) -> int:
    """How many leading characters the two share, up to ``limit`` (compared a
    block at a time first: the texts are long, an edit small)."""
    shared = 0
    while (
        shared + _BLOCK <= limit
        and first[shared : shared + _BLOCK] == second[shared : shared + _BLOCK]
    ):
        shared += _BLOCK
    while shared < limit and first[shared] == second[shared]:
        shared += 1
    return shared


def _block(starts: list[int], length: int, day: ast.Day) -> tuple[int, int, int]:
    """A day's offsets in the text it was parsed from: where it begins, where
    its number ends, and where it ends (just past its closing brace)."""
    whole = span_offsets(starts, length, day.span)
    number = span_offsets(starts, length, day.number_span)
    assert whole is not None and number is not None  # spans of this very text
    return whole[0], number[1], whole[1]


def _day_holding(
    campaign: ast.Campaign, blocks: list[tuple[int, int, int]], line: int, start: int, end: int
) -> int | None:
    """The day whose block holds the change (after its number, before its
    closing brace) on a line no other day and no campaign brace stands on."""
    if not campaign.span.line < line < campaign.span.end_line:
        return None
    for index, (day, (_, number_end, day_end)) in enumerate(
        zip(campaign.days, blocks, strict=True)
    ):
        if number_end < start and end <= day_end - 1:
            others = [d for d in campaign.days if d is not day]
            if any(_touches(d.span, line) for d in others):
                return None
            return index
    return None


def _within(inner: Span, outer: Span) -> bool:
    return outer.start <= inner.start and inner.end <= outer.end


def _touches(span: Span, line: int) -> bool:
    return span.line <= line <= span.end_line
