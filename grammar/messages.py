"""Parse errors in words: what was expected, what was found, and did you mean.

Lark names terminals (``SEND``, ``LBRACE``, ``$END``); authors read keywords
and punctuation. Every phrase an author sees is made here, and the golden
tests in ``tests/cases/parse`` pin the exact text.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable

from lark import Token

# Terminals as an author reads them. Keywords not listed read as themselves.
_WORDS = {
    "IDENT": "a name",
    "STRING": 'a string "…"',
    "LONG_STRING": 'a """ block',
    "INT": "a day number",
    "TIME": "a time of day (HH:MM)",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "COMMA": "`,`",
    "$END": "the end of the file",
    "FOLLOW": "`follow up`",
    "WITH": "`with previous`",
    "AT": "`at HH:MM`",
    "TEMPLATE": '`template "path"`',
    "RECIPIENT": '`recipient else "Zone"`',
    "WINDOW": "`window HH:MM-HH:MM`",
    "MINUS": "`-`",
}

# The order expectations are listed in: as they are written in a file.
_ORDER = [
    "CAMPAIGN", "ID", "TIMEZONE", "SKIP", "ON", "REQUIRES", "DAY",
    "EMAIL", "CALL", "INMAIL", "CUSTOM",
    "SEND", "FOLLOW", "SUBJECT", "BODY", "VARIANT", "NOTES", "MESSAGE", "TITLE",
    "CHOOSE", "AT", "TASK", "WITH", "WINDOW", "WEIGHT",
    "RECIPIENT", "WEEKENDS", "HOLIDAYS", "REPLY", "BOUNCE",
    "END", "SUCCESS", "REMOVE", "CONTINUE",
    "IDENT", "INT", "TIME", "STRING", "LONG_STRING", "TEMPLATE",
    "MINUS", "COMMA", "LBRACE", "RBRACE", "$END",
]  # fmt: skip

SEND_OPTIONS = frozenset({"CHOOSE", "AT", "TASK", "WITH"})
STEP_KINDS = frozenset({"EMAIL", "CALL", "INMAIL", "CUSTOM"})
SETTINGS = frozenset({"ID", "TIMEZONE", "SKIP", "ON", "REQUIRES"})
_SETTING_WORDS = "a setting (`id`, `timezone`, `skip`, `on`, `requires` or `send window`)"

# Phrases for whole expectation sets that read better as one idea.
_SETS: dict[frozenset[str], str] = {
    SEND_OPTIONS | {"WINDOW"}: (
        "a send option: `choose`, `at HH:MM`, `task` or `with previous` "
        "(or a sending window: `window HH:MM-HH:MM`)"
    ),
    frozenset({"END", "CONTINUE"}): "`end`, `end success` or `continue`",
    frozenset({"STRING", "LONG_STRING", "TEMPLATE"}): (
        'a text: a string "…", a """ block or `template "path"`'
    ),
}

# Spellings authors reach for, mapped to the keyword they meant.
_ALIASES = {
    "followup": "FOLLOW",
    "follow-up": "FOLLOW",
    "follow_up": "FOLLOW",
    "previous": "WITH",
    "with-previous": "WITH",
    "with_previous": "WITH",
    "timezone_recipient": "RECIPIENT",
    "weekend": "WEEKENDS",
    "holiday": "HOLIDAYS",
    "require": "REQUIRES",
    "note": "NOTES",
    "titles": "TITLE",
    "messages": "MESSAGE",
    "mail": "EMAIL",
    "e-mail": "EMAIL",
    "phone": "CALL",
    "linkedin": "INMAIL",
}


def is_keyword(terminal: str) -> bool:
    return terminal.isalpha() and terminal.isupper() and terminal not in {"IDENT", "INT"}


def keyword_text(terminal: str) -> str:
    return _WORDS.get(terminal, f"`{terminal.lower()}`")


def describe_expected(expected: Collection[str]) -> str:
    """``{"SEND", "RBRACE"}`` → "`send` or `}`"."""
    wanted = frozenset(expected)
    if wanted in _SETS:
        return _SETS[wanted]
    parts: list[str] = []
    rest = set(wanted)
    if rest >= STEP_KINDS:
        parts.append("a step (`email`, `call`, `inmail` or `custom`)")
        rest -= STEP_KINDS
    if rest >= SETTINGS | {"SEND"}:  # `send window` is a setting too
        parts.append(_SETTING_WORDS)
        rest -= SETTINGS | {"SEND"}
    elif rest >= SETTINGS:
        parts.append("a setting (`id`, `timezone`, `skip`, `on` or `requires`)")
        rest -= SETTINGS
    parts.extend(keyword_text(t) for t in sorted(rest, key=_rank))
    return join_or(parts)


def join_or(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def _rank(terminal: str) -> tuple[int, str]:
    try:
        return (_ORDER.index(terminal), terminal)
    except ValueError:
        return (len(_ORDER), terminal)


def describe_token(token: Token) -> str:
    kind = token.type
    text = str(token)
    if kind == "$END":
        return "the end of the file"
    if kind == "STRING":
        shown = text if len(text) <= 32 else text[:30] + '…"'
        return f"the string {shown}"
    if kind == "LONG_STRING":
        return 'a """ block'
    if kind == "INT":
        return f"the number `{text}`"
    if kind == "IDENT":
        return f"`{text}`"
    return f"`{text}`"


def suggest(token: Token, expected: Iterable[str]) -> str | None:
    """The keyword the author probably meant, as it should be written."""
    if token.type not in {"IDENT"} and not is_keyword(token.type):
        return None
    return suggest_word(str(token), expected)


def suggest_word(word: str, expected: Iterable[str]) -> str | None:
    keywords = {t for t in expected if is_keyword(t)}
    if not keywords:
        return None
    alias = _ALIASES.get(word.lower())
    if alias in keywords:
        return _spelled(alias)
    by_word = {t.lower(): t for t in keywords}
    if word.lower() in by_word:
        return _spelled(by_word[word.lower()])
    close = difflib.get_close_matches(word.lower(), list(by_word), n=1, cutoff=0.6)
    if close:
        return _spelled(by_word[close[0]])
    return None


def _spelled(terminal: str) -> str:
    return {"FOLLOW": "follow up", "WITH": "with previous"}.get(terminal, terminal.lower())
