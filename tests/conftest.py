from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Property tests are deterministic by default (the same examples every run, no
# time limits: timing lives in benchmarks/). `--hypothesis-profile=explore`
# searches fresh random examples, many more of them.
settings.register_profile(
    "default", max_examples=300, derandomize=True, deadline=None, print_blob=True
)
settings.register_profile("explore", max_examples=5000, deadline=None, print_blob=True)
settings.load_profile("default")

# The parser cache goes to a folder of the test run's own, never the user's.
os.environ.setdefault("CADENCE_CACHE_DIR", tempfile.mkdtemp(prefix="cadence-test-cache-"))
os.environ.pop("NO_COLOR", None)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CASES = Path(__file__).resolve().parent / "cases"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        help="rewrite the expected files of golden tests from the current output",
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


def example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.campaign"))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """An engine on a fresh SQLite file, and on a fresh PostgreSQL schema (a
    module may define its own `engine`, which wins)."""
    import datetime as dt

    from tests.engine_db import engine_on

    with engine_on(request.param, tmp_path, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)) as made:
        yield made
