"""The documentation says what the code does: examples parse, codes are all listed."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from cadence.codes import REGISTRY
from cadence.compiler import compile_source
from cadence.grammar import parse_text
from cadence.grammar.formatter import format_campaign
from cadence.runtime import plan
from tests.conftest import ROOT

LANGUAGE = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
EXAMPLES = re.findall(r"```campaign\n(.*?)```", LANGUAGE, flags=re.DOTALL)


def test_language_reference_has_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.split('"')[1])
def test_language_reference_examples_parse_and_are_canonical(example: str) -> None:
    result = parse_text(example, "docs/language.md")
    assert result.ok, result.diagnostics
    assert result.campaign is not None
    assert format_campaign(result.campaign, result.comments, example) == example


SEMANTICS = (ROOT / "docs" / "semantics.md").read_text(encoding="utf-8")
# A campaign, then the plan printed for it: (source, "start=… [timezone=…]", rows).
WORKED = re.findall(
    r"```campaign\n(.*?)```.*?```plan ([^\n]*)\n(.*?)```", SEMANTICS, flags=re.DOTALL
)


def planned_rows(source: str, options: str) -> list[list[str]]:
    """The campaign planned for one person, as the worked examples print it."""
    settings = dict(option.split("=", 1) for option in options.split())
    result = compile_source(source, "docs/semantics.md")
    assert result.ir is not None, result.diagnostics
    person = {"email": "ann@example.com"}
    if "timezone" in settings:
        person["timezone"] = settings["timezone"]
    rows = []
    for action in plan(result.ir, [person], dt.datetime.fromisoformat(settings["start"])):
        if action.local is not None:
            when = action.local.strftime("%H:%M")
        else:
            when = f"waits for {action.waits_for}" if action.waits_for else "task"
        date = action.local.date() if action.local is not None else action.due_date
        row = [action.step, f"day {action.day}", date.strftime("%a %Y-%m-%d"), when]
        rows.append(row + ([action.note] if action.note else []))
    return rows


def test_the_semantics_reference_has_worked_examples() -> None:
    assert len(WORKED) >= 8


@pytest.mark.parametrize(
    "source, options, printed", WORKED, ids=[source.split('"')[1] for source, _, _ in WORKED]
)
def test_each_worked_example_is_what_the_planner_does(
    source: str, options: str, printed: str
) -> None:
    result = parse_text(source, "docs/semantics.md")
    assert result.campaign is not None
    assert format_campaign(result.campaign, result.comments, source) == source
    shown = [re.split(r"  +", line.strip()) for line in printed.strip().splitlines()]
    assert planned_rows(source, options) == shown


def test_every_code_is_documented_with_its_severity() -> None:
    table = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    for code in REGISTRY.values():
        assert f"| {code.id} | {code.name} | {code.severity.value} |" in table
