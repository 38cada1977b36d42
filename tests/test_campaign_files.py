"""Which files `check` and `fmt` take from a folder: `.campaign` files, in name
order, passing over hidden and tool folders and what `.gitignore` says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cadence.campaign_files import campaign_files


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")


def relative(paths: list[str], root: Path) -> list[str]:
    return [os.path.relpath(path, root).replace(os.sep, "/") for path in paths]


def test_a_folder_gives_its_campaigns_in_name_order(tmp_path: Path) -> None:
    touch(tmp_path, "b.campaign", "a.campaign", "sub/c.campaign", "sub/notes.txt", "z.txt")
    found = campaign_files([str(tmp_path)])
    assert relative(found.files, tmp_path) == ["a.campaign", "b.campaign", "sub/c.campaign"]
    assert found.empty == []


def test_hidden_and_tool_folders_are_passed_over(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "keep.campaign",
        ".git/x.campaign",
        ".venv/y.campaign",
        "node_modules/pkg/z.campaign",
        "__pycache__/w.campaign",
        ".hidden.campaign",
    )
    assert relative(campaign_files([str(tmp_path)]).files, tmp_path) == ["keep.campaign"]


def test_gitignore_rules_hold_with_git_semantics(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()  # the repository's top
    (tmp_path / ".gitignore").write_text("old/\n")
    touch(
        tmp_path,
        "project/live.campaign",
        "project/old/gone.campaign",  # ignored by the top's file, above the folder given
        "project/drafts/a.campaign",
        "project/sub/x.wip.campaign",
        "project/sub/keep.wip.campaign",
    )
    (tmp_path / "project" / ".gitignore").write_text("drafts/\n*.wip.campaign\n")
    (tmp_path / "project" / "sub" / ".gitignore").write_text("!keep.wip.campaign\n")
    found = campaign_files([str(tmp_path / "project")])
    assert relative(found.files, tmp_path) == [
        "project/live.campaign",
        "project/sub/keep.wip.campaign",  # a `!` below keeps what a file above ignored
    ]


def test_files_given_are_taken_as_they_are_and_once(tmp_path: Path) -> None:
    touch(tmp_path, "a.campaign", "odd-name.txt")
    a = str(tmp_path / "a.campaign")
    found = campaign_files([a, str(tmp_path / "odd-name.txt"), str(tmp_path), "-", "-"])
    assert found.files == [a, str(tmp_path / "odd-name.txt"), "-"]


def test_a_folder_without_campaigns_is_reported(tmp_path: Path) -> None:
    touch(tmp_path, "readme.md")
    found = campaign_files([str(tmp_path)])
    assert found.files == [] and found.empty == [str(tmp_path)]


def test_links_to_folders_are_not_followed(tmp_path: Path) -> None:
    touch(tmp_path, "a.campaign")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert relative(campaign_files([str(tmp_path)]).files, tmp_path) == ["a.campaign"]


def test_gitignore_below_the_top_holds_when_the_top_is_dot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".gitignore").write_text("build/\nignored.campaign\n")
    touch(tmp_path, "a.campaign", "sub/ok.campaign", "sub/ignored.campaign", "sub/build/x.campaign")
    (tmp_path / "sub" / ".gitignore").write_text("ok.campaign\n")
    monkeypatch.chdir(tmp_path)
    assert relative(campaign_files(["."]).files, Path(".")) == ["a.campaign"]


def test_a_repository_inside_another_keeps_to_its_own_rules(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".gitignore").write_text("inner/\n")  # the outer repository's rule
    touch(tmp_path, "inner/x.campaign")
    (tmp_path / "inner" / ".git").mkdir()
    assert relative(campaign_files([str(tmp_path / "inner")]).files, tmp_path) == [
        "inner/x.campaign"
    ]


def test_a_gitignore_line_git_cannot_read_is_passed_over(tmp_path: Path) -> None:
    touch(tmp_path, "keep.campaign", "drop.campaign")
    (tmp_path / ".gitignore").write_bytes(b"\\\n[\ndrop.campaign\n\xff\xfe\n")  # a lone `\`
    assert relative(campaign_files([str(tmp_path)]).files, tmp_path) == ["keep.campaign"]
