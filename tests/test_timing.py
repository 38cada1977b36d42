"""When each email is sent, resolved at compile time: every rule of docs/semantics.md §4."""

from __future__ import annotations

from cadence.compiler import compile_source
from cadence.compiler.ir import Campaign, Timing


def compiled(days: str, settings: str = "") -> Campaign:
    result = compile_source(f'campaign "t" {{\n{settings}\n{days}\n}}\n', "t.campaign")
    assert result.ok, result.diagnostics
    assert result.ir is not None
    return result.ir


def email(name: str, option: str, extra: str = "") -> str:
    return f'email {name} {{ {option} subject "s" body "b" {extra} }}\n'


def timing(campaign: Campaign, step: str) -> Timing:
    found = next(s for s in campaign.steps if s.id == step)
    assert found.timing is not None
    return found.timing


def test_send_choose_is_the_start_instant() -> None:
    ir = compiled("day 1 {" + email("a", "send choose") + "}")
    assert timing(ir, "a") == Timing(kind="start")


def test_send_at_is_that_time_on_the_day() -> None:
    ir = compiled("day 1 {" + email("a", "send at 9:05") + "}")
    assert timing(ir, "a") == Timing(kind="at", time="09:05", step="a")


def test_send_task_is_a_task() -> None:
    ir = compiled("day 1 {" + email("a", "send task") + "}")
    assert timing(ir, "a") == Timing(kind="task", step="a")


def test_with_previous_takes_the_previous_days_time_recursively() -> None:
    ir = compiled(
        "day 1 {" + email("a", "send at 08:15") + "}"
        "day 2 {" + email("b", "send with previous") + "}"
        "day 4 {" + email("c", "send with previous") + "}"
    )
    assert timing(ir, "b") == Timing(kind="at", time="08:15", step="a", via=["a"])
    assert timing(ir, "c") == Timing(kind="at", time="08:15", step="a", via=["b", "a"])


def test_with_previous_after_send_choose_is_the_start_time_of_day() -> None:
    ir = compiled("day 1 {" + email("a", "send choose") + "} day 3 {"
                  + email("b", "send with previous") + "}")  # fmt: skip
    assert timing(ir, "b") == Timing(kind="start", via=["a"])


def test_same_day_email_takes_the_previous_days_email_instead() -> None:
    ir = compiled(
        "day 1 {" + email("a", "send choose") + "}"
        "day 3 {" + email("b", "send at 10:00") + email("c", "send with previous") + "}"
    )
    assert timing(ir, "c") == Timing(
        kind="start", via=["a"], note="same day as `b`: sent at the time of day-1 email `a`"
    )


def test_same_day_rule_takes_the_last_email_of_the_nearest_earlier_day_with_one() -> None:
    ir = compiled(
        "day 1 {" + email("a1", "send at 08:00") + email("a2", "send at 11:00") + "}"
        "day 2 { call c { } }"
        "day 3 {" + email("b", "send at 15:00") + email("d", "send with previous") + "}"
    )
    assert timing(ir, "d").time == "11:00"
    assert timing(ir, "d").via == ["a2"]


def test_previous_email_skips_tasks_between() -> None:
    ir = compiled(
        "day 1 {" + email("a", "send at 07:30") + "}"
        'day 2 { call ring { } inmail hi { message "m" } }'
        "day 3 {" + email("b", "send with previous") + "}"
    )
    assert timing(ir, "b") == Timing(kind="at", time="07:30", step="a", via=["a"])


def test_anchor_on_a_task_email_waits_for_that_task() -> None:
    ir = compiled(
        "day 1 {" + email("t", "send task") + "}"
        "day 2 {" + email("b", "send with previous") + "}"
        "day 3 {" + email("c", "send with previous") + "}"
    )
    assert timing(ir, "b").kind == "waits_for_task" and timing(ir, "b").step == "t"
    assert timing(ir, "c") == Timing(
        kind="waits_for_task",
        step="t",
        via=["b", "t"],
        note="waits for task email `t`: sent at the time of day it is sent",
    )


def test_day_one_with_no_email_before_is_sent_at_the_start() -> None:
    result = compile_source(
        'campaign "t" { day 1 { call c { } ' + email("e", "send with previous") + "} }", "t"
    )
    assert result.ok and result.ir is not None
    assert [d.code for d in result.diagnostics] == ["C005"]
    assert timing(result.ir, "e").kind == "start"


def test_follow_up_replies_to_the_previous_step() -> None:
    ir = compiled("day 1 {" + email("a", "send choose") + "} day 2 {"
                  + email("b", "send with previous", "follow up") + "}")  # fmt: skip
    step = next(s for s in ir.steps if s.id == "b")
    assert step.reply_to == "a"
    assert {(e.source, e.target, e.kind) for e in ir.edges} == {
        ("a", "b", "next"), ("b", "a", "same_time"), ("b", "a", "reply_to"),
    }  # fmt: skip


def test_person_fields_are_required_fields_then_those_templates_use() -> None:
    ir = compiled(
        'day 1 { email a { send choose subject "{{ company }} {{ sender.name }}" '
        'body "{{ last_name }} {{ role }}" } }',
        "requires role",
    )
    assert ir.person_fields == ["role", "company", "last_name"]
