"""The parser: built once per process from ``campaign.lark``, cached on disk.

:func:`parse_text` is the entry point. A file without syntax errors takes lark's
fast path; only a file with errors is parsed again token by token with
recovery (:mod:`grammar.recovery`), so errors cost nothing on good files.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import cast

import lark
from lark import Lark, UnexpectedInput

from cadence.cachedir import cache_dir
from cadence.diagnostics import Diagnostic, has_errors, sort_diagnostics
from cadence.gcpause import gc_paused
from cadence.grammar import ast
from cadence.grammar.recovery import recover
from cadence.grammar.transformer import AstBuilder, ParseContext, token_span
from cadence.source import Source, read_source, source_from_text

_lock = threading.Lock()
_parser: Lark | None = None
_builder = AstBuilder()


@dataclass(frozen=True)
class ParseResult:
    """What parsing a file gives: the AST (``None`` when it could not be built,
    partial when errors were recovered from), its comments and diagnostics."""

    source: Source
    campaign: ast.Campaign | None
    comments: tuple[ast.Comment, ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return self.campaign is not None and not has_errors(self.diagnostics)


def grammar_text() -> str:
    return resources.files("cadence.grammar").joinpath("campaign.lark").read_text("utf-8")


def cache_file(text: str) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    key = hashlib.sha256(f"{lark.__version__}\n{text}".encode()).hexdigest()[:20]
    return folder / f"campaign-grammar-{key}.lark"


def build_parser(use_cache: bool = True) -> Lark:
    """A new LALR parser for the language (lark checks the cache's own hash too)."""
    text = grammar_text()
    cache = cache_file(text) if use_cache else None
    return Lark(
        text,
        parser="lalr",
        lexer="contextual",
        strict=True,
        keep_all_tokens=True,
        propagate_positions=False,  # spans come from tokens, see grammar.transformer
        maybe_placeholders=False,
        transformer=_builder,
        lexer_callbacks={"COMMENT": _builder.on_comment},
        cache=str(cache) if cache else False,
    )


def get_parser() -> Lark:
    """The process-wide parser, built (or loaded from the cache) on first use."""
    global _parser
    if _parser is None:
        with _lock:
            if _parser is None:
                _parser = build_parser()
    return _parser


def accepted_after(text: str, *, attempts: int = 10) -> frozenset[str] | None:
    """The terminals the grammar takes after ``text`` (``SEND``, ``IDENT``,
    ``RBRACE``…), for completion. A line with a syntax error before the end
    (a statement being typed) is left out and the rest tried again; ``None``
    when that does not help."""
    lines = text.split("\n")
    for _ in range(attempts):
        found = _accepted("\n".join(lines))
        if not isinstance(found, tuple):
            return found
        first, last = found
        if last >= len(lines):  # the error is on the last line: it is the one typed
            return None
        for number in range(first, last + 1):
            lines[number - 1] = ""
    return None


def _accepted(text: str) -> frozenset[str] | tuple[int, int]:
    """The terminals taken after ``text``; or, at a syntax error, the lines
    from the statement it broke (its last good token) to the error."""
    parser = get_parser()
    with _lock:  # the builder keeps one parse's state
        _builder.begin("<completion>")
        interactive = parser.parse_interactive(text)
        last_line = 1
        try:
            for token in interactive.iter_parse():
                last_line = token.line or last_line
        except UnexpectedInput as error:
            line = max(error.line, 1)
            return min(last_line, line), line
        return frozenset(interactive.accepts())  # type: ignore[no-untyped-call]


def parse_text(text: str, path: str = "<string>") -> ParseResult:
    return parse_source(source_from_text(text, path))


def parse_file(path: str | Path) -> ParseResult:
    """Parse a file. Raises :class:`OSError` when it cannot be read at all."""
    return parse_source(read_source(path))


def parse_source(source: Source) -> ParseResult:
    if source.text is None:
        return ParseResult(source, None, (), source.diagnostics)
    with gc_paused():
        return _parse(source, source.text)


def _parse(source: Source, text: str) -> ParseResult:
    parser = get_parser()
    context = _builder.begin(source.path)
    try:
        campaign: ast.Campaign | None = cast(ast.Campaign, parser.parse(text))
    except UnexpectedInput:
        context = _builder.begin(source.path)
        campaign = recover(parser, text, context)
    return _result(source, campaign, context)


def _result(source: Source, campaign: ast.Campaign | None, context: ParseContext) -> ParseResult:
    comments = tuple(
        ast.Comment(span=token_span(context.file, token), text=str(token).rstrip())
        for _, token in sorted(context.comments.items())
    )
    return ParseResult(source, campaign, comments, tuple(sort_diagnostics(context.diagnostics)))
