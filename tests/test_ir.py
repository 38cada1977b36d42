"""The IR: deterministic, versioned, described by its JSON Schema, and loadable
by the runtime without lark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from cadence.compiler import compile_file
from cadence.compiler.ir import IRError, dump_ir, json_schema, load_ir
from tests.conftest import EXAMPLES, example_files

EXAMPLE = EXAMPLES / "q1-outbound.campaign"


def example_ir_text() -> str:
    result = compile_file(EXAMPLE)
    assert result.ir is not None
    return dump_ir(result.ir)


def test_ir_is_byte_for_byte_the_same_for_the_same_input() -> None:
    assert example_ir_text() == example_ir_text()


def test_ir_records_source_and_compiler() -> None:
    data = json.loads(example_ir_text())
    assert data["schema_version"] == 1
    assert data["compiler"].startswith("cadence ")
    assert len(data["source"]["sha256"]) == 64
    assert [s["id"] for s in data["steps"]] == [
        "intro",
        "bump",
        "ring",
        "connect",
        "research",
        "breakup",
        "personal",
    ]
    bump = data["steps"][1]
    assert bump["body"]["origin"] == "file"
    assert "Bumping this to the top" in bump["body"]["source"]


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_ir_validates_against_its_published_schema(path: Path) -> None:
    result = compile_file(path)
    assert result.ir is not None
    jsonschema.validate(json.loads(dump_ir(result.ir)), json_schema())


def test_load_round_trips() -> None:
    text = example_ir_text()
    assert dump_ir(load_ir(text)) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[1]", "not a compiled campaign"),
        ('{"schema_version": 2}', "schema_version 2 is not supported"),
        ('{"schema_version": 1, "name": 3}', "invalid IR at"),
    ],
)
def test_bad_ir_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(IRError, match=message):
        load_ir(text)


def test_runtime_loads_the_ir_without_importing_lark(tmp_path: Path) -> None:
    # Jinja is allowed: loading an IR checks its templates as the compiler does.
    ir_file = tmp_path / "campaign.json"
    ir_file.write_text(example_ir_text(), encoding="utf-8")
    probe = (
        "import sys\n"
        "import cadence.runtime\n"
        "from cadence.compiler.ir import load_ir\n"
        f"campaign = load_ir(open({str(ir_file)!r}).read())\n"
        "assert campaign.name == 'Q1 Outbound - VP Engineering'\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('lark', 'click'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=tmp_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["steps"][0].update(day=0), "is on day 0"),
        (lambda d: d["steps"][1].update(id="intro"), "two steps are named `intro`"),
        (lambda d: d["steps"][1].update(reply_to="ghost"), "refers to `ghost`"),
        (lambda d: d["steps"][1].update(reply_to="bump"), "replies to `bump`"),
        (lambda d: d["steps"][0].update(timing=None), "has no timing"),
        (lambda d: d["settings"].update(timezone="Mars/Base"), "is not a time zone"),
        (lambda d: d["settings"].update(holidays="XX"), "no holidays are known"),
    ],
)
def test_hand_edited_ir_breaking_the_compilers_rules_is_refused(edit: object, message: str) -> None:
    data = json.loads(example_ir_text())
    edit(data)  # type: ignore[operator]
    with pytest.raises(IRError, match=message):
        load_ir(json.dumps(data))


def test_deeply_nested_json_is_refused() -> None:
    with pytest.raises(IRError, match="nested too deeply"):
        load_ir("[" * 100_000)


@pytest.mark.parametrize(
    ("opens", "closes"),
    [("25:00", "17:30"), ("8", "17:30"), ("17:45", "17:30"), ("09:00", "09:00")],
)
def test_an_ir_window_the_compiler_would_refuse_is_refused(opens: str, closes: str) -> None:
    from cadence.compiler import compile_source
    from cadence.compiler.ir import IRError, dump_ir, load_ir

    source = (
        'campaign "w" {\n  send window 08:00-17:30\n'
        '  day 1 { email a { send at 09:00 subject "s" body "b" } }\n}\n'
    )
    ir = compile_source(source, "w.campaign").ir
    assert ir is not None
    text = (
        dump_ir(ir)
        .replace('"opens": "08:00"', f'"opens": "{opens}"')
        .replace('"closes": "17:30"', f'"closes": "{closes}"')
    )
    with pytest.raises(IRError, match="send_window"):
        load_ir(text)
