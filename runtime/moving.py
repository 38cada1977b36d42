"""Moving people to another version of their campaign (`cadence migrate`).

Steps are matched by name. What a person already had (sent, done, skipped,
failed, cancelled) stays as it was; what is still to come takes the new
version's content and times; steps the new version no longer has are
cancelled; steps it adds are scheduled when they come after the last step the
person already had. A move that would put a step still to come before one the
person already had (moving them backwards) is refused, as is a person the new
version cannot take (a field it needs is missing) or one with a send being
delivered right now. All or nothing: one refusal and nobody moves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, bindparam, or_, select, update

from cadence.compiler.ir import Campaign, shown_identity
from cadence.runtime.calendar import UTC_ZONE, zone
from cadence.runtime.engine import (
    CANCELLED,
    CLAIMED,
    OPEN,
    PENDING,
    UNCONFIRMED,
    Engine,
    EngineError,
    lock_campaign,
)
from cadence.runtime.people import PeopleChecker
from cadence.runtime.planner import Action, Planner
from cadence.runtime.schema import actions, campaigns, enrollments, feed

MOVE_BATCH = 1000  # people per transaction
_LEFT = (PENDING, OPEN)


@dataclass(frozen=True)
class StepChange:
    sign: Literal["+", "-", "~"]
    step: str
    text: str  # what changes, in the person's zone: "09:00 → 10:15"


@dataclass
class Move:
    """What moving one person does (or why they cannot be moved)."""

    person: str
    enrollment_id: int
    from_version: int
    changes: list[StepChange] = field(default_factory=list)
    problem: str | None = None


@dataclass
class MoveReport:
    to_version: int
    moves: list[Move] = field(default_factory=list)

    @property
    def refused(self) -> list[Move]:
        return [move for move in self.moves if move.problem is not None]


def move_people(
    engine: Engine,
    campaign: str,
    to_version: int,
    now: dt.datetime,
    *,
    people: set[str] | None = None,
    dry_run: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> MoveReport:
    """Move the active people of ``campaign`` (its identity) on other versions,
    or those of them in ``people``, to version ``to_version``. With
    ``dry_run`` (or when anyone is refused) nothing changes."""
    campaign = engine.find_campaign(campaign)  # an id, a name or a key, as people write them
    key, ir, versions = _target(engine, campaign, to_version)
    report = MoveReport(to_version)
    if dry_run:
        for batch in _batches(engine, versions, key, people):
            with engine.store.read() as connection:
                report.moves += _plan(connection, batch, ir, now, engine.campaign)
        return report
    moved: list[Move] = []
    refused: list[Move] = []
    try:
        # One transaction, all or nothing: once someone cannot move, the rest
        # is only checked (to list everyone who cannot), and all is undone.
        with engine.store.transaction() as connection:
            lock_campaign(connection, campaign)
            for batch in _batches(engine, versions, key, people, connection):
                target = None if refused else key
                planned = _plan(connection, batch, ir, now, engine.campaign, apply_to=target)
                refused += [move for move in planned if move.problem is not None]
                moved += [move for move in planned if move.problem is None]
                if on_progress is not None:
                    on_progress(len(moved) + len(refused))
            if refused:
                raise _Refused(refused)
    except _Refused:
        report.moves = refused
        return report
    report.moves = moved
    return report


class _Refused(Exception):
    def __init__(self, moves: list[Move]) -> None:
        self.moves = moves


def _target(engine: Engine, campaign: str, to_version: int) -> tuple[str, Campaign, dict[str, int]]:
    """The key and IR of the version moved to, and every version's number."""
    with engine.store.read() as connection:
        rows = connection.execute(
            select(campaigns.c.id, campaigns.c.version, campaigns.c.ended_at).where(
                campaigns.c.identity == campaign
            )
        ).all()
    shown = shown_identity(campaign)
    if not rows:
        raise EngineError(f"no campaign {shown!r}")
    if any(row.ended_at is not None for row in rows):
        raise EngineError(f"campaign {shown!r} has ended; nobody in it can move")
    wanted = [row.id for row in rows if row.version == to_version]
    if not wanted:
        known = ", ".join(str(n) for n in sorted({row.version for row in rows}))
        raise EngineError(f"campaign {shown!r} has no version {to_version} (it has {known})")
    return wanted[0], engine.campaign(wanted[0]), {row.id: row.version for row in rows}


def _batches(
    engine: Engine,
    versions: dict[str, int],
    key: str,
    people: set[str] | None,
    connection: Connection | None = None,
) -> Iterator[list[Any]]:
    """The active enrollments on the other versions, a batch at a time (by id)."""
    others = [version for version in versions if version != key]
    query = (
        select(
            enrollments.c.id, enrollments.c.person, enrollments.c.fields, enrollments.c.zone,
            enrollments.c.start_at, enrollments.c.campaign_id,
        )
        .where(
            enrollments.c.campaign_id.in_(others),
            enrollments.c.status == "active",
            enrollments.c.id > bindparam("b_after"),
        )
        .order_by(enrollments.c.id)
        .limit(MOVE_BATCH)
    )  # fmt: skip
    after = 0
    while True:
        if connection is not None:
            rows = connection.execute(query, {"b_after": after}).all()
        else:
            with engine.store.read() as reading:
                rows = reading.execute(query, {"b_after": after}).all()
        if not rows:
            return
        after = rows[-1].id
        wanted = [row for row in rows if people is None or row.person.lower() in people]
        if wanted:
            yield [(row, versions[row.campaign_id]) for row in wanted]


_STEPS = (
    select(
        actions.c.id, actions.c.enrollment_id, actions.c.step, actions.c.status,
        actions.c.position, actions.c.is_task, actions.c.due_at, actions.c.due_date,
        actions.c.day, actions.c.kind, actions.c.thread, actions.c.waits_for, actions.c.note,
        actions.c.sent_at, actions.c.closed_at,
    )
    .where(actions.c.enrollment_id.in_(bindparam("b_ids", expanding=True)))
    .order_by(actions.c.enrollment_id, actions.c.position)
)  # fmt: skip


def _plan(
    connection: Connection,
    batch: Sequence[tuple[Any, int]],
    ir: Campaign,
    now: dt.datetime,
    version_of: Callable[[str], Campaign],
    *,
    apply_to: str | None = None,
) -> list[Move]:
    """What moving each of ``batch`` does; with ``apply_to`` (the new
    version's key), done. ``version_of`` gives the IR of a version's key (the
    versions people are on: their plan tells what was moved since)."""
    steps: dict[int, list[Any]] = {row.id: [] for row, _ in batch}
    for action in connection.execute(_STEPS, {"b_ids": list(steps)}):
        steps[action.enrollment_id].append(action)
    planners: dict[tuple[str, dt.datetime], Planner] = {}
    moves = []
    writes = _Writes()
    checker: PeopleChecker | None = None
    plans: dict[tuple[str, dt.datetime, str, str | None], list[Action]] = {}
    order = _Order([step.id for step in ir.steps])  # the planner keeps the campaign's order
    for row, version in batch:
        planner = _planner(planners, "", ir, row.start_at)
        checker = checker or PeopleChecker(ir.person_fields, planner.header_fields)
        move = Move(row.person, row.id, version)
        moves.append(move)
        # Their address was checked when they were enrolled; their fields
        # against what this version needs.
        if problems := checker.field_problems(row.fields):
            move.problem = f"the new version cannot take them: {'; '.join(problems)}"
            continue
        where = zone(row.zone) or UTC_ZONE
        # What the version plans depends on the start and the person's zone
        # only (their fields fill texts, which are rendered at send time).
        planned_zone, zone_note = planner.zone_for(row.fields)
        known = ("", row.start_at, planned_zone.key, zone_note)
        new = plans.get(known) or plans.setdefault(known, planner.actions(row.person, row.fields))
        # What their own version planned: a stored time that differs from it
        # was moved since (a pause, a reschedule), and the move keeps that.
        was = _planner(planners, row.campaign_id, version_of(row.campaign_id), row.start_at)
        before = (row.campaign_id, row.start_at, planned_zone.key, zone_note)
        old_plan = plans.get(before) or plans.setdefault(
            before, was.actions(row.person, row.fields)
        )
        theirs = _Writes()  # kept only when the whole move holds
        _compare(move, steps[row.id], new, order, where, theirs, {a.step: a for a in old_plan})
        if move.problem is None and apply_to is not None:
            theirs.moved(row, apply_to, move, now, planned_zone.key)
            writes.merge(theirs)
    if apply_to is not None:
        writes.run(connection, now)
    return moves


def _planner(
    planners: dict[tuple[str, dt.datetime], Planner], key: str, ir: Campaign, start: dt.datetime
) -> Planner:
    found = planners.get((key, start))
    if found is None:
        found = planners[(key, start)] = Planner(ir, start)
    return found


@dataclass(frozen=True)
class _Order:
    """A version's steps in order, with each step's place (built once)."""

    steps: list[str]
    place: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "place", {step: n for n, step in enumerate(self.steps)})

    def reached(self, old: list[Any]) -> int:
        """The place of the last step the person already had (-1: none)."""
        places = [self.place.get(a.step, -1) for a in old if a.status not in _LEFT]
        return max(places, default=-1)


def _refusal(old: list[Any], new: _Order, reached: int) -> str | None:
    """Why a person with the stored steps ``old`` cannot move to a version
    with the steps ``new``, if they cannot (``reached``: the place in ``new``
    of the last step they had)."""
    statuses = {action.status for action in old}
    if CLAIMED in statuses or UNCONFIRMED in statuses:
        return "a send of theirs is being delivered right now; try again in a while"
    for action in old:
        if action.status in _LEFT and new.place.get(action.step, reached) < reached:
            return (
                f"`{action.step}` would come before `{new.steps[reached]}`, which they already "
                "had (that would move them backwards)"
            )
    return None


def _compare(
    move: Move,
    old: list[Any],
    new: list[Action],
    order: _Order,
    where: Any,
    writes: _Writes,
    planned: dict[str, Action],
) -> None:
    """The changes from ``old`` (stored actions) to ``new`` (the new version's
    plan for the person, in ``order``; ``planned``: their own version's plan);
    a refusal goes in ``move.problem``."""
    reached = order.reached(old)
    move.problem = _refusal(old, order, reached)
    if move.problem is not None:
        return
    by_step = {action.step: action for action in old}
    last = _last_done(old)
    for index, action in enumerate(new):
        stored = by_step.get(action.step)
        if stored is not None and stored.status in _LEFT and stored.is_task != _is_task(action):
            # An email that became a task, or a task an email: a new step.
            move.changes.append(StepChange("-", action.step, f"cancelled (now {action.kind})"))
            writes.cancel(stored.id)
            stored = None
        if stored is None:
            if index > reached and not _before(action, last):
                move.changes.append(StepChange("+", action.step, _when(action, where)))
                writes.add(move.enrollment_id, index, action)
            continue
        if stored.status not in _LEFT:
            if stored.position != index:
                writes.position(stored.id, index)
            continue
        due, due_date = _retimed(stored, planned.get(action.step), action)
        if stored.due_at != due or stored.due_date != due_date:
            before, after = _stored_when(stored, where), _when_at(due, due_date, action, where)
            move.changes.append(StepChange("~", action.step, _arrow(before, after)))
        if _differs(stored, index, action, due, due_date):
            writes.update(stored.id, index, action, due, due_date)
    for action in old:
        if action.step not in order.place and action.status in _LEFT:
            move.changes.append(StepChange("-", action.step, "cancelled"))
            writes.cancel(action.id)


def _is_task(action: Action) -> bool:
    return action.kind != "email"


def _last_done(old: list[Any]) -> dt.datetime | None:
    """When the person's last finished step happened."""
    times = [a.sent_at or a.closed_at or a.due_at for a in old if a.status not in _LEFT]
    return max((when for when in times if when is not None), default=None)


def _before(action: Action, last: dt.datetime | None) -> bool:
    """A new step planned before what the person already had (a renamed step
    they had under its old name): not scheduled."""
    if last is None:
        return False
    if action.due is not None:
        return action.due <= last
    return action.due_date < last.date()


def _retimed(
    stored: Any, was: Action | None, now_planned: Action
) -> tuple[dt.datetime | None, dt.date]:
    """A step's time in the new version, keeping what moved it since it was
    planned (a pause, a reschedule, a task email's time filled in): the new
    plan's change, applied to the stored time."""
    if was is None:
        return now_planned.due, now_planned.due_date
    same = (was.due, was.due_date, was.waits_for) == (
        now_planned.due,
        now_planned.due_date,
        now_planned.waits_for,
    )
    if same:
        return stored.due_at, stored.due_date  # unchanged: whatever moved it holds
    shift = now_planned.due_date - was.due_date
    if was.due is not None and now_planned.due is not None and stored.due_at is not None:
        return stored.due_at + (now_planned.due - was.due), stored.due_date + shift
    return now_planned.due, stored.due_date + shift


def _differs(
    stored: Any, index: int, action: Action, due: dt.datetime | None, due_date: dt.date
) -> bool:
    """Whether the stored step needs the new version's values written."""
    return (stored.position, stored.day, stored.kind, stored.due_at, stored.due_date,
            stored.thread, stored.waits_for, stored.note) != (
        index, action.day, action.kind, due, due_date, action.thread,
        action.waits_for, action.note)  # fmt: skip


def _when(action: Action, where: Any) -> str:
    return _when_at(action.due, action.due_date, action, where)


def _when_at(due: dt.datetime | None, due_date: dt.date, action: Action, where: Any) -> str:
    if due is None:
        return f"{due_date}" + (f", after `{action.waits_for}`" if action.waits_for else "")
    return f"{due.astimezone(where):%Y-%m-%d %H:%M}"


def _stored_when(action: Any, where: Any) -> str:
    if action.due_at is None:
        return f"{action.due_date}"
    return f"{action.due_at.astimezone(where):%Y-%m-%d %H:%M}"


def _arrow(before: str, after: str) -> str:
    """``09:00 → 10:15`` on the same day, else the dates too."""
    if before[:10] == after[:10] and len(before) == len(after) == 16:
        return f"{before[11:]} → {after[11:]}"
    return f"{before} → {after}"


class _Writes:
    """A batch's changes, written together (executemany per kind)."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.positions: list[dict[str, Any]] = []
        self.inserts: list[dict[str, Any]] = []
        self.cancels: list[dict[str, Any]] = []
        self.enrollments: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def add(self, enrollment_id: int, index: int, action: Action) -> None:
        is_task = action.kind != "email"
        self.inserts.append({
            "enrollment_id": enrollment_id, "step": action.step, "position": index,
            "day": action.day, "kind": action.kind, "is_task": is_task, "due_at": action.due,
            "due_date": action.due_date, "thread": action.thread, "waits_for": action.waits_for,
            "note": action.note, "status": OPEN if is_task else PENDING, "attempts": 0,
        })  # fmt: skip

    def update(
        self,
        action_id: int,
        index: int,
        action: Action,
        due: dt.datetime | None,
        due_date: dt.date,
    ) -> None:
        self.updates.append({
            "b_id": action_id, "b_position": index, "b_day": action.day, "b_kind": action.kind,
            "b_due_at": due, "b_due_date": due_date, "b_thread": action.thread,
            "b_waits_for": action.waits_for, "b_note": action.note,
        })  # fmt: skip

    def position(self, action_id: int, index: int) -> None:
        self.positions.append({"b_id": action_id, "b_position": index})

    def cancel(self, action_id: int) -> None:
        self.cancels.append({"b_id": action_id})

    def moved(self, row: Any, key: str, move: Move, now: dt.datetime, zone_key: str) -> None:
        # The version may count in another zone: later pauses and reschedules read it.
        self.enrollments.append({"b_id": row.id, "b_key": key, "b_zone": zone_key})
        counts = {sign: sum(c.sign == sign for c in move.changes) for sign in "~+-"}
        self.events.append({
            "at": now, "campaign_id": key, "enrollment_id": row.id, "person": row.person,
            "event": "migrated", "step": None,
            "message": f"moved from version {move.from_version}: {counts['~']} step(s) "
                       f"changed, {counts['+']} added, {counts['-']} cancelled",
        })  # fmt: skip

    def merge(self, other: _Writes) -> None:
        for name in ("updates", "positions", "inserts", "cancels", "enrollments", "events"):
            getattr(self, name).extend(getattr(other, name))

    def run(self, connection: Connection, now: dt.datetime) -> None:
        if self.updates:
            connection.execute(_UPDATE, self.updates)
        if self.positions:
            connection.execute(_POSITION, self.positions)
        if self.cancels:
            connection.execute(
                update(actions)
                .where(
                    actions.c.id == bindparam("b_id"),
                    or_(
                        actions.c.status == PENDING, actions.c.status == OPEN
                    ),  # no IN: executemany
                )
                .values(status=CANCELLED, closed_at=now),
                self.cancels,
            )
        if self.inserts:
            connection.execute(actions.insert(), self.inserts)
        if self.enrollments:
            connection.execute(_MOVE, self.enrollments)
            connection.execute(feed.insert(), self.events)


_UPDATE = (
    update(actions)
    .where(actions.c.id == bindparam("b_id"))
    .values(
        position=bindparam("b_position"), day=bindparam("b_day"), kind=bindparam("b_kind"),
        due_at=bindparam("b_due_at"), due_date=bindparam("b_due_date"),
        thread=bindparam("b_thread"), waits_for=bindparam("b_waits_for"),
        note=bindparam("b_note"), retry_at=None,
    )
)  # fmt: skip
_POSITION = (
    update(actions)
    .where(actions.c.id == bindparam("b_id"))
    .values(position=bindparam("b_position"))
)
_MOVE = (
    update(enrollments)
    .where(enrollments.c.id == bindparam("b_id"))
    .values(campaign_id=bindparam("b_key"), zone=bindparam("b_zone"))
)
