"""Reading a source file: bytes to text, with a diagnostic instead of a crash.

The text handed to the parser has no BOM and keeps its line ends; lark counts
lines on ``\\n`` so CRLF files get the same line numbers as LF files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cadence import codes
from cadence.diagnostics import Diagnostic
from cadence.span import Span, point

MAX_SOURCE_BYTES = 5 * 1024 * 1024
"""Campaign files are kilobytes; refusing huge inputs keeps every command bounded."""

BOM = "\ufeff"


@dataclass(frozen=True)
class Source:
    """A decoded source file. ``text`` is ``None`` when it could not be decoded."""

    path: str
    text: str | None
    diagnostics: tuple[Diagnostic, ...] = ()
    sha256: str = ""
    had_bom: bool = False
    _lines: list[str] = field(default_factory=list, repr=False, compare=False)

    def line(self, number: int) -> str:
        """Line ``number`` (1-based) without its line end; empty past the end."""
        if self.text is None:
            return ""
        if not self._lines:
            self._lines.extend(self.text.replace("\r\n", "\n").split("\n"))
        if 1 <= number <= len(self._lines):
            return self._lines[number - 1]
        return ""


def read_source(path: str | Path) -> Source:
    """Read and decode ``path``. Raises :class:`OSError` when it cannot be read."""
    return decode_source(read_limited(path), str(path))


def read_limited(path: str | Path, stream: BinaryIO | None = None) -> bytes:
    """The bytes of ``path`` (or ``stream``), never more than one past the size
    limit: `/dev/zero` or a huge file cannot exhaust memory."""
    if stream is not None:
        return stream.read(MAX_SOURCE_BYTES + 1)
    with open(path, "rb") as handle:
        return handle.read(MAX_SOURCE_BYTES + 1)


def decode_source(data: bytes, path: str) -> Source:
    """Decode UTF-8 bytes (an optional BOM is dropped); bad bytes become a diagnostic."""
    digest = hashlib.sha256(data).hexdigest()
    if len(data) > MAX_SOURCE_BYTES:
        limit = MAX_SOURCE_BYTES // (1024 * 1024)
        message = f"the file is larger than {limit} MiB, the most a campaign file may be"
        return Source(path, None, (codes.P002.at(point(path, 1, 1, 0), message),), digest)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return Source(path, None, (_not_utf8(data, error, path),), digest)
    return source_from_text(text, path, digest)


def source_from_text(text: str, path: str, sha256: str | None = None) -> Source:
    """A source from text already decoded (``sha256`` defaults to its UTF-8 bytes')."""
    digest = sha256 or hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    had_bom = text.startswith(BOM)
    if had_bom:
        text = text[len(BOM) :]
    return Source(path, text, (), digest, had_bom)


def line_starts(text: str) -> list[int]:
    """Where each line of ``text`` starts (lines end at ``\n``, as the parser
    counts them)."""
    starts = [0]
    position = text.find("\n")
    while position != -1:
        starts.append(position + 1)
        position = text.find("\n", position + 1)
    return starts


def span_offsets(starts: list[int], length: int, span: Span) -> tuple[int, int] | None:
    """``span`` as (start, end) offsets into a text of ``length`` characters
    whose lines start at ``starts``; ``None`` when it does not lie in it."""
    start = _offset(starts, length, span.line, span.column)
    end = _offset(starts, length, span.end_line, span.end_column)
    if start is None or end is None or end < start:
        return None
    return start, end


def _offset(starts: list[int], length: int, line: int, column: int) -> int | None:
    """The offset of a 1-based line and column (the column may reach past
    the line's end by its line break)."""
    if not 1 <= line <= len(starts):
        return None
    begin = starts[line - 1]
    line_end = starts[line] - 1 if line < len(starts) else length
    offset = begin + column - 1
    return offset if begin <= offset <= line_end + 1 else None


def _not_utf8(data: bytes, error: UnicodeDecodeError, path: str) -> Diagnostic:
    good = data[: error.start].decode("utf-8", errors="replace")
    line = good.count("\n") + 1
    column = len(good) - (good.rfind("\n") + 1) + 1
    byte = data[error.start]
    return codes.P001.at(
        point(path, line, column),
        f"the file is not UTF-8 text: byte 0x{byte:02x} cannot start or continue a character",
        help="save the file as UTF-8 (most editors offer it in 'Save with encoding')",
    )
