"""When someone who is out of office will be back, read from their auto-reply.

Finds the common English phrasings — "back on Wednesday, December 9, 2026",
"out until 09/12", "returning 2026-12-09", "I will be back Monday", "away
through Dec 8th" — and turns them into a date after the day the message was
written. Only the first phrase that names a usable date counts; a message
without one gives ``None`` (the caller then pauses for a configured number of
days). Numeric dates are ambiguous (09/12): the reading that falls soonest
after the message, within three months, wins.
"""

from __future__ import annotations

import datetime as dt
import re

MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
            ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
            ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}  # fmt: skip
WEEKDAYS = {
    name: number
    for number, names in enumerate(
        [("monday", "mon"), ("tuesday", "tue", "tues"), ("wednesday", "wed"),
         ("thursday", "thu", "thur", "thurs"), ("friday", "fri"), ("saturday", "sat"),
         ("sunday", "sun")]
    )
    for name in names
}  # fmt: skip
MAX_AHEAD = dt.timedelta(days=366)
NUMERIC_AHEAD = dt.timedelta(days=92)

_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_WEEKDAY = "|".join(sorted(WEEKDAYS, key=len, reverse=True))
# What introduces the day someone is back, and whether that day is the return
# day itself ("back on", "until") or the last day away ("through").
_CUE = re.compile(
    r"\b(?:(?P<back>back|return(?:ing|s)?|in the office|available|reachable)\s+"
    r"(?:on\s+|by\s+|from\s+)?"
    r"|(?P<until>until|till|til|before)\s+"
    r"|(?P<through>through|thru|up to and including)\s+)",
    re.IGNORECASE,
)
_DATE_FORMS = [
    # 2026-12-09
    ("iso", re.compile(r"(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})")),
    # Wednesday, December 9, 2026 / December 9th / Dec. 9 2026
    ("mdy", re.compile(
        rf"(?:(?:{_WEEKDAY})\.?,?\s+)?(?:the\s+)?(?P<month>{_MONTH})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?"
        r"(?:,?\s+(?P<y>\d{4}))?\b", re.IGNORECASE)),
    # Wednesday 9 December 2026 / 9th of Dec
    ("dmy", re.compile(
        rf"(?:(?:{_WEEKDAY})\.?,?\s+)?(?:the\s+)?(?P<d>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?"
        rf"(?P<month>{_MONTH})\b\.?(?:,?\s+(?P<y>\d{{4}}))?", re.IGNORECASE)),
    # 09/12, 9.12.2026, 12/09/26
    ("numeric", re.compile(r"(?P<a>\d{1,2})[/.](?P<b>\d{1,2})(?:[/.](?P<y>\d{2,4}))?\b")),
    # Monday / next Tuesday
    ("weekday", re.compile(rf"(?:next\s+)?(?P<weekday>{_WEEKDAY})\b", re.IGNORECASE)),
]  # fmt: skip


def return_date(text: str, written: dt.date) -> dt.date | None:
    """The first day the writer is back, or ``None`` when the text names none."""
    for cue in _CUE.finditer(text):
        found = _date_at(text, cue.end(), written)
        if found is None:
            continue
        if cue.group("through"):
            found += dt.timedelta(days=1)
        if written < found <= written + MAX_AHEAD:
            return found
    return None


def _date_at(text: str, position: int, written: dt.date) -> dt.date | None:
    for kind, pattern in _DATE_FORMS:
        match = pattern.match(text, position)
        if match is None:
            continue
        if kind == "weekday":
            return _next_weekday(written, WEEKDAYS[match.group("weekday").lower()])
        if kind == "numeric":
            return _numeric(match, written)
        month = int(match.group("m")) if kind == "iso" else MONTHS[match.group("month").lower()]
        return _dated(written, match.group("y"), month, int(match.group("d")))
    return None


def _dated(written: dt.date, year: str | None, month: int, day: int) -> dt.date | None:
    """A date; without a year, the next one after ``written``."""
    years = [int(year)] if year else [written.year, written.year + 1]
    for candidate in years:
        if candidate < 100:
            candidate += 2000
        try:
            found = dt.date(candidate, month, day)
        except ValueError:
            return None
        if year or found > written:
            return found
    return None


def _numeric(match: re.Match[str], written: dt.date) -> dt.date | None:
    first, second, year = int(match.group("a")), int(match.group("b")), match.group("y")
    readings = [
        _dated(written, year, month, day)
        for day, month in ((first, second), (second, first))  # day/month, then month/day
    ]
    soon = [d for d in readings if d is not None and written < d <= written + NUMERIC_AHEAD]
    return min(soon) if soon else None


def _next_weekday(written: dt.date, weekday: int) -> dt.date:
    ahead = (weekday - written.weekday()) % 7 or 7
    return written + dt.timedelta(days=ahead)
