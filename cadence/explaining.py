"""What each diagnostic code means (``cadence explain CODE``), from one source,
``explanations.toml`` beside this module, that also writes the rules section
of docs/diagnostics.md."""

from __future__ import annotations

import difflib
import functools
import textwrap
import tomllib
from dataclasses import dataclass
from importlib import resources

from cadence.codes import REGISTRY, Code
from cadence.diagnostics import Severity


@dataclass(frozen=True)
class Explanation:
    code: Code
    why: str
    wrong: str | None
    right: str | None


@functools.cache
def explanations() -> dict[str, Explanation]:
    """Every registered code's explanation, by code."""
    data = tomllib.loads(resources.files("cadence").joinpath("explanations.toml").read_text())
    return {
        code.id: Explanation(
            code,
            " ".join(data[code.id]["why"].split()),
            _example(data[code.id].get("wrong")),
            _example(data[code.id].get("right")),
        )
        for code in REGISTRY.values()
    }


def _example(text: str | None) -> str | None:
    return text.strip("\n") + "\n" if text else None


def find(query: str) -> Explanation | None:
    """A code by its id (``p026``, ``P26`` too) or its name (``wrong-quotes``)."""
    wanted = query.strip().upper()
    if wanted[:1] in ("P", "C") and wanted[1:].isdigit():
        wanted = f"{wanted[0]}{int(wanted[1:]):03d}"
    by_name = {code.name: code.id for code in REGISTRY.values()}
    key = wanted if wanted in REGISTRY else by_name.get(query.strip().lower())
    return explanations().get(key) if key else None


def suggestion(query: str) -> str | None:
    names = [*REGISTRY, *(code.name for code in REGISTRY.values())]
    close = difflib.get_close_matches(query.strip(), names, n=1, cutoff=0.6)
    return close[0] if close else None


def _examples(explanation: Explanation) -> list[tuple[str, str | None]]:
    """An info note is no mistake: its example is just where it appears."""
    if explanation.code.severity is Severity.INFO:
        return [("Example", explanation.wrong)]
    return [("Wrong", explanation.wrong), ("Right", explanation.right)]


def as_text(explanation: Explanation) -> str:
    code = explanation.code
    lines = [f"{code.id} {code.name} ({code.severity.value}): {code.summary}", ""]
    lines += [*textwrap.wrap(explanation.why, 80), ""]
    for title, example in _examples(explanation):
        if example is not None:
            lines += [
                f"{title}:",
                "",
                *(f"    {line}" if line else "" for line in example.splitlines()),
                "",
            ]
    return "\n".join(lines).rstrip("\n") + "\n"


def as_markdown() -> str:
    """The rules section of docs/diagnostics.md."""
    parts = []
    for explanation in explanations().values():
        code = explanation.code
        parts += [
            f"### {code.id} {code.name}",
            "",
            f"*{code.severity.value}* — {code.summary}.",
            "",
        ]
        parts += [explanation.why, ""]
        for title, example in _examples(explanation):
            if example is not None:
                parts += [f"{title}:", "", "```campaign", example.rstrip("\n"), "```", ""]
    return "\n".join(parts)
