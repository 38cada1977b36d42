"""What `cadence plan` does between reading its options and writing rows:
the CLI stays a thin layer, and this stays free of click."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

from cadence.compiler.ir import Campaign
from cadence.files import write_atomically
from cadence.runtime.calendar import UTC, zone
from cadence.runtime.people import (
    PeopleError,
    Person,
    RowProblem,
    format_of,
    open_people,
    read_people,
)
from cadence.runtime.planner import (
    Action,
    PlanError,
    Planner,
    checked_people,
    parse_time,
    plan,
    zone_warnings,
)
from cadence.runtime.writers import PlanFormat, ZoneRows, write_plan


@dataclass(frozen=True)
class Options:
    start: dt.datetime
    overrides: dict[str, dt.time]
    sender: dict[str, str]

    @classmethod
    def parse(
        cls,
        ir: Campaign,
        *,
        start: str,
        overrides: tuple[str, ...],
        sender_name: str = "",
        sender_email: str = "",
        sender_signature: str = "",
        now: dt.datetime | None = None,
    ) -> Options:
        """Options from their command-line text; :class:`PlanError` says what is wrong."""
        return cls(
            parse_start(start, ir, now),
            parse_overrides(overrides),
            {"name": sender_name, "email": sender_email, "signature": sender_signature},
        )


def parse_start(
    text: str, ir: Campaign, now: dt.datetime | None = None, *, label: str = "--start"
) -> dt.datetime:
    """``now``, or ISO 8601; a naive time is read in the campaign's zone
    (``label`` names the value in messages: the flag, or an API's field)."""
    if text.strip().lower() == "now":
        return now or dt.datetime.now(UTC)
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise PlanError(
            f"{label} {text!r} is not an ISO 8601 time, like 2026-03-02T09:00 or "
            "2026-03-02T09:00:00+01:00"
        ) from None
    if not 1900 <= value.year <= 9000:
        raise PlanError(f"{label} {text!r}: campaigns start between the years 1900 and 9000")
    if value.tzinfo is None:
        where = zone(ir.settings.timezone)
        if where is None:
            raise PlanError(f"the campaign's time zone {ir.settings.timezone!r} is not known")
        value = value.replace(tzinfo=where)
    return value


def parse_overrides(items: tuple[str, ...]) -> dict[str, dt.time]:
    found = {}
    for item in items:
        step, sep, time = item.partition("=")
        if not sep or not step.strip():
            raise PlanError(f"--at {item!r}: write STEP=HH:MM, like --at breakup=10:15")
        found[step.strip()] = parse_time(time.strip())
    return found


@dataclass
class PlanReport:
    people_label: str
    actions: int = 0
    people: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    zone_warnings: list[str] = field(default_factory=list)  # people not planned in their zone

    def summary(self) -> str:
        skipped = f", {len(self.problems)} skipped" if self.problems else ""
        return (
            f"planned {self.actions} action{'s' * (self.actions != 1)} for {self.people} "
            f"{'person' if self.people == 1 else 'people'}{skipped}"
        )


def run_plan(
    ir: Campaign,
    people_path: str,
    options: Options,
    format: str,
    render: bool,
    output: str | None,
    *,
    csv_safe: bool = True,
    on_progress: Callable[[int], None] | None = None,
) -> PlanReport:
    """Read people, plan, write rows (atomically to ``output`` when given)."""
    label = "<stdin>" if people_path == "-" else people_path
    report = PlanReport(label)
    try:
        with open_people(people_path) as stream:
            rows = read_people(stream, None if people_path == "-" else format_of(people_path))
            if not render and format in ("jsonl", "csv"):
                planner = Planner(ir, options.start, options.overrides)
                zone_rows = ZoneRows(planner, format, csv_safe=csv_safe)  # type: ignore[arg-type]
                people = checked_people(planner, rows, report.problems.append)

                def write_rows(out: IO[bytes]) -> None:
                    _write_zone_rows(people, zone_rows, out, report, on_progress)

                _write(output, write_rows)
                report.zone_warnings = zone_warnings(planner.fallbacks, planner.default_zone.key)
                return report
            planned = plan(
                ir,
                rows,
                options.start,
                options.overrides,
                render=render,
                sender=options.sender,
                on_problem=report.problems.append,
            )
            actions = _counted(planned, report, on_progress)
            plan_format: PlanFormat = format  # type: ignore[assignment]

            def write(out: IO[bytes]) -> None:
                tests = any(step.variants for step in ir.steps)
                write_plan(actions, out, plan_format, rendered=render, csv_safe=csv_safe,
                           variants=tests)  # fmt: skip

            _write(output, write)
            report.zone_warnings = zone_warnings(planned.zone_fallbacks, ir.settings.timezone)
    except PeopleError as error:  # the file as a whole: say which file
        raise PeopleError(f"{label}: {error}") from None
    return report


def _write(output: str | None, write: Callable[[IO[bytes]], None]) -> None:
    """To standard output, or atomically to the file ``output``."""
    if output is None:
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        write_atomically(Path(output), write)


def _write_zone_rows(
    people: Iterator[tuple[Person, ZoneInfo, str | None]],
    zone_rows: ZoneRows,
    out: IO[bytes],
    report: PlanReport,
    on_progress: Callable[[int], None] | None,
) -> None:
    """Every person's rows from their zone's (the plan without rendering)."""
    out.write(zone_rows.header())
    for person, where, note in people:
        rows, count = zone_rows.rows(person.email.strip(), where, note)
        out.write(rows)
        report.people += 1
        report.actions += count
        if on_progress is not None and report.people % 1000 == 0:
            on_progress(report.people)


def _counted(
    actions: Iterator[Action],
    report: PlanReport,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[Action]:
    person = None
    for action in actions:
        if action.person != person:
            person = action.person
            report.people += 1
            if on_progress is not None and report.people % 1000 == 0:
                on_progress(report.people)
        report.actions += 1
        yield action
