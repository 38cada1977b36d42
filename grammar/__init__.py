"""The ``.campaign`` language: Lark grammar, typed AST, parse errors and formatter."""

from cadence.grammar.parser import ParseResult, parse_file, parse_source, parse_text

__all__ = ["ParseResult", "parse_file", "parse_source", "parse_text"]
