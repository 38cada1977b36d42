"""The parser is built once, cached in the user's cache folder, and survives a bad cache."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

from cadence.cachedir import CACHE_ENV, cache_dir
from cadence.grammar import parser as parser_module

GOOD = 'campaign "c" { day 1 { email e { send task } } }'


def parses(lark_parser: object) -> bool:
    parser_module._builder.begin("t")
    return lark_parser.parse(GOOD) is not None  # type: ignore[attr-defined]


def test_cache_is_written_once_then_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert parses(parser_module.build_parser())
    files = list(tmp_path.glob("campaign-grammar-*.lark"))
    assert len(files) == 1
    written = files[0].stat().st_mtime_ns
    assert parses(parser_module.build_parser())
    assert files[0].stat().st_mtime_ns == written  # loaded, not rebuilt


def test_corrupt_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    parser_module.build_parser()
    cache = next(tmp_path.glob("campaign-grammar-*.lark"))
    cache.write_bytes(b"not a pickle")
    assert parses(parser_module.build_parser())


def test_unusable_cache_folder_means_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    assert cache_dir() is None
    assert parses(parser_module.build_parser())


def test_default_cache_is_the_user_cache_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_ENV)
    folder = cache_dir()
    assert folder == Path(platformdirs.user_cache_dir("cadence", appauthor=False))
    package = Path(parser_module.__file__).resolve().parent
    assert package not in folder.resolve().parents


def test_cache_name_changes_with_the_grammar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert parser_module.cache_file("a") != parser_module.cache_file("b")


def test_the_process_parser_is_built_once() -> None:
    assert parser_module.get_parser() is parser_module.get_parser()


def test_a_cache_folder_other_users_can_write_to_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The parser's tables are loaded as they are (a pickle): nobody else may put them there.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv(CACHE_ENV, str(shared))
    assert cache_dir() is None
    assert parses(parser_module.build_parser())
    assert not list(shared.iterdir())
