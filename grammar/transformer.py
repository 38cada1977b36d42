"""Builds the typed AST while lark parses (an inline LALR transformer).

Running inside the parser means no parse tree is ever built. The parser is
built with ``keep_all_tokens``, so every callback sees its keywords and braces
and takes its span from its first to its last child. Lexical problems found
here (unknown escapes) are collected as diagnostics; no semantic rule lives here.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

from lark import Token, Transformer

from cadence import codes
from cadence.diagnostics import Diagnostic
from cadence.grammar import ast
from cadence.grammar.strings import decode_block, decode_inline, find_bad_escapes
from cadence.span import Span, point


class _Word(NamedTuple):
    """A keyword choice (``end success``, ``remove``…) with its extent."""

    value: str
    first: Token
    last: Token


Child = Any  # a Token, an ast.Node or a _Word


class ParseContext:
    """Per-parse state; one per thread, since the transformer is shared."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.diagnostics: list[Diagnostic] = []
        self.comments: dict[int, Token] = {}


class AstBuilder(Transformer[Token, ast.Campaign]):
    def __init__(self) -> None:
        super().__init__(visit_tokens=False)
        self._local = threading.local()

    # ---- per-parse context ----------------------------------------------------
    @property
    def context(self) -> ParseContext:
        context: ParseContext = self._local.context
        return context

    def begin(self, file: str) -> ParseContext:
        context = ParseContext(file)
        self._local.context = context
        return context

    def on_comment(self, token: Token) -> Token:
        """Lexer callback: keep comments for the formatter (keyed by offset, so a
        re-lex during error recovery cannot keep one twice)."""
        context = getattr(self._local, "context", None)
        if context is not None:
            context.comments[token.start_pos or 0] = token
        return token

    # ---- positions ----------------------------------------------------------
    def _span(self, first: Child, last: Child) -> Span:
        line, column = _start(first)
        end_line, end_column = _end(last)
        return Span(
            file=self.context.file,
            line=line,
            column=column,
            end_line=end_line,
            end_column=end_column,
        )

    def _span_of(self, children: Sequence[Child]) -> Span:
        return self._span(children[0], children[-1])

    # ---- texts ----------------------------------------------------------------
    def _inline_value(self, token: Token) -> str:
        self._check_escapes(token)
        return decode_inline(str(token))

    def _check_escapes(self, token: Token) -> None:
        raw = str(token)
        for bad in find_bad_escapes(raw):
            before = raw[: bad.offset]
            line = (token.line or 1) + before.count("\n")
            if "\n" in before:
                column = bad.offset - before.rfind("\n")
            else:
                column = (token.column or 1) + bad.offset
            shown = bad.sequence.replace("\n", "\\n")
            self.context.diagnostics.append(
                codes.P012.at(
                    point(self.context.file, line, column, len(bad.sequence)),
                    f"unknown escape `{shown}` in a string",
                    help='strings know `\\"`, `\\\\` and `\\n`; write `\\\\` for a backslash',
                )
            )

    def inline_text(self, children: list[Token]) -> ast.Text:
        token = children[0]
        return ast.Text(
            span=self._span(token, token), form="inline", value=self._inline_value(token)
        )

    def block_text(self, children: list[Token]) -> ast.Text:
        token = children[0]
        self._check_escapes(token)
        return ast.Text(span=self._span(token, token), form="block", value=decode_block(str(token)))

    def template_text(self, children: list[Token]) -> ast.Text:
        return ast.Text(
            span=self._span_of(children),
            form="template",
            value=self._inline_value(children[1]),
        )

    def _name(self, token: Token) -> ast.Name:
        return ast.Name(span=self._span(token, token), value=str(token))

    def _string(self, token: Token) -> ast.Text:
        return self.inline_text([token])

    # ---- campaign and settings -----------------------------------------------------
    def start(self, children: list[ast.Campaign]) -> ast.Campaign:
        return children[0]

    def campaign(self, children: list[Child]) -> ast.Campaign:
        body = children[3:-1]
        return ast.Campaign(
            span=self._span_of(children),
            name=self._string(children[1]),
            settings=tuple(item for item in body if not isinstance(item, ast.Day)),
            days=tuple(item for item in body if isinstance(item, ast.Day)),
        )

    def campaign_key(self, children: list[Token]) -> ast.CampaignKey:
        return ast.CampaignKey(span=self._span_of(children), value=self._string(children[1]))

    def timezone(self, children: list[Token]) -> ast.Timezone:
        return ast.Timezone(
            span=self._span_of(children), zone=self._string(children[1]), recipient=False
        )

    def timezone_recipient(self, children: list[Token]) -> ast.Timezone:
        return ast.Timezone(
            span=self._span_of(children), zone=self._string(children[3]), recipient=True
        )

    def skip_weekends(self, children: list[Token]) -> ast.SkipWeekends:
        return ast.SkipWeekends(span=self._span_of(children))

    def skip_holidays(self, children: list[Token]) -> ast.SkipHolidays:
        return ast.SkipHolidays(span=self._span_of(children), country=self._string(children[2]))

    def reply_end(self, children: list[Token]) -> _Word:
        return _Word("end", children[0], children[-1])

    def reply_end_success(self, children: list[Token]) -> _Word:
        return _Word("end_success", children[0], children[-1])

    def reply_continue(self, children: list[Token]) -> _Word:
        return _Word("continue", children[0], children[-1])

    def bounce_remove(self, children: list[Token]) -> _Word:
        return _Word("remove", children[0], children[-1])

    def bounce_continue(self, children: list[Token]) -> _Word:
        return _Word("continue", children[0], children[-1])

    def on_reply(self, children: list[Child]) -> ast.OnReply:
        word: _Word = children[2]
        return ast.OnReply(
            span=self._span(children[0], word.last),
            action=cast(ast.ReplyAction, word.value),
        )

    def on_bounce(self, children: list[Child]) -> ast.OnBounce:
        word: _Word = children[2]
        return ast.OnBounce(
            span=self._span(children[0], word.last),
            action=cast(ast.BounceAction, word.value),
        )

    def requires(self, children: list[Token]) -> ast.Requires:
        fields = tuple(self._name(t) for t in children[1:] if t.type == "IDENT")
        return ast.Requires(span=self._span_of(children), fields=fields)

    # ---- days and steps -----------------------------------------------------------
    def day(self, children: list[Child]) -> ast.Day:
        number = children[1]
        return ast.Day(
            span=self._span_of(children),
            number=int(number),
            number_span=self._span(number, number),
            steps=tuple(children[3:-1]),
        )

    def email(self, children: list[Child]) -> ast.EmailStep:
        return ast.EmailStep(
            span=self._span_of(children), name=self._name(children[1]), items=tuple(children[3:-1])
        )

    def call(self, children: list[Child]) -> ast.CallStep:
        return ast.CallStep(
            span=self._span_of(children), name=self._name(children[1]), items=tuple(children[3:-1])
        )

    def inmail(self, children: list[Child]) -> ast.InmailStep:
        return ast.InmailStep(
            span=self._span_of(children), name=self._name(children[1]), items=tuple(children[3:-1])
        )

    def custom(self, children: list[Child]) -> ast.CustomStep:
        return ast.CustomStep(
            span=self._span_of(children), name=self._name(children[1]), items=tuple(children[3:-1])
        )

    # ---- step properties ---------------------------------------------------------
    def send_choose(self, children: list[Token]) -> ast.SendChoose:
        return ast.SendChoose(span=self._span_of(children))

    def _time(self, token: Token) -> ast.TimeOfDay:
        hour, minute = str(token).split(":")
        return ast.TimeOfDay(span=self._span(token, token), hour=int(hour), minute=int(minute))

    def send_at(self, children: list[Token]) -> ast.SendAt:
        return ast.SendAt(span=self._span_of(children), time=self._time(children[2]))

    def send_window(self, children: list[Token]) -> ast.SendWindow:
        return ast.SendWindow(
            span=self._span_of(children),
            opens=self._time(children[2]),
            closes=self._time(children[4]),
        )

    def send_task(self, children: list[Token]) -> ast.SendTask:
        return ast.SendTask(span=self._span_of(children))

    def send_with_previous(self, children: list[Token]) -> ast.SendWithPrevious:
        return ast.SendWithPrevious(span=self._span_of(children))

    def follow_up(self, children: list[Token]) -> ast.FollowUp:
        return ast.FollowUp(span=self._span_of(children))

    def subject(self, children: list[Child]) -> ast.Subject:
        return ast.Subject(span=self._span_of(children), text=children[1])

    def body(self, children: list[Child]) -> ast.Body:
        return ast.Body(span=self._span_of(children), text=children[1])

    def variant(self, children: list[Child]) -> ast.Variant:
        weight = children[3]
        return ast.Variant(
            span=self._span_of(children),
            name=self._name(children[1]),
            weight=int(weight),
            weight_span=self._span(weight, weight),
            items=tuple(children[5:-1]),
        )

    def notes(self, children: list[Child]) -> ast.Notes:
        return ast.Notes(span=self._span_of(children), text=children[1])

    def message(self, children: list[Child]) -> ast.Message:
        return ast.Message(span=self._span_of(children), text=children[1])

    def title(self, children: list[Child]) -> ast.Title:
        return ast.Title(span=self._span_of(children), text=children[1])


def token_span(file: str, token: Token) -> Span:
    """The span of one token (lark leaves positions ``None`` only on tokens it
    did not lex, and every token here was lexed)."""
    return Span(
        file=file,
        line=token.line or 1,
        column=token.column or 1,
        end_line=token.end_line or 1,
        end_column=token.end_column or 1,
    )


def _start(child: Child) -> tuple[int, int]:
    if isinstance(child, Token):
        return (child.line or 1, child.column or 1)
    if isinstance(child, _Word):
        return _start(child.first)
    span: Span = child.span
    return span.start


def _end(child: Child) -> tuple[int, int]:
    if isinstance(child, Token):
        return (child.end_line or 1, child.end_column or 1)
    if isinstance(child, _Word):
        return _end(child.last)
    span: Span = child.span
    return span.end
