"""The planner: a compiled campaign, people and a start instant in; every
action with its time out (docs/semantics.md §4–§6, §8).

Per-campaign work happens once (steps, holidays, overrides, compiled
templates) and per-zone work once per zone (day dates and instants); a person
costs only the rows it yields. :func:`plan` streams: people are read and
actions yielded one person at a time.

The plan is the projection that assumes every task is closed on its due day
(semantics §6), in time for the steps after it that day.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from cadence.compiler.ir import Campaign, Step
from cadence.compiler.zones import suggest_zone
from cadence.errors import CadenceError
from cadence.runtime.calendar import (
    UTC,
    BusinessDays,
    Instant,
    Window,
    into_window,
    place,
    zone,
)
from cadence.runtime.people import PeopleChecker, Person, RowProblem
from cadence.templating import names_used

if TYPE_CHECKING:
    from pydantic import TypeAdapter

    from cadence.runtime.render import Renderer

ActionKind = Literal["email", "email_task", "call", "inmail", "custom"]
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class Action:
    """One thing the campaign does for one person.

    ``due`` is the UTC instant of an automatic send (``None`` for tasks and for
    emails waiting on a task), ``local`` the same instant in the person's zone
    (its date is the day the send goes out: plans write it as ``send_date``),
    ``due_date`` the step's local date — the day a task is due, and the day an
    email belongs to even when a sending window moved it past that day.
    """

    person: str
    step: str
    day: int
    kind: ActionKind
    due: dt.datetime | None
    local: dt.datetime | None
    due_date: dt.date
    thread: str | None
    waits_for: str | None
    note: str | None
    subject: str | None = None
    body: str | None = None
    variant: str | None = None  # the version of an email this person gets, in a test

    # Serialised like the pydantic models at the other boundaries (IR,
    # diagnostics), while planning still makes plain slotted objects: an
    # action is made once per person and step, a million times in a big plan.
    def model_dump(self, *, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
        """The action as a dict (``mode="json"``: instants as ISO 8601 text)."""
        dumped: dict[str, Any] = _adapter().dump_python(self, mode=mode)
        return dumped

    def model_dump_json(self) -> str:
        """The action as JSON text (as :meth:`model_dump` with ``mode="json"``)."""
        return _adapter().dump_json(self).decode()

    @classmethod
    def model_validate(cls, data: Any) -> Action:
        """An action from a dict (as :meth:`model_dump` makes), validated."""
        return _adapter().validate_python(data)

    @classmethod
    def model_validate_json(cls, data: str | bytes) -> Action:
        """An action from JSON text (as :meth:`model_dump_json` writes), validated."""
        return _adapter().validate_json(data)

    @classmethod
    def model_json_schema(cls) -> dict[str, Any]:
        """The JSON Schema of an action as :meth:`model_dump_json` writes it."""
        return _adapter().json_schema()


@functools.cache
def _adapter() -> TypeAdapter[Action]:
    from pydantic import TypeAdapter

    return TypeAdapter(Action)


class PlanError(CadenceError, ValueError):
    """Inputs the plan cannot start from: a naive start, a bad override."""


@dataclass(frozen=True, slots=True)
class _Slot:
    """An action with everything known but the person: shared by everyone in a zone."""

    step: str
    day: int
    kind: ActionKind
    due: dt.datetime | None
    local: dt.datetime | None
    due_date: dt.date
    thread: str | None
    waits_for: str | None
    note: str | None


def parse_time(text: str) -> dt.time:
    """``HH:MM`` on a 24-hour clock."""
    if not re.fullmatch(r"[0-9]{1,2}:[0-9]{2}", text):
        raise PlanError(f"`{text}` is not a time: write HH:MM, like 09:30")
    hours, _, minutes = text.partition(":")
    if int(hours) > 23 or int(minutes) > 59:
        raise PlanError(f"`{text}` is not a time of day (00:00 to 23:59)")
    return dt.time(int(hours), int(minutes))


def _times(overrides: object) -> dict[str, dt.time]:
    """Overrides as the API takes them (step name → ``datetime.time`` or
    ``"HH:MM"``), checked: anything else is a :class:`PlanError`."""
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise PlanError(f"overrides map step names to times, not {_kind(overrides)}")
    found = {}
    for name, value in overrides.items():
        if not isinstance(name, str):
            raise PlanError(f"overrides map step names to times: {name!r} is not a step name")
        if isinstance(value, str):
            value = parse_time(value)
        elif not isinstance(value, dt.time) or value.tzinfo is not None:
            raise PlanError(
                f"the time of `{name}`: {value!r} is not a time of day "
                '(a datetime.time without a zone, or "HH:MM")'
            )
        found[name] = value
    return found


def _fallback_note(text: str, default: str) -> str:
    """Why a person's own zone is not used: their field is empty, or names no
    zone. (What it may have meant is said once per value, by zone_warnings:
    a suggestion per person would cost a search of every zone name each.)"""
    if not text:
        return f"no timezone given: using {default}"
    # Shown escaped: a people file's text may hold anything (a NUL, a line
    # break), and the note goes into plans, the feed and a database.
    shown = _CONTROL.sub(lambda c: c.group().encode("unicode_escape").decode(), text[:100])
    return f'timezone "{shown}" is not a known zone: using {default}'


def zone_warnings(fallbacks: Mapping[str, int], default: str, most: int = 20) -> list[str]:
    """One line per value of the people's `timezone` field that could not be
    used (``fallbacks``: value -> people), the most frequent first."""
    lines = []
    ranked = sorted(fallbacks.items(), key=lambda item: (-item[1], item[0]))
    for text, count in ranked[:most]:
        people = f"{count} {'person' if count == 1 else 'people'}"
        guess = suggest_zone(text) if text else None
        meant = f' (did you mean "{guess}"?)' if guess else ""
        lines.append(f"{people}: {_fallback_note(text, default)}{meant}")
    if len(ranked) > most:
        lines.append(f"{len(ranked) - most} more timezone values not known: using {default}")
    return lines


def _check_people(people: object) -> None:
    if isinstance(people, (str, bytes, Mapping)) or not isinstance(people, Iterable):
        raise PlanError(f"people are an iterable of mappings of fields, not {_kind(people)}")


def _kind(value: object) -> str:
    return f"{type(value).__name__} {value!r:.40}"


class Planner:
    """The per-campaign part of a plan: build once, then ask for each person."""

    def __init__(
        self,
        ir: Campaign,
        start: dt.datetime,
        overrides: Mapping[str, dt.time | str] | None = None,
    ) -> None:
        if not isinstance(ir, Campaign):
            raise PlanError(f"a plan needs a compiled campaign (an IR Campaign), not {_kind(ir)}")
        if not isinstance(start, dt.datetime):
            raise PlanError(f"the start is a datetime with a time zone, not {_kind(start)}")
        if start.tzinfo is None or start.utcoffset() is None:
            raise PlanError("the start instant needs a time zone (or use the campaign's)")
        self.ir = ir
        if not 1900 <= start.year <= 9000:
            raise PlanError("campaigns start between the years 1900 and 9000")
        self.start = start.astimezone(UTC)
        self.overrides = _times(overrides)
        self._check_overrides()
        settings = ir.settings
        default = zone(settings.timezone)
        if default is None:
            raise PlanError(f"the campaign's time zone {settings.timezone!r} is not known")
        self.default_zone = default
        self.days = BusinessDays(settings.skip_weekends, settings.holidays)
        self.day_numbers = sorted({step.day for step in ir.steps})
        subjects = [s.subject for s in ir.steps] + [v.subject for s in ir.steps for v in s.variants]
        self.header_fields = names_used(subject.source for subject in subjects if subject)
        self.windows = {step.id: Window.of(step.window) for step in ir.steps if step.window}
        self.tests = [
            (step.id, [(v.name, v.weight) for v in step.variants])
            for step in ir.steps
            if step.variants
        ]
        # What pick_variant does, with each test's part of the hash taken once.
        who = variant_key(ir)
        self._pickers = [_Picker(who, step, weights) for step, weights in self.tests]
        self._slots: dict[str, tuple[_Slot, ...]] = {}
        # People whose own zone could not be used, by what their field said
        # ("": nothing): said once per value at the end (zone_warnings).
        self.fallbacks: Counter[str] = Counter()

    def _check_overrides(self) -> None:
        steps = {step.id: step for step in self.ir.steps}
        for name in self.overrides:
            step = steps.get(name)
            if step is None:
                known = ", ".join(s.id for s in self.ir.steps if s.send == "at") or "none"
                raise PlanError(
                    f"the time of `{name}`: no step `{name}` (steps sent at a time: {known})"
                )
            if step.send != "at":
                raise PlanError(f"the time of `{name}`: step `{name}` is not sent at a fixed time")

    # ---- zones ---------------------------------------------------------------------
    def zone_for(self, fields: Mapping[str, Any]) -> tuple[ZoneInfo, str | None]:
        """The person's zone, and a note when their own could not be used."""
        if not self.ir.settings.timezone_from_recipient:
            return self.default_zone, None
        name = fields.get("timezone")
        text = "" if name is None else str(name).strip()
        found = zone(text) if text else None
        if found is not None:
            return found, None
        self.fallbacks[text] += 1
        return self.default_zone, _fallback_note(text, self.default_zone.key)

    def slots(self, where: ZoneInfo) -> tuple[_Slot, ...]:
        """Every step's timing for people in ``where`` (computed once per zone)."""
        found = self._slots.get(where.key)
        if found is None:
            try:
                found = self._slots[where.key] = tuple(self._zone_slots(where))
            except OverflowError:
                raise PlanError("the campaign's days run past the year 9999") from None
        return found

    def _zone_slots(self, where: ZoneInfo) -> Iterator[_Slot]:
        local_start = self.start.astimezone(where)
        first = self.days.first_counting(local_start.date())
        start = Instant(self.start, local_start)
        moved = None
        if first != local_start.date():
            start = place(first, local_start.time().replace(tzinfo=None), where)
            why = "weekends are skipped" if local_start.weekday() >= 5 else "holidays are skipped"
            moved = (
                f"day 1 moved from {local_start.date():%a %Y-%m-%d} to {first:%a %Y-%m-%d}: {why}"
            )
        dates = self.days.dates(first, self.day_numbers)
        done: dict[str, _Slot] = {}
        for step in self.ir.steps:
            slot = self._slot(step, dates[step.day], start, where, done)
            if moved and step.day == 1:
                slot = _with_note(slot, moved)
            slot = _after_replied(slot, done.get(slot.thread or ""))
            window = self.windows.get(slot.step)
            if window is not None:
                slot = _in_window(slot, window, where, self.days)
            done[slot.step] = slot
            yield slot

    def _slot(
        self, step: Step, date: dt.date, start: Instant, where: ZoneInfo, done: dict[str, _Slot]
    ) -> _Slot:
        def make(
            kind: ActionKind,
            instant: Instant | None = None,
            waits: str | None = None,
            *notes: str | None,
        ) -> _Slot:
            note = "; ".join(n for n in notes if n) or None
            due = instant.utc if instant else None
            local = instant.local if instant else None
            return _Slot(step.id, step.day, kind, due, local, date, step.reply_to, waits, note)

        timing = step.timing
        if step.kind != "email" or timing is None:
            return make(step.kind)
        if timing.kind == "task":
            return make("email_task")
        if timing.kind == "waits_for_task":
            return make("email", None, timing.step, timing.note)
        anchor = done.get(timing.via[0]) if timing.via else None
        if anchor is not None and anchor.local is not None:
            # semantics §4: the time of day at which the email it aligns with is actually
            # sent (after that email's own passed-time, gap or hold).
            wall = anchor.local.replace(tzinfo=None).time()
            instant = place(date, wall, where)
            if instant.utc < start.utc:
                passed = f"{wall:%H:%M} had passed at launch: sent at start"
                return make("email", start, None, timing.note, passed)
            return make("email", instant, None, timing.note, instant.note)
        if timing.kind == "start":
            if step.day == 1:
                return make("email", start, None, timing.note)
            instant = place(date, start.local.time().replace(tzinfo=None), where)
            return make("email", instant, None, timing.note, instant.note)
        wall = self.overrides.get(timing.step or "") or parse_time(timing.time or "")
        instant = place(date, wall, where)
        if instant.utc < start.utc:
            passed = f"{wall:%H:%M} had passed at launch: sent at start"
            return make("email", start, None, timing.note, passed)
        return make("email", instant, None, timing.note, instant.note)

    # ---- people ----------------------------------------------------------------------
    def actions(self, email: str, fields: Mapping[str, Any]) -> list[Action]:
        return self.actions_in(email, *self.zone_for(fields))

    def actions_in(
        self,
        email: str,
        where: ZoneInfo,
        zone_note: str | None,
        choice: tuple[str, ...] | None = None,
    ) -> list[Action]:
        """The actions of a person in ``where`` (``zone_note``: why it is not
        their own zone; ``choice``: their variants, when known already)."""
        chosen: dict[str, str] = {}
        if self.tests:
            steps = (step for step, _ in self.tests)
            chosen = dict(zip(steps, choice or self.variants_of(email), strict=True))
        return [
            Action(
                email,
                s.step,
                s.day,
                s.kind,
                s.due,
                s.local,
                s.due_date,
                s.thread,
                s.waits_for,
                _join(zone_note, s.note),
                variant=chosen.get(s.step),
            )
            for s in self.slots(where)
        ]

    def variants_of(self, email: str) -> tuple[str, ...]:
        """The variant of each tested email (in campaign order) this person gets
        (as :func:`pick_variant` picks it)."""
        key = email.strip().lower().encode("utf-8")
        return tuple([picker.pick(key) for picker in self._pickers])


class _Picker:
    """:func:`pick_variant` for one email's test: the hash of the campaign's and
    the step's names taken once (a person adds only their address), and the
    weights as running totals."""

    TABLE = 10_000  # weights summing to at most this: a name per point, looked up

    def __init__(self, campaign: str, step: str, weights: list[tuple[str, int]]) -> None:
        self.hasher = hashlib.sha256("\x1f".join((campaign, step, "")).encode("utf-8"))
        self.names = [name for name, _ in weights]
        self.bounds = list(itertools.accumulate(weight for _, weight in weights))
        self.total = self.bounds[-1]
        self.at: Callable[[int], str]
        if self.total <= self.TABLE:
            table = [name for name, weight in weights for _ in range(weight)]
            self.at = table.__getitem__
        else:
            self.at = lambda point: self.names[bisect.bisect_right(self.bounds, point)]

    def pick(self, key: bytes) -> str:
        """The variant of the person whose address, as the key, is ``key``."""
        hasher = self.hasher.copy()
        hasher.update(key)
        return self.at(int.from_bytes(hasher.digest(), "big") % self.total)


def variant_key(ir: Campaign) -> str:
    """What a campaign's variants are picked by: its identity — its `id`,
    else its name — so that renaming a campaign that keeps its `id` keeps
    everyone's variants."""
    return ir.settings.id or ir.name


def pick_variant(campaign: str, step: str, email: str, weights: list[tuple[str, int]]) -> str:
    """A person's variant of an email (docs/semantics.md §4.6): from a hash of
    the campaign's identity (:func:`variant_key`), the step's name and the
    address (case and spaces aside), so the same person gets the same variant
    on every plan, version and machine; across people the shares follow the
    weights. (A planner keeps a picker per test: the same computation, its
    fixed part done once.)"""
    return _Picker(campaign, step, weights).pick(email.strip().lower().encode("utf-8"))


def _in_window(slot: _Slot, window: Window, where: ZoneInfo, days: BusinessDays) -> _Slot:
    """The send moved into its sending window, after every other rule (semantics §4.5)."""
    if slot.due is None or slot.local is None:
        return slot
    moved = into_window(Instant(slot.due, slot.local), window, where, days)
    if moved.utc == slot.due:
        return slot
    return _Slot(
        slot.step,
        slot.day,
        slot.kind,
        moved.utc,
        moved.local,
        slot.due_date,  # the step's date, as for a held reply: `local` says when it goes
        slot.thread,
        slot.waits_for,
        _join(slot.note, moved.note),
    )


def _after_replied(slot: _Slot, replied: _Slot | None) -> _Slot:
    """A reply never goes before the email it replies to: hold it until then."""
    if replied is None or slot.due is None or replied.due is None or slot.due >= replied.due:
        return slot
    note = _join(slot.note, f"held until `{replied.step}` is sent: a reply follows its email")
    return _Slot(
        slot.step,
        slot.day,
        slot.kind,
        replied.due,
        replied.local,
        slot.due_date,
        slot.thread,
        slot.waits_for,
        note,
    )


def _with_note(slot: _Slot, note: str) -> _Slot:
    return _Slot(
        slot.step,
        slot.day,
        slot.kind,
        slot.due,
        slot.local,
        slot.due_date,
        slot.thread,
        slot.waits_for,
        _join(note, slot.note),
    )


def _join(first: str | None, second: str | None) -> str | None:
    if first and second:
        return f"{first}; {second}"
    return first or second


ProblemHandler = Callable[[RowProblem], None]


class Plan(Iterator[Action]):
    """The actions of a plan, person by person, as the people are read.

    A person the campaign cannot take is a value, not an exception: it is
    skipped, and its :class:`RowProblem` (line and reason) is in
    :attr:`problems` by the time the stream has moved past it (and given to
    ``on_problem`` as it happens, when one was given).
    """

    def __init__(
        self,
        actions: Iterator[Action],
        problems: list[RowProblem],
        zone_fallbacks: Counter[str] | None = None,
    ) -> None:
        self._actions = actions
        self.problems = problems
        # People planned in the campaign's zone because their own `timezone`
        # could not be used, by what it said ("": nothing), as they are read.
        self.zone_fallbacks: Counter[str] = Counter() if zone_fallbacks is None else zone_fallbacks

    def __iter__(self) -> Plan:
        return self

    def __next__(self) -> Action:
        return next(self._actions)


def plan(
    ir: Campaign,
    people: Iterable[Person | RowProblem | Mapping[str, Any]],
    start: dt.datetime,
    overrides: Mapping[str, dt.time | str] | None = None,
    *,
    render: bool = False,
    sender: Mapping[str, str] | None = None,
    on_problem: ProblemHandler | None = None,
) -> Plan:
    """Every action for every person, person by person, steps in campaign order.

    ``people`` are mappings of fields (or rows from
    :func:`cadence.runtime.people.read_people`); ``overrides`` give steps
    sent at a fixed time another time (``datetime.time`` or ``"HH:MM"``). A
    person the campaign cannot take is skipped and reported in the returned
    plan's ``problems`` (and to ``on_problem``, when given); the others are
    planned. With ``render``, subjects and bodies are rendered (``sender``
    gives ``name``, ``email`` and ``signature``). Bad inputs (not a compiled
    campaign, a start without a zone, an unknown override) raise
    :class:`PlanError` at the call, before any person is read.
    """
    planner = Planner(ir, start, overrides)
    _check_people(people)
    renderer = None
    if render:
        from cadence.runtime.render import Renderer

        if sender is not None and not isinstance(sender, Mapping):
            raise PlanError(
                f"the sender is a mapping (name, email, signature), not {_kind(sender)}"
            )
        renderer = Renderer(ir, sender or {})
    problems: list[RowProblem] = []

    def report(problem: RowProblem) -> None:
        problems.append(problem)
        if on_problem is not None:
            on_problem(problem)

    return Plan(_plan(planner, renderer, people, report), problems, planner.fallbacks)


def _plan(
    planner: Planner,
    renderer: Renderer | None,
    people: Iterable[Person | RowProblem | Mapping[str, Any]],
    on_problem: ProblemHandler,
) -> Iterator[Action]:
    for person, _zone, actions in plan_people(planner, people, on_problem):
        if renderer is not None:
            rendered = renderer.render(person.fields, actions)
            if isinstance(rendered, str):
                on_problem(RowProblem(person.line, rendered))
                continue
            actions = rendered
        yield from actions


def plan_people(
    planner: Planner,
    people: Iterable[Person | RowProblem | Mapping[str, Any]],
    on_problem: ProblemHandler,
) -> Iterator[tuple[Person, ZoneInfo, list[Action]]]:
    """Each person the campaign can take, with their zone and actions; the
    others go to ``on_problem``."""
    for person, where, note in checked_people(planner, people, on_problem):
        yield person, where, planner.actions_in(person.email.strip(), where, note)


def checked_people(
    planner: Planner,
    people: Iterable[Person | RowProblem | Mapping[str, Any]],
    on_problem: ProblemHandler,
) -> Iterator[tuple[Person, ZoneInfo, str | None]]:
    """Each person the campaign can take, with their zone (and why it is not
    their own, if it is not); the others go to ``on_problem``."""
    _check_people(people)
    checker = PeopleChecker(planner.ir.person_fields, planner.header_fields)
    for number, row in enumerate(people, start=1):
        if isinstance(row, RowProblem):
            on_problem(row)
            continue
        if not isinstance(row, (Person, Mapping)):
            on_problem(RowProblem(number, f"a person is a mapping of fields, not {_kind(row)}"))
            continue
        person = row if isinstance(row, Person) else Person(number, row)
        person, problems = checker.check(person)
        if problems:
            on_problem(RowProblem(person.line, "; ".join(problems)))
            continue
        yield (person, *planner.zone_for(person.fields))
