"""Compile diagnostics, pinned by golden files: one case per rule at least.

``cases/compile/NAME.campaign`` has ``NAME.txt`` (what `cadence check` prints)
and ``NAME.json`` (`--format json`) beside it. ``--update-goldens`` rewrites them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cadence.codes import REGISTRY
from cadence.compiler import compile_file
from cadence.reporting import render
from tests.conftest import CASES, example_files
from tests.helpers import check_golden

FOLDER = CASES / "compile"
COMPILE_CASES = sorted(FOLDER.glob("*.campaign"))


@pytest.fixture(autouse=True)
def in_cases_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FOLDER)  # so paths in diagnostics read `NAME.campaign`


@pytest.mark.parametrize("path", COMPILE_CASES, ids=lambda p: p.stem)
def test_compile_golden(path: Path, update_goldens: bool) -> None:
    result = compile_file(path.name)
    lookup = result.sources.get
    check_golden(path.with_suffix(".txt"), render("text", result.diagnostics, lookup),
                 update_goldens)  # fmt: skip
    check_golden(path.with_suffix(".json"), render("json", result.diagnostics, lookup),
                 update_goldens)  # fmt: skip
    assert result.diagnostics


def test_every_compile_code_has_a_case() -> None:
    seen = {d.code for path in COMPILE_CASES for d in compile_file(path.name).diagnostics}
    assert {code for code in REGISTRY if code.startswith("C")} <= seen


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_examples_compile_clean(path: Path) -> None:
    result = compile_file(path)
    assert result.ok
    assert result.diagnostics == ()


def test_twenty_errors_are_all_reported_in_order() -> None:
    result = compile_file("twenty-errors.campaign")
    errors = [d for d in result.diagnostics if d.is_error]
    assert len(errors) == 22 * 3  # each email lacks its send option, subject and body
    positions = [(d.span.line, d.span.column) for d in result.diagnostics]
    assert positions == sorted(positions)
    text = render("text", result.diagnostics, result.sources.get, limit=50)
    assert text.endswith("... and 16 more diagnostics\n")
