"""Error recovery: parse a broken file token by token and report each error once.

Only files with syntax errors come here (see :func:`grammar.parser.parse_source`).
The strategy resyncs at statement and block boundaries, never token by token:

* before each statement keyword and after each brace the parser state is saved
  (a *checkpoint*); on an error it goes back there and drops tokens until one
  fits, skipping whole ``{ ... }`` blocks, so one mistake gives one diagnostic;
* a ``day``, a step keyword or the end of the file where a ``}`` is missing
  closes the open blocks and reports where each one was opened;
* a missing ``{`` after a header is put in, and an unterminated string is read
  to the end of its line, so the rest of the file still parses.

It stops after :data:`MAX_ERRORS` diagnostics.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from lark import Lark, Token, UnexpectedCharacters, UnexpectedToken
from lark.lexer import ContextualLexer
from lark.parsers.lalr_interactive_parser import InteractiveParser

from cadence import codes
from cadence.diagnostics import Diagnostic, Related, replacement
from cadence.grammar import ast, messages
from cadence.grammar.transformer import ParseContext, token_span
from cadence.span import Span, point

MAX_ERRORS = 50
MAX_DEPTH = 256

# Where a checkpoint is taken: before these tokens are fed...
STATEMENT_STARTS = frozenset(
    {"DAY", "SEND", "FOLLOW", "SUBJECT", "BODY", "NOTES", "MESSAGE", "TITLE"}
    | messages.SETTINGS
    | messages.STEP_KINDS
)
# ...and after these.
BRACES = frozenset({"LBRACE", "RBRACE"})
# Tokens that end the blocks still open when they come where a `}` was due.
CLOSES_BLOCKS = frozenset({"DAY", "CAMPAIGN", "$END"} | messages.STEP_KINDS | messages.SETTINGS)


@dataclass
class _Snapshot:
    states: list[int]
    values: list[object]
    braces: list[_Open]
    recent: list[Token]


@dataclass
class _Open:
    token: Token
    owner: str


@dataclass
class _Recovery:
    parser: Lark
    text: str
    context: ParseContext
    interactive: InteractiveParser = field(init=False)
    braces: list[_Open] = field(default_factory=list)
    recent: list[Token] = field(default_factory=list)
    errors: int = 0
    recovering: bool = False
    skip_depth: int = 0
    stopped: bool = False
    swallowed: bool = False
    result: ast.Campaign | None = None

    def __post_init__(self) -> None:
        self.interactive = self.parser.parse_interactive(self.text)
        self.state = self.interactive.parser_state
        self.checkpoint = self._snapshot()

    # ---- driving ------------------------------------------------------------------
    def run(self) -> ast.Campaign | None:
        for token in self._tokens():
            if self.stopped:
                return None
            self._take(token)
        if not self.stopped:
            self._take(self._eof())
        return None if self.stopped else self.result

    def _tokens(self) -> Iterator[Token]:
        """Lex as lark's contextual lexer does, but while tokens are being
        dropped use the lexer of all terminals: it never fails on a token
        that exists elsewhere, so skipping costs no exception per token."""
        thread = self.interactive.lexer_thread
        contextual = thread.lexer
        assert isinstance(contextual, ContextualLexer) and thread.state is not None
        lexer_state, root = thread.state, contextual.root_lexer
        while True:
            skipping = self.recovering or self.skip_depth
            lexer = root if skipping else contextual.lexers[self.state.position]
            try:
                yield lexer.next_token(lexer_state, self.state)
            except EOFError:
                return
            except UnexpectedCharacters as error:
                try:
                    # A token that exists, but not here: the parser reports it.
                    yield root.next_token(lexer_state, self.state)
                except UnexpectedCharacters:
                    replacement = self._bad_characters(error)
                    if replacement is not None:
                        yield replacement

    def _take(self, token: Token) -> None:
        if self.skip_depth and not self._skipping(token):
            return
        if self._feed(token):
            self.recovering = False
            return
        if token.type in CLOSES_BLOCKS and self._close_blocks(token):
            self.recovering = False
            return
        if token.type == "RBRACE" and not self.braces:
            self._report(
                codes.P022.at(
                    self._span(token),
                    "unmatched `}`: no `{` is open here",
                    help="remove it, or check the braces above",
                )
            )
            return
        if not self.recovering:
            if self._insert_open_brace(token):
                return
            self._report(self._unexpected(token))
            self.recovering = True
            self._restore(self.checkpoint)
            if self._feed(token):
                self.recovering = False
                return
        if token.type == "LBRACE":
            self.skip_depth = 1

    def _skipping(self, token: Token) -> bool:
        """Inside a dropped block: follow its braces. True once it is left."""
        if token.type == "LBRACE":
            self.skip_depth += 1
            if self.skip_depth > MAX_DEPTH:
                self._fatal(token, f"braces are nested more than {MAX_DEPTH} deep")
        elif token.type == "RBRACE":
            self.skip_depth -= 1
        elif token.type == "$END":
            self.skip_depth = 0
            return True
        return False

    # ---- the parser state ----------------------------------------------------------
    def _snapshot(self) -> _Snapshot:
        return _Snapshot(
            list(self.state.state_stack),
            list(self.state.value_stack),
            list(self.braces),
            list(self.recent),
        )

    def _restore(self, snapshot: _Snapshot) -> None:
        self.state.state_stack[:] = snapshot.states
        self.state.value_stack[:] = snapshot.values
        self.braces = list(snapshot.braces)
        self.recent = list(snapshot.recent)

    def _feed(self, token: Token) -> bool:
        table = self.state.parse_conf.states
        if token.type not in table[self.state.position]:
            return False
        before = self._snapshot()
        try:
            result = self.state.feed_token(token, token.type == "$END")
        except UnexpectedToken:
            # LALR may reduce before it sees the error; undo those reductions.
            self._restore(before)
            return False
        if token.type == "$END":
            self.result = result
        elif token.type == "LBRACE":
            self.braces.append(_Open(token, _owner(self.recent)))
        elif token.type == "RBRACE" and self.braces:
            self.braces.pop()
        self.recent = [*self.recent[-1:], token]
        if token.type in STATEMENT_STARTS:
            self.checkpoint = before
        elif token.type in BRACES:
            self.checkpoint = self._snapshot()
        return True

    def _expected(self) -> set[str]:
        probe = InteractiveParser(
            self.interactive.parser, self.state, self.interactive.lexer_thread
        )
        accepted: set[str] = probe.accepts()  # type: ignore[no-untyped-call]
        return accepted

    # ---- repairs --------------------------------------------------------------------
    def _close_blocks(self, token: Token) -> bool:
        """Close open blocks until ``token`` fits; report each block closed."""
        before = self._snapshot()
        saved_checkpoint = self.checkpoint
        closed: list[_Open] = []
        while self.braces:
            opened = self.braces[-1]
            if not self._feed(_virtual("RBRACE", "}", token)):
                break
            closed.append(opened)
            if self._feed(token):
                for block in closed:
                    self._report_unclosed(block, token)
                return True
        self._restore(before)
        self.checkpoint = saved_checkpoint
        return False

    def _report_unclosed(self, block: _Open, token: Token) -> None:
        if self.swallowed:
            return  # an unterminated block string ate the rest; its error says so
        where = (
            "the file ends" if token.type == "$END" else f"{messages.describe_token(token)} comes"
        )
        self._report(
            codes.P021.at(
                self._span(block.token),
                f"unclosed `{{` of {block.owner}",
                help=f"add the `}}` that closes {block.owner} before {where}",
                related=(
                    Related(
                        message=f"{where} here, while {block.owner} is open", span=self._span(token)
                    ),
                ),
            )
        )

    def _insert_open_brace(self, token: Token) -> bool:
        """``email intro send ...``: the `{` is missing after a header."""
        if token.type == "LBRACE" or self._expected() != {"LBRACE"}:
            return False
        before = self._snapshot()
        owner = _owner(self.recent)
        header = self._span(self.recent[-1]) if self.recent else self._span(token)
        if self._feed(_virtual("LBRACE", "{", token)) and self._feed(token):
            after_header = point(header.file, header.end_line, header.end_column, 0)
            self._report(
                codes.P020.at(
                    self._span(token),
                    f"expected `{{` after {owner}, found {messages.describe_token(token)}",
                    help=f"open the block of {owner} with `{{`",
                    fixes=(replacement(after_header, " {", f"open the block of {owner}"),),
                )
            )
            return True
        self._restore(before)
        return False

    # ---- diagnostics ------------------------------------------------------------------
    def _unexpected(self, token: Token) -> Diagnostic:
        expected = self._expected()
        found = messages.describe_token(token)
        span = self._span(token)
        if token.type == "$END" and expected == {"CAMPAIGN"}:
            return codes.P024.at(
                span,
                "the file holds no campaign",
                help='a campaign file starts with `campaign "Name" {`',
            )
        if expected == {"$END"}:
            return codes.P020.at(
                span,
                f"expected the end of the file, found {found}",
                help="one `.campaign` file holds one campaign; the campaign's `}` is above",
            )
        if token.type == "MINUS":  # `follow-up`: a `-` is a token only in `send window`
            word = _word_around(self.text, token.start_pos or 0)
            guess = messages.suggest_word(word, self._expected_at_checkpoint())
            if guess is not None:
                return codes.P010.at(
                    span, "unexpected character `-`", help=f"did you mean `{guess}`?"
                )
        if (token.type in messages.SETTINGS or token.type == "SEND") and "DAY" in expected:
            return codes.P020.at(
                span,
                f"settings come before the first day, found {found}",
                help="move this setting above the first `day`",
            )
        message = f"expected {messages.describe_expected(expected)}, found {found}"
        help = _help(token, expected, self.recent)
        guess = messages.suggest(token, expected)
        fixes = (replacement(span, guess),) if guess is not None else ()
        if expected == {"LBRACE"} and self.recent:  # `email intro` and no `{` after it
            header = self._span(self.recent[-1])
            after = point(header.file, header.end_line, header.end_column, 0)
            fixes = (replacement(after, " {", "open the block with `{`"),)
        if help is None:
            outer = messages.suggest(token, self._expected_outside())
            if outer is not None:
                help = f"did you mean `{outer}`? If so, a `}}` is missing before it"
        return codes.P020.at(span, message, help=help, fixes=fixes)

    def _expected_at_checkpoint(self) -> set[str]:
        """What the statement being read could have started with."""
        now = self._snapshot()
        self._restore(self.checkpoint)
        expected = self._expected()
        self._restore(now)
        return expected

    def _expected_outside(self) -> set[str]:
        """What the enclosing blocks would take, were the open ones closed."""
        before = self._snapshot()
        saved_checkpoint = self.checkpoint
        expected: set[str] = set()
        while self.braces and self._feed(_virtual("RBRACE", "}", self.recent[-1])):
            expected |= self._expected()
        self._restore(before)
        self.checkpoint = saved_checkpoint
        return expected

    def _bad_characters(self, error: UnexpectedCharacters) -> Token | None:
        """Report characters no token starts with; give back a stand-in token
        for an unterminated string so the statement still parses."""
        lexer_state = self.interactive.lexer_thread.state
        assert lexer_state is not None  # parse_interactive was given the text
        line_counter = lexer_state.line_ctr
        start = line_counter.char_pos
        replacement: tuple[str, str] | None = None
        line, column = line_counter.line, line_counter.column
        if self.text.startswith('"""', start):
            end = len(self.text)
            self.swallowed = True
            self._report(
                codes.P011.at(
                    point(self.context.file, line, column, 3),
                    'unterminated block string: no closing `"""`',
                    help='close the block with `"""`',
                )
            )
            replacement = ("LONG_STRING", self.text[start:end] + '"""')
        elif self.text[start] == '"':
            end = _line_end(self.text, start)
            self._report(
                codes.P011.at(
                    point(self.context.file, line, column, 1),
                    'unterminated string: no closing `"` on this line',
                    help='close it with `"`; for text over several lines, use a """ block',
                )
            )
            replacement = ("STRING", self.text[start:end] + '"')
        elif self.text[start] in _OTHER_QUOTES:
            end, replacement = self._other_quotes(start, line, column)
        elif _is_foreign_letter(self.text[start]):
            end = _word_end(self.text, start)
            word = self.text[start:end]
            self._report(
                codes.P010.at(
                    point(self.context.file, line, column, end - start),
                    f"`{word}` is not a name: names are ASCII",
                    help="names use A–Z, a–z, digits, `_` and `-`; any text may go in a string",
                )
            )
            replacement = ("IDENT", word) if "IDENT" in self._expected() else None
        else:
            end = _junk_end(self.text, start)
            self._bad_characters_run(line, column, self.text[start:end])
        line_counter.feed(self.text[start:end])
        if replacement is None:
            return None
        kind, value = replacement
        return Token(kind, value, start, line, column, line_counter.line, line_counter.column, end)

    def _other_quotes(
        self, start: int, line: int, column: int
    ) -> tuple[int, tuple[str, str] | None]:
        """Text in 'single' or “typographic” quotes (pasted from a document):
        one error, and read as what it meant — a string where text may stand,
        a name where a name may — so nothing else is reported about it."""
        close = _closing_quote(self.text, start)
        end = start + 1 if close == -1 else close + 1
        span = point(self.context.file, line, column, end - start)
        if close == -1:
            self._report(codes.P026.at(span, "text is written in double quotes", help='use `"`'))
            return end, None
        inner = self.text[start + 1 : close]
        expected = self._expected()
        if "STRING" not in expected and "IDENT" in expected and _NAME.fullmatch(inner):
            message, meant, kind = "names are written without quotes", inner, "IDENT"
        else:
            message, kind = "text is written in double quotes", "STRING"
            meant = '"' + inner.replace("\\", "\\\\").replace('"', '\\"') + '"'
        fixes = (replacement(span, meant),)
        self._report(codes.P026.at(span, message, help=f"write {meant}", fixes=fixes))
        return end, (kind, meant) if kind in expected else None

    def _bad_characters_run(self, line: int, column: int, run: str) -> None:
        span = point(self.context.file, line, column, len(run))
        if run in ("-", "_"):
            word = _word_around(self.text, self.interactive_position())
            guess = messages.suggest_word(word, self._expected_at_checkpoint())
            if guess is not None:
                self._report(
                    codes.P010.at(
                        span, f"unexpected character `{run}`", help=f"did you mean `{guess}`?"
                    )
                )
                return
        shown = "".join(c if c.isprintable() else f"U+{ord(c):04X}" for c in run[:20])
        if len(run) > 20:
            shown += "…"
        plural = "s" if len(run) > 1 else ""
        self._report(
            codes.P010.at(
                span,
                f"unexpected character{plural} `{shown}`",
                help="names are letters, digits, `_` and `-`; text goes in quotes",
            )
        )

    def interactive_position(self) -> int:
        lexer_state = self.interactive.lexer_thread.state
        assert lexer_state is not None
        return lexer_state.line_ctr.char_pos

    def _report(self, diagnostic: Diagnostic) -> None:
        if self.stopped:
            return
        self.context.diagnostics.append(diagnostic)
        self.errors += 1
        if self.errors >= MAX_ERRORS:
            self.context.diagnostics.append(
                codes.P023.at(
                    diagnostic.span,
                    f"stopped after {MAX_ERRORS} syntax errors",
                    help="fix these and run again",
                )
            )
            self.stopped = True

    def _fatal(self, token: Token, message: str) -> None:
        self._report(codes.P025.at(self._span(token), message))
        self.stopped = True

    def _span(self, token: Token) -> Span:
        span = token_span(self.context.file, token)
        if span.end == span.start:  # a zero-width (virtual or end-of-file) token
            return point(span.file, span.line, span.column)
        return span

    def _eof(self) -> Token:
        lines = self.text.split("\n")
        line = len(lines)
        column = len(lines[-1].rstrip("\r")) + 1
        return Token("$END", "", len(self.text), line, column, line, column, len(self.text))


def recover(parser: Lark, text: str, context: ParseContext) -> ast.Campaign | None:
    """Parse ``text`` reporting every syntax error (up to the cap) into ``context``."""
    return _Recovery(parser, text, context).run()


def _virtual(kind: str, value: str, at: Token) -> Token:
    """A token the author left out, placed (zero-width) where it was due."""
    return Token(kind, value, at.start_pos, at.line, at.column, at.line, at.column, at.start_pos)


def _owner(recent: list[Token]) -> str:
    kinds = [token.type for token in recent]
    if kinds == ["CAMPAIGN", "STRING"]:
        return "the campaign"
    if kinds == ["DAY", "INT"]:
        return f"day {recent[1]}"
    if len(recent) == 2 and recent[0].type in messages.STEP_KINDS and recent[1].type == "IDENT":
        return f"{recent[0]} `{recent[1]}`"
    if recent and recent[-1].type in messages.STEP_KINDS | {"CAMPAIGN", "DAY"}:
        return f"`{recent[-1]}`"
    return "this block"


def _is_foreign_letter(char: str) -> bool:
    return not char.isascii() and (char.isalpha() or char.isdigit())


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# Quotes people type or paste for text, with the quote that closes each.
_OTHER_QUOTES = {"'": "'", "\u2018": "\u2019", "\u201c": "\u201d", "\u201e": "\u201c"}


def _closing_quote(text: str, start: int) -> int:
    """Where the text opened by the quote at ``start`` ends on its line (-1:
    it does not). An apostrophe may stand inside ('it's'): the last quote
    that only a `{`, a comment or the line's end follows is taken first."""
    closing, end = _OTHER_QUOTES[text[start]], _line_end(text, start)
    candidates = [n for n in range(start + 1, end) if text[n] == closing]
    for n in reversed(candidates):
        rest = text[n + 1 : end].lstrip()
        if not rest or rest[0] in "{#":
            return n
    return candidates[0] if candidates else -1


def _junk_end(text: str, start: int) -> int:
    """The end of a run of characters no token starts with (one error for the run)."""
    end = start + 1
    while end < len(text) and _is_junk(text[end]):
        end += 1
    return end


def _is_junk(char: str) -> bool:
    if char.isspace() or _is_foreign_letter(char):
        return False
    return not (char.isascii() and (char.isalnum() or char in '_"#{},'))


def _word_end(text: str, start: int) -> int:
    end = start
    while end < len(text) and (text[end].isalnum() or text[end] in "_-"):
        end += 1
    return end


def _word_around(text: str, at: int) -> str:
    """The word-like run of characters (letters, digits, `_`, `-`) holding ``at``."""
    start = at
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_-"):
        start -= 1
    return text[start : _word_end(text, at)]


def _line_end(text: str, start: int) -> int:
    end = text.find("\n", start)
    if end == -1:
        return len(text)
    return end - 1 if end > start and text[end - 1] == "\r" else end


def _help(token: Token, expected: set[str], recent: list[Token]) -> str | None:
    if str(token) == "variant" and "VARIANT" not in expected:
        return "variants belong to email steps: `email intro { variant a weight 50 { ... } }`"
    if expected == {"WEIGHT"}:
        return "give each variant its share: `variant short weight 50 { ... }`"
    guess = messages.suggest(token, expected)
    if guess is not None:
        return f"did you mean `{guess}`?"
    if expected == {"STRING"} and recent and recent[-1].type == "CAMPAIGN":
        return 'name the campaign in quotes: `campaign "Q1 Outbound" {`'
    if expected == {"STRING"}:
        return 'write it in double quotes: `"..."`'
    if token.type == "STRING" and "IDENT" in expected:
        return f"names are written without quotes: {str(token)[1:-1] or 'name'}"
    if "MINUS" in expected:
        return "a window is two times with `-` between them: `send window 08:00-17:30`"
    if "TIME" in expected:
        return "write the time as HH:MM on a 24-hour clock, e.g. `09:30`"
    if "INT" in expected:
        return "days are numbered from 1: `day 1 {`"
    if "IDENT" in expected and expected <= {"IDENT"}:
        return "every step needs a name, unique in the campaign: `email intro {`"
    return None
