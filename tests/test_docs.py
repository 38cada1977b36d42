"""The documentation says what the code does: examples parse, codes are all listed."""

from __future__ import annotations

import re

import pytest

from cadence.codes import REGISTRY
from cadence.grammar import parse_text
from cadence.grammar.formatter import format_campaign
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


def test_every_code_is_documented_with_its_severity() -> None:
    table = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    for code in REGISTRY.values():
        assert f"| {code.id} | {code.name} | {code.severity.value} |" in table
