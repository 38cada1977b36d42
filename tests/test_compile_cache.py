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


def test_no_templates_root_and_a_root_named_none_are_kept_apart(folder: Path) -> None:
    # The campaign's template lies outside its folder: refused without a
    # root, even after a run that named a root (where it is inside) kept it.
    (folder / "camp").mkdir()
    (folder / "None").mkdir()
    (folder / "None" / "t.j2").write_text("Hello")
    (folder / "camp" / "c.campaign").write_text(
        CAMPAIGN.replace('"hello.txt.j2"', '"../None/t.j2"')
    )
    args = ["plan", "camp/c.campaign", "--people", "people.csv", "--start", "2026-03-02T08:00Z"]
    assert CliRunner().invoke(cli, [*args, "--templates-root", "None"]).exit_code == 0
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code != 0 and "outside" in refused.stderr


def test_an_entry_naming_a_fifo_is_not_waited_for(folder: Path) -> None:
    plan()
    os.mkfifo(folder / "fifo")
    for entry in (folder / "cache").glob("campaign-ir-*.json"):
        data = json.loads(entry.read_text())
        data["templates"] = [[os.fspath(folder / "fifo"), "0" * 64]]
        entry.write_text(json.dumps(data))
    assert plan()[0] == 0  # compiled again, at once


def test_an_entry_replaced_by_a_symlink_is_never_written_through(folder: Path) -> None:
    plan()
    victim = folder / "victim.txt"
    victim.write_text("keep me")
    (folder / "hello.txt.j2").write_text("Changed {{ email }}")  # the entry no longer holds
    for entry in (folder / "cache").glob("campaign-ir-*.json"):
        entry.unlink()
        entry.symlink_to(victim)
    assert plan()[0] == 0
    assert victim.read_text() == "keep me"


def test_an_entry_of_another_campaign_is_not_used(folder: Path) -> None:
    plan()
    other = json.loads(next((folder / "cache").glob("campaign-ir-*.json")).read_text())["ir"]
    (folder / "c.campaign").write_text(CAMPAIGN.replace("09:00", "10:30"))
    plan()  # its own entry
    for entry in (folder / "cache").glob("campaign-ir-*.json"):
        entry.write_text(json.dumps({"templates": [], "ir": other}))  # the 09:00 campaign's
    code, output = plan()
    assert code == 0 and "10:30" in output


def test_a_cache_folder_others_can_write_to_is_not_used(folder: Path) -> None:
    (folder / "cache").mkdir()
    (folder / "cache").chmod(0o777)
    plan()
    assert not list((folder / "cache").glob("campaign-ir-*.json"))


def test_the_cache_reads_templates_as_the_compiler_does() -> None:
    from cadence.compiler import cache, templates

    assert cache.MAX_TEMPLATE_BYTES == templates.MAX_TEMPLATE_BYTES
