"""Properties every plan has, over generated campaigns, starts and zones."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cadence.compiler import compile_source
from cadence.runtime import plan

ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Stockholm",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "America/St_Johns",
]
OPTIONS = ["send at {t}", "send with previous", "send task"]


@st.composite
def campaigns(draw: st.DrawFn) -> str:
    lines = ['campaign "p" {']
    if draw(st.booleans()):
        lines.append('  timezone recipient else "' + draw(st.sampled_from(ZONES)) + '"')
    else:
        lines.append('  timezone "' + draw(st.sampled_from(ZONES)) + '"')
    if draw(st.booleans()):
        lines.append("  skip weekends")
    if draw(st.booleans()):
        lines.append('  skip holidays "US"')
    days = sorted(set(draw(st.lists(st.integers(2, 30), max_size=5))) | {1})
    previous_is_email, n = False, 0
    for day in days:
        lines.append(f"  day {day} {{")
        for _ in range(draw(st.integers(1, 3))):
            n += 1
            kind = (
                "email" if n == 1 else draw(st.sampled_from(["email", "email", "call", "custom"]))
            )
            if kind == "call":
                lines.append(f"    call s{n} {{ }}")
            elif kind == "custom":
                lines.append(f'    custom s{n} {{ title "t" }}')
            else:
                first = draw(st.sampled_from(["send choose", "send at {t}", "send task"]))
                option = first if n == 1 else draw(st.sampled_from(OPTIONS))
                option = option.format(
                    t=f"{draw(st.integers(0, 23)):02d}:{draw(st.sampled_from([0, 30, 59])):02d}"
                )
                follow = previous_is_email and draw(st.booleans())
                lines.append(
                    f"    email s{n} {{ {option} {'follow up' if follow else ''} "
                    'subject "s" body "b" }'
                )
            previous_is_email = kind == "email"
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


starts = st.datetimes(
    min_value=dt.datetime(2026, 1, 1),
    max_value=dt.datetime(2028, 12, 31),
    timezones=st.sampled_from([ZoneInfo(z) for z in ZONES]),
)
people = st.lists(st.sampled_from([*ZONES, "", "Not/AZone"]), min_size=1, max_size=4)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(campaigns(), starts, people)
def test_plans_respect_start_order_and_replies(
    source: str, start: dt.datetime, zones: list[str]
) -> None:
    result = compile_source(source, "p.campaign")
    assert result.ok and result.ir is not None, result.diagnostics
    ir = result.ir
    persons = [{"email": f"p{i}@example.com", "timezone": z} for i, z in enumerate(zones)]
    actions = list(plan(ir, persons, start))
    day_of = {step.id: step.day for step in ir.steps}
    for person in persons:
        mine = [a for a in actions if a.person == person["email"]]
        # Each step at most once, in campaign order.
        assert [a.step for a in mine] == [step.id for step in ir.steps]
        by_step = {a.step: a for a in mine}
        for action in mine:
            # Nothing is sent before the start instant.
            if action.due is not None:
                assert action.due >= start
            # A reply never goes before the email it replies to.
            replied = by_step.get(action.thread or "")
            if replied is not None and replied.due is not None and action.due is not None:
                assert action.due >= replied.due
        # Later days fall on later dates.
        for a, b in itertools.pairwise(mine):
            if day_of[b.step] > day_of[a.step]:
                assert b.due_date > a.due_date
            elif day_of[b.step] == day_of[a.step]:
                assert b.due_date == a.due_date


@st.composite
def windows(draw: st.DrawFn) -> tuple[dt.time, dt.time]:
    opens = draw(st.integers(0, 23 * 60 + 58))
    closes = draw(st.integers(opens + 1, 23 * 60 + 59))
    return dt.time(*divmod(opens, 60)), dt.time(*divmod(closes, 60))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(campaigns(), windows(), starts, people)
def test_with_a_sending_window_every_automatic_email_goes_inside_it(
    source: str, window: tuple[dt.time, dt.time], start: dt.datetime, zones: list[str]
) -> None:
    opens, closes = window
    line = f"  send window {opens:%H:%M}-{closes:%H:%M}\n"
    result = compile_source(source.replace("{\n", "{\n" + line, 1), "p.campaign")
    assert result.ok and result.ir is not None, result.diagnostics
    persons = [{"email": f"p{i}@example.com", "timezone": z} for i, z in enumerate(zones)]
    actions = list(plan(result.ir, persons, start))
    for person in persons:
        mine = [a for a in actions if a.person == person["email"]]
        by_step = {a.step: a for a in mine}
        for action in mine:
            if action.local is None:
                continue
            assert action.due is not None and action.due >= start
            # Inside the window (or later, where a clock change moved its opening).
            wall = action.local.time().replace(tzinfo=None)
            assert opens <= wall < closes or "clocks go forward" in (action.note or "")
            replied = by_step.get(action.thread or "")
            if replied is not None and replied.due is not None:
                assert action.due >= replied.due
        # A move never brings a step before an earlier day's.
        dated = [a.due_date for a in mine]
        assert dated == sorted(dated)


def test_a_window_opening_in_a_repeated_hour_never_moves_a_send_earlier() -> None:
    from cadence.runtime.calendar import BusinessDays, Instant, Window, into_window

    where = ZoneInfo("America/New_York")  # clocks go back at 02:00 on 1 November 2026
    second = dt.datetime(2026, 11, 1, 1, 15, tzinfo=where, fold=1)  # 06:15Z
    instant = Instant(second.astimezone(dt.UTC), second)
    moved = into_window(instant, Window(dt.time(1, 30), dt.time(17, 0)), where, BusinessDays())
    assert moved.utc == dt.datetime(2026, 11, 1, 6, 30, tzinfo=dt.UTC)  # the second 01:30
