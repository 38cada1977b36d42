"""Whatever the bytes, parsing gives diagnostics, never an exception."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadence.diagnostics import Severity
from cadence.grammar import ParseResult, parse_source, parse_text
from cadence.source import MAX_SOURCE_BYTES, decode_source
from tests.conftest import EXAMPLES, example_files

EXAMPLE_TEXTS = [p.read_text(encoding="utf-8") for p in example_files()]

# Pieces a mutation splices in: the tokens most likely to confuse a parser.
VOCABULARY = [
    "{", "}", "{{", "}}", '"', '"""', "\\", "#", "\n", "\r\n", " ", "\t", "day", "day 2",
    "email", "email x {", "send", "send at", "09:30", "9:3", "with", "previous", "follow",
    "up", "campaign", 'campaign "x" {', "subject", "body", "template", "requires a,", ",",
    "on reply", "skip", "\x00", "é", "日本", "\ufeff", "-", "@", "0", "99999999999999999999",
]  # fmt: skip


def assert_only_diagnostics(result: ParseResult, text: str | None) -> None:
    """The contract for bad input: a result, errors when not ok, sane positions."""
    if not result.ok:
        assert any(d.severity is Severity.ERROR for d in result.diagnostics)
    line_count = (text.count("\n") + 1) if text is not None else 1
    for diagnostic in result.diagnostics:
        span = diagnostic.span
        assert 1 <= span.line <= line_count
        assert span.start <= span.end
        assert diagnostic.message


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_random_text_gives_only_diagnostics(text: str) -> None:
    assert_only_diagnostics(parse_text(text, "fuzz.campaign"), text)


@settings()
@given(st.binary(max_size=400))
def test_random_bytes_give_only_diagnostics(data: bytes) -> None:
    source = decode_source(data, "fuzz.campaign")
    assert_only_diagnostics(parse_source(source), data.decode("utf-8", errors="replace"))


@st.composite
def mutated_examples(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(EXAMPLE_TEXTS))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "duplicate", "swap"]))
        if action == "insert":
            text = text[:at] + draw(st.sampled_from(VOCABULARY)) + text[at:]
        elif action == "delete":
            size = draw(st.integers(1, 40))
            text = text[:at] + text[at + size :]
        elif action == "duplicate":
            size = draw(st.integers(1, 80))
            text = text[:at] + text[at : at + size] + text[at:]
        else:
            other = draw(st.integers(0, len(text)))
            a, b = sorted((at, other))
            text = text[:a] + text[b:] + text[a:b]
    return text


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(mutated_examples())
def test_mutated_examples_give_only_diagnostics(text: str) -> None:
    assert_only_diagnostics(parse_text(text, "mutant.campaign"), text)


def test_empty_file_is_an_error_not_a_crash() -> None:
    result = parse_text("", "empty.campaign")
    assert not result.ok
    assert [d.code for d in result.diagnostics] == ["P024"]


def test_file_over_the_size_limit_is_refused_with_a_diagnostic() -> None:
    result = parse_source(decode_source(b"#" * (MAX_SOURCE_BYTES + 1), "big.campaign"))
    assert [d.code for d in result.diagnostics] == ["P002"]
    assert "MiB" in result.diagnostics[0].message


def test_deeply_nested_braces_stop_with_one_clear_error() -> None:
    result = parse_text('campaign "c" { day 1 ' + "{" * 100_000, "deep.campaign")
    assert "P025" in [d.code for d in result.diagnostics]


def test_a_megabyte_of_closing_braces_stops_at_the_error_cap() -> None:
    result = parse_text("}" * 1_000_000, "braces.campaign")
    assert result.diagnostics[-1].code == "P023"


def test_a_long_run_of_garbage_is_one_error() -> None:
    result = parse_text('campaign "c" { ' + "@" * 100_000 + " }", "junk.campaign")
    assert [d.code for d in result.diagnostics] == ["P010"]


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cadence", *args], input=stdin, capture_output=True, timeout=120
    )


BAD_FILES = {
    "binary garbage": (bytes(range(256)) * 40, b"P001"),
    "a 10 MB file": ((EXAMPLES / "q1-outbound.campaign").read_bytes() * 8000, b"P002"),
    "an empty file": (b"", b"P024"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_cli_on_bad_files_exits_1_with_a_diagnostic_and_no_traceback(
    tmp_path: Path, name: str
) -> None:
    data, code = BAD_FILES[name]
    path = tmp_path / "bad.campaign"
    path.write_bytes(data)
    done = run_cli("check", str(path))
    assert done.returncode == 1
    assert b"Traceback" not in done.stderr
    assert code in done.stderr
