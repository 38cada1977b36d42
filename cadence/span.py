"""Source positions shared by every layer (AST, diagnostics, IR).

A span is 1-based and half-open at the end, like SARIF regions and lark's
``end_column``: ``end_column`` is the column just past the last character.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Span(BaseModel):
    """Where a piece of source text stands: file, start and end (1-based)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    @property
    def start(self) -> tuple[int, int]:
        return (self.line, self.column)

    @property
    def end(self) -> tuple[int, int]:
        return (self.end_line, self.end_column)

    def cover(self, other: Span) -> Span:
        """The smallest span holding both ``self`` and ``other``."""
        start = min(self.start, other.start)
        end = max(self.end, other.end)
        return Span(
            file=self.file, line=start[0], column=start[1], end_line=end[0], end_column=end[1]
        )

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


def point(file: str, line: int, column: int, width: int = 1) -> Span:
    """A span on one line, ``width`` characters wide (0 for a caret between characters)."""
    return Span(file=file, line=line, column=column, end_line=line, end_column=column + width)
