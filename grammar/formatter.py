"""``cadence fmt``: one canonical layout for a campaign, comments kept.

The layout: two-space indent, one statement a line, a blank line between days
and before the first day, at most one blank line where the author left some,
none just inside braces. Strings keep their form (inline, block, template).
A step written on one line with at most one property stays on one line (as in
``inmail connect { message "..." }``); every other block is opened
on its own line. A trailing comment keeps its column when that leaves two
spaces after the code, else it stands two spaces after it; a comment on a line
of its own is indented like the code it precedes.

Formatting is idempotent and never changes the AST (tests/test_formatter.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from cadence.grammar import ast
from cadence.grammar.strings import encode_block, encode_inline
from cadence.span import Span

INDENT = "  "
Position = tuple[int, int]
Kind = Literal["open", "close", "statement", "comment"]


@dataclass
class _Item:
    """One thing the output is made of: a statement, a brace line or a comment."""

    kind: Kind
    depth: int
    lines: list[str]
    start: Position
    end: Position
    force_blank: bool = False
    trailing: ast.Comment | None = None
    leading: list[ast.Comment] = field(default_factory=list)


def format_campaign(
    campaign: ast.Campaign, comments: Sequence[ast.Comment] = (), source: str | None = None
) -> str:
    """The canonical text of ``campaign``. ``source``, the text it was parsed
    from, tells where the author left blank lines (without it, any gap between
    two statements counts as one)."""
    items = _Layout().campaign(campaign)
    tail = _attach_comments(items, sorted(comments, key=lambda c: c.span.start))
    return _emit(items, tail, _BlankLines(source))


class _BlankLines:
    def __init__(self, source: str | None) -> None:
        self.lines: frozenset[int] | None = None
        if source is not None:
            numbered = enumerate(source.replace("\r\n", "\n").split("\n"), start=1)
            self.lines = frozenset(n for n, line in numbered if not line.strip())

    def between(self, above: int, below: int) -> bool:
        """Whether the author left a blank line between lines ``above`` and ``below``."""
        if self.lines is None:
            return below - above >= 2
        return any(n in self.lines for n in range(above + 1, below))


# ---- the statements, in source order ------------------------------------------------


class _Layout:
    def __init__(self) -> None:
        self.items: list[_Item] = []

    def campaign(self, campaign: ast.Campaign) -> list[_Item]:
        self._open(
            0, f"campaign {encode_inline(campaign.name.value)}", campaign.span, campaign.name.span
        )
        for setting in campaign.settings:
            self._statement(1, _setting(setting), setting.span)
        for day in campaign.days:
            self._open(1, f"day {day.number}", day.span, day.number_span, force_blank=True)
            for step in day.steps:
                self._step(2, step)
            self._close(1, day.span)
        self._close(0, campaign.span)
        return self.items

    def _step(self, depth: int, step: ast.AnyStep) -> None:
        header = f"{step.kind} {step.name.value}"
        items: Sequence[ast.Property] = step.items
        if _stays_on_one_line(step):
            inner = "".join(f" {line}" for prop in items for line in _property(prop, ""))
            self._statement(
                depth, f"{header} {{{inner} }}" if inner else f"{header} {{}}", step.span
            )
            return
        self._open(depth, header, step.span, step.name.span)
        for prop in items:
            if isinstance(prop, ast.Variant):
                self._variant(depth + 1, prop)
            else:
                self._property(depth + 1, prop)
        self._close(depth, step.span)

    def _property(self, depth: int, prop: ast.Property) -> None:
        lines = _property(prop, INDENT * (depth + 1))
        self.items.append(_Item("statement", depth, lines, prop.span.start, prop.span.end))

    def _variant(self, depth: int, variant: ast.Variant) -> None:
        """A variant written on one line, with inline texts, stays on one line (as
        ``variant short weight 50 { subject "Hi" body "Hello" }``); else a block."""
        header = f"variant {variant.name.value} weight {variant.weight}"
        one_line = variant.span.line == variant.span.end_line and all(
            _text_of(prop) is None or _text_of(prop).form != "block"  # type: ignore[union-attr]
            for prop in variant.items
        )
        if one_line:
            inner = "".join(f" {line}" for prop in variant.items for line in _property(prop, ""))
            self._statement(depth, f"{header} {{{inner} }}" if inner else f"{header} {{}}",
                            variant.span)  # fmt: skip
            return
        self._open(depth, header, variant.span, variant.name.span)
        for prop in variant.items:
            self._property(depth + 1, prop)
        self._close(depth, variant.span)

    def _open(
        self, depth: int, header: str, span: Span, header_end: Span, force_blank: bool = False
    ) -> None:
        self.items.append(
            _Item(
                "open", depth, [f"{header} {{"], span.start, header_end.end, force_blank=force_blank
            )
        )

    def _close(self, depth: int, span: Span) -> None:
        brace = (span.end_line, span.end_column - 1)
        self.items.append(_Item("close", depth, ["}"], brace, span.end))

    def _statement(self, depth: int, line: str, span: Span) -> None:
        self.items.append(_Item("statement", depth, [line], span.start, span.end))


def _stays_on_one_line(step: ast.AnyStep) -> bool:
    if step.span.line != step.span.end_line or len(step.items) > 1:
        return False
    return all(
        _text_of(prop) is None or _text_of(prop).form != "block"  # type: ignore[union-attr]
        for prop in step.items
    )


def _text_of(prop: ast.Property) -> ast.Text | None:
    return getattr(prop, "text", None)


def _window(window: ast.SendWindow) -> str:
    return f"send window {window.opens}-{window.closes}"


def _setting(setting: ast.Setting) -> str:
    match setting:
        case ast.CampaignKey(value=value):
            return f"id {encode_inline(value.value)}"
        case ast.Timezone(recipient=True, zone=zone):
            return f"timezone recipient else {encode_inline(zone.value)}"
        case ast.Timezone(zone=zone):
            return f"timezone {encode_inline(zone.value)}"
        case ast.SkipWeekends():
            return "skip weekends"
        case ast.SkipHolidays(country=country):
            return f"skip holidays {encode_inline(country.value)}"
        case ast.OnReply(action=action):
            return f"on reply {action.replace('_', ' ')}"
        case ast.OnBounce(action=action):
            return f"on bounce {action}"
        case ast.Requires(fields=fields):
            return "requires " + ", ".join(name.value for name in fields)
        case ast.SendWindow():
            return _window(setting)
    raise AssertionError(f"unknown setting {setting!r}")


_KEYWORDS = {
    "send_choose": "send choose",
    "send_task": "send task",
    "send_with_previous": "send with previous",
    "follow_up": "follow up",
}


def _property(prop: ast.Property, block_indent: str) -> list[str]:
    """The lines of one step property; a block string spans several."""
    if isinstance(prop, ast.SendAt):
        return [f"send at {prop.time}"]
    if isinstance(prop, ast.SendWindow):
        return [_window(prop)]
    text = _text_of(prop)
    if text is None:
        return [_KEYWORDS[prop.kind]]
    keyword = prop.kind
    if text.form == "template":
        return [f"{keyword} template {encode_inline(text.value)}"]
    if text.form == "inline":
        return [f"{keyword} {encode_inline(text.value)}"]
    first, *rest = encode_block(text.value, block_indent)
    return [f"{keyword} {first}", *rest]


# ---- comments -------------------------------------------------------------------------


def _attach_comments(items: list[_Item], comments: list[ast.Comment]) -> list[ast.Comment]:
    """Give each comment to the item it trails or precedes; return those after the end."""
    tail: list[ast.Comment] = []
    for comment in comments:
        start = comment.span.start
        trailed = _trailed_item(items, start)
        if trailed is not None and trailed.trailing is None:
            trailed.trailing = comment
            continue
        following = next((item for item in items if item.end > start), None)
        if following is None:
            tail.append(comment)
        else:
            following.leading.append(comment)
    return tail


def _trailed_item(items: list[_Item], at: Position) -> _Item | None:
    """The last item that ends on the comment's line before the comment."""
    best = None
    for item in items:
        if item.end[0] == at[0] and item.end <= at and (best is None or item.end >= best.end):
            best = item
    return best


# ---- output -------------------------------------------------------------------------


def _emit(items: list[_Item], tail: list[ast.Comment], blanks: _BlankLines) -> str:
    out: list[str] = []
    previous: _Item | None = None

    def put(part: _Item, force: bool = False) -> None:
        nonlocal previous
        if _blank_between(previous, part, blanks, force):
            out.append("")
        out.extend(_render(part))
        previous = part

    for item in items:
        comment_depth = item.depth + 1 if item.kind == "close" else item.depth
        leading = [_comment_item(c, comment_depth) for c in item.leading]
        for position, part in enumerate([*leading, item]):
            put(part, force=item.force_blank and position == 0)
    for comment in tail:
        put(_comment_item(comment, 0))
    return "\n".join(out) + "\n"


def _comment_item(comment: ast.Comment, depth: int) -> _Item:
    return _Item("comment", depth, [comment.text], comment.span.start, comment.span.end)


def _blank_between(previous: _Item | None, item: _Item, blanks: _BlankLines, force: bool) -> bool:
    """One blank line where the author left any (or a day begins), none just
    inside braces."""
    if previous is None or previous.kind == "open" or item.kind == "close":
        return False
    return force or blanks.between(previous.end[0], item.start[0])


def _render(item: _Item) -> list[str]:
    indent = INDENT * item.depth
    lines = [indent + item.lines[0], *item.lines[1:]]
    if item.trailing is not None:
        last = lines[-1]
        wanted = item.trailing.span.column - 1
        gap = wanted - len(last) if wanted >= len(last) + 2 else 2
        lines[-1] = last + " " * gap + item.trailing.text
    return lines
