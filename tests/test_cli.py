"""The command line: exit codes, streams, and files never left half-written."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cadence.cli import cli
from cadence.grammar import ast
from tests.conftest import CASES, EXAMPLES

EXAMPLE = EXAMPLES / "q1-outbound.campaign"
MESSY = CASES / "fmt" / "messy-layout.campaign"
BROKEN = CASES / "parse" / "misspelled-property.campaign"


def run(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, env=env, catch_exceptions=False)


def copy(tmp_path: Path, source: Path) -> Path:
    target = tmp_path / source.name
    shutil.copyfile(source, target)
    return target


def test_check_clean_file_exits_0() -> None:
    result = run("check", str(EXAMPLE))
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "no problems in 1 file" in result.stderr


def test_check_file_with_errors_exits_1_and_renders_them_on_stderr() -> None:
    result = run("check", "--color", "never", str(BROKEN))
    assert result.exit_code == 1
    assert f"{BROKEN}:4:7: P020 error: expected `send`" in result.stderr
    assert "= help: did you mean `send`?" in result.stderr
    assert "1 error in 1 file" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_missing_file_exits_2_with_one_line() -> None:
    result = run("check", "no/such.campaign")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "cadence: error: cannot read no/such.campaign: No such file or directory"
    )


def test_check_folder_without_campaigns_exits_2(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a campaign\n")
    result = run("check", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"cadence: error: no .campaign files in {tmp_path}"


def test_check_and_fmt_search_a_folder(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "team")  # its campaigns, and their templates
    clean = tmp_path / "team" / EXAMPLE.name
    messy = copy(tmp_path, MESSY)
    (tmp_path / "t.j2").write_text("A title")  # the template it uses
    (tmp_path / ".drafts").mkdir()
    copy(tmp_path / ".drafts", BROKEN)  # hidden: passed over
    result = run("check", "--color", "never", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    count = len(list(EXAMPLES.glob("*.campaign"))) + 1
    assert f"in {count} files" in result.stderr
    assert run("fmt", "--check", str(tmp_path)).stdout == f"would reformat {messy}\n"
    assert run("fmt", str(tmp_path)).exit_code == 0
    assert run("fmt", "--check", str(tmp_path)).exit_code == 0
    assert clean.read_text() == EXAMPLE.read_text()


def test_warnings_as_errors_fail_on_warnings_not_on_notes(tmp_path: Path) -> None:
    warned = tmp_path / "warned.campaign"
    warned.write_text(
        'campaign "w" {\n  day 1 {\n    call ring { notes "n" }\n    email hi {\n'
        '      send with previous\n      subject "s"\n      body "b"\n    }\n  }\n}\n'
    )
    assert run("check", str(warned)).exit_code == 0
    assert run("check", "--warnings-as-errors", str(warned)).exit_code == 1
    assert run("check", "--warnings-as-errors", str(EXAMPLE)).exit_code == 0  # notes only
    out = tmp_path / "warned.json"
    compiled = run("compile", "--warnings-as-errors", str(warned), "-o", str(out))
    assert compiled.exit_code == 1 and not out.exists()


def test_usage_errors_exit_2() -> None:
    assert run("check").exit_code == 2
    assert run("check", "--bogus", str(EXAMPLE)).exit_code == 2
    assert run("nonsense").exit_code == 2


def test_io_error_outranks_findings_but_every_file_is_checked() -> None:
    result = run("check", "--color", "never", str(BROKEN), "missing.campaign", str(EXAMPLE))
    assert result.exit_code == 2
    assert "P020" in result.stderr and "cannot read missing.campaign" in result.stderr
    assert "1 error in 2 files" in result.stderr


def test_colour_only_when_asked_or_on_a_terminal() -> None:
    assert "\033[" in run("check", "--color", "always", str(BROKEN)).stderr
    assert "\033[" not in run("check", str(BROKEN)).stderr  # not a TTY
    assert "\033[" not in run("check", str(BROKEN), env={"NO_COLOR": "1"}).stderr


def test_fmt_check_passes_on_the_examples() -> None:
    result = run("fmt", "--check", *map(str, sorted(EXAMPLES.glob("*.campaign"))))
    assert result.exit_code == 0, result.output


def test_fmt_check_lists_files_that_would_change_and_changes_nothing(tmp_path: Path) -> None:
    messy = copy(tmp_path, MESSY)
    before = messy.read_bytes()
    result = run("fmt", "--check", str(messy), str(EXAMPLE))
    assert result.exit_code == 1
    assert result.stdout == f"would reformat {messy}\n"
    assert messy.read_bytes() == before


def test_fmt_diff_prints_a_unified_diff_and_changes_nothing(tmp_path: Path) -> None:
    messy = copy(tmp_path, MESSY)
    before = messy.read_bytes()
    result = run("fmt", "--diff", str(messy))
    assert result.exit_code == 1
    assert result.stdout.startswith(f"--- {messy} (original)\n+++ {messy} (formatted)\n@@ ")
    assert '+campaign "Messy" {  # after open' in result.stdout
    assert messy.read_bytes() == before


def test_fmt_rewrites_in_place_keeping_the_mode(tmp_path: Path) -> None:
    messy = copy(tmp_path, MESSY)
    messy.chmod(0o640)
    result = run("fmt", str(messy))
    assert result.exit_code == 0
    assert "reformatted 1 file" in result.stderr
    expected = (CASES / "fmt" / "messy-layout.expected").read_text(encoding="utf-8")
    assert messy.read_text(encoding="utf-8") == expected
    assert stat.S_IMODE(messy.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [messy.name]  # no temp file left
    assert run("fmt", "--check", str(messy)).exit_code == 0


def test_fmt_normalises_crlf_and_bom(tmp_path: Path) -> None:
    for name in ("crlf-line-ends.campaign", "bom-and-no-final-newline.campaign"):
        path = copy(tmp_path, CASES / "fmt" / name)
        assert run("fmt", "--check", str(path)).exit_code == 1
        assert run("fmt", str(path)).exit_code == 0
        data = path.read_bytes()
        assert b"\r" not in data and not data.startswith(b"\xef\xbb\xbf")


def test_fmt_leaves_a_file_with_syntax_errors_untouched(tmp_path: Path) -> None:
    broken = copy(tmp_path, BROKEN)
    before = broken.read_bytes()
    result = run("fmt", str(broken))
    assert result.exit_code == 1
    assert "P020" in result.stderr
    assert broken.read_bytes() == before


def test_fmt_failing_to_write_keeps_the_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    messy = copy(tmp_path, MESSY)
    before = messy.read_bytes()

    def refuse(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    result = run("fmt", str(messy))
    assert result.exit_code == 2
    assert "cannot write" in result.stderr and "No space left" in result.stderr
    assert messy.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [messy.name]


def test_fmt_reads_stdin_and_writes_stdout() -> None:
    result = run("fmt", "-", stdin=MESSY.read_text(encoding="utf-8"))
    assert result.exit_code == 0
    assert result.stdout == (CASES / "fmt" / "messy-layout.expected").read_text(encoding="utf-8")


def test_parse_prints_the_ast_as_json() -> None:
    result = run("parse", str(EXAMPLE))
    assert result.exit_code == 0
    campaign = ast.Campaign.model_validate(json.loads(result.stdout))
    assert campaign.name.value == "Q1 Outbound - VP Engineering"


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("cadence, version ")


# ---- compile, graph, schema, formats -------------------------------------------------

COMPILE_CASES = CASES / "compile"


def test_check_reports_compile_errors_with_exit_1() -> None:
    result = run("check", str(COMPILE_CASES / "follow-up-after-a-task.campaign"))
    assert result.exit_code == 1
    assert "C002 error" in result.stderr


def test_check_with_only_warnings_and_infos_exits_0() -> None:
    for name in ("with-previous-on-day-one", "same-day-redirect", "waits-for-task"):
        result = run("check", str(COMPILE_CASES / f"{name}.campaign"))
        assert result.exit_code == 0, result.stderr


def test_check_json_goes_to_stdout() -> None:
    result = run("check", "--format", "json", str(BROKEN), str(EXAMPLE))
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["version"] == 1 and [d["code"] for d in data["diagnostics"]] == ["P020"]
    assert result.stderr == ""


def test_github_actions_makes_github_the_default_format() -> None:
    result = run("check", str(BROKEN), env={"GITHUB_ACTIONS": "true"})
    assert result.exit_code == 1
    assert result.stdout.startswith("::error file=")


def test_compile_writes_the_ir_to_stdout_or_atomically_to_a_file(tmp_path: Path) -> None:
    to_stdout = run("compile", str(EXAMPLE))
    assert to_stdout.exit_code == 0
    out = tmp_path / "q1.json"
    to_file = run("compile", str(EXAMPLE), "-o", str(out))
    assert to_file.exit_code == 0 and to_file.stdout == ""
    assert out.read_text(encoding="utf-8") == to_stdout.stdout
    assert json.loads(to_stdout.stdout)["schema_version"] == 1


def test_compile_with_errors_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bad.json"
    result = run("compile", str(COMPILE_CASES / "duplicate-step.campaign"), "-o", str(out))
    assert result.exit_code == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("format", "expected"),
    [("dot", '"bump" -> "intro" [label="same_time", style=dashed];'),
     ("mermaid", "s1 -.->|same_time| s0"),
     ("json", '"kind": "reply_to"')],
)  # fmt: skip
def test_graph_formats(format: str, expected: str) -> None:
    result = run("graph", str(EXAMPLE), "--format", format)
    assert result.exit_code == 0
    assert expected in result.stdout


def test_graph_dot_quotes_as_graphviz_reads_it(tmp_path: Path) -> None:
    source = tmp_path / "cafe.campaign"
    source.write_text(
        'campaign "Café \\"Noir\\" \\\\ more" {\n  day 1 {\n    call ring { notes "n" }\n  }\n}\n',
        encoding="utf-8",
    )
    result = run("graph", str(source), "--format", "dot")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # UTF-8 as it is, quotes and backslashes escaped, a line break as DOT's \n.
    assert lines[0] == 'digraph "Café \\"Noir\\" \\\\ more" {'
    assert '  "ring" [label="ring\\ncall, day 1"];' in lines


def test_schema_prints_the_ir_json_schema() -> None:
    result = run("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["properties"]["schema_version"]["const"] == 1


def test_checking_a_campaign_imports_none_of_the_engines_libraries(tmp_path: Path) -> None:
    """`cadence check` starts fast: the engine, its database drivers and the
    libraries only other commands use are never imported (holidays is, for a
    campaign that skips them: checking the country needs it)."""
    script = (
        "import sys\n"
        "from cadence.cli import main\n"
        f"sys.argv = ['cadence', 'check', {str(tmp_path)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    (tmp_path / "a.campaign").write_text(
        'campaign "a" {\n  day 1 {\n    email hi { send choose subject "s" body "b" }\n  }\n}\n'
    )
    (tmp_path / ".gitignore").write_text("ignored/\n")
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    for heavy in ("sqlalchemy", "psycopg", "holidays", "orjson", "rich", "email_validator",
                  "cadence.runtime.engine", "cadence.cli_engine", "aiosmtpd", "pygls"):  # fmt: skip
        assert heavy not in loaded, heavy
