"""People to enroll or plan for: read as a stream from CSV or JSON Lines, one
person a row, and checked row by row (docs/semantics.md §8).

A row that cannot be used (no email, a malformed email, a required field
missing, an email seen before) becomes a :class:`RowProblem` naming its line;
the other rows go ahead. Memory stays flat in the number of rows, but for the
duplicate check: 16 bytes of digest per distinct email.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import itertools
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from cadence.errors import CadenceError
from cadence.runtime.addresses import AddressChecker, AddressError, has_control, header_problem
from cadence.runtime.seen import Seen

PeopleFormat = Literal["csv", "jsonl"]


@dataclass(frozen=True, slots=True)
class Person:
    """One row: its line in the input and its fields (``email`` among them)."""

    line: int
    fields: Mapping[str, Any]

    @property
    def email(self) -> str:
        return str(self.fields["email"])


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A row a campaign cannot take: its line in the input, and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


def format_of(path: str) -> PeopleFormat | None:
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return None


# No person's row is this long: a longer line is not a people file (and
# /dev/zero, one endless line, is refused instead of filling the memory).
MAX_LINE_BYTES = 1024 * 1024


class Utf8Lines:
    """The lines of a binary stream as text. A line that is not UTF-8 is kept
    (with replacement characters, so line numbers stay right) and remembered:
    its row becomes a problem naming the line and byte, never a traceback.
    A UTF-8 byte order mark at the start is dropped; a line longer than
    :data:`MAX_LINE_BYTES` is a :class:`PeopleError`."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.number = 0
        self.bad: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = self._stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            raise StopIteration
        self.number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise PeopleError(
                f"line {self.number} is longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB: "
                "not a people file"
            )
        if self.number == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            self.bad[self.number] = (
                f"not UTF-8 text: byte {error.start + 1} of the line is 0x{raw[error.start]:02x}"
            )
            return raw.decode("utf-8", errors="replace")


@contextmanager
def open_people(path: str) -> Iterator[Utf8Lines]:
    """The lines of the people file ``path`` (``-``: standard input); raises
    :class:`OSError` when it cannot be opened."""
    if path == "-":
        yield Utf8Lines(sys.stdin.buffer)
        return
    with open(path, "rb") as handle:
        yield Utf8Lines(handle)


def read_people(
    stream: Iterable[str], format: PeopleFormat | None = None
) -> Iterator[Person | RowProblem]:
    """Rows of ``stream`` (lines of text, or :class:`Utf8Lines`); without
    ``format``, JSON Lines when the first non-blank line starts with ``{``, else CSV."""
    bad = stream.bad if isinstance(stream, Utf8Lines) else {}
    lines: Iterable[str] = stream
    if format is None:
        lines, format = _sniff(iter(stream))
    if format == "jsonl":
        return _read_jsonl(lines, bad)
    return _read_csv(lines, bad)


def _sniff(lines: Iterator[str]) -> tuple[Iterable[str], PeopleFormat]:
    for skipped, line in enumerate(lines):
        if line.strip():
            kind: PeopleFormat = "jsonl" if line.lstrip().startswith("{") else "csv"
            # Blank lines before it are put back so line numbers stay right.
            return itertools.chain(["\n"] * skipped, [line], lines), kind
    return [], "csv"


class PeopleError(CadenceError, ValueError):
    """A people file that cannot be read at all (no `email` column)."""


csv.field_size_limit(16 * 1024 * 1024)  # a long note is fine; a runaway quote is not


def _read_csv(lines: Iterable[str], bad: Mapping[int, str]) -> Iterator[Person | RowProblem]:
    reader = csv.DictReader(lines)
    try:
        header = [name.strip() for name in reader.fieldnames or []]
    except csv.Error as error:
        raise PeopleError(f"the people file is not CSV: {error}") from None
    if bad:
        first = min(bad)
        if first <= reader.line_num:
            raise PeopleError(f"line {first} (the header): {bad[first]}")
    email = next((name for name in header if name.lower() == "email"), None)
    if header and email is None:
        shown = ", ".join(header[:6]) + (", …" if len(header) > 6 else "")
        raise PeopleError(f"the people file has no `email` column (its header: {shown})")
    while True:
        first_line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # a quote that never closes, a huge field
            yield RowProblem(reader.line_num, f"not CSV: {error}")
            return
        broken = next((n for n in range(first_line, reader.line_num + 1) if n in bad), None)
        if broken is not None:
            yield RowProblem(reader.line_num, bad[broken])
            continue
        fields = {key.strip(): value for key, value in row.items() if isinstance(key, str)}
        if email != "email" and email is not None:
            fields["email"] = fields.pop(email, None)
        yield Person(reader.line_num, fields)


def _read_jsonl(lines: Iterable[str], bad: Mapping[int, str]) -> Iterator[Person | RowProblem]:
    for number, line in enumerate(lines, start=1):
        if number in bad:
            yield RowProblem(number, bad[number])
            continue
        if not line.strip():
            continue
        value, problem = _fast_json(line)
        if value is None:
            try:
                value = json.loads(line)
            except RecursionError:
                yield RowProblem(number, "not JSON: nested too deeply")
                continue
            except ValueError as error:
                yield RowProblem(number, f"not JSON: {getattr(error, 'msg', error)}")
                continue
            problem = _field_problem(value) if isinstance(value, dict) else None
        if not isinstance(value, dict):
            yield RowProblem(number, "not a JSON object")
            continue
        if problem is not None:
            yield RowProblem(number, problem)
            continue
        yield Person(number, value)


def _fast_json(line: str) -> tuple[Any, str | None]:
    """A line read by orjson (several times faster) and, for an object, what
    is wrong with its fields; ``None`` where the standard reader must decide:
    what orjson refuses (the standard reader's messages are the ones people
    get; it takes NaN and unpaired surrogates, which are then refused as
    fields) and numbers with a fraction or past 64 bits, which orjson reads
    as floats where the standard reader keeps every digit of an integer."""
    try:
        value = orjson.loads(line)  # refuses unpaired surrogates: the text is UTF-8
    except orjson.JSONDecodeError:
        return None, None
    if type(value) is not dict:
        return value, None
    for kind in map(type, value.values()):
        if kind is float:
            return None, None
        if kind is dict or kind is list:
            return value, _nested(value)
    return value, None


def _nested(fields: dict[str, Any]) -> str | None:
    """The first field holding an object or a list, as a problem."""
    for name, value in fields.items():
        if isinstance(value, dict | list):
            kind = "an object" if isinstance(value, dict) else "a list"
            return f"field `{name}` is {kind}: fields are text, numbers, true, false or null"
    return None


def _field_problem(fields: dict[str, Any]) -> str | None:
    """A person's fields are text, numbers, true/false or null: a nested value
    would reach a template as Python's text for it."""
    nested = _nested(fields)
    if nested is not None:
        return nested
    for name, value in fields.items():
        for text in (name, value):
            if isinstance(text, str) and not _encodable(text):
                return f"field `{name}` holds an unpaired surrogate (\\ud800-\\udfff): not text"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_blake2b = hashlib.blake2b


@dataclass
class PeopleChecker:
    """Checks rows against what the campaign needs; remembers emails seen.

    ``header_fields`` are the fields that reach a mail header (those a subject
    uses): a line break or control character in one is refused here, at
    enroll and plan time, rather than failing at delivery."""

    required: Iterable[str]
    header_fields: Iterable[str] = ()
    _seen: Seen = field(default_factory=Seen)

    def __post_init__(self) -> None:
        self.required = [name for name in self.required if name != "email"]
        self.header_fields = sorted(set(self.header_fields) - {"email"})
        self._addresses = AddressChecker()

    def problems(self, person: Person) -> list[str]:
        return self.check(person)[1]

    def check(self, person: Person) -> tuple[Person, list[str]]:
        """The person with their address normalised, and what is wrong with the row."""
        fields = person.fields
        given = fields.get("email")
        email = "" if given is None else str(given).strip()
        if not email:
            return person, ["no email"]
        try:
            normalised = self._addresses.normalise(email)
        except AddressError as error:
            return person, [f"`{_shown(email)}` is not an email address: {error}"]
        if normalised != given:
            person = Person(person.line, {**fields, "email": normalised})
        found = self.field_problems(fields)
        digest = _blake2b(normalised.lower().encode(), digest_size=16).digest()
        # A row with problems is not remembered: the same person later, right, is taken.
        if (digest in self._seen) if found else not self._seen.add(digest):
            found.append(f"`{normalised}` is listed twice")
        return person, found

    def field_problems(self, fields: Mapping[str, Any]) -> list[str]:
        """What the fields lack or hold that the campaign cannot use (the
        address aside: for people checked when they were enrolled)."""
        found = []
        for name in self.required:
            value = fields.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                found.append(f"missing field `{name}`")
        for name in self.header_fields:
            value = fields.get(name)
            if isinstance(value, str) and (problem := header_problem(value)) is not None:
                found.append(f"field `{name}` holds {problem}, and a subject uses it")
        return found


def _shown(text: str, limit: int = 80) -> str:
    """A value as it may be shown in one line of a message."""
    shown = text.encode("unicode_escape").decode("ascii") if has_control(text) else text
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
