"""The library as an embedding program sees it: the names `cadence` exports,
one error base, problems as values, inputs checked at the boundary, every
boundary model serialisable, diagnostics renderable without the CLI, and a
script written against it clean under ``mypy --strict``."""

from __future__ import annotations

import datetime as dt
import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import cadence
from cadence.compiler.ir import Campaign
from tests.conftest import EXAMPLES, ROOT

NY = ZoneInfo("America/New_York")
START = dt.datetime(2026, 1, 5, 9, tzinfo=NY)
ADA = {"email": "ada@example.com", "first_name": "Ada", "company": "Acme"}


@pytest.fixture(scope="module")
def ir() -> Campaign:
    result = cadence.compile_file(EXAMPLES / "q1-outbound.campaign")
    assert result.ir is not None
    return result.ir


def test_every_exported_name_resolves_and_importing_cadence_loads_no_engine() -> None:
    assert set(cadence.__all__) == {*cadence._HOMES, "__version__"}
    probe = (
        "import sys, cadence; "
        "print(sorted(m for m in ('lark', 'sqlalchemy', 'networkx', 'jinja2') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip() == "[]", done.stderr
    for name in cadence.__all__:
        assert getattr(cadence, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        cadence.nothing  # noqa: B018


def test_every_error_cadence_raises_on_purpose_is_a_cadence_error() -> None:
    errors = [getattr(cadence, n) for n in cadence.__all__ if n.endswith("Error")]
    assert len(errors) >= 8
    for error in errors:
        assert issubclass(error, cadence.CadenceError), error
    # The built-in bases they had are kept, so code that caught those still does.
    assert issubclass(cadence.PlanError, ValueError)
    assert issubclass(cadence.IRError, ValueError)


def test_a_person_the_campaign_cannot_take_is_a_value_not_the_end_of_the_stream(
    ir: Campaign,
) -> None:
    people: list[Any] = [{"first_name": "NoMail"}, "not a person", ADA]
    planned = cadence.plan(ir, people, START)
    assert {a.person for a in planned} == {"ada@example.com"}
    assert [(p.line, p.message) for p in planned.problems] == [
        (1, "no email"),
        (2, "a person is a mapping of fields, not str 'not a person'"),
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"overrides": {"value": "10:15"}}, "the time of `value`: no step `value`"),
        ({"overrides": {"breakup": 1015}}, "1015 is not a time of day"),
        ({"overrides": {"breakup": "25:00"}}, "not a time of day"),
        ({"overrides": ["breakup"]}, "overrides map step names to times"),
        ({"start": dt.date(2026, 1, 5)}, "the start is a datetime with a time zone"),
        ({"start": dt.datetime(2026, 1, 5, 9)}, "needs a time zone"),
        ({"ir": {"name": "x"}}, "a plan needs a compiled campaign"),
        ({"people": "ada@example.com"}, "people are an iterable of mappings"),
    ],
)
def test_bad_inputs_are_a_plan_error_at_the_call(
    ir: Campaign, arguments: dict[str, Any], message: str
) -> None:
    given: dict[str, Any] = {"ir": ir, "people": [ADA], "start": START, **arguments}
    with pytest.raises(cadence.PlanError, match=message):
        cadence.plan(**given)


def test_an_override_may_be_written_as_text_or_as_a_time(ir: Campaign) -> None:
    by_text = {a.step: a for a in cadence.plan(ir, [ADA], START, {"breakup": "10:15"})}
    by_time = {a.step: a for a in cadence.plan(ir, [ADA], START, {"breakup": dt.time(10, 15)})}
    assert by_text == by_time
    local = by_text["breakup"].local
    assert local is not None and local.time() == dt.time(10, 15)


def test_an_action_serialises_like_the_other_models(ir: Campaign) -> None:
    actions = list(cadence.plan(ir, [ADA], START, render=True))
    for action in actions:
        data = json.loads(action.model_dump_json())
        assert data == action.model_dump(mode="json")
        assert cadence.Action.model_validate_json(action.model_dump_json()) == action
        assert cadence.Action.model_validate(action.model_dump()) == action
    assert actions[0].model_dump(mode="json")["due"].endswith("Z")
    schema = cadence.Action.model_json_schema()
    assert set(schema["required"]) >= {"person", "step", "day", "kind", "due_date"}


def test_diagnostics_render_as_check_shows_them_without_the_command_line() -> None:
    result = cadence.compile_source(
        'campaign "c" {\n  day 1 {\n    email e { sned choose }\n  }\n}\n', "c.campaign"
    )
    text = result.render()
    assert "c.campaign:3:15" in text and "did you mean `send`?" in text
    assert "^^^^" in text  # the source line, underlined
    [found] = json.loads(result.render("json"))["diagnostics"]
    assert found["code"] == "P020"
    assert "\x1b[" in result.render(color=True)


@pytest.mark.parametrize(
    ("db", "message"),
    [
        ("mysql://app:hunter2@db/x", "cadence works with SQLite and PostgreSQL databases"),
        ("nonsense://app:hunter2@x", "is not a SQLite path or a postgresql:// URL"),
        ("postgresql://nobody:hunter2@127.0.0.1:1/x", "cannot open the database"),
    ],
)
def test_a_database_that_cannot_be_opened_is_a_store_error(db: str, message: str) -> None:
    with pytest.raises(cadence.StoreError, match=message) as raised:
        cadence.Engine.open(db, now=dt.datetime.now(dt.UTC))
    assert "hunter2" not in str(raised.value)


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(cadence.StoreError, match=r"cannot open the database .*junk\.db"):
        cadence.Engine.open(str(junk), now=dt.datetime.now(dt.UTC))


def test_the_public_names_are_documented() -> None:
    for name in cadence.__all__:
        if name != "__version__":
            assert inspect.getdoc(getattr(cadence, name)), f"cadence.{name} has no docstring"


def test_the_api_reference_is_written_from_the_docstrings() -> None:
    spec = importlib.util.spec_from_file_location(
        "api_reference", ROOT / "tools" / "api_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert written == module.reference(), "run: python tools/api_reference.py > docs/api.md"


@pytest.mark.slow
def test_a_program_embedding_cadence_type_checks_strictly_and_runs(tmp_path: Path) -> None:
    # mypy cannot follow the editable install's folder mapping: give it the
    # package laid out as a wheel installs it.
    view = tmp_path / "view" / "cadence"
    view.mkdir(parents=True)
    for entry in (ROOT / "cadence").iterdir():
        (view / entry.name).symlink_to(entry)
    for sub in ("grammar", "compiler", "runtime"):
        (view / sub).symlink_to(ROOT / sub)
    script = ROOT / "tests" / "embedding" / "embedder.py"
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(view.parent)},
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    ran = subprocess.run(
        [
            sys.executable,
            str(script),
            str(EXAMPLES / "q1-outbound.campaign"),
            str(tmp_path / "x.db"),
        ],
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr
    assert "skipped: line 2: no email" in ran.stdout
    assert "refused: the time of `value`: no step `value`" in ran.stdout
    assert "enrolled 1; refused 1" in ran.stdout
