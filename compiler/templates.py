"""Template checks (docs/semantics.md §8): every subject, body, notes, message and title is
parsed with Jinja2's sandbox, and the names it uses are checked against what a
template may use. Problems point into the `.campaign` file, or into the
template file a `template "path"` names.
"""

from __future__ import annotations

import difflib
import errno
import functools
import os
import posixpath
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jinja2 import TemplateSyntaxError

from cadence import codes, templating
from cadence.compiler import ir
from cadence.diagnostics import Diagnostic, Fix, replacement
from cadence.grammar import ast
from cadence.source import Source, decode_source
from cadence.span import Span, point

STANDARD_FIELDS, OBJECTS = templating.STANDARD_FIELDS, templating.OBJECTS
TEXT_PROPERTIES = ("subject", "body", "notes", "message", "title")


MAX_TEMPLATE_BYTES = 1024 * 1024
"""A template file is an email, not a book: larger files are refused."""


@dataclass
class TemplateChecker:
    """Checks the texts of one campaign; remembers the person fields they use."""

    source: Source
    requires: list[str]
    sources: dict[str, Source] = field(default_factory=dict)
    used_fields: set[str] = field(default_factory=set)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    root: Path | None = None
    """Where template files may be (``--templates-root``); the campaign's folder by default."""
    given: Mapping[str, str] | None = None
    """Template files given as text, by the path the campaign names them with
    (a campaign sent over the API): then nothing is read from disk."""

    def __post_init__(self) -> None:
        self.allowed = {*self.requires, *STANDARD_FIELDS, *OBJECTS}
        self.base = Path(self.source.path).parent

    def template(self, text: ast.Text) -> ir.Template | None:
        """Check one text; its IR form, or ``None`` when its file cannot be read."""
        if text.form == "template":
            return self._file(text)
        self._check(text.value, _InString(self.source, text))
        origin: Literal["inline", "block"] = "inline" if text.form == "inline" else "block"
        return ir.Template(source=text.value, origin=origin, span=text.span)

    def _file(self, text: ast.Text) -> ir.Template | None:
        path = self.base / text.value
        root = self.root if self.root is not None else self.base
        try:
            if self.given is not None:
                loaded = _given_template(text.value, self.given)
            else:
                loaded = _read_template(path, root)
        except _Outside:
            where = "the templates root" if self.root is not None else "the campaign's folder"
            self.diagnostics.append(
                codes.C032.at(
                    text.span,
                    f'template "{text.value}" is outside {where}',
                    help="keep templates in the campaign's folder or below it, or name the "
                    "folder that holds them with --templates-root",
                )
            )
            return None
        except OSError as error:
            reason = error.strerror or str(error)
            where = (
                "give it with the campaign, under the name the campaign uses"
                if self.given is not None
                else f"the path is relative to the campaign file's folder ({self.base or '.'})"
            )
            self.diagnostics.append(
                codes.C020.at(
                    text.span, f'cannot read template "{text.value}": {reason}', help=where
                )
            )
            return None
        self.sources[loaded.path] = loaded
        if loaded.text is None:
            self.diagnostics.extend(loaded.diagnostics)
            return None
        self._check(loaded.text, _InFile(loaded))
        return ir.Template(source=loaded.text, origin="file", path=text.value, span=text.span)

    def _check(self, template: str, place: _Place) -> None:
        analysis = self._analyse(template)
        if isinstance(analysis, TemplateSyntaxError):
            self.diagnostics.append(
                codes.C030.at(
                    _syntax_error_span(analysis, place),
                    f"template syntax error: {analysis.message}",
                    help="Jinja syntax: `{{ name }}` for a value, `{% if %}…{% endif %}` for logic",
                )
            )
            return
        for name, line in analysis.names.items():
            if name in self.allowed:
                if name not in OBJECTS:
                    self.used_fields.add(name)
            else:
                self.diagnostics.append(self._unknown_name(name, line, place))
        for owner, attribute, line in analysis.attributes:
            self._check_attribute(owner, attribute, line, place)

    def _analyse(self, template: str) -> templating.Analysis | TemplateSyntaxError:
        if len(template) > CACHED_TEMPLATE_CHARS:  # a rare long text: not kept
            return templating.analyse(_environment(), template)
        return _analysed(template)

    def _unknown_name(self, name: str, line: int, place: _Place) -> Diagnostic:
        guess = difflib.get_close_matches(name, sorted(self.allowed), n=1, cutoff=0.6)
        span = place.name_span(line, name)
        fixes: tuple[Fix, ...] = ()
        if guess:
            help = f"did you mean `{guess[0]}`?"
            if span.end_column - span.column == len(name):  # found: the name's own span
                fixes = (replacement(span, guess[0], safe=False),)
        else:
            help = f"if every person has a `{name}` field, declare it: `requires {name}`"
        return codes.C031.at(
            span, f"`{name}` is not a name this template may use", help=help, fixes=fixes
        )

    def _check_attribute(self, owner: str, attribute: str, line: int, place: _Place) -> None:
        known = OBJECTS[owner]
        if attribute in known:
            return
        guess = difflib.get_close_matches(attribute, known, n=1, cutoff=0.6)
        listed = ", ".join(f"`{owner}.{name}`" for name in known)
        self.diagnostics.append(
            codes.C031.at(
                place.name_span(line, attribute),
                f"`{owner}` has no `{attribute}`",
                help=f"did you mean `{owner}.{guess[0]}`?" if guess else f"use {listed}",
            )
        )


class _Outside(Exception):
    """A template path that leads out of the folder templates may come from."""


def _read_template(path: Path, root: Path) -> Source:
    """Read a template file that lies inside ``root`` (symlinks followed) and
    is a regular file of at most :data:`MAX_TEMPLATE_BYTES`; raises
    :class:`_Outside` or :class:`OSError`. The campaign file is untrusted: its
    paths must not reach `/etc/passwd`, `/proc/self/environ` or a FIFO."""
    if "\x00" in str(path):
        raise OSError(errno.EINVAL, "the path holds a NUL character")
    # Where it leads is checked before whether it exists, so a campaign
    # cannot probe for files outside the folder.
    if not path.resolve().is_relative_to(root.resolve()):
        raise _Outside(str(path))
    # O_NONBLOCK: opening a FIFO must not wait for a writer.
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = handle.read(MAX_TEMPLATE_BYTES + 1)
    if len(data) > MAX_TEMPLATE_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_TEMPLATE_BYTES // 1024} KiB")
    return decode_source(data, str(path))


def _given_template(name: str, given: Mapping[str, str]) -> Source:
    """A template given as text (see ``TemplateChecker.given``), held to the
    rules of one on disk: inside the campaign's folder, at most
    :data:`MAX_TEMPLATE_BYTES`, UTF-8."""
    if "\x00" in name:
        raise OSError(errno.EINVAL, "the path holds a NUL character")
    path = posixpath.normpath(name)
    if posixpath.isabs(path) or path == ".." or path.startswith("../"):
        raise _Outside(name)
    text = given.get(path, given.get(name))
    if text is None:
        raise OSError(errno.ENOENT, "no template of that name was given")
    data = text.encode("utf-8", "surrogatepass")  # a lone surrogate: not UTF-8, said so
    if len(data) > MAX_TEMPLATE_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_TEMPLATE_BYTES // 1024} KiB")
    return decode_source(data, path)


class _Place:
    """Maps a line of a template to a span in the file the author edits: a
    subclass says which line of which file that is (``_raw``)."""

    @property
    def file(self) -> str:
        raise NotImplementedError

    def _raw(self, line: int) -> tuple[int, str, int]:
        """The file's line number, its text, and where the template starts on it."""
        raise NotImplementedError

    def line_span(self, line: int) -> Span:
        """The template's ``line``, its leading spaces left out."""
        number, raw, _ = self._raw(line)
        start = len(raw) - len(raw.lstrip()) + 1
        return Span(
            file=self.file,
            line=number,
            column=start,
            end_line=number,
            end_column=max(start + 1, len(raw) + 1),
        )

    def name_span(self, line: int, name: str) -> Span:
        """Where the name ``name`` (a whole word) stands on ``line``."""
        number, raw, offset = self._raw(line)
        column = _find_word(raw, name, offset)
        if column is None:
            return self.line_span(line)
        return point(self.file, number, column + 1, len(name))

    def fragment_span(self, line: int, fragment: str) -> Span:
        """Where ``fragment`` first stands on ``line``; the whole line when it is not there."""
        number, raw, offset = self._raw(line)
        found = raw.find(fragment, offset)
        if found == -1:
            return self.line_span(line)
        return point(self.file, number, found + 1, len(fragment))

    def search(self, line: int, pattern: re.Pattern[str]) -> Span | None:
        """Where ``pattern`` first matches on ``line``."""
        number, raw, offset = self._raw(line)
        match = pattern.search(raw, offset)
        if match is None:
            return None
        return point(self.file, number, match.start() + 1, match.end() - match.start())


class _InFile(_Place):
    def __init__(self, source: Source) -> None:
        self.source = source

    @property
    def file(self) -> str:
        return self.source.path

    def _raw(self, line: int) -> tuple[int, str, int]:
        return line, self.source.line(line), 0


class _InString(_Place):
    """A string in the `.campaign` file: a block string keeps its lines (after a
    blank opening line); an inline string is one line."""

    def __init__(self, source: Source, text: ast.Text) -> None:
        self.source, self.text = source, text
        opening = source.line(text.span.line)[text.span.column - 1 :]
        self.first_line = text.span.line
        if text.form == "block" and not opening[3:].strip():
            self.first_line += 1

    @property
    def file(self) -> str:
        return self.text.span.file

    def _raw(self, line: int) -> tuple[int, str, int]:
        if self.text.form != "block":
            number = self.text.span.line
        else:
            number = min(self.first_line + line - 1, self.text.span.end_line)
        offset = self.text.span.column if number == self.text.span.line else 0
        return number, self.source.line(number), offset

    def line_span(self, line: int) -> Span:
        if self.text.form != "block":
            return self.text.span  # one line: the string itself
        return super().line_span(line)


# What a Jinja syntax error names as its culprit, most telling first:
# "expected token 'end of print statement', got 'x'", "Encountered unknown tag
# 'endfi'", "unexpected '}'", "unexpected char '!' at 12".
_CULPRIT = [
    re.compile(p)
    for p in (
        r"got '([^']+)'",
        r"unknown tag '([^']+)'",
        r"unexpected '([^']+)'",
        r"unexpected char '(.)'",
    )
]


# The last `{{`, `{%` or `{#` on a line: what an end of template left open.
_LAST_OPENING = re.compile(r"\{[{%#](?!.*\{[{%#])")

CACHED_TEMPLATE_CHARS = 64 * 1024  # texts kept analysed are short: memory stays bounded


@functools.lru_cache(maxsize=4096)
def _analysed(template: str) -> templating.Analysis | TemplateSyntaxError:
    """Parse once per distinct text — campaigns repeat greetings and signatures,
    and an editor checks the same texts again after every keystroke. What a
    text uses depends on the text alone (one environment, the same for every
    campaign); callers only read the analysis."""
    return templating.analyse(_environment(), template)


@functools.cache
def _environment() -> templating.CampaignEnvironment:
    return templating.environment()


def _syntax_error_span(error: TemplateSyntaxError, place: _Place) -> Span:
    """The bad token of a Jinja syntax error rather than its whole line: what
    the message names, or — at the end of the template — the construct left
    open."""
    message, line = error.message or "", error.lineno
    for pattern in _CULPRIT:
        match = pattern.search(message)
        if match:
            culprit = match.group(1)
            if re.fullmatch(r"\w+", culprit):  # a word: not inside a longer one
                return place.name_span(line, culprit)
            return place.fragment_span(line, culprit)
    block = re.search(r"block that needs to be closed is '(\w+)'", message)
    if block:  # the tag that opened it, on this line or one before
        opening = re.compile(rf"\{{%[-+]?\s*{block.group(1)}\b")
        for before in range(line, 0, -1):
            found = place.search(before, opening)
            if found is not None:
                return found
    if "unexpected end of template" in message.lower():
        left_open = place.search(line, _LAST_OPENING)
        if left_open is not None:
            return left_open
    return place.line_span(line)


def _find_word(line: str, word: str, start: int) -> int | None:
    match = re.compile(rf"(?<![\w.]){re.escape(word)}\b|(?<=\.){re.escape(word)}\b").search(
        line, start
    )
    return match.start() if match else None


def step_templates(step: ast.AnyStep) -> Iterator[tuple[str, ast.Text]]:
    """The texts of a step, by property name (the first of a repeated one)."""
    seen: set[str] = set()
    for item in step.items:
        text = getattr(item, "text", None)
        if isinstance(text, ast.Text) and item.kind not in seen:
            seen.add(item.kind)
            yield item.kind, text
