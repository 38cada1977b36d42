"""``cadence fmt``: canonical, idempotent, and never changes what a file means."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from cadence.grammar import parse_text
from cadence.grammar.formatter import format_campaign
from tests.conftest import CASES, example_files
from tests.helpers import check_golden, without_spans
from tests.strategies import campaign_sources

FMT_CASES = sorted((CASES / "fmt").glob("*.campaign"))


def fmt(text: str) -> str:
    result = parse_text(text, "t.campaign")
    assert result.ok, result.diagnostics
    assert result.campaign is not None
    return format_campaign(result.campaign, result.comments, result.source.text)


def assert_formatting_keeps_meaning(text: str) -> str:
    before = parse_text(text, "t.campaign")
    assert before.ok and before.campaign is not None, before.diagnostics
    once = format_campaign(before.campaign, before.comments, text)
    after = parse_text(once, "t.campaign")
    assert after.ok and after.campaign is not None, (once, after.diagnostics)
    assert without_spans(after.campaign) == without_spans(before.campaign)
    assert [c.text for c in after.comments] == [c.text for c in before.comments]
    assert format_campaign(after.campaign, after.comments, once) == once  # idempotent
    return once


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_examples_are_already_canonical(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert fmt(text) == text


@pytest.mark.parametrize("path", FMT_CASES, ids=lambda p: p.stem)
def test_formatter_golden(path: Path, update_goldens: bool) -> None:
    text = path.read_bytes().decode("utf-8")
    formatted = assert_formatting_keeps_meaning(text)
    check_golden(path.with_suffix(".expected"), formatted, update_goldens)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(campaign_sources())
def test_formatting_generated_campaigns_is_idempotent_and_keeps_the_ast(text: str) -> None:
    formatted = assert_formatting_keeps_meaning(text)
    assert formatted.endswith("\n") and "\r" not in formatted


def test_one_line_step_with_one_property_stays_on_one_line() -> None:
    text = 'campaign "c" {\n  day 1 {\n    inmail hi { message "Hi" }\n  }\n}\n'
    assert fmt(text) == text


def test_one_line_step_with_two_properties_is_opened_up() -> None:
    text = 'campaign "c" {\n  day 1 {\n    email e { send task subject "S" }\n  }\n}\n'
    assert fmt(text) == (
        'campaign "c" {\n  day 1 {\n    email e {\n      send task\n      subject "S"\n'
        "    }\n  }\n}\n"
    )


def test_trailing_comment_keeps_its_column_or_moves_two_spaces_after_the_code() -> None:
    text = 'campaign "c" {\n  skip weekends       # kept\n  skip holidays "SE" # moved\n}\n'
    assert fmt(text) == (
        'campaign "c" {\n  skip weekends       # kept\n  skip holidays "SE"  # moved\n}\n'
    )


def test_blank_lines_collapse_to_one_and_days_are_separated() -> None:
    text = 'campaign "c" {\n\n\n  skip weekends\n\n\n\n  on reply end\n  day 1 { }\n  day 2 { }\n}'
    assert fmt(text) == (
        'campaign "c" {\n  skip weekends\n\n  on reply end\n\n  day 1 {\n  }\n\n  day 2 {\n  }\n}\n'
    )
