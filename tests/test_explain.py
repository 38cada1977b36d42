"""`cadence explain CODE`: every code explained, from one source that also
writes docs/diagnostics.md, each example shown to be what it says."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence.cli import cli
from cadence.codes import REGISTRY
from cadence.compiler import compile_file
from cadence.explaining import Explanation, as_markdown, explanations
from tests.conftest import ROOT

EXPLAINED = list(explanations().values())


def codes_of(tmp_path: Path, text: str) -> list[str]:
    folder = tmp_path / "a" / "b"  # room for a template path that climbs out
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "example.campaign"
    path.write_text(text, encoding="utf-8")
    return [d.code for d in compile_file(str(path)).diagnostics]


def test_every_code_is_explained_with_why_it_exists() -> None:
    assert set(explanations()) == set(REGISTRY)
    assert all(len(e.why) > 40 for e in EXPLAINED)
    shown = [e for e in EXPLAINED if e.wrong is not None]
    assert len(shown) >= 35  # the rest cannot be shown in a short text (an encoding, a size)


@pytest.mark.parametrize("explained", EXPLAINED, ids=lambda e: e.code.id)
def test_each_example_is_what_it_says(tmp_path: Path, explained: Explanation) -> None:
    if explained.wrong is not None:
        assert explained.code.id in codes_of(tmp_path, explained.wrong)
    if explained.right is not None:
        found = codes_of(tmp_path, explained.right)
        assert explained.code.id not in found
        assert not [code for code in found if REGISTRY[code].severity.value == "error"], found


def test_the_docs_rules_section_is_written_from_the_same_source() -> None:
    docs = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    section = docs.split("<!-- rules: start -->\n", 1)[1].split("<!-- rules: end -->", 1)[0]
    assert section == as_markdown(), "run `cadence explain --markdown` into docs/diagnostics.md"


def test_explain_takes_a_code_or_its_name() -> None:
    runner = CliRunner()
    by_code = runner.invoke(cli, ["explain", "p26"])
    assert by_code.exit_code == 0
    assert by_code.stdout.startswith("P026 wrong-quotes (error): ")
    assert "Wrong:" in by_code.stdout and "Right:" in by_code.stdout
    assert runner.invoke(cli, ["explain", "wrong-quotes"]).stdout == by_code.stdout


def test_explain_of_an_unknown_code_suggests_one() -> None:
    result = CliRunner().invoke(cli, ["explain", "C0177"])
    assert result.exit_code == 2
    assert "no diagnostic code 'C0177'" in result.stderr and "did you mean" in result.stderr
