"""Renders diagnostics for people: ``path:line:col: CODE severity: message``,
the source line as written, a caret underline and ``= help:`` (rustc/ruff style).

Machine formats (json, github, sarif) are renderers of the same model and
arrive with the compiler; this module knows nothing about how a diagnostic
was found.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Sequence

from cadence.diagnostics import Diagnostic, Severity
from cadence.source import Source
from cadence.span import Span

TAB = "    "
_STYLES = {
    Severity.ERROR: "\033[1;31m",
    Severity.WARNING: "\033[1;33m",
    Severity.INFO: "\033[1;36m",
}
_BOLD, _BLUE, _GREEN, _RESET = "\033[1m", "\033[1;34m", "\033[1;32m", "\033[0m"

SourceLookup = Callable[[str], Source | None]


def render_text(
    diagnostics: Sequence[Diagnostic],
    sources: SourceLookup,
    *,
    color: bool = False,
    limit: int | None = None,
) -> str:
    """The diagnostics, one block each, separated by blank lines; past ``limit``
    one line says how many more there are."""
    shown = diagnostics if limit is None else diagnostics[:limit]
    text = "\n".join(render_one(d, sources(d.span.file), color=color) for d in shown)
    hidden = len(diagnostics) - len(shown)
    if hidden:
        text += f"\n... and {hidden} more diagnostic{'s' * (hidden != 1)}\n"
    return text


def render_one(diagnostic: Diagnostic, source: Source | None, *, color: bool = False) -> str:
    paint = _painter(color)
    severity = diagnostic.severity
    head = (
        f"{paint(_BOLD, str(diagnostic.span))}: "
        f"{paint(_STYLES[severity], f'{diagnostic.code} {severity.value}')}: "
        f"{paint(_BOLD, diagnostic.message)}"
    )
    lines = [head]
    lines += _snippet(diagnostic.span, source, paint, _STYLES[severity])
    for related in diagnostic.related:
        lines.append(f"   = note: {related.message} ({related.span})")
        lines += _snippet(
            related.span, source if _same_file(related.span, source) else None, paint, _BLUE
        )
    if diagnostic.help:
        lines.append(f"   {paint(_GREEN, '= help:')} {diagnostic.help}")
    return "\n".join(lines) + "\n"


def _same_file(span: Span, source: Source | None) -> bool:
    return source is not None and source.path == span.file


def _snippet(
    span: Span, source: Source | None, paint: Callable[[str, str], str], style: str
) -> list[str]:
    if source is None or source.text is None:
        return []
    raw = source.line(span.line)
    if not raw and span.line > 1 and span.column == 1:
        return []  # the end of a file that ends in a newline: nothing to show
    number = str(span.line)
    gutter = " " * len(number)
    shown = raw.replace("\t", TAB)
    start = _width(raw[: span.column - 1])
    if span.end_line == span.line:
        length = max(1, _width(raw[span.column - 1 : span.end_column - 1]))
    else:
        length = max(1, _width(raw[span.column - 1 :]))
    caret = " " * start + "^" * length
    return [
        f" {gutter} {paint(_BLUE, '|')}",
        f" {paint(_BLUE, number)} {paint(_BLUE, '|')} {shown}",
        f" {gutter} {paint(_BLUE, '|')} {paint(style, caret)}",
    ]


def _width(text: str) -> int:
    """Columns ``text`` takes on a terminal (tabs expanded, wide characters 2)."""
    width = 0
    for char in text:
        if char == "\t":
            width += len(TAB)
        elif unicodedata.east_asian_width(char) in ("W", "F"):
            width += 2
        elif not unicodedata.combining(char):
            width += 1
    return width


def _painter(color: bool) -> Callable[[str, str], str]:
    if not color:
        return lambda _style, text: text
    return lambda style, text: f"{style}{text}{_RESET}"


def summary(diagnostics: Iterable[Diagnostic], files: int) -> str:
    """ "2 errors and 1 warning in 1 file" (infos are not counted)."""
    counts = {severity: 0 for severity in Severity}
    for diagnostic in diagnostics:
        counts[diagnostic.severity] += 1
    parts = []
    for severity in (Severity.ERROR, Severity.WARNING):
        n = counts[severity]
        if n:
            parts.append(f"{n} {severity.value}{'' if n == 1 else 's'}")
    where = f"{files} file{'' if files == 1 else 's'}"
    if not parts:
        return f"no problems in {where}"
    return " and ".join(parts) + f" in {where}"
