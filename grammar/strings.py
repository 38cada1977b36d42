"""String literals: escapes, block dedent, and the inverse for the formatter.

Inline strings ``"..."`` know three escapes: ``\\"``, ``\\\\`` and ``\\n``.
A ``\"\"\"`` block keeps its inner newlines; a blank first and last line are
dropped, whitespace-only lines become empty, and the indentation common to the
other lines is removed. Escapes are applied after the dedent, so an escaped
``\\n`` never counts as a line of the block.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ESCAPES = {'"': '"', "\\": "\\", "n": "\n"}
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class BadEscape:
    """An unknown escape at ``offset`` characters into the raw token text."""

    offset: int
    sequence: str


def find_bad_escapes(raw: str) -> list[BadEscape]:
    return [
        BadEscape(match.start(), match.group(0))
        for match in _ESCAPE.finditer(raw)
        if match.group(1) not in ESCAPES
    ]


def unescape(text: str) -> str:
    """Apply the known escapes; an unknown one is kept as written (it was reported)."""
    if "\\" not in text:
        return text
    return _ESCAPE.sub(lambda m: ESCAPES.get(m.group(1), m.group(0)), text)


def decode_inline(raw: str) -> str:
    """The value of an inline string token, quotes included in ``raw``."""
    return unescape(raw[1:-1])


def decode_block(raw: str) -> str:
    """The value of a ``\"\"\"`` block token, quotes included in ``raw``."""
    return unescape(dedent_block(raw[3:-3]))


def dedent_block(content: str) -> str:
    lines = content.replace("\r\n", "\n").split("\n")
    if len(lines) > 1 and _blank(lines[0]):
        lines = lines[1:]
    if len(lines) > 1 and _blank(lines[-1]):
        lines = lines[:-1]
    lines = ["" if _blank(line) else line for line in lines]
    margin = _common_margin(lines)
    return "\n".join(line[len(margin) :] for line in lines)


def _blank(line: str) -> bool:
    return line.strip(" \t") == ""


def _common_margin(lines: list[str]) -> str:
    margins = [line[: len(line) - len(line.lstrip(" \t"))] for line in lines if line]
    if not margins:
        return ""
    first, last = min(margins), max(margins)
    size = 0
    while size < len(first) and first[size] == last[size]:
        size += 1
    return first[:size]


def encode_inline(value: str) -> str:
    """An inline string literal whose value is ``value``."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def encode_block(value: str, indent: str) -> list[str]:
    """The lines of a ``\"\"\"`` block whose value is ``value``.

    The first line is the opening quotes; the content is indented by
    ``indent`` and the closing quotes stand alone at ``indent``. Where a real
    line break would be lost to the dedent rules (a whitespace-only line, or
    no line left to set the margin), the break is written as an escaped ``\\n``.
    """
    physical = _physical_lines(value.split("\n"))
    lines = ['"""']
    lines.extend(indent + line if line else "" for line in physical)
    lines.append(indent + '"""')
    return lines


def _physical_lines(lines: list[str]) -> list[str]:
    """Escaped source lines for the value's ``lines``, joined with ``\\n``
    where a line on its own would not read back as itself."""
    out: list[tuple[str, str]] = []  # (raw text, escaped text)
    for line in lines:
        escaped = _escape_block_line(line)
        if out and (_only_spaces(line) or _only_spaces(out[-1][0])):
            raw, text = out[-1]
            out[-1] = (raw + "\n" + line, text + "\\n" + escaped)
        else:
            out.append((line, escaped))
    texts = [text for _, text in out]
    if any(texts) and all(text[0] in " \t" for text in texts if text):
        # Every line is indented, so the dedent would take that indent away:
        # start a line with an escaped break instead, which sets the margin.
        for i in range(len(texts) - 1):
            if texts[i] == "":
                texts[i : i + 2] = ["\\n" + texts[i + 1]]
                break
    return texts


def _only_spaces(line: str) -> bool:
    return line != "" and line.strip(" \t") == ""


def _escape_block_line(line: str) -> str:
    line = line.replace("\\", "\\\\")
    # A raw quote may not be followed by two more; escape every third of a run.
    return re.sub(r'"{3,}', lambda m: _escape_quote_run(len(m.group(0))), line)


def _escape_quote_run(size: int) -> str:
    return "".join('\\"' if i % 3 == 2 else '"' for i in range(size))
