"""The registry of diagnostic codes: one table, so a code never changes meaning.

``P`` codes come from reading and parsing a file; later layers add their own
letters here. ``docs/diagnostics.md`` lists the same table for authors.
"""

from __future__ import annotations

from dataclasses import dataclass

from cadence.diagnostics import Diagnostic, Related, Severity
from cadence.span import Span


@dataclass(frozen=True)
class Code:
    id: str
    name: str
    severity: Severity
    summary: str

    def at(
        self,
        span: Span,
        message: str,
        *,
        help: str | None = None,
        related: tuple[Related, ...] = (),
    ) -> Diagnostic:
        return Diagnostic(
            code=self.id,
            severity=self.severity,
            message=message,
            span=span,
            help=help,
            related=related,
        )


REGISTRY: dict[str, Code] = {}


def _code(id: str, name: str, severity: Severity, summary: str) -> Code:
    if id in REGISTRY:
        raise ValueError(f"diagnostic code {id} registered twice")
    code = Code(id, name, severity, summary)
    REGISTRY[id] = code
    return code


ERROR, WARNING, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

# Reading the file.
P001 = _code("P001", "not-utf8", ERROR, "the file is not valid UTF-8 text")
P002 = _code("P002", "file-too-large", ERROR, "the file is larger than a campaign file may be")
# Tokens.
P010 = _code("P010", "unexpected-character", ERROR, "a character no token starts with")
P011 = _code("P011", "unterminated-string", ERROR, "a string with no closing quote")
P012 = _code("P012", "invalid-escape", ERROR, "a backslash escape strings do not know")
# Structure.
P020 = _code("P020", "unexpected-token", ERROR, "a token where the grammar expects something else")
P021 = _code("P021", "unclosed-brace", ERROR, "a `{` with no matching `}`")
P022 = _code("P022", "unmatched-brace", ERROR, "a `}` with no `{` to close")
P023 = _code("P023", "too-many-errors", INFO, "parsing stopped after many errors")
P024 = _code("P024", "empty-file", ERROR, "the file holds no campaign")
P025 = _code("P025", "nested-too-deep", ERROR, "braces nested deeper than the parser follows")
