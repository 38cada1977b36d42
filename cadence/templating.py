"""The one Jinja environment templates are checked and rendered in (docs/language.md,
Templates).

Templates come from campaign files, which are untrusted input. They run in
Jinja's immutable sandbox, strict about undefined names, without loaders (no
include, extends or import), and under limits that keep one template from
taking the machine:

* **size**: no value a template builds (``*``, ``+``, ``~``, ``%``, string
  methods, filters) may hold more than :data:`MAX_SIZE` characters or items,
  and one render produces at most :data:`MAX_SIZE` characters, loop text
  included. Operations whose result grows as a *product* of their inputs
  (``'x'|center(10**9)``, ``'%0999999999d' % 1``) are checked *before* they
  allocate, so the limit holds at compile time too, where Jinja folds
  constant expressions outside any render;
* **work**: one render makes at most :data:`MAX_WORK` loop iterations, calls
  and filter applications;
* **time**: one render runs at most :data:`MAX_SECONDS` seconds.

A render that exceeds a limit, or fails in any other way, raises
:class:`RenderError` with a message for people; nothing else escapes
:func:`render`. Only Jinja is imported here, so the compiler and the runtime
share it (the runtime never imports lark).
"""

from __future__ import annotations

import contextvars
import functools
import operator
import re
import string
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

from cadence.errors import CadenceError

MAX_SIZE = 1_000_000
"""Characters (or items) one value may hold, and characters one render may write."""
MAX_WORK = 100_000
"""Loop iterations, calls and filter applications one render may make."""
MAX_SECONDS = 2.0
"""Wall-clock seconds one render may take."""
MAX_WIDTH = 10_000
"""The widest padding or precision a format or filter may ask for."""
MAX_INT_BITS = 100_000
"""The largest integer (in bits) arithmetic in a template may build."""
MAX_URLIZE_WORD = 2_000
"""The longest word (a run without spaces) `urlize` looks at."""
MAX_LIPSUM = 20
"""Paragraphs (and words per paragraph, ×10) `lipsum()` may make."""

STANDARD_FIELDS = ("email", "first_name", "last_name", "company", "timezone")
OBJECTS = {"sender": ("name", "email", "signature"), "campaign": ("name",)}


class TemplateLimitError(SecurityError):
    """A template asked for more size, work or time than one render may use."""


class RenderError(CadenceError):
    """A template that could not be rendered; the message says why, for people."""


# ---- the budget of one render ------------------------------------------------------------
@dataclass
class _Budget:
    deadline: float
    work: int = 0
    output: int = 0


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "cadence_template_budget", default=None
)


def _spend(work: int = 1, output: int = 0) -> None:
    """Charge the render under way (none at compile time, when Jinja folds constants)."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.work += work
    budget.output += output
    if budget.work > MAX_WORK:
        raise TemplateLimitError(
            f"the template does too much work (over {MAX_WORK:,} loop turns and calls)"
        )
    if budget.output > MAX_SIZE:
        raise TemplateLimitError(f"the template writes more than {MAX_SIZE:,} characters")
    if time.monotonic() > budget.deadline:
        raise TemplateLimitError(f"the template takes longer than {MAX_SECONDS:g} s to render")


def render(template: Template, context: Mapping[str, Any]) -> str:
    """Render ``template`` under the limits; :class:`RenderError` says what went wrong."""
    token = _BUDGET.set(_Budget(time.monotonic() + MAX_SECONDS))
    try:
        return template.render(context)
    except TemplateLimitError as error:
        raise RenderError(str(error)) from None
    except RecursionError:
        raise RenderError("the template recurses too deeply") from None
    except MemoryError:
        raise RenderError("the template needs more memory than a render may use") from None
    except TemplateError as error:
        raise RenderError(error.message or type(error).__name__) from None
    except Exception as error:  # a template's own arithmetic or type errors
        raise RenderError(f"{type(error).__name__}: {error}") from None
    finally:
        _BUDGET.reset(token)


# ---- sizes, measured without building the value -------------------------------------------
def _size(value: Any, limit: int = MAX_SIZE) -> int:
    """About how many characters ``str(value)`` has, found without calling
    ``str``: a list of one long string repeated is small in memory but huge as
    text, and so are dict views and namespaces holding one. Stops counting past
    ``limit``."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bool) or value is None or isinstance(value, float | Undefined):
        return 16
    if isinstance(value, int):
        return value.bit_length() // 3 + 1
    if isinstance(value, Mapping):
        return _size_of_items(((key, item) for key, item in value.items()), limit)
    if isinstance(value, Collection) and not isinstance(value, Iterator):
        return _size_of_items(value, limit)  # lists, tuples, sets, dict views
    if not callable(value):  # a namespace, a cycler: what it holds
        try:
            attributes = object.__getattribute__(value, "__dict__")
        except AttributeError:
            return 16
        return 16 + _size(attributes, limit)
    return 16  # functions, macros, generators (measured as they are consumed)


def _size_of_items(items: Iterable[Any], limit: int) -> int:
    total = 2
    for item in items:
        total += _size(item, limit) + 2
        if total > limit:
            break
    return total


def _check_size(value: Any, what: str) -> Any:
    if _size(value) > MAX_SIZE:
        raise TemplateLimitError(f"{what} would build more than {MAX_SIZE:,} characters or items")
    return value


def _check_width(width: Any, what: str) -> None:
    if isinstance(width, int) and abs(width) > MAX_WIDTH:
        raise TemplateLimitError(f"{what} with a width of {width} (at most {MAX_WIDTH:,})")


class _Metered:
    """An iterator a filter consumes: counted as it goes, so a lazy chain
    (``range(…)|map(…)|list``) cannot grow past the limits before anyone looks."""

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = iter(items)
        self._size = 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        item = next(self._items)
        self._size += _size(item) + 1
        if self._size > MAX_SIZE:
            raise TemplateLimitError(f"a sequence holds more than {MAX_SIZE:,} characters or items")
        _spend()
        return item


def _materialise(items: Iterable[Any]) -> list[Any]:
    if isinstance(items, list | tuple):
        return list(_check_size(items, "a sequence"))
    return list(_Metered(items))


# ---- operators and formatting -----------------------------------------------------------
_PERCENT = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def _check_percent(fmt: str, args: Any) -> None:
    """``fmt % args`` allocates its widths before anyone can check the result:
    each width is bounded, and so is their sum (a format repeated by ``*``)."""
    widths = 0
    for match in _PERCENT.finditer(fmt):
        for number in match.groups():
            if number == "*":
                raise TemplateLimitError("`%` with a width taken from the arguments (`*`)")
            if number is not None:
                _check_width(int(number), "`%`")
                widths += int(number)
    if widths + _size(fmt) + _size(args) > MAX_SIZE:
        raise TemplateLimitError(f"`%` would build more than {MAX_SIZE:,} characters")


_SPEC_NUMBER = re.compile(r"\d+")


def _check_format(fmt: str, args: Any, kwargs: Any) -> None:
    """``str.format``: no nested fields in a spec, no huge widths or precisions."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError as error:
        raise TemplateLimitError(f"bad format string: {error}") from None
    widths = 0
    for _literal, _name, spec, _conversion in fields:
        if spec and "{" in spec:
            raise TemplateLimitError("a format width taken from the arguments (`{:{}}`)")
        for number in _SPEC_NUMBER.findall(spec or ""):
            _check_width(int(number), "a format")
            widths += int(number)
    if widths + _size(fmt) + _size(args) + _size(kwargs) > MAX_SIZE:
        raise TemplateLimitError(f"a format would build more than {MAX_SIZE:,} characters")


def _multiply(left: Any, right: Any) -> Any:
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(count, int):
            # As text: a list of one long string, repeated, is huge when printed,
            # compared or joined, though small in memory.
            if _size(sequence) * max(count, 0) > MAX_SIZE:
                raise TemplateLimitError(f"`*` would build more than {MAX_SIZE:,} characters")
            return operator.mul(left, right)
    both_ints = isinstance(left, int) and isinstance(right, int)
    if both_ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise TemplateLimitError("`*` would build a number too large to write")
    return operator.mul(left, right)


def _power(left: Any, right: Any) -> Any:
    if isinstance(right, int | float) and abs(right) > MAX_INT_BITS:
        raise TemplateLimitError(f"`**` with an exponent above {MAX_INT_BITS:,}")
    grows = isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
    if grows and left.bit_length() * right > MAX_INT_BITS:
        raise TemplateLimitError("`**` would build a number too large to write")
    return operator.pow(left, right)


def _add(left: Any, right: Any) -> Any:
    sized = isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
    if sized and _size(left) + _size(right) > MAX_SIZE:
        raise TemplateLimitError(f"`+` would build more than {MAX_SIZE:,} characters")
    return operator.add(left, right)


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        _check_percent(left, right)
    return operator.mod(left, right)


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "*": _multiply,
    "**": _power,
    "+": _add,
    "%": _modulo,
}


def _concat(*values: Any) -> str:
    """``a ~ b ~ …``, measured before it is joined."""
    total = sum(_size(value) for value in values)
    if total > MAX_SIZE:
        raise TemplateLimitError(f"`~` would build more than {MAX_SIZE:,} characters")
    return "".join(str(value) for value in values)


def _finalize(value: Any) -> str:
    """Every ``{{ … }}`` output: counted against the render's output limit."""
    _spend(0, _size(value))
    return str(value)


# ---- string methods -------------------------------------------------------------------------
def _width_method(position: int) -> Callable[[str, tuple[Any, ...], dict[str, Any]], None]:
    def check(_text: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        width = args[position] if len(args) > position else next(iter(kwargs.values()), 0)
        _check_width(width, "padding")

    return check


def _check_replace(text: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    old = args[0] if args else kwargs.get("old", "")
    new = args[1] if len(args) > 1 else kwargs.get("new", "")
    count = args[2] if len(args) > 2 else kwargs.get("count", -1)
    if not isinstance(old, str) or not isinstance(new, str):
        return  # str.replace refuses them itself
    found = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    if len(text) + found * max(0, len(new) - len(old)) > MAX_SIZE:
        raise TemplateLimitError(f"`replace` would build more than {MAX_SIZE:,} characters")


def _check_expandtabs(text: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    size = args[0] if args else kwargs.get("tabsize", 8)
    if isinstance(size, int) and len(text) + text.count("\t") * size > MAX_SIZE:
        raise TemplateLimitError(f"`expandtabs` would build more than {MAX_SIZE:,} characters")


_STRING_METHODS: dict[str, Callable[[str, tuple[Any, ...], dict[str, Any]], None] | None] = {
    **dict.fromkeys(
        "capitalize casefold count endswith find index isalnum isalpha isascii isdecimal "
        "isdigit isidentifier islower isnumeric isprintable isspace istitle isupper lower "
        "lstrip partition removeprefix removesuffix rfind rindex rpartition rsplit rstrip "
        "split splitlines startswith strip swapcase title upper join format format_map".split()
    ),
    "center": _width_method(0),
    "ljust": _width_method(0),
    "rjust": _width_method(0),
    "zfill": _width_method(0),
    "replace": _check_replace,
    "expandtabs": _check_expandtabs,
}


def _check_call(function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Bound the string methods a template may call; returns the arguments to use."""
    owner = getattr(function, "__self__", None)
    if not isinstance(owner, str):
        return args
    name = getattr(function, "__name__", "")
    if name not in _STRING_METHODS:
        raise SecurityError(f"the string method `{name}` is not available in templates")
    if name == "join" and args:
        items = _materialise(args[0])
        if sum(_size(item) for item in items) + len(owner) * len(items) > MAX_SIZE:
            raise TemplateLimitError(f"`join` would build more than {MAX_SIZE:,} characters")
        return (items, *args[1:])
    check = _STRING_METHODS[name]
    if check is not None:
        check(owner, args, kwargs)
    return args


# ---- filters ----------------------------------------------------------------------------------
def _join_check(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    items = _materialise(value)
    separator = args[0] if args else kwargs.get("d", "")
    total = sum(_size(item) for item in items) + _size(separator) * len(items)
    if total > MAX_SIZE:
        raise TemplateLimitError(f"`join` would build more than {MAX_SIZE:,} characters")
    return (items, *args)


def _indent_check(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    width = args[0] if args else kwargs.get("width", 4)
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if len(str(value)) + (str(value).count("\n") + 1) * pad > MAX_SIZE:
        raise TemplateLimitError(f"`indent` would build more than {MAX_SIZE:,} characters")
    return (value, *args)


def _wordwrap_check(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    width = args[0] if args else kwargs.get("width", 79)
    wrap = args[2] if len(args) > 2 else kwargs.get("wrapstring")
    text = str(value)
    if isinstance(width, int) and width > 0:
        lines = len(text) // width + text.count("\n") + 1
        if len(text) + lines * len(str(wrap or "\n")) > MAX_SIZE:
            raise TemplateLimitError(f"`wordwrap` would build more than {MAX_SIZE:,} characters")
    return (value, *args)


def _count_check(
    name: str, keyword: str
) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]:
    def check(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        count = args[0] if args else kwargs.get(keyword)
        if isinstance(count, int) and count > MAX_WIDTH:
            raise TemplateLimitError(f"`{name}` with {count} (at most {MAX_WIDTH:,})")
        return (value, *args)

    return check


def _sum_check(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    start = args[1] if len(args) > 1 else kwargs.get("start", 0)
    if not isinstance(start, int | float):
        raise SecurityError("`sum` adds numbers only")
    return (value, *args)


def _format_check(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    _check_percent(str(value), kwargs or args)
    return (value, *args)


def _center_check(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    _check_width(args[0] if args else kwargs.get("width", 80), "`center`")
    return (value, *args)


def _replace_check(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    _check_replace(str(value), args, kwargs)
    return (value, *args)


_LONG_WORD = re.compile(rf"\S{{{MAX_URLIZE_WORD + 1}}}")


def _urlize_check(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    extra = [kwargs.get(name) for name in ("target", "rel")] + list(args[2:4])
    if any(isinstance(item, str) and len(item) > MAX_WIDTH for item in extra):
        raise TemplateLimitError(f"`urlize` with an attribute over {MAX_WIDTH:,} characters")
    # urlize's work grows with the square of a word's length (its trailing
    # punctuation pattern): no URL is this long.
    if _LONG_WORD.search(str(value)):
        raise TemplateLimitError(f"`urlize` of a word over {MAX_URLIZE_WORD:,} characters")
    return (value, *args)


FilterCheck = Callable[[Any, tuple[Any, ...], dict[str, Any]], tuple[Any, ...]]
_FILTER_CHECKS: dict[str, FilterCheck] = {
    "join": _join_check,
    "indent": _indent_check,
    "wordwrap": _wordwrap_check,
    "center": _center_check,
    "replace": _replace_check,
    "format": _format_check,
    "batch": _count_check("batch", "linecount"),
    "slice": _count_check("slice", "slices"),
    "sum": _sum_check,
    "urlize": _urlize_check,
}


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with its inputs checked before and its result after."""
    check = _FILTER_CHECKS.get(name)
    passed = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(function)  # keeps jinja_pass_arg: Jinja still passes the context
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _spend()
        if len(args) <= passed:
            return function(*args, **kwargs)
        head, value, rest = args[:passed], args[passed], args[passed + 1 :]
        if isinstance(value, Iterator):
            value = _Metered(value)
        elif _size(value) > MAX_SIZE:
            raise TemplateLimitError(f"`{name}` of a value over {MAX_SIZE:,} characters")
        if check is not None:
            value, *more = check(value, rest, kwargs)
            rest = tuple(more)
        return _check_size(function(*head, value, *rest, **kwargs), f"`{name}`")

    return bounded


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if not (0 <= n <= MAX_LIPSUM and 0 < min <= max <= MAX_LIPSUM * 10):
        raise TemplateLimitError(
            f"`lipsum` makes at most {MAX_LIPSUM} paragraphs of {MAX_LIPSUM * 10} words"
        )
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


# ---- the environment ------------------------------------------------------------------------
class _Instrument(NodeTransformer):
    """Rewrites a parsed template so its work is metered: every loop turn,
    macro call and call block charges the render (with the text it writes),
    and ``~`` measures before it joins."""

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        call = nodes.Call(nodes.EnvironmentAttribute("cadence_concat"), node.nodes, [], None, None)
        return call.set_lineno(node.lineno)

    def _metered_body(self, node: nodes.Node, body: list[nodes.Node]) -> None:
        text = sum(len(data.data) for data in node.find_all(nodes.TemplateData))
        charge = nodes.Call(
            nodes.EnvironmentAttribute("cadence_spend"), [nodes.Const(text)], [], None, None
        )
        body.insert(0, nodes.Output([charge]).set_lineno(node.lineno))

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        self._metered_body(node, node.body)
        return node

    def visit_Macro(self, node: nodes.Macro) -> nodes.Node:
        self.generic_visit(node)
        self._metered_body(node, node.body)
        return node

    def visit_CallBlock(self, node: nodes.CallBlock) -> nodes.Node:
        self.generic_visit(node)
        self._metered_body(node, node.body)
        return node


def _charge(text: int) -> str:
    """A loop turn or macro call: its work was charged by the call itself."""
    _spend(0, text)
    return ""


class CampaignEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset(_BINOPS)

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=_finalize,
        )
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}
        self.globals["lipsum"] = _lipsum
        self.cadence_concat = _concat
        self.cadence_spend = _charge

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        if "{%" not in source and "~" not in source:
            return tree  # no loop, macro, call block or `~`: nothing to meter (most texts)
        instrumented = _Instrument().visit(tree)
        assert isinstance(instrumented, nodes.Template)
        return instrumented

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        _spend()
        return _BINOPS[op](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend()
        args = _check_call(__obj, args, kwargs)
        return _check_size(super().call(__context, __obj, *args, **kwargs), "a call")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``format_map``, sandboxed by Jinja, and bounded here."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text = value.__self__

        def bounded(*args: Any, **kwargs: Any) -> str:
            _check_format(text, args, kwargs)
            return wrapped(*args, **kwargs)

        return functools.update_wrapper(bounded, value)


def environment() -> CampaignEnvironment:
    return CampaignEnvironment()


# ---- what a template uses ---------------------------------------------------------------------
@dataclass(frozen=True)
class Analysis:
    """What a template uses: free names (with the first line of each) and
    attributes of `sender` and `campaign`."""

    names: dict[str, int]
    attributes: list[tuple[str, str, int]]


# Constructs that bind names; without them every name a template reads is free.
_BINDERS = (
    nodes.For,
    nodes.Assign,
    nodes.AssignBlock,
    nodes.Macro,
    nodes.CallBlock,
    nodes.With,
    nodes.Import,
    nodes.FromImport,
)
_LOADERS = (nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)


# `{{ name }}` or `{{ sender.email }}` (whitespace control allowed): most of a
# campaign's texts use nothing else, and for them Jinja's answer is known
# without running its parser and compiler (thousands of steps compile faster).
_PLACEHOLDER = re.compile(
    r"\{\{-?[ \t\r\n]*([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?"
    r"[ \t\r\n]*-?\}\}"
)
# Words Jinja reads as constants or operators, never as names.
_NOT_NAMES = frozenset(
    "true false none True False None and or not in is if else elif endif for endfor "
    "recursive block endblock extends print macro endmacro call endcall filter endfilter "
    "set endset include import from with without context pluralize raw endraw".split()
)


def _simple_analysis(env: CampaignEnvironment, template: str) -> Analysis | None:
    """The analysis of a template made only of text and placeholders of a
    name or an attribute of a name; ``None`` for anything else (Jinja
    decides)."""
    if "\r" in template:
        return None  # Jinja counts a lone CR as a line break: its lines, its answer
    names: dict[str, int] = {}
    attributes: list[tuple[str, str, int]] = []
    rest = []
    at = 0
    for found in _PLACEHOLDER.finditer(template):
        name, attribute = found.group(1), found.group(2)
        if name in _NOT_NAMES or attribute in _NOT_NAMES:
            return None
        rest.append(template[at : found.start()])
        at = found.end()
        line = template.count("\n", 0, found.start(1)) + 1
        if name not in env.globals:
            names.setdefault(name, line)
        if attribute is not None and name in OBJECTS:
            attributes.append((name, attribute, line))
    rest.append(template[at:])
    text = "".join(rest)
    if "{{" in text or "{%" in text or "{#" in text:
        return None  # other Jinja syntax (or a placeholder split by what was removed)
    if any(part.endswith("{") for part in rest[:-1]):
        return None  # `{{{ name }}`: Jinja reads that otherwise
    return Analysis(dict(sorted(names.items())), attributes)


def analyse(env: CampaignEnvironment, template: str) -> Analysis | TemplateSyntaxError:
    """Parse and compile ``template`` (the compile folds constants, under the
    limits) and say what it uses, or the syntax error that stops it."""
    if "{" not in template:
        return Analysis({}, [])  # no Jinja syntax at all: plain text
    simple = _simple_analysis(env, template)
    if simple is not None:
        return simple
    return _analyse_with_jinja(env, template)


def _analyse_with_jinja(env: CampaignEnvironment, template: str) -> Analysis | TemplateSyntaxError:
    if "{" not in template:
        return Analysis({}, [])
    # Jinja folds constant expressions while compiling: that work has a budget too.
    token = _BUDGET.set(_Budget(time.monotonic() + MAX_SECONDS))
    try:
        tree = env.parse(template)
        env.compile(tree)  # unknown filters and tests are found here
    except TemplateSyntaxError as error:  # TemplateAssertionError too
        return error
    except (RecursionError, MemoryError, SyntaxError):
        # Jinja's parser recursing, or Python refusing the nesting of the code
        # Jinja generated (IndentationError, "too many statically nested blocks").
        return TemplateSyntaxError("the template nests too deeply", _deepest_line(template))
    finally:
        _BUDGET.reset(token)
    loading = next(tree.find_all(_LOADERS), None)
    if loading is not None:
        return TemplateSyntaxError(
            "templates cannot include, extend or import other templates", loading.lineno
        )
    if any(True for _ in tree.find_all(_BINDERS)):
        free = meta.find_undeclared_variables(tree) - set(env.globals)
    else:
        free = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"} - set(env.globals)
    names = {name: _first_line(tree, name) for name in sorted(free)}
    attributes = [
        (node.node.name, node.attr, node.lineno)
        for node in tree.find_all(nodes.Getattr)
        if isinstance(node.node, nodes.Name) and node.node.name in OBJECTS
    ]
    return Analysis(names, attributes)


def names_used(templates: Iterable[str]) -> set[str]:
    """The free names the given templates read (those that do not parse read none)."""
    env = environment()
    found: set[str] = set()
    for template in templates:
        analysis = analyse(env, template)
        if isinstance(analysis, Analysis):
            found.update(analysis.names)
    return found


def _first_line(tree: nodes.Template, name: str) -> int:
    lines = [node.lineno for node in tree.find_all(nodes.Name) if node.name == name]
    return min(lines, default=1)


def _deepest_line(template: str) -> int:
    """The line where the nesting is deepest: where a reader should look."""
    depth = best = 0
    line = best_line = 1
    for char in template:
        if char == "\n":
            line += 1
        elif char in "([{":
            depth += 1
            if depth > best:
                best, best_line = depth, line
        elif char in ")]}":
            depth -= 1
    return best_line
