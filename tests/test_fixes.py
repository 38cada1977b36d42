"""`cadence check --fix`: what a help line proposes, applied — safe fixes by
default, the others only when asked — and never a fix that does not converge."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cadence.cli import MAX_FIX_ROUNDS, cli
from cadence.compiler import compile_file
from cadence.diagnostics import Diagnostic, Edit, Fix
from cadence.fixing import apply_fixes, chosen_fixes
from cadence.grammar import parse_text
from cadence.span import Span
from tests.conftest import CASES

CASE_FILES = sorted((CASES / "parse").glob("*.campaign")) + sorted(
    (CASES / "compile").glob("*.campaign")
)


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, catch_exceptions=False)


def write(tmp_path: Path, text: str, name: str = "c.campaign") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_fix_writes_what_the_help_lines_propose(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "campaign 'Q1' {\n  day 1 {\n    email intro\n      sned choose\n"
        '      subject “Hi”\n      body "b"\n    }\n  }\n}\n',
    )
    result = run("check", "--fix", "--color", "never", str(path))
    assert result.exit_code == 0, result.stderr
    assert f"fixed 4 problems in {path}" in result.stderr
    assert path.read_text() == (
        'campaign "Q1" {\n  day 1 {\n    email intro {\n      send choose\n'
        '      subject "Hi"\n      body "b"\n    }\n  }\n}\n'
    )


def test_unsafe_fixes_wait_to_be_asked_for(tmp_path: Path) -> None:
    text = (
        'campaign "z" {\n  timezone "EST5"\n\n  day 1 {\n    email a {\n      send choose\n'
        '      follow up\n      subject "s"\n      body "b"\n    }\n  }\n}\n'
    )
    path = write(tmp_path, text)
    assert run("check", "--fix", str(path)).exit_code == 1
    assert path.read_text() == text  # nothing safe to do: the file is untouched
    result = run("check", "--fix", "--unsafe-fixes", str(path))
    assert result.exit_code == 0, result.stderr
    assert path.read_text() == text.replace("EST5", "America/New_York").replace(
        "      follow up\n",
        "",  # the line goes with it, not left blank
    )


def test_a_removal_inside_a_line_keeps_the_line() -> None:
    text = 'campaign "z" {\n  day 1 {\n    email a { send choose follow up subject "s" }\n'
    column = text.split("\n")[2].index("follow up") + 1
    span = Span(file="c", line=3, column=column, end_line=3, end_column=column + len("follow up"))
    fix = Fix(message="remove `follow up`", edits=(Edit(span=span, text=""),))
    applied = apply_fixes({"c": text}, [fix])
    assert applied.texts["c"] == text.replace("follow up", "")


def test_fix_reads_stdin_and_writes_the_fixed_text_to_stdout() -> None:
    result = run("check", "--fix", "-", stdin="campaign 'x' {\n  day 1 {\n    call c { }\n  }\n}\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == 'campaign "x" {\n  day 1 {\n    call c { }\n  }\n}\n'


def test_fixing_stdin_sends_machine_diagnostics_to_stderr_not_into_the_text() -> None:
    text = "campaign 'x' {\n  day 1 {\n    email e { send choose subject \"s\" }\n  }\n}\n"
    result = run("check", "--fix", "-", "--format", "json", stdin=text)
    assert result.stdout.startswith('campaign "x" {')  # only the fixed text
    [left] = json.loads(result.stderr)["diagnostics"]  # the step still has no body
    assert left["code"] == "C015"


def test_fix_keeps_line_ends_and_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "c.campaign"
    path.write_bytes(b"\xef\xbb\xbfcampaign 'x' {\r\n  day 1 {\r\n    call c { }\r\n  }\r\n}\r\n")
    assert run("check", "--fix", str(path)).exit_code == 0
    assert path.read_bytes() == (
        b'\xef\xbb\xbfcampaign "x" {\r\n  day 1 {\r\n    call c { }\r\n  }\r\n}\r\n'
    )


def test_fixes_that_touch_the_same_text_wait_for_the_next_round() -> None:
    found = parse_text("campaign 'x' {\n  day 1 {\n    call c { }\n  }\n}\n", "c.campaign")
    fixes = chosen_fixes(found.diagnostics)
    twice = apply_fixes({"c.campaign": "campaign 'x' {"}, [fixes[0], fixes[0]])
    assert twice.fixes == 1 and twice.texts["c.campaign"] == 'campaign "x" {'


@pytest.mark.parametrize("case", CASE_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixing_every_case_converges(tmp_path: Path, case: Path) -> None:
    """Over every golden case: applying all fixes, unsafe ones too, ends with
    none left to apply well within the rounds allowed, and never adds syntax
    errors (a fixed one may uncover compile errors it hid)."""
    shutil.copytree(case.parent, tmp_path / "cases")
    path = tmp_path / "cases" / case.name
    before = compile_file(str(path)).diagnostics
    for _ in range(MAX_FIX_ROUNDS - 1):
        result = compile_file(str(path))
        sources = {file: source.text for file, source in result.sources.items() if source.text}
        applied = apply_fixes(sources, chosen_fixes(result.diagnostics, unsafe=True))
        if not applied.fixes:
            break
        for file, text in applied.texts.items():
            Path(file).write_text(text, encoding="utf-8")
    else:
        pytest.fail(f"fixes of {case.name} did not converge")

    def syntax_errors(found: Sequence[Diagnostic]) -> int:
        return len([d for d in found if d.is_error and d.code.startswith("P")])

    assert syntax_errors(compile_file(str(path)).diagnostics) <= syntax_errors(before)
