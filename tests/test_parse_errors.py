"""Parse errors, rendered as a person reads them, pinned by golden files.

Each ``cases/parse/NAME.campaign`` has ``NAME.txt`` beside it: the exact text
``cadence check`` prints. Rerun with ``--update-goldens`` after a deliberate
change of wording, and read the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence.diagnostics import Severity
from cadence.grammar import parse_source
from cadence.reporting.text import render_text
from cadence.source import decode_source
from tests.conftest import CASES
from tests.helpers import check_golden

PARSE_CASES = sorted((CASES / "parse").glob("*.campaign"))


def render_case(path: Path) -> tuple[str, object]:
    source = decode_source(path.read_bytes(), path.name)
    result = parse_source(source)
    return render_text(result.diagnostics, lambda _: source), result


@pytest.mark.parametrize("path", PARSE_CASES, ids=lambda p: p.stem)
def test_parse_error_golden(path: Path, update_goldens: bool) -> None:
    text, result = render_case(path)
    check_golden(path.with_suffix(".txt"), text, update_goldens)
    assert not result.ok  # type: ignore[attr-defined]
    assert any(d.severity is Severity.ERROR for d in result.diagnostics)  # type: ignore[attr-defined]


def test_every_parse_code_has_a_golden_case() -> None:
    from cadence.codes import REGISTRY

    seen = set()
    for path in PARSE_CASES:
        _, result = render_case(path)
        seen |= {d.code for d in result.diagnostics}  # type: ignore[attr-defined]
    # P002 (a file over the size limit) is tested in test_bad_input.py.
    assert {code for code in REGISTRY if code.startswith("P")} - {"P002"} <= seen


def test_errors_come_sorted_by_position_and_each_once() -> None:
    _, result = render_case(CASES / "parse" / "many-errors-in-one-file.campaign")
    diagnostics = result.diagnostics  # type: ignore[attr-defined]
    positions = [(d.span.line, d.span.column) for d in diagnostics]
    assert positions == sorted(positions)
    assert len(diagnostics) == 11
    assert len({(d.code, d.span) for d in diagnostics}) == len(diagnostics)


def test_error_count_is_capped() -> None:
    _, result = render_case(CASES / "parse" / "too-many-errors.campaign")
    diagnostics = result.diagnostics  # type: ignore[attr-defined]
    assert len(diagnostics) == 51
    assert diagnostics[-1].code == "P023"


def test_recovery_keeps_the_good_parts_of_the_ast() -> None:
    _, result = render_case(CASES / "parse" / "misspelled-property.campaign")
    campaign = result.campaign  # type: ignore[attr-defined]
    assert campaign is not None
    step = campaign.days[0].steps[0]
    assert step.id == "intro" and step.subject.text.value == "Hi"
