"""Writes docs/api.md, the reference of the library's public names (what
``cadence.__all__`` lists), from their signatures and docstrings.

Run: ``python tools/api_reference.py > docs/api.md``; tests/test_public_api.py
keeps the file equal to what this writes.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Iterator
from typing import Any

import cadence

HEADER = """# The Python API

What a program that embeds cadence imports: `import cadence`, then the names
below (each loaded on first use, so importing `cadence` costs little). The
library never prints or exits; what it refuses is a `cadence.CadenceError`
(each error keeps its built-in base too, such as `ValueError`), and a person a
campaign cannot take is a value (`RowProblem`), never an exception. The
package is typed (`py.typed`): a program using it can be checked with
`mypy --strict`.

```python
import datetime as dt
import cadence

result = cadence.compile_file("q1.campaign")
if not result.ok:
    raise SystemExit(result.render())  # as `cadence check` shows them
planned = cadence.plan(
    result.ir, [{"email": "ada@example.com"}], dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC)
)
for action in planned:
    print(action.model_dump_json())
print(planned.problems)  # the people skipped, and why
```

This file is written from the docstrings by `tools/api_reference.py`.
"""

# Pydantic's own machinery on every model: documented by pydantic, not here.
_INHERITED = {"model_construct", "model_copy", "model_post_init", "model_rebuild"}


def reference() -> str:
    parts = [HEADER]
    for name in sorted((n for n in cadence.__all__ if n != "__version__"), key=_order):
        parts.append("\n".join(_entry(name, getattr(cadence, name))))
    return "\n".join(parts)


def _order(name: str) -> tuple[int, str]:
    """Functions first, then classes, then errors; alphabetical within."""
    value = getattr(cadence, name)
    if isinstance(value, type) and issubclass(value, BaseException):
        return 2, name.lower()
    return (1 if isinstance(value, type) else 0), name.lower()


def _entry(name: str, value: Any) -> Iterator[str]:
    kind = "class" if isinstance(value, type) else "function"
    yield f"## `cadence.{name}`\n"
    if kind == "function":
        yield f"```python\n{name}{_signature(value)}\n```\n"
    else:
        bases = ", ".join(b.__name__ for b in value.__bases__ if b is not object)
        header = f"class {name}({bases})" if bases else f"class {name}"
        yield f"```python\n{header}\n```\n"
    yield _doc(value)
    if kind == "class" and not issubclass(value, BaseException):
        yield from _fields(value)
        yield from _members(value)


def _members(cls: type) -> Iterator[str]:
    for member, value in vars(cls).items():
        if member.startswith("_") or member in _INHERITED:
            continue
        function = value.__func__ if isinstance(value, (classmethod, staticmethod)) else value
        if isinstance(value, property):
            yield f"### `{cls.__name__}.{member}` (property)\n"
            yield _doc(value)
        elif inspect.isfunction(function):
            yield f"### `{cls.__name__}.{member}`\n"
            yield f"```python\n{member}{_signature(function, drop_first=True)}\n```\n"
            yield _doc(function)


def _signature(function: Any, *, drop_first: bool = False) -> str:
    """The signature as written in the source (annotations are its text)."""
    parameters = list(inspect.signature(function).parameters.values())[int(drop_first) :]
    shown, star_done = [], False
    for parameter in parameters:
        if parameter.kind is parameter.KEYWORD_ONLY and not star_done:
            shown.append("*")
        star_done = star_done or parameter.kind in (
            parameter.KEYWORD_ONLY,
            parameter.VAR_POSITIONAL,
        )
        text = {parameter.VAR_POSITIONAL: "*", parameter.VAR_KEYWORD: "**"}.get(parameter.kind, "")
        text += parameter.name
        if parameter.annotation is not parameter.empty:
            text += f": {_annotation(parameter.annotation)}"
        if parameter.default is not parameter.empty:
            equals = " = " if parameter.annotation is not parameter.empty else "="
            text += f"{equals}{parameter.default!r}"
        shown.append(text)
    returns = inspect.signature(function).return_annotation
    arrow = f" -> {_annotation(returns)}" if returns is not inspect.Signature.empty else ""
    return f"({', '.join(shown)}){arrow}"


def _annotation(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _fields(cls: type) -> Iterator[str]:
    """A model's or a dataclass's fields, with their types and descriptions."""
    if dataclasses.is_dataclass(cls):
        rows = [(f.name, str(f.type), "") for f in dataclasses.fields(cls)]
    elif hasattr(cls, "model_fields"):
        rows = [
            (name, _field_type(info.annotation), info.description or "")
            for name, info in cls.model_fields.items()
        ]
    else:
        return
    if rows:
        yield "| field | type | |\n|---|---|---|"
        yield "\n".join(f"| `{n}` | `{_cell(t)}` | {_cell(d)} |" for n, t, d in rows)
        yield ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a type union would end the table cell


def _field_type(annotation: Any) -> str:
    return inspect.formatannotation(annotation).replace("cadence.compiler.ir.", "")


def _doc(value: Any) -> str:
    # A class's own docstring only: one without inherits its base's (pydantic's
    # BaseModel, the enum's), which says nothing about cadence.
    own = value.__dict__.get("__doc__") if isinstance(value, type) else value.__doc__
    text = inspect.cleandoc(own) if isinstance(own, str) else ""
    text = re.sub(r":(?:class|func|meth|attr|mod|exc):`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`") + "\n" if text else ""


if __name__ == "__main__":
    print(reference(), end="")
