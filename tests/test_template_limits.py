"""Templates are untrusted: they cannot read files outside their folder, hang,
exhaust memory or print a traceback, at compile time or when rendered."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cadence.compiler import compile_file, compile_source
from cadence.compiler.ir import IRError, dump_ir, load_ir
from cadence.runtime.render import Renderer
from cadence.templating import MAX_SIZE, RenderError, environment, render

MEMORY_LIMIT = 1536 * 1024 * 1024  # bytes of address space a hostile case may use
EXPENSIVE = {
    "center": ("{{ 'x'|center(1000000000) }}", "`center` with a width of 1000000000"),
    "percent": ("{{ '%01000000000d' % 1 }}", "`%` with a width of 1000000000"),
    "percent-repeated": ("{{ ('%9999s' * 1000) % ((1,) * 1000) }}", "`%` would build more"),
    "format-repeated": ("{{ ('{:9999}' * 1000).format(*range(1000)) }}", "a format would build"),
    "percent-star": ("{{ '%*d' % (1000000000, 1) }}", "a width taken from the arguments"),
    "format": ("{{ '{:>999999999}'.format(1) }}", "a format with a width of 999999999"),
    "format-nested": ("{{ '{:{}}'.format(1, 999999999) }}", "taken from the arguments"),
    "ljust": ("{{ 'x'.ljust(10**9) }}", "padding with a width of 1000000000"),
    "nested-loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "too much work",
    ),
    "loop-text": (
        "{% for i in range(100000) %}" + "y" * 100 + "{% endfor %}",
        "writes more than 1,000,000 characters",
    ),
    "lipsum": ("{{ lipsum(10**6) }}", "`lipsum` makes at most"),
    "doubling-concat": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "`~` would build more than",
    ),
    "doubling-plus": (
        "{% set ns = namespace(s=['x']) %}{% for i in range(64) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "`+` would build more than",
    ),
    "shared-list-join": ("{{ (['y' * 100000] * 100000)|join }}", "`*` would build more than"),
    "shared-list-print": ("{{ ['y' * 100000] * 100000 }}", "`*` would build more than"),
    "dict-view": (
        '{% set d = {"a": "x" * 999999} %}{% set ns = namespace(l=[]) %}'
        "{% for i in range(3) %}{% set ns.l = ns.l + [d.items()] %}{% endfor %}{{ ns.l }}",
        "would build more than 1,000,000 characters",
    ),
    "namespace": (
        '{% set ns = namespace(a="x" * 600000) %}{% set n2 = namespace(b=ns) %}{{ [n2, n2]|join }}',
        "`join` of a value over",
    ),
    "urlize": ('{{ (")" * 20000 ~ "x)")|urlize }}', "`urlize` of a word over 2,000"),
    "batch-keywords": (
        "{{ range(1)|batch(linecount=500000000, fill_with=0)|first|length }}",
        "`batch` with 500000000",
    ),
    "lazy-chain": ("{{ range(100000)|map('center', 5000)|list|length }}", "a sequence holds"),
    "replace": ("{{ ('x' * 100000)|replace('', 'y' * 1000) }}", "`replace` would build"),
    "method-replace": ("{{ ('x' * 100000).replace('x', 'y' * 1000) }}", "`replace` would build"),
    "str-join": ("{{ ('y' * 1000).join(['z'] * 100000) }}", "`join` would build"),
    "big-int": (
        "{% set ns = namespace(x=10**1000) %}{% for i in range(40) %}"
        "{% set ns.x = ns.x * ns.x %}{% endfor %}",
        "a number too large",
    ),
    "power": ("{{ 2 ** 1000000 }}", "`**` with an exponent above"),
    "power-bits": ("{{ 10 ** 100000 }}", "`**` would build a number too large"),
    "sum-lists": ("{{ [['x'] * 1000] * 1000|sum(start=[]) }}", "`sum` adds numbers only"),
    "batch": ("{{ [1]|batch(10**9, 'x')|list }}", "`batch` with 1000000000"),
    "recursion": (
        "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "recurses too deeply",
    ),
    "exponential-macro": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
        "too much work",
    ),
    "translate": ("{{ 'x'.translate({120: 'y' * 100000}) }}", "`translate` is not available"),
    "mutation": ("{% set l = [] %}{{ l.append(1) }}", "is unsafe"),
}


def rendered(template: str, **fields: object) -> str:
    return render(environment().from_string(template), fields)


@pytest.mark.parametrize("name", sorted(EXPENSIVE))
def test_an_expensive_template_fails_fast_with_a_reason(name: str) -> None:
    template, reason = EXPENSIVE[name]
    started = time.monotonic()
    with pytest.raises(RenderError, match=_escaped(reason)):
        rendered(template)
    assert time.monotonic() - started < 10


def _escaped(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize(
    "template",
    [
        "Hi {{ first_name|title }}, {{ '%05d'|format(42) }} {{ ['a', 'b']|join(', ') }}",
        "{% for i in range(3) %}{{ loop.index }}{{ ',' if not loop.last }}{% endfor %}",
        "{{ 'abc'.replace('b', 'x') }} {{ '{} and {}'.format(1, 2) }} {{ 'a' ~ 'b' * 3 }}",
        "{% macro hi(n) %}hi {{ n }}{% endmacro %}{{ hi(first_name) }}",
        "{{ first_name|center(11) }}|{{ (first_name * 3)|wordwrap(4) }}|{{ 2 ** 10 }}",
    ],
)
def test_ordinary_templates_render_as_jinja_would(template: str) -> None:
    from jinja2.sandbox import SandboxedEnvironment

    expected = SandboxedEnvironment().from_string(template).render(first_name="ada")
    assert rendered(template, first_name="ada") == expected


def test_lipsum_makes_a_paragraph() -> None:
    assert len(rendered("{{ lipsum(1, false) }}").split()) >= 20


def test_one_render_may_write_up_to_the_limit() -> None:
    assert len(rendered("{{ 'x' * 500000 }}{{ 'y' * 400000 }}")) == 900_000
    with pytest.raises(RenderError, match="writes more than"):
        rendered("{{ 'x' * 600000 }}{{ 'y' * 600000 }}")
    assert MAX_SIZE == 1_000_000


def test_limits_hold_for_each_render_not_across_renders() -> None:
    template = environment().from_string("{% for i in range(60000) %}{% endfor %}ok")
    assert [render(template, {}) for _ in range(3)] == ["ok"] * 3


# ---- through the command line, under a memory limit ------------------------------------------
def limited_cadence(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child with at most 1.5 GB of address space and a time limit."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run(
        [sys.executable, "-m", "cadence", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
        env={**os.environ, "NO_COLOR": "1"},
    )


def campaign_with(body: str, subject: str = "Hi {{ first_name }}") -> str:
    return (
        'campaign "hostile" {\n  requires first_name\n  day 1 {\n    email a {\n'
        f"      send at 09:00\n      subject {json.dumps(subject)}\n"
        f"      body {json.dumps(body)}\n    }}\n  }}\n}}\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPENSIVE))
def test_check_and_plan_stay_bounded_on_hostile_templates(name: str, tmp_path: Path) -> None:
    (tmp_path / "c.campaign").write_text(campaign_with(EXPENSIVE[name][0]), encoding="utf-8")
    (tmp_path / "people.csv").write_text("email,first_name\nada@example.com,Ada\n")
    checked = limited_cadence("check", "c.campaign", cwd=tmp_path)
    assert "Traceback" not in checked.stderr
    assert checked.returncode in (0, 1)
    planned = limited_cadence(
        "plan", "c.campaign", "--people", "people.csv", "--start", "2026-01-05T08:00Z",
        "--render", "--format", "jsonl", cwd=tmp_path,
    )  # fmt: skip
    assert "Traceback" not in planned.stderr
    if checked.returncode == 0:
        assert planned.returncode == 3, planned.stderr
        assert "people.csv:2: skipped: cannot render step `a`" in planned.stderr


@pytest.mark.parametrize(
    "body",
    [
        "{{ " + "(" * 70 + "first_name" + ")" * 70 + " }}",
        "{% if first_name %}" * 100 + "x" + "{% endif %}" * 100,
        "{% for a in b %}" * 30 + "{% endfor %}" * 30,
        "{% include 'x' %}",
        "{{ first_name|nonsense }}",
    ],
    ids=["parentheses", "ifs", "loops", "include", "unknown-filter"],
)
def test_templates_nested_too_deep_are_positioned_errors(body: str) -> None:
    result = compile_source(campaign_with(body), "deep.campaign")
    assert not result.ok
    assert [d.code for d in result.diagnostics if d.is_error] == ["C030"]
    assert result.diagnostics[0].span.line == 7


# ---- template files ---------------------------------------------------------------------------
def campaign_reading(path: str) -> str:
    return campaign_with("x").replace('body "x"', f"body template {json.dumps(path)}")


@pytest.mark.parametrize(
    "path", ["../secret.txt", "/etc/passwd", "/proc/self/environ", "/dev/stdin", "sub/../../x"]
)
def test_template_paths_may_not_leave_the_campaigns_folder(path: str, tmp_path: Path) -> None:
    folder = tmp_path / "campaigns"
    folder.mkdir()
    (tmp_path / "secret.txt").write_text("API_KEY=hunter2")
    (folder / "c.campaign").write_text(campaign_reading(path))
    result = compile_file(folder / "c.campaign")
    assert [d.code for d in result.diagnostics if d.is_error] == ["C032"]
    assert "hunter2" not in json.dumps([d.message for d in result.diagnostics])


def test_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("API_KEY=hunter2")
    folder = tmp_path / "campaigns"
    folder.mkdir()
    (folder / "body.j2").symlink_to(tmp_path / "secret.txt")
    (folder / "c.campaign").write_text(campaign_reading("body.j2"))
    assert [d.code for d in compile_file(folder / "c.campaign").diagnostics] == ["C032"]


def test_a_symlink_inside_the_folder_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real.j2").write_text("Hello {{ first_name }}")
    (tmp_path / "link.j2").symlink_to(tmp_path / "real.j2")
    (tmp_path / "c.campaign").write_text(campaign_reading("link.j2"))
    result = compile_file(tmp_path / "c.campaign")
    assert result.ok and result.ir is not None
    assert result.ir.steps[0].body is not None
    assert result.ir.steps[0].body.source == "Hello {{ first_name }}"


def test_a_templates_root_lets_a_campaign_use_a_shared_folder(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "body.j2").write_text("Hello")
    (tmp_path / "campaigns").mkdir()
    campaign = tmp_path / "campaigns" / "c.campaign"
    campaign.write_text(campaign_reading("../shared/body.j2"))
    assert [d.code for d in compile_file(campaign).diagnostics] == ["C032"]
    assert compile_file(campaign, templates_root=tmp_path).ok
    checked = limited_cadence("check", str(campaign), cwd=tmp_path)
    assert checked.returncode == 1 and "C032" in checked.stderr
    shared = str(tmp_path / "shared")
    checked = limited_cadence("check", str(campaign), "--templates-root", shared, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.j2")
    (tmp_path / "c.campaign").write_text(campaign_reading("pipe.j2"))
    checked = limited_cadence("check", "c.campaign", cwd=tmp_path, timeout=30)
    assert checked.returncode == 1
    assert "C020" in checked.stderr and "not a regular file" in checked.stderr


def test_a_huge_template_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big.j2").write_bytes(b"x" * (1024 * 1024 + 1))
    (tmp_path / "c.campaign").write_text(campaign_reading("big.j2"))
    result = compile_file(tmp_path / "c.campaign")
    assert [d.code for d in result.diagnostics] == ["C020"]
    assert "larger than 1024 KiB" in result.diagnostics[0].message


# ---- hand-edited IR ----------------------------------------------------------------------------
def example_ir() -> dict[str, object]:
    result = compile_source(campaign_with("Hello {{ first_name }}"), "c.campaign")
    assert result.ir is not None
    data: dict[str, object] = json.loads(dump_ir(result.ir))
    return data


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{% if %}", "the body of step `a`: line 1"),
        ("{{ " + "(" * 70 + "x" + ")" * 70 + " }}", "nests too deeply"),
        ("{% include '/etc/passwd' %}", "cannot include"),
        ("{{ secret_field }}", "uses `secret_field`, which is not in person_fields"),
        ("{{ sender.password }}", "uses `sender.password`"),
    ],
)
def test_load_ir_checks_templates_as_the_compiler_does(body: str, message: str) -> None:
    data = example_ir()
    data["steps"][0]["body"]["source"] = body  # type: ignore[index]
    with pytest.raises(IRError, match=_escaped(message)):
        load_ir(json.dumps(data))


def test_a_template_that_cannot_compile_fails_only_its_own_step() -> None:
    result = compile_source(
        campaign_with("Hello").replace(
            "  }\n}", '  }\n  day 2 { email b { send at 10:00 subject "B" body "fine" } }\n}'
        ),
        "c.campaign",
    )
    assert result.ir is not None
    steps = list(result.ir.steps)
    broken_body = steps[0].body.model_copy(update={"source": "{% if %}"})  # type: ignore[union-attr]
    steps[0] = steps[0].model_copy(update={"body": broken_body})
    ir = result.ir.model_copy(update={"steps": steps})  # past load_ir's checks
    renderer = Renderer(ir, {})
    with pytest.raises(RenderError, match="cannot be compiled"):
        renderer.texts("a", {"first_name": "Ada"})
    assert renderer.texts("b", {"first_name": "Ada"}) == {"subject": "B", "body": "fine"}


def test_the_dispatcher_fails_an_expensive_send_quickly_and_delivers_the_rest(
    tmp_path: Path,
) -> None:
    import datetime as dt

    from cadence.runtime.delivery import OutboxTransport
    from cadence.runtime.dispatch import Dispatcher
    from cadence.runtime.engine import Engine
    from cadence.runtime.mailboxes import Sender
    from cadence.runtime.store import Store

    start = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.UTC)
    hostile = EXPENSIVE["nested-loops"][0]
    source = campaign_with("{% if first_name == 'Eve' %}" + hostile + "{% endif %}Hello")
    ir = compile_source(source, "c.campaign").ir
    assert ir is not None
    engine = Engine(Store.open(str(tmp_path / "c.db"), now=start))
    people = [{"email": "eve@example.com", "first_name": "Eve"},
              {"email": "ada@example.com", "first_name": "Ada"}]  # fmt: skip
    engine.enroll(ir, people, start, now=start)
    began = time.monotonic()
    report = Dispatcher(engine, OutboxTransport(tmp_path / "out"), Sender()).run_once(
        start + dt.timedelta(hours=2)
    )
    assert time.monotonic() - began < 30
    assert (report.sent, report.failed) == (1, 1)
    failed = next(e for e in engine.feed() if e.event == "failed")
    assert failed.person == "eve@example.com"
    assert "cannot render" in failed.message and "too much work" in failed.message


def _with_template(path: str) -> str:
    return (
        'campaign "c" {\n  day 1 {\n    email e {\n      send choose\n      subject "s"\n'
        f'      body template "{path}"\n    }}\n  }}\n}}\n'
    )


def test_templates_given_as_text_are_checked_and_nothing_is_read_from_disk(
    tmp_path: Path,
) -> None:
    (tmp_path / "body.txt.j2").write_text("from disk {{ nope }}\n")
    result = compile_source(
        _with_template("mail/body.txt.j2"),
        str(tmp_path / "c.campaign"),
        template_files={"mail/body.txt.j2": "Hi {{ first_nme }}\n"},
    )
    [found] = result.diagnostics
    assert found.code == "C031" and found.span.file == "mail/body.txt.j2"
    assert "did you mean `first_name`?" in (found.help or "")
    fine = compile_source(
        _with_template("./mail/body.txt.j2"),
        template_files={"mail/body.txt.j2": "Hi {{ first_name }}\n"},
    )
    assert fine.ok and fine.ir is not None
    body = fine.ir.steps[0].body
    assert body is not None and body.source == "Hi {{ first_name }}\n"


@pytest.mark.parametrize(
    ("path", "given", "code", "message"),
    [
        ("body.txt.j2", {}, "C020", "no template of that name was given"),
        ("/etc/passwd", {"/etc/passwd": "x"}, "C032", "outside"),
        ("../x.j2", {"../x.j2": "x"}, "C032", "outside"),
        ("a/../../x.j2", {"../x.j2": "x"}, "C032", "outside"),
        ("big.j2", {"big.j2": "x" * (1024 * 1024 + 1)}, "C020", "larger than 1024 KiB"),
        ("bad.j2", {"bad.j2": "caf\udce9"}, "P001", "not UTF-8 text"),
    ],
)
def test_a_given_template_is_held_to_the_rules_of_one_on_disk(
    path: str, given: dict[str, str], code: str, message: str
) -> None:
    result = compile_source(_with_template(path), template_files=given)
    assert not result.ok
    assert [(d.code, message in d.message) for d in result.diagnostics] == [(code, True)]
