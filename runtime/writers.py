"""Plans written out: JSON Lines, CSV, a readable table, or an iCalendar file.

Each writer takes a stream of actions and writes as it goes, so a plan for
any number of people is written in constant memory.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from typing import IO, Literal
from zoneinfo import ZoneInfo

import orjson

from cadence.runtime.planner import Action, Planner

PlanFormat = Literal["jsonl", "csv", "table", "ics"]
FIELDS = (
    "person",
    "step",
    "day",
    "kind",
    "due",
    "local",
    "due_date",
    "thread",
    "waits_for",
    "note",
    "send_date",
)
RENDERED = ("subject", "body")
VARIANT = ("variant",)  # a column of campaigns that test variants (none elsewhere)


def write_plan(
    actions: Iterable[Action],
    out: IO[bytes],
    format: PlanFormat,
    *,
    rendered: bool = False,
    csv_safe: bool = True,
    variants: bool = False,
) -> int:
    """Write ``actions``; returns how many were written. ``csv_safe`` (CSV
    only) keeps spreadsheets from reading a cell as a formula; ``variants``
    adds each row's variant (a campaign with a test)."""
    if format == "csv":
        return _csv(actions, out, rendered, safe=csv_safe, variants=variants)
    if format == "jsonl":
        return _jsonl(actions, out, rendered, variants)
    writer = {"table": _table, "ics": _ics}[format]
    return writer(actions, out, rendered)


def _row(action: Action, rendered: bool, variants: bool = False) -> dict[str, object]:
    row: dict[str, object] = {
        "person": action.person,
        "step": action.step,
        "day": action.day,
        "kind": action.kind,
        "due": action.due,
        "local": action.local,
        "due_date": action.due_date,
        "thread": action.thread,
        "waits_for": action.waits_for,
        "note": action.note,
        # The day it goes out where the person is: `due_date` is the step's day,
        # which a sending window or a held reply may have moved it past.
        "send_date": action.local.date() if action.local is not None else None,
    }
    if variants:
        row["variant"] = action.variant
    if rendered:
        row["subject"] = action.subject
        row["body"] = action.body
    return row


def _jsonl(actions: Iterable[Action], out: IO[bytes], rendered: bool, variants: bool) -> int:
    count = 0
    dumps, option = orjson.dumps, orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE
    for action in actions:
        out.write(dumps(_row(action, rendered, variants), option=option))
        count += 1
    return count


class ZoneRows:
    """A plan's JSON Lines or CSV rows as bytes, built once per zone (and
    zone note) with a gap for the person: every row depends only on the zone
    and the step, so a person's rows are one join (plans without rendering)."""

    MAX_KEPT = 4096  # zones and notes kept; a note names the person's own zone text

    def __init__(
        self,
        planner: Planner,
        format: Literal["jsonl", "csv"],
        *,
        csv_safe: bool = True,
    ) -> None:
        self.planner = planner
        self.format = format
        self.csv_safe = csv_safe
        # With a test, rows also depend on the person's variants: a few combinations.
        self.variants = bool(planner.tests)
        self.columns = FIELDS + (VARIANT if self.variants else ())
        self._parts: dict[tuple[str, str | None, tuple[str, ...]], list[bytes]] = {}
        self._cell = io.StringIO()
        self._cell_writer = csv.writer(self._cell, lineterminator="\n")

    def header(self) -> bytes:
        return (",".join(self.columns) + "\n").encode() if self.format == "csv" else b""

    def rows(self, email: str, where: ZoneInfo, note: str | None) -> tuple[bytes, int]:
        """The rows of the person ``email`` in ``where``, and how many."""
        choice = self.planner.variants_of(email) if self.variants else ()
        key = (where.key, note, choice)
        parts = self._parts.get(key)
        if parts is None:
            if len(self._parts) >= self.MAX_KEPT:
                self._parts.clear()
            parts = self._parts[key] = self._build(where, note, choice)
        if len(parts) < 2:
            return b"", 0
        return self._person(email).join(parts), len(parts) - 1

    def _person(self, email: str) -> bytes:
        if self.format == "jsonl":
            return orjson.dumps(email)
        # A cell is quoted (or not) on its own: csv's own quoting, per person.
        self._cell.seek(0)
        self._cell.truncate()
        self._cell_writer.writerow([_neutralised(email) if self.csv_safe else email])
        return self._cell.getvalue()[:-1].encode("utf-8")

    def _build(self, where: ZoneInfo, note: str | None, choice: tuple[str, ...]) -> list[bytes]:
        """The bytes around each gap: ``parts[0] + person + parts[1] + …``."""
        actions = self.planner.actions_in("", where, note, choice)
        rests = [self._rest(action) for action in actions]
        if self.format == "jsonl":
            opening = b'{"person":'
            return [opening] + [rest + opening for rest in rests[:-1]] + rests[-1:]
        return [b"", *rests]

    def _rest(self, action: Action) -> bytes:
        """A row after its person: ``,"step":…}`` and a newline, or the CSV cells."""
        row = _row(action, rendered=False, variants=self.variants)
        del row["person"]
        if self.format == "jsonl":
            option = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE
            return b"," + orjson.dumps(row, option=option)[1:]
        cells = [_iso(row[name]) for name in self.columns[1:]]
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerow(
            [_neutralised(cell) for cell in cells] if self.csv_safe else cells
        )
        return b"," + text.getvalue().encode("utf-8")


def _iso(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") and value.tzinfo is dt.UTC else text
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


class _TextOut:
    """Text written to a binary stream as UTF-8 (what csv and print need)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def write(self, text: str) -> int:
        self.out.write(text.encode("utf-8"))
        return len(text)


# What a spreadsheet starts a formula with (OWASP, "CSV injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _neutralised(cell: str) -> str:
    """A cell a spreadsheet shows as text: a leading `'` before a formula start."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def _csv(
    actions: Iterable[Action], out: IO[bytes], rendered: bool, *, safe: bool, variants: bool
) -> int:
    columns = FIELDS + (VARIANT if variants else ()) + (RENDERED if rendered else ())
    writer = csv.writer(_TextOut(out), lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for action in actions:
        row = _row(action, rendered, variants)
        cells = [_iso(row[name]) for name in columns]
        writer.writerow([_neutralised(cell) for cell in cells] if safe else cells)
        count += 1
    return count


def _table(actions: Iterable[Action], out: IO[bytes], rendered: bool) -> int:
    """A timeline per person, for reading on a terminal."""
    text = _TextOut(out)
    person = None
    count = 0
    for action in actions:
        if action.person != person:
            if person is not None:
                text.write("\n")
            person = action.person
            text.write(f"{person}\n")
        when = (
            f"{action.local:%a %Y-%m-%d %H:%M %Z}"
            if action.local is not None
            else f"{action.due_date:%a %Y-%m-%d}  (task)"
        )
        if action.waits_for:
            when = f"{action.due_date:%a %Y-%m-%d}  after `{action.waits_for}` is sent"
        kind = action.kind.replace("_", " ")
        line = f"  day {action.day:<3} {when:<34} {kind:<10} {action.step}"
        if action.thread:
            line += f"  (reply to {action.thread})"
        if action.variant:
            line += f"  [variant {action.variant}]"
        text.write(line + "\n")
        if action.note:
            text.write(f"          note: {action.note}\n")
        if rendered and action.subject:
            text.write(f"          subject: {action.subject}\n")
        count += 1
    return count


def _ics(actions: Iterable[Action], out: IO[bytes], rendered: bool) -> int:
    """RFC 5545: one event per action; timed for sends, all-day for tasks."""
    out.write(
        b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//cadence//plan//EN\r\nCALSCALE:GREGORIAN\r\n"
    )
    count = 0
    for action in actions:
        lines = ["BEGIN:VEVENT", f"UID:{_ics_text(action.person)}-{_ics_text(action.step)}@cadence"]
        stamp = action.due or dt.datetime.combine(action.due_date, dt.time(), dt.UTC)
        lines.append(f"DTSTAMP:{stamp.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}")
        if action.due is not None:
            lines += [f"DTSTART:{action.due:%Y%m%dT%H%M%SZ}", "DURATION:PT15M"]
        else:
            lines.append(f"DTSTART;VALUE=DATE:{action.due_date:%Y%m%d}")
        what = {
            "email": "Email",
            "email_task": "Email task",
            "call": "Call",
            "inmail": "InMail",
            "custom": "Task",
        }[action.kind]
        lines.append(f"SUMMARY:{_ics_text(f'{what} {action.step}: {action.person}')}")
        details = [part for part in (action.note, action.subject if rendered else None) if part]
        if details:
            lines.append(f"DESCRIPTION:{_ics_text(chr(10).join(details))}")
        lines.append("END:VEVENT")
        out.write("".join(_fold(line) + "\r\n" for line in lines).encode("utf-8"))
        count += 1
    out.write(b"END:VCALENDAR\r\n")
    return count


_ICS_ESCAPES = {"\\": "\\\\", ";": "\\;", ",": "\\,"}
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def _ics_text(value: str) -> str:
    """RFC 5545 TEXT: escapes, any line break (a bare CR too) as ``\\n``, and
    no other control characters (the format allows none but tab)."""
    out = []
    for char in value.replace("\r\n", "\n"):
        if char in _ICS_ESCAPES:
            out.append(_ICS_ESCAPES[char])
        elif char in _LINE_BREAKS:
            out.append("\\n")
        elif char == "\t" or char.isprintable():
            out.append(char)
    return "".join(out)


def _fold(line: str) -> str:
    """Lines longer than 75 octets continue on the next line after a space."""
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line
    parts: list[str] = []
    current = ""
    for char in line:
        limit = 75 if not parts else 74
        if len((current + char).encode("utf-8")) > limit:
            parts.append(current)
            current = char
        else:
            current += char
    parts.append(current)
    return "\r\n ".join(parts)
