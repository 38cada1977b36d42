"""The registry of diagnostic codes: one table, so a code never changes meaning.

``P`` codes come from reading and parsing a file; later layers add their own
letters here. ``docs/diagnostics.md`` lists the same table for authors.
"""

from __future__ import annotations

from dataclasses import dataclass

from cadence.diagnostics import Diagnostic, Fix, Related, Severity
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
        fixes: tuple[Fix, ...] = (),
    ) -> Diagnostic:
        return Diagnostic(
            code=self.id,
            severity=self.severity,
            message=message,
            span=span,
            help=help,
            related=related,
            fixes=fixes,
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
P026 = _code("P026", "wrong-quotes", ERROR, "text in single or typographic quotes")

# Compile: structure of the campaign.
C001 = _code(
    "C001", "choose-not-first", ERROR, "`send choose` on a step other than the first of day 1"
)
C002 = _code("C002", "follow-up-without-email", ERROR, "`follow up` not right after an email step")
C003 = _code("C003", "with-previous-first-step", ERROR, "`send with previous` on the first step")
C004 = _code(
    "C004", "with-previous-no-email", ERROR, "`send with previous` with no email to align with"
)
C005 = _code(
    "C005", "with-previous-day-one", WARNING, "`send with previous` on day 1 sends at the start"
)
C006 = _code(
    "C006", "same-day-redirect", INFO, "same-day emails align with the previous day's email"
)
C007 = _code("C007", "anchor-is-task", INFO, "the email waits until a task email is sent")
C008 = _code("C008", "duplicate-step", ERROR, "two steps with the same name")
C009 = _code("C009", "day-order", ERROR, "days not in increasing order")
C010 = _code("C010", "duplicate-day", ERROR, "the same day number twice")
C011 = _code("C011", "empty-day", WARNING, "a day with no steps")
C012 = _code("C012", "no-day-one", ERROR, "the campaign does not start on day 1")
C013 = _code("C013", "missing-send-option", ERROR, "an email step without a send option")
C014 = _code("C014", "missing-subject", ERROR, "an email step without a subject")
C015 = _code("C015", "missing-body", ERROR, "an email step without a body")
C016 = _code("C016", "repeated-setting", ERROR, "a setting given twice")
C017 = _code("C017", "unknown-timezone", ERROR, "not an IANA time zone")
C018 = _code("C018", "unknown-holiday-country", ERROR, "no public holidays known for that country")
C019 = _code("C019", "time-out-of-range", ERROR, "a time of day outside 00:00-23:59")
C020 = _code("C020", "template-not-found", ERROR, "a template file that cannot be read")
C021 = _code("C021", "repeated-property", ERROR, "a step property given twice")
C022 = _code(
    "C022",
    "missing-task-text",
    ERROR,
    "an InMail without a message or a custom task without a title",
)
C023 = _code("C023", "step-cycle", ERROR, "steps that align with each other in a cycle")
C024 = _code("C024", "day-zero", ERROR, "a day number below 1")
C026 = _code("C026", "day-too-far", ERROR, "a day number beyond what a campaign can reach")
C025 = _code("C025", "no-steps", ERROR, "a campaign without any step")
C027 = _code("C027", "bad-campaign-id", ERROR, "a campaign id that cannot identify it")
C033 = _code("C033", "window-backwards", ERROR, "a sending window that closes before it opens")
C034 = _code("C034", "window-empty", ERROR, "a sending window that opens and closes at once")
C035 = _code(
    "C035", "send-at-outside-window", WARNING, "a `send at` time outside its sending window"
)
C036 = _code("C036", "window-on-task", WARNING, "a sending window on an email a person sends")
C037 = _code("C037", "variant-weight-zero", ERROR, "a variant with weight 0: it is never sent")
C038 = _code("C038", "duplicate-variant", ERROR, "two variants of an email with the same name")
C039 = _code("C039", "single-variant", WARNING, "an email with one variant: nothing to compare")
# Compile: templates.
C030 = _code("C030", "template-syntax", ERROR, "a Jinja syntax error in a template")
C031 = _code("C031", "unknown-template-name", ERROR, "a name a template may not use")
C032 = _code(
    "C032", "template-outside-folder", ERROR, "a template path that leads out of its folder"
)
