"""The checker over every campaign in the repository, with the count of each
finding pinned (as miniwdl does over its corpora): a rule that starts firing
more, or less, shows up here first."""

from __future__ import annotations

from collections import Counter

import pytest

from cadence.compiler import compile_file
from tests.conftest import CASES, EXAMPLES

EXPECTED_EXAMPLES: dict[str, int] = {}
EXPECTED_COMPILE_CASES = {
    "C001": 1, "C002": 3, "C003": 1, "C004": 1, "C005": 2, "C006": 1, "C007": 1,
    "C008": 2, "C009": 2, "C010": 1, "C011": 1, "C012": 1, "C013": 23, "C014": 23,
    "C015": 25, "C016": 4, "C017": 3, "C018": 1, "C019": 3, "C020": 2, "C021": 6,
    "C022": 2, "C023": 1, "C024": 2, "C025": 1, "C026": 1, "C027": 1, "C030": 9, "C031": 5,
    "C032": 2, "C033": 1, "C034": 1, "C035": 1, "C036": 1, "C037": 1, "C038": 1, "C039": 1,
}  # fmt: skip


def count(paths: list[object]) -> dict[str, int]:
    found: Counter[str] = Counter()
    for path in paths:
        found.update(d.code for d in compile_file(str(path)).diagnostics)
    return dict(sorted(found.items()))


def test_examples_have_no_findings() -> None:
    assert count(sorted(EXAMPLES.glob("*.campaign"))) == EXPECTED_EXAMPLES


def test_compile_cases_findings_are_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = CASES / "compile"
    monkeypatch.chdir(folder)
    assert count(sorted(p.name for p in folder.glob("*.campaign"))) == EXPECTED_COMPILE_CASES
