"""`plan` and `enroll` keep what they compiled: a campaign that has not
changed is not parsed or compiled again, and anything the compile read that
changed since (the campaign, a template) means a fresh compile."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cadence.cli import cli
from cadence.compiler import compile as driver

CAMPAIGN = """campaign "Cached" {
  timezone "UTC"
  day 1 { email hello { send at 09:00 subject "Hi" body template "hello.txt.j2" } }
}
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CADENCE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.campaign").write_text(CAMPAIGN)
    (tmp_path / "hello.txt.j2").write_text("Hello {{ email }}")
    (tmp_path / "people.csv").write_text("email\nann@example.com\n")
    yield tmp_path


def plan() -> tuple[int, str]:
    result = CliRunner().invoke(
        cli,
        ["plan", "c.campaign", "--people", "people.csv", "--start", "2026-03-02T08:00Z",
         "--format", "jsonl", "--render"],
    )  # fmt: skip
    return result.exit_code, result.stdout + result.stderr


def body(output: str) -> str:
    return str(json.loads(output.splitlines()[0])["body"])


def no_compiling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("compiled again")

    monkeypatch.setattr(driver, "compile_parsed", refuse)


def test_an_unchanged_campaign_is_not_compiled_again(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, first = plan()
    assert code == 0 and body(first) == "Hello ann@example.com"
    no_compiling(monkeypatch)
    assert plan() == (0, first)


def test_a_changed_template_is_compiled_again(folder: Path) -> None:
    plan()
    (folder / "hello.txt.j2").write_text("Good morning {{ email }}")
    code, output = plan()
    assert code == 0 and body(output) == "Good morning ann@example.com"


def test_a_removed_template_is_an_error_not_an_old_copy(folder: Path) -> None:
    plan()
    (folder / "hello.txt.j2").unlink()
    code, output = plan()
    assert code != 0 and "cannot read template" in output


def test_a_changed_campaign_is_compiled_again(folder: Path) -> None:
    plan()
    (folder / "c.campaign").write_text(CAMPAIGN.replace("09:00", "10:30"))
    code, output = plan()
    assert code == 0 and "10:30" in output


def test_a_damaged_entry_is_ignored(folder: Path) -> None:
    _, first = plan()
    for entry in (folder / "cache").glob("campaign-ir-*.json"):
        entry.write_text('{"templates": [], "ir": "{not an IR"}')
    assert plan() == (0, first)


def test_an_entry_naming_another_file_is_not_trusted(folder: Path) -> None:
    # An entry is only as good as the files it lists: one whose template
    # cannot be read (moved, or a path that was never there) is compiled again.
    plan()
    for entry in (folder / "cache").glob("campaign-ir-*.json"):
        data = json.loads(entry.read_text())
        data["templates"] = [[os.fspath(folder / "gone.txt"), "0" * 64]]
        entry.write_text(json.dumps(data))
    (folder / "hello.txt.j2").write_text("Changed {{ email }}")
    code, output = plan()
    assert code == 0 and body(output) == "Changed ann@example.com"
