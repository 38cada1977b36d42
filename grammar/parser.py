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
