"""One diagnostic model for every layer; renderers live in :mod:`cadence.reporting`.

A diagnostic is a value: layers return them, the CLI renders them. Every code
comes from the registry in :mod:`cadence.codes`, so a code never changes meaning.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from cadence.span import Span


class Severity(StrEnum):
    """How bad a diagnostic is: an error stops the build; a warning stops it
    only with `--warnings-as-errors`; an info never does."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class Related(BaseModel):
    """A second place that explains the diagnostic ("the `{` opened here")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message: str
    span: Span


class Edit(BaseModel):
    """Replace the text of ``span`` with ``text`` (an empty span inserts)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    span: Span
    text: str


class Fix(BaseModel):
    """What a diagnostic's ``help`` line proposes, as edits: an editor offers
    every fix as a code action; ``cadence check --fix`` applies the **safe**
    ones — those that only say what the author evidently meant (a misspelt
    keyword, quotes, a missing brace) — and ``--unsafe-fixes`` the others
    too, which change what the campaign does (another zone, a removed
    `follow up`) and want a person to look."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message: str
    edits: tuple[Edit, ...]
    safe: bool = True


def replacement(span: Span, text: str, message: str | None = None, *, safe: bool = True) -> Fix:
    """A fix that writes ``text`` over ``span``."""
    return Fix(message=message or f"write `{text}`", edits=(Edit(span=span, text=text),), safe=safe)


class Diagnostic(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    severity: Severity
    message: str
    span: Span
    help: str | None = None
    related: tuple[Related, ...] = ()
    fixes: tuple[Fix, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.span.file, self.span.line, self.span.column, self.code)


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Diagnostics in reading order, each distinct one once."""
    seen: set[tuple[str, Span, str]] = set()
    unique = []
    for diagnostic in diagnostics:
        key = (diagnostic.code, diagnostic.span, diagnostic.message)
        if key not in seen:
            seen.add(key)
            unique.append(diagnostic)
    return sorted(unique, key=Diagnostic.sort_key)


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(diagnostic.is_error for diagnostic in diagnostics)
