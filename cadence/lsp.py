"""The language server (``cadence lsp``, over stdio): the checks of ``cadence
check`` as an editor shows them, formatting, an outline, and the fixes that
help lines propose as quick fixes.

Diagnostics are published when a document is opened, changed or saved, for
the document and for each template file it reads (a problem inside a template
shows in that file). Positions in the protocol count UTF-16 code units unless
the client agreed on another encoding; spans count characters, and lines end
at ``\\n`` only, as the parser counts them — converted here, never by the
protocol library's own line splitting (which also breaks at U+2028).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from cadence import __version__
from cadence.compiler.compile import CompileResult, compile_parsed
from cadence.compiler.ir import Campaign, Step, Template
from cadence.compiler.settings import holiday_countries
from cadence.compiler.zones import zone_names
from cadence.describing import describe_name, describe_step
from cadence.diagnostics import Diagnostic, Fix, Severity, has_errors
from cadence.fixing import tidied
from cadence.grammar import ParseResult, parse_source
from cadence.grammar.ast import Requires, Text
from cadence.grammar.formatter import format_campaign
from cadence.grammar.incremental import reparse
from cadence.grammar.parser import accepted_after
from cadence.source import source_from_text
from cadence.span import Span, point
from cadence.templating import OBJECTS, STANDARD_FIELDS

_SEVERITY = {
    Severity.ERROR: types.DiagnosticSeverity.Error,
    Severity.WARNING: types.DiagnosticSeverity.Warning,
    Severity.INFO: types.DiagnosticSeverity.Information,
}


@dataclass
class _Checked:
    """The last check of one open campaign: its syntax tree and result, and
    what it found in each file, by URI (the campaign's own and its templates':
    a template two open campaigns share shows what both found)."""

    parsed: ParseResult
    result: CompileResult  # the checks only: no IR (see ``ir``)
    path: str
    found: dict[str, list[types.Diagnostic]] = field(default_factory=dict)
    _ir: Campaign | None = None

    def ir(self) -> Campaign | None:
        """The campaign's IR (for hover and definitions), built the first
        time it is asked for; ``None`` while the campaign has errors."""
        if self._ir is None and not has_errors(self.result.diagnostics):
            self._ir = compile_parsed(self.parsed).ir
        return self._ir


class CampaignServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("cadence", __version__)
        self.checked: dict[str, _Checked] = {}

    # ---- checking ------------------------------------------------------------------
    def check(self, uri: str) -> None:
        document = self.workspace.get_text_document(uri)
        path = to_fs_path(uri) or uri
        before = self.checked.get(uri)
        if before is not None and before.path == path:
            # After an edit, the days it did not touch are kept (grammar/incremental.py).
            parsed = reparse(before.parsed, document.source, path)
        else:
            parsed = parse_source(source_from_text(document.source, path))
        result = compile_parsed(parsed, build_ir=False)
        checked = self.checked[uri] = _Checked(parsed, result, path)
        for diagnostic in result.diagnostics:
            file = diagnostic.span.file
            target = uri if file == path else (from_fs_path(file) or file)
            checked.found.setdefault(target, []).append(self._to_lsp(diagnostic, result))
        # A file the last check found problems in, and this one none, is cleared.
        targets = set(checked.found) | set(before.found if before else ())
        targets.discard(uri)
        for target in sorted(targets):
            self._publish(target)
        self._publish(uri)  # the document's own last: a client that sees them has the rest

    def _publish(self, target: str) -> None:
        """Publish what every open campaign found in ``target`` (the same
        problem found by two of them, once)."""
        merged: dict[tuple[object, ...], types.Diagnostic] = {}
        for checked in self.checked.values():
            for diagnostic in checked.found.get(target, ()):
                key = (str(diagnostic.range), diagnostic.code, diagnostic.message)
                merged.setdefault(key, diagnostic)
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=target, diagnostics=list(merged.values()))
        )

    def parsed(self, uri: str) -> ParseResult:
        """The document's syntax tree: the last check's, when it was of this
        very text (it is, after every change), else parsed now."""
        document = self.workspace.get_text_document(uri)
        checked = self.checked.get(uri)
        if checked is not None and checked.parsed.source.text == document.source:
            return checked.parsed
        return parse_source(source_from_text(document.source, to_fs_path(uri) or uri))

    def forget(self, uri: str) -> None:
        """A closed campaign's findings go; a template another open campaign
        reads keeps what that one found."""
        checked = self.checked.pop(uri, None)
        for target in sorted({uri} | set(checked.found if checked else ())):
            self._publish(target)

    # ---- conversions ---------------------------------------------------------------
    def _encoding(self) -> str:
        encoding = getattr(self.workspace, "position_encoding", None)
        return str(encoding or types.PositionEncodingKind.Utf16)

    def range_of(self, span: Span, text: str | None) -> types.Range:
        lines = _lines(text or "")
        return types.Range(
            start=self._position(lines, span.line, span.column),
            end=self._position(lines, span.end_line, span.end_column),
        )

    def _position(self, lines: Sequence[str], line: int, column: int) -> types.Position:
        index = min(max(line - 1, 0), max(len(lines) - 1, 0))
        before = lines[index][: max(column - 1, 0)] if lines else ""
        return types.Position(line=max(line - 1, 0), character=_units(before, self._encoding()))

    def span_of(self, uri: str, lsp_range: types.Range) -> tuple[int, int, int, int]:
        """A protocol range as (line, column, end line, end column), 1-based characters."""
        lines = _lines(self.workspace.get_text_document(uri).source)
        start = _column(lines, lsp_range.start, self._encoding())
        end = _column(lines, lsp_range.end, self._encoding())
        return lsp_range.start.line + 1, start, lsp_range.end.line + 1, end

    def _to_lsp(self, diagnostic: Diagnostic, result: CompileResult) -> types.Diagnostic:
        text = _text_of(result, diagnostic.span.file)
        message = diagnostic.message
        if diagnostic.help:
            message += f"\nhelp: {diagnostic.help}"
        related = [
            types.DiagnosticRelatedInformation(
                location=types.Location(
                    uri=from_fs_path(place.span.file) or place.span.file,
                    range=self.range_of(place.span, _text_of(result, place.span.file)),
                ),
                message=place.message,
            )
            for place in diagnostic.related
        ]
        return types.Diagnostic(
            range=self.range_of(diagnostic.span, text),
            severity=_SEVERITY[diagnostic.severity],
            code=diagnostic.code,
            source="cadence",
            message=message,
            related_information=related or None,
        )


@functools.lru_cache(maxsize=8)
def _lines(text: str) -> tuple[str, ...]:
    """The text's lines as the parser counts them (split once per text: a
    check converts every diagnostic's range against the same few texts)."""
    return tuple(text.split("\n"))


def _text_of(result: CompileResult, file: str) -> str | None:
    source = result.sources.get(file)
    return source.text if source is not None else None


def _units(text: str, encoding: str) -> int:
    if encoding == types.PositionEncodingKind.Utf8:
        return len(text.encode("utf-8", "surrogatepass"))
    if encoding == types.PositionEncodingKind.Utf32:
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _column(lines: Sequence[str], position: types.Position, encoding: str) -> int:
    """The 1-based character column of a protocol position."""
    if position.line >= len(lines):
        return 1
    line, units = lines[position.line], 0
    for index, char in enumerate(line):
        if units >= position.character:
            return index + 1
        units += _units(char, encoding)
    return len(line) + 1


def _overlaps(span: Span, line: int, column: int, end_line: int, end_column: int) -> bool:
    return (span.line, span.column) <= (end_line, end_column) and (line, column) <= (
        span.end_line,
        span.end_column,
    )


server = CampaignServer()


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def _opened(ls: CampaignServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.check(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def _changed(ls: CampaignServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.check(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def _saved(ls: CampaignServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.check(params.text_document.uri)  # a template it reads may have changed too


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def _closed(ls: CampaignServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.forget(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_FORMATTING)
def _format(ls: CampaignServer, params: types.DocumentFormattingParams) -> list[types.TextEdit]:
    """The whole document in the canonical layout; nothing while it has syntax errors."""
    document = ls.workspace.get_text_document(params.text_document.uri)
    parsed = ls.parsed(params.text_document.uri)
    if not parsed.ok or parsed.campaign is None:
        return []
    formatted = format_campaign(parsed.campaign, parsed.comments, document.source)
    if formatted == document.source:
        return []
    lines = _lines(document.source)
    end = types.Position(line=len(lines) - 1, character=_units(lines[-1], ls._encoding()))
    whole = types.Range(start=types.Position(line=0, character=0), end=end)
    return [types.TextEdit(range=whole, new_text=formatted)]


@server.feature(types.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
def _outline(ls: CampaignServer, params: types.DocumentSymbolParams) -> list[types.DocumentSymbol]:
    """Days, and the steps of each, as the editor's outline."""
    text = ls.workspace.get_text_document(params.text_document.uri).source
    parsed = ls.parsed(params.text_document.uri)
    if parsed.campaign is None:
        return []
    days = []
    for day in parsed.campaign.days:
        steps = [
            types.DocumentSymbol(
                name=step.name.value,
                detail=step.kind,
                kind=types.SymbolKind.Event if step.kind == "email" else types.SymbolKind.Function,
                range=ls.range_of(step.span, text),
                selection_range=ls.range_of(step.name.span, text),
            )
            for step in day.steps
        ]
        days.append(
            types.DocumentSymbol(
                name=f"day {day.number}",
                kind=types.SymbolKind.Namespace,
                range=ls.range_of(day.span, text),
                selection_range=ls.range_of(day.number_span, text),
                children=steps,
            )
        )
    return days


@server.feature(
    types.TEXT_DOCUMENT_CODE_ACTION,
    types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
)
def _quick_fixes(ls: CampaignServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    """Every fix a help line proposes, for the diagnostics in the range asked about."""
    checked = ls.checked.get(params.text_document.uri)
    if checked is None:
        return []
    wanted = ls.span_of(params.text_document.uri, params.range)
    actions = []
    for diagnostic in checked.result.diagnostics:
        if diagnostic.span.file != checked.path or not _overlaps(diagnostic.span, *wanted):
            continue
        for fix in diagnostic.fixes:
            actions.append(_action(ls, params.text_document.uri, checked, diagnostic, fix))
    return actions


def _action(
    ls: CampaignServer, uri: str, checked: _Checked, diagnostic: Diagnostic, fix: Fix
) -> types.CodeAction:
    changes: dict[str, list[types.TextEdit]] = {}
    for edit in fix.edits:
        file = edit.span.file
        target = uri if file == checked.path else (from_fs_path(file) or file)
        text = _text_of(checked.result, edit.span.file)
        edit = tidied(edit, text) if text is not None else edit
        changes.setdefault(target, []).append(
            types.TextEdit(range=ls.range_of(edit.span, text), new_text=edit.text)
        )
    return types.CodeAction(
        title=fix.message[:1].upper() + fix.message[1:],
        kind=types.CodeActionKind.QuickFix,
        diagnostics=[ls._to_lsp(diagnostic, checked.result)],
        is_preferred=fix.safe,
        edit=types.WorkspaceEdit(changes=changes),
    )


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_SEND_WORDS = {"send", "choose", "at", "task", "with", "previous", "follow", "up", "window"}


def _word_at(line: str, column: int) -> tuple[str, int, int] | None:
    """The name under 1-based ``column`` of ``line``, with its columns."""
    for match in _WORD.finditer(line):
        if match.start() + 1 <= column <= match.end() + 1:
            return match.group(), match.start() + 1, match.end() + 1
    return None


def _inside(span: Span, path: str, line: int, column: int) -> bool:
    return span.file == path and span.start <= (line, column) <= span.end


def _texts(step: Step) -> list[Template]:
    found = [step.subject, step.body, step.notes, step.message, step.title]
    for variant in step.variants:
        found += [variant.subject, variant.body]
    return [text for text in found if text is not None]


@dataclass(frozen=True)
class _Cursor:
    """Where a request points: the campaign's last check, the 1-based line and
    column, and the name there (``word``, its columns) if any."""

    checked: _Checked
    line: int
    column: int
    word: str | None = None
    start: int = 0
    end: int = 0

    def on(self, span: Span) -> bool:
        return _inside(span, self.checked.path, self.line, self.column)

    def step(self, ir: Campaign) -> Step | None:
        return next((step for step in ir.steps if self.on(step.span)), None)


def _cursor(ls: CampaignServer, uri: str, position: types.Position) -> _Cursor | None:
    checked = ls.checked.get(uri)
    lines = _lines(ls.workspace.get_text_document(uri).source)
    if checked is None or position.line >= len(lines):
        return None
    line, column = position.line + 1, _column(lines, position, ls._encoding())
    found = _word_at(lines[line - 1], column)
    if found is None:
        return _Cursor(checked, line, column)
    return _Cursor(checked, line, column, *found)


@server.feature(types.TEXT_DOCUMENT_HOVER)
def _hover(ls: CampaignServer, params: types.HoverParams) -> types.Hover | None:
    """On a step (its name, a name that refers to it, its send option): what
    it is and when it goes; on a name inside a template: where it comes from."""
    uri = params.text_document.uri
    cursor = _cursor(ls, uri, params.position)
    ir = cursor.checked.ir() if cursor is not None else None
    if cursor is None or ir is None or cursor.word is None:
        return None
    steps = {step.id: step for step in ir.steps}
    here = cursor.step(ir)
    text: str | None = None
    if here is not None and any(cursor.on(template.span) for template in _texts(here)):
        text = describe_name(ir, cursor.word)
    elif cursor.word in steps:
        text = describe_step(ir, steps[cursor.word])
    elif here is not None and cursor.word in _SEND_WORDS:
        text = describe_step(ir, here)
    if text is None:
        return None
    where = point(cursor.checked.path, cursor.line, cursor.start, cursor.end - cursor.start)
    return types.Hover(
        contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
        range=ls.range_of(where, ls.workspace.get_text_document(uri).source),
    )


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
def _definition(ls: CampaignServer, params: types.DefinitionParams) -> types.Location | None:
    """A `template "file"` opens the file; `send with previous` goes to the
    email it takes its time from, `follow up` to the email it replies to, and
    a step's name where it is used to the step."""
    uri = params.text_document.uri
    cursor = _cursor(ls, uri, params.position)
    campaign = cursor.checked.parsed.campaign if cursor is not None else None
    if cursor is None or campaign is None:
        return None
    names = {step.name.value: step.name.span for _, step in campaign.steps()}
    for _, step in campaign.steps():
        items = [*step.items]
        for item in step.items:  # a variant's texts are inside it
            items += getattr(item, "items", ()) if item.kind == "variant" else ()
        for item in items:
            text = getattr(item, "text", None)
            if isinstance(text, Text) and text.form == "template" and cursor.on(text.span):
                target = os.path.join(os.path.dirname(cursor.checked.path), text.value)
                top = types.Position(line=0, character=0)
                return types.Location(
                    uri=from_fs_path(target) or target, range=types.Range(start=top, end=top)
                )
    target_step = _referred_step(cursor)
    if target_step is None or target_step not in names:
        return None
    document = ls.workspace.get_text_document(uri).source
    return types.Location(uri=uri, range=ls.range_of(names[target_step], document))


def _referred_step(cursor: _Cursor) -> str | None:
    ir = cursor.checked.ir()
    here = cursor.step(ir) if ir is not None else None
    if here is not None and cursor.word in ("with", "previous") and here.timing:
        return here.timing.via[0] if here.timing.via else None
    if here is not None and cursor.word in ("follow", "up"):
        return here.reply_to
    return cursor.word


# Keywords as written, where their terminal's name is not the word itself.
_KEYWORD_TEXT = {"FOLLOW": "follow up", "WITH": "with previous", "RECIPIENT": "recipient else"}
_NOT_KEYWORDS = {
    "IDENT", "INT", "TIME", "STRING", "LONG_STRING", "LBRACE", "RBRACE", "COMMA", "MINUS",
}  # fmt: skip
_IN_ZONE = re.compile(r'\btimezone\s+(?:recipient\s+else\s+)?"([^"]*)$')
_IN_COUNTRY = re.compile(r'\bholidays\s+"([^"]*)$')
_IN_JINJA = re.compile(r"\{[{%][^}]*$")


@server.feature(
    types.TEXT_DOCUMENT_COMPLETION,
    types.CompletionOptions(trigger_characters=[" ", '"', "{", "."]),
)
def _complete(ls: CampaignServer, params: types.CompletionParams) -> list[types.CompletionItem]:
    """What may be written here: the keywords the grammar takes at the cursor
    (after `send `: choose, at, task, with previous), IANA zones and holiday
    countries inside their strings, and inside a template the names it may use
    (the person's fields, `sender.…`, `campaign.name`)."""
    uri = params.text_document.uri
    document = ls.workspace.get_text_document(uri).source
    lines = _lines(document)
    if params.position.line >= len(lines):
        return []
    line_text = lines[params.position.line]
    column = _column(lines, params.position, ls._encoding())
    before = line_text[: column - 1]
    if (zone := _IN_ZONE.search(before)) is not None:
        return _values(zone_names(), types.CompletionItemKind.EnumMember, zone.group(1))
    if (country := _IN_COUNTRY.search(before)) is not None:
        return _values(holiday_countries(), types.CompletionItemKind.EnumMember, country.group(1))
    if _IN_JINJA.search(before) is not None:
        return _template_names(ls.checked.get(uri), before)
    offset = sum(len(line) + 1 for line in lines[: params.position.line]) + column - 1
    word = re.search(r"[A-Za-z_][A-Za-z0-9_-]*$", before)
    accepted = accepted_after(document[: offset - (len(word.group()) if word else 0)])
    if accepted is None:
        return []
    words = sorted(_KEYWORD_TEXT.get(t, t.lower()) for t in accepted - _NOT_KEYWORDS)
    return [types.CompletionItem(label=w, kind=types.CompletionItemKind.Keyword) for w in words]


def _values(
    names: Iterable[str], kind: types.CompletionItemKind, typed: str
) -> list[types.CompletionItem]:
    folded = typed.casefold()
    return [
        types.CompletionItem(label=name, kind=kind)
        for name in sorted(names)
        if name.casefold().startswith(folded) or folded in name.casefold()
    ]


def _template_names(checked: _Checked | None, before: str) -> list[types.CompletionItem]:
    owner = re.search(r"\b(sender|campaign)\.[A-Za-z_]*$", before)
    if owner is not None:
        return [
            types.CompletionItem(label=attribute, kind=types.CompletionItemKind.Field)
            for attribute in OBJECTS[owner.group(1)]
        ]
    fields = set(STANDARD_FIELDS)
    ir = checked.ir() if checked is not None else None
    if ir is not None:
        fields |= {*ir.settings.requires, *ir.person_fields}
    elif checked is not None and checked.parsed.campaign is not None:
        for setting in checked.parsed.campaign.settings:
            if isinstance(setting, Requires):
                fields |= {name.value for name in setting.fields}
    items = [
        types.CompletionItem(label=f, kind=types.CompletionItemKind.Variable)
        for f in sorted(fields)
    ]
    items += [
        types.CompletionItem(label=name, kind=types.CompletionItemKind.Module) for name in OBJECTS
    ]
    return items


class _OneLine(logging.Formatter):
    """Log lines for the editor's output panel: a message the protocol
    library could not read is one line saying why, not a traceback."""

    def formatException(self, ei: Any) -> str:
        error = ei[1]
        return f"  ({type(error).__name__}: {error})" if error is not None else ""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\n", " ")


def serve() -> None:
    """Serve over stdin and stdout until the client says exit (log lines go
    to stderr, which editors show as the server's output)."""
    handler = logging.StreamHandler()
    handler.setFormatter(_OneLine("cadence lsp: %(levelname)s: %(message)s"))
    for name in ("pygls", "cadence"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.propagate = False
    server.start_io()
