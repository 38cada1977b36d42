"""The planner: every rule of docs/semantics.md §4–§6 and semantics §8, on real dates."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from cadence.compiler import compile_file, compile_source
from cadence.compiler.ir import Campaign
from cadence.runtime import Action, PlanError, plan
from cadence.runtime.people import RowProblem
from cadence.runtime.planner import zone_warnings
from tests.conftest import EXAMPLES

NY = ZoneInfo("America/New_York")
UTC = dt.UTC
ADA = {"email": "ada@example.com", "first_name": "Ada", "company": "Acme"}


def campaign(body: str, settings: str = 'timezone "America/New_York"') -> Campaign:
    result = compile_source(f'campaign "t" {{\n{settings}\n{body}\n}}\n', "t.campaign")
    assert result.ir is not None, result.diagnostics
    return result.ir


def email(name: str, option: str, extra: str = "") -> str:
    return f'email {name} {{ {option} subject "S {name}" body "B {name}" {extra} }}\n'


def rows(
    ir: Campaign, start: dt.datetime, people: list[dict[str, str]] | None = None, **kw: object
) -> dict[str, Action]:
    found = list(plan(ir, people or [{"email": "a@example.com"}], start, **kw))  # type: ignore[arg-type]
    return {a.step: a for a in found}


def local(action: Action) -> str:
    assert action.local is not None
    return f"{action.local:%a %Y-%m-%d %H:%M %z}"


def test_spec_example_for_one_person() -> None:
    ir = compile_file(EXAMPLES / "q1-outbound.campaign").ir
    assert ir is not None
    start = dt.datetime(2026, 1, 2, 10, 0, tzinfo=NY)  # a Friday
    found = rows(ir, start, [ADA])
    assert [(a.step, a.kind, a.due_date.isoformat()) for a in found.values()] == [
        ("intro", "email", "2026-01-02"),
        ("bump", "email", "2026-01-06"),  # day 3: Mon 5th is day 2, weekends skipped
        ("ring", "call", "2026-01-06"),
        ("connect", "inmail", "2026-01-08"),
        ("research", "custom", "2026-01-08"),
        ("breakup", "email", "2026-01-08"),
        ("personal", "email_task", "2026-01-13"),
    ]
    assert found["intro"].due == dt.datetime(2026, 1, 2, 15, 0, tzinfo=UTC)
    assert local(found["bump"]) == "Tue 2026-01-06 10:00 -0500"  # the time of day of `intro`
    assert found["bump"].thread == "intro"
    assert local(found["breakup"]) == "Thu 2026-01-08 09:30 -0500"
    assert found["ring"].due is None and found["personal"].due is None


def test_days_are_calendar_days_without_skip_weekends() -> None:
    ir = campaign(
        "day 1 {" + email("a", "send choose") + "} day 3 {" + email("b", "send at 08:00") + "}"
    )
    found = rows(ir, dt.datetime(2026, 1, 2, 10, tzinfo=NY))  # Friday
    assert found["b"].due_date == dt.date(2026, 1, 4)  # Sunday counts


def test_start_on_a_weekend_moves_to_monday_at_the_same_time() -> None:
    ir = campaign(
        "day 1 {" + email("a", "send choose") + "} day 2 { call c { } }",
        'timezone "America/New_York"\nskip weekends',
    )
    found = rows(ir, dt.datetime(2026, 1, 3, 11, 15, tzinfo=NY))  # Saturday
    assert local(found["a"]) == "Mon 2026-01-05 11:15 -0500"
    assert (
        found["a"].note == "day 1 moved from Sat 2026-01-03 to Mon 2026-01-05: weekends are skipped"
    )
    assert found["c"].due_date == dt.date(2026, 1, 6)


def test_holidays_do_not_count_and_move_the_start() -> None:
    ir = campaign(
        "day 1 {" + email("a", "send choose") + "} day 2 {" + email("b", "send at 09:00") + "}",
        'timezone "America/New_York"\nskip weekends\nskip holidays "US"',
    )
    # Friday 16 Jan 2026; Monday 19th is Martin Luther King Jr. Day.
    found = rows(ir, dt.datetime(2026, 1, 16, 10, tzinfo=NY))
    assert found["b"].due_date == dt.date(2026, 1, 20)
    on_holiday = rows(ir, dt.datetime(2026, 1, 19, 10, tzinfo=NY))
    assert local(on_holiday["a"]) == "Tue 2026-01-20 10:00 -0500"
    assert "holidays are skipped" in (on_holiday["a"].note or "")


def test_a_time_that_passed_at_launch_is_sent_at_the_start() -> None:
    ir = campaign("day 1 {" + email("a", "send at 09:00") + "}")
    found = rows(ir, dt.datetime(2026, 1, 6, 11, 0, tzinfo=NY))
    assert local(found["a"]) == "Tue 2026-01-06 11:00 -0500"
    assert found["a"].note == "09:00 had passed at launch: sent at start"


def test_spring_forward_gap_moves_the_time_forward() -> None:
    ir = campaign("day 1 { call c { } } day 2 {" + email("a", "send at 02:30") + "}")
    found = rows(ir, dt.datetime(2026, 3, 7, 9, tzinfo=NY))  # day 2 is Sun 8 March
    assert local(found["a"]) == "Sun 2026-03-08 03:30 -0400"
    assert found["a"].note == (
        "02:30 does not exist on 2026-03-08 in America/New_York (clocks go forward): sent at 03:30"
    )


def test_fall_back_takes_the_first_of_two_times() -> None:
    ir = campaign("day 1 { call c { } } day 2 {" + email("a", "send at 01:30") + "}")
    found = rows(ir, dt.datetime(2026, 10, 31, 9, tzinfo=NY))  # day 2 is Sun 1 November
    assert local(found["a"]) == "Sun 2026-11-01 01:30 -0400"  # EDT, the first 01:30
    assert found["a"].due == dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_time_of_day_is_kept_across_a_dst_change() -> None:
    ir = campaign(
        "day 1 {" + email("a", "send choose") + "} day 4 {" + email("b", "send with previous") + "}"
    )
    found = rows(ir, dt.datetime(2026, 3, 6, 9, tzinfo=NY))
    assert local(found["a"]) == "Fri 2026-03-06 09:00 -0500"
    assert local(found["b"]) == "Mon 2026-03-09 09:00 -0400"


def test_recipient_zones_with_missing_and_invalid_zones() -> None:
    ir = campaign(
        "day 1 { call c { } } day 2 {" + email("a", "send at 09:00") + "}",
        'timezone recipient else "Europe/London"',
    )
    people = [
        {"email": "tokyo@example.com", "timezone": "Asia/Tokyo"},
        {"email": "none@example.com"},
        {"email": "bad@example.com", "timezone": "Mars/Olympus"},
    ]
    found = list(plan(ir, people, dt.datetime(2026, 1, 5, 12, tzinfo=UTC)))
    sends = {a.person: a for a in found if a.step == "a"}
    # 12:00 UTC is 21:00 in Tokyo: day 1 is the 5th there too.
    assert local(sends["tokyo@example.com"]) == "Tue 2026-01-06 09:00 +0900"
    assert local(sends["none@example.com"]) == "Tue 2026-01-06 09:00 +0000"
    assert sends["none@example.com"].note == "no timezone given: using Europe/London"
    assert local(sends["bad@example.com"]) == "Tue 2026-01-06 09:00 +0000"
    assert sends["bad@example.com"].note == (
        'timezone "Mars/Olympus" is not a known zone: using Europe/London'
    )


def test_a_zone_written_almost_right_is_said_once_with_what_it_may_mean() -> None:
    ir = campaign("day 1 {" + email("a", "send at 09:00") + "}",
                  'timezone recipient else "Europe/Stockholm"')  # fmt: skip
    people = [{"email": f"p{n}@example.com", "timezone": "europe/paris"} for n in range(3)]
    people += [{"email": "q@example.com", "timezone": " "}, {"email": "r@example.com"}]
    people += [{"email": "s@example.com", "timezone": "Europe/Paris"}]
    planned = plan(ir, people, dt.datetime(2026, 1, 5, 7, tzinfo=UTC))
    notes = {a.person: a.note for a in planned}
    assert notes["p0@example.com"] == (
        'timezone "europe/paris" is not a known zone: using Europe/Stockholm'
    )
    assert notes["s@example.com"] is None
    assert zone_warnings(planned.zone_fallbacks, "Europe/Stockholm") == [
        '3 people: timezone "europe/paris" is not a known zone: using Europe/Stockholm '
        '(did you mean "Europe/Paris"?)',
        "2 people: no timezone given: using Europe/Stockholm",
    ]


def test_same_day_rule_and_chains_through_several_days() -> None:
    ir = campaign(
        "day 1 {" + email("a", "send at 08:15") + "}"
        "day 3 {" + email("b", "send at 10:00") + email("c", "send with previous") + "}"
        "day 4 {" + email("d", "send with previous") + "}"
    )
    found = rows(ir, dt.datetime(2026, 1, 5, 7, tzinfo=NY))
    assert local(found["c"]) == "Wed 2026-01-07 08:15 -0500"
    assert found["c"].note == "same day as `b`: sent at the time of day-1 email `a`"
    # The previous email of `d` is `c`, whose own time is `a`'s: recursively.
    assert local(found["d"]) == "Thu 2026-01-08 08:15 -0500"


def test_anchor_on_a_task_email_waits() -> None:
    ir = campaign(
        "day 1 {" + email("t", "send task") + "} day 2 {" + email("w", "send with previous") + "}"
    )
    found = rows(ir, dt.datetime(2026, 1, 5, 9, tzinfo=NY))
    assert found["t"].kind == "email_task" and found["t"].due is None
    assert found["w"].kind == "email" and found["w"].due is None
    assert found["w"].waits_for == "t"
    assert found["w"].due_date == dt.date(2026, 1, 6)


def test_launch_override_moves_the_step_and_everything_aligned_with_it() -> None:
    ir = campaign(
        "day 1 {"
        + email("a", "send at 09:00")
        + "} day 2 {"
        + email("b", "send with previous")
        + "}"
    )
    found = rows(ir, dt.datetime(2026, 1, 5, 7, tzinfo=NY), overrides={"a": dt.time(10, 15)})
    assert local(found["a"]) == "Mon 2026-01-05 10:15 -0500"
    assert local(found["b"]) == "Tue 2026-01-06 10:15 -0500"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("nope", "no step `nope`"),
        ("b", "step `b` is not sent at a fixed time"),
    ],
)
def test_bad_overrides_are_refused(override: str, message: str) -> None:
    ir = campaign(
        "day 1 {"
        + email("a", "send at 09:00")
        + "} day 2 {"
        + email("b", "send with previous")
        + "}"
    )
    with pytest.raises(PlanError, match=message):
        rows(ir, dt.datetime(2026, 1, 5, tzinfo=NY), overrides={override: dt.time(9)})


def test_a_naive_start_is_refused_by_the_api() -> None:
    ir = campaign("day 1 {" + email("a", "send choose") + "}")
    with pytest.raises(PlanError, match="time zone"):
        rows(ir, dt.datetime(2026, 1, 5, 9))


def test_a_reply_is_held_until_the_email_it_replies_to() -> None:
    ir = campaign(
        "day 1 {"
        + email("a", "send choose")
        + "} day 2 {"
        + email("b", "send at 14:00")
        + email("c", "send at 09:00", "follow up")
        + "}"
    )
    found = rows(ir, dt.datetime(2026, 1, 5, 8, tzinfo=NY))
    assert found["c"].due == found["b"].due
    assert "held until `b` is sent" in (found["c"].note or "")


def test_people_who_cannot_be_planned_are_reported_and_skipped() -> None:
    ir = compile_file(EXAMPLES / "q1-outbound.campaign").ir
    assert ir is not None
    people = [
        ADA,
        {"first_name": "NoMail", "company": "X"},
        {**ADA, "email": "not-an-email"},
        {"email": "b@example.com", "first_name": "B"},
        {**ADA, "email": "ADA@example.com"},
        RowProblem(6, "not JSON"),
    ]
    problems: list[RowProblem] = []
    found = list(
        plan(ir, people, dt.datetime(2026, 1, 5, 9, tzinfo=NY), on_problem=problems.append)
    )
    assert {a.person for a in found} == {"ada@example.com"}
    assert [(p.line, p.message) for p in problems] == [
        (2, "no email"),
        (3, "`not-an-email` is not an email address: An email address must have an @-sign."),
        (4, "missing field `company`"),
        (5, "`ADA@example.com` is listed twice"),
        (6, "not JSON"),
    ]
    # Without a handler they are values too: the plan goes on past them.
    planned = plan(ir, people, dt.datetime(2026, 1, 5, 9, tzinfo=NY))
    assert {a.person for a in planned} == {"ada@example.com"}
    assert planned.problems == problems


def test_rendering_subjects_bodies_and_follow_up_quotes() -> None:
    ir = compile_file(EXAMPLES / "q1-outbound.campaign").ir
    assert ir is not None
    sender = {"name": "Sam", "email": "sam@example.com", "signature": "-- Sam"}
    found = {
        a.step: a
        for a in plan(ir, [ADA], dt.datetime(2026, 1, 2, 10, tzinfo=NY), render=True, sender=sender)
    }
    assert found["intro"].subject == "Quick question, Ada"
    assert found["intro"].body == "Hi Ada,\n\nHow does Acme handle ...?"
    bump = found["bump"]
    assert bump.subject == "Re: Quick question, Ada"
    assert bump.body is not None
    assert bump.body.startswith("Hi Ada,\n\nBumping this to the top")
    assert bump.body.endswith(
        "On Fri, 02 Jan 2026 at 10:00, Sam <sam@example.com> wrote:\n"
        "> Hi Ada,\n>\n> How does Acme handle ...?\n"
    )
    assert found["ring"].body == "Ask about Acme hiring plans"
    assert found["research"].subject == "Check funding news for Acme"
    assert found["personal"].subject == "One more idea for Acme"  # a task, prefilled


def test_without_render_nothing_is_rendered() -> None:
    ir = compile_file(EXAMPLES / "q1-outbound.campaign").ir
    assert ir is not None
    found = list(plan(ir, [ADA], dt.datetime(2026, 1, 2, 10, tzinfo=NY)))
    assert all(a.subject is None and a.body is None for a in found)


def test_with_previous_follows_the_time_its_email_is_actually_sent() -> None:
    ir = campaign(
        "day 1 {"
        + email("a", "send at 08:00")
        + "} day 2 { call c { } } day 3 {"
        + email("b", "send with previous")
        + "}"
    )
    # 08:00 had passed at the 10:15 start, so `a` goes at 10:15: `b` follows that.
    found = rows(ir, dt.datetime(2026, 1, 5, 10, 15, tzinfo=NY))
    assert local(found["a"]) == "Mon 2026-01-05 10:15 -0500"
    assert local(found["b"]) == "Wed 2026-01-07 10:15 -0500"
    gap = campaign(
        "day 1 { call c { } } day 2 {"
        + email("a", "send at 02:30")
        + "} day 3 {"
        + email("b", "send with previous")
        + "}"
    )
    found = rows(gap, dt.datetime(2026, 3, 7, 9, tzinfo=NY))  # `a` on 8 March, in the gap
    assert local(found["a"]) == "Sun 2026-03-08 03:30 -0400"
    assert local(found["b"]) == "Mon 2026-03-09 03:30 -0400"


def test_a_template_that_would_exhaust_the_machine_skips_the_person() -> None:
    ir = campaign('day 1 { email a { send choose subject "s" body "{{ \'x\' * 10000000000 }}" } }')
    problems: list[RowProblem] = []
    found = list(
        plan(
            ir,
            [{"email": "a@example.com"}],
            dt.datetime(2026, 1, 5, 9, tzinfo=NY),
            render=True,
            on_problem=problems.append,
        )
    )
    assert found == []
    assert "cannot render step `a`" in problems[0].message
