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

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, literal, null, select, update

from cadence.compiler.ir import Campaign, shown_identity
from cadence.runtime.calendar import UTC_ZONE, zone
from cadence.runtime.engine import (
    BY_THE_RULES,
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
from cadence.runtime.schema import UTCDateTime, actions, campaigns, enrollments, feed
from cadence.runtime.store import insert_rows

MOVE_BATCH = 1000  # people per transaction


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
    mover = _Mover(ir, engine.campaign)
    if dry_run:
        for batch in _batches(engine, versions, key, people):
            with engine.store.read() as connection:
                report.moves += mover.plan(connection, batch, now)
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
                planned = mover.plan(connection, batch, now, apply_to=target)
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
        actions.c.sent_at, actions.c.closed_at, actions.c.variant,
    )
    .where(actions.c.enrollment_id.in_(bindparam("b_ids", expanding=True)))
    .order_by(actions.c.enrollment_id, actions.c.position)
)  # fmt: skip
# A stored step without its ids and its sent and closed times (`_STEPS`'s columns
# from `step` to `note`): what decides how it moves, with `_last_done`.
_SHAPE = slice(2, 13)
_PlanKey = tuple[str, dt.datetime, ZoneInfo, str | None, tuple[str, ...]]
MAX_SHAPES = 10_000  # outcomes kept; past it they are worked out again


@dataclass
class _Outcome:
    """How people whose stored steps have one shape move: changes and writes
    by the place of a stored step in their list (worked out once, applied to
    each of them with their own ids)."""

    problem: str | None = None
    changes: list[StepChange] = field(default_factory=list)
    updates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    positions: list[tuple[int, int]] = field(default_factory=list)
    cancels: list[int] = field(default_factory=list)
    inserts: list[tuple[int, Action]] = field(default_factory=list)

    def message(self, from_version: int) -> str:
        counts = {sign: sum(c.sign == sign for c in self.changes) for sign in "~+-"}
        return (
            f"moved from version {from_version}: {counts['~']} step(s) changed, "
            f"{counts['+']} added, {counts['-']} cancelled"
        )


class _Mover:
    """What a move works out once: the planners and plans of the versions
    involved, by start and zone, and the outcome for each shape of stored
    steps (people in the same place of the same plan move the same way)."""

    def __init__(self, ir: Campaign, version_of: Callable[[str], Campaign]) -> None:
        self.ir = ir
        self.version_of = version_of
        self.order = _Order(  # the planner keeps this order
            [step.id for step in ir.steps],
            {step.id: frozenset(v.name for v in step.variants) for step in ir.steps},
        )
        self.planners: dict[tuple[str, dt.datetime], Planner] = {}
        self.plans: dict[_PlanKey, list[Action]] = {}
        self.outcomes: dict[tuple[Any, ...], _Outcome] = {}
        self.checker: PeopleChecker | None = None

    def plan(
        self,
        connection: Connection,
        batch: Sequence[tuple[Any, int]],
        now: dt.datetime,
        apply_to: str | None = None,
    ) -> list[Move]:
        """What moving each of ``batch`` does; with ``apply_to`` (the new
        version's key), done."""
        steps: dict[int, list[Any]] = {row.id: [] for row, _ in batch}
        for action in connection.execute(_STEPS, {"b_ids": list(steps)}):
            steps[action.enrollment_id].append(action)
        moves = []
        writes = None if apply_to is None else _Writes(now)
        for row, version in batch:
            move = Move(row.person, row.id, version)
            moves.append(move)
            planner = self._planner("", self.ir, row.start_at)
            if self.checker is None:
                self.checker = PeopleChecker(self.ir.person_fields, planner.header_fields)
            # Their address was checked when they were enrolled; their fields
            # against what this version needs.
            if problems := self.checker.field_problems(row.fields):
                move.problem = f"the new version cannot take them: {'; '.join(problems)}"
                continue
            planned_zone, _ = planner.zone_for(row.fields)
            outcome = self._outcome(row, steps[row.id])
            move.problem = outcome.problem
            move.changes = list(outcome.changes)
            if outcome.problem is None and writes is not None:
                writes.add(row, steps[row.id], outcome, version, planned_zone.key)
        if writes is not None and apply_to is not None:
            writes.run(connection, apply_to)
        return moves

    def _outcome(self, row: Any, old: list[Any]) -> _Outcome:
        new_plan, new = self._actions("", self.ir, row)
        # What their own version planned: a stored time that differs from it
        # was moved since (a pause, a reschedule), and the move keeps that.
        old_plan, was = self._actions(row.campaign_id, self.version_of(row.campaign_id), row)
        last = _last_done(old)
        shape = (
            new_plan, old_plan, row.zone, tuple(action[_SHAPE] for action in old),
            tuple(_before(action, last) for action in new),
            tuple(action.variant for action in old),  # kept on a move: part of the outcome
        )  # fmt: skip
        found = self.outcomes.get(shape)
        if found is None:
            found = _Outcome()
            where = zone(row.zone) or UTC_ZONE
            _compare(found, old, new, self.order, where, {a.step: a for a in was}, last)
            if len(self.outcomes) >= MAX_SHAPES:
                self.outcomes.clear()
            self.outcomes[shape] = found
        return found

    def _planner(self, key: str, ir: Campaign, start: dt.datetime) -> Planner:
        found = self.planners.get((key, start))
        if found is None:
            found = self.planners[(key, start)] = Planner(ir, start)
        return found

    def _actions(self, key: str, ir: Campaign, row: Any) -> tuple[_PlanKey, list[Action]]:
        """What the version ``key`` plans for the person of ``row`` (and which
        plan that is): a plan depends on the start and the person's zone only
        (their fields fill texts, which are rendered at send time)."""
        planner = self._planner(key, ir, row.start_at)
        # A test's variants depend on the person: part of which plan it is.
        known = (key, row.start_at, *planner.zone_for(row.fields), planner.variants_of(row.person))
        found = self.plans.get(known)
        if found is None:
            found = self.plans[known] = planner.actions(row.person, row.fields)
        return known, found


@dataclass(frozen=True)
class _Order:
    """A version's steps in order, with each step's place (built once)."""

    steps: list[str]
    variants: dict[str, frozenset[str]] = field(default_factory=dict)  # a test's, by step
    place: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "place", {step: n for n, step in enumerate(self.steps)})

    def reached(self, old: list[Any]) -> int:
        """The place of the last step the person already had (-1: none)."""
        places = [self.place.get(a.step, -1) for a in old if _had(a)]
        return max(places, default=-1)


def _refusal(old: list[Any], new: _Order) -> str | None:
    """Why a person with the stored steps ``old`` (in their version's order)
    cannot move to a version with the steps ``new``, if they cannot: a step
    still to come that the new version puts before one they had, which their
    own version put after it (that would move them backwards). A task done
    early is not a reason: a step before it in both versions still comes."""
    statuses = {action.status for action in old}
    if CLAIMED in statuses or UNCONFIRMED in statuses:
        return "a send of theirs is being delivered right now; try again in a while"
    had = [(action.position, new.place[action.step]) for action in old
           if _had(action) and action.step in new.place]  # fmt: skip
    for action in old:
        if not _left(action) or action.step not in new.place:
            continue
        place = new.place[action.step]
        passed = [at for was, at in had if was < action.position and at > place]
        if passed:
            return (
                f"`{action.step}` would come before `{new.steps[max(passed)]}`, which they "
                "already had (that would move them backwards)"
            )
    return None


def _compare(
    outcome: _Outcome,
    old: list[Any],
    new: list[Action],
    order: _Order,
    where: Any,
    planned: dict[str, Action],
    last: dt.datetime | None,
) -> None:
    """The changes from ``old`` (stored actions) to ``new`` (the new version's
    plan for the person, in ``order``; ``planned``: their own version's plan;
    ``last``: when they last had a step), or why they cannot move."""
    reached = order.reached(old)
    outcome.problem = _refusal(old, order)
    if outcome.problem is not None:
        return
    by_step = {action.step: place for place, action in enumerate(old)}
    changes = outcome.changes
    for index, action in enumerate(new):
        place = by_step.get(action.step)
        stored = None if place is None else old[place]
        if stored is not None and _left(stored) and stored.is_task != _is_task(action):
            # An email that became a task, or a task an email: a new step.
            changes.append(StepChange("-", action.step, f"cancelled (now {action.kind})"))
            outcome.cancels.append(by_step[action.step])
            stored = None
        if stored is not None and stored.variant in order.variants.get(action.step, ()):
            # A person keeps their variant in every version that has it (§4.6).
            action = dataclasses.replace(action, variant=stored.variant)
        if stored is None or place is None:
            if index > reached and not _before(action, last):
                changes.append(StepChange("+", action.step, _when(action, where)))
                outcome.inserts.append((index, action))
            continue
        if not _left(stored):
            if stored.position != index:
                outcome.positions.append((place, index))
            continue
        due, due_date = _retimed(stored, planned.get(action.step), action)
        if stored.due_at != due or stored.due_date != due_date:
            before, after = _stored_when(stored, where), _when_at(due, due_date, action, where)
            changes.append(StepChange("~", action.step, _arrow(before, after)))
        if stored.variant != action.variant:
            was, now = stored.variant or "none", action.variant or "none"
            changes.append(StepChange("~", action.step, f"variant {was} → {now}"))
        if _differs(stored, index, action, due, due_date):
            outcome.updates.append((place, _values(index, action, due, due_date)))
    for place, action in enumerate(old):
        if action.step not in order.place and _left(action):
            changes.append(StepChange("-", action.step, "cancelled"))
            outcome.cancels.append(place)


def _left(stored: Any) -> bool:
    """Still to come by the campaign's rules: a pending send or an open task.
    An email task a person had cadence send (pending, yet a task) is neither
    this nor had: it is theirs, and stays as they scheduled it."""
    return bool(stored.status == OPEN or (stored.status == PENDING and not stored.is_task))


def _had(stored: Any) -> bool:
    """A step the person already had: sent, closed or cancelled."""
    return not _left(stored) and not (stored.is_task and stored.status == PENDING)


def _is_task(action: Action) -> bool:
    return action.kind != "email"


def _last_done(old: list[Any]) -> dt.datetime | None:
    """When the person's last finished step happened."""
    times = [a.sent_at or a.closed_at or a.due_at for a in old if _had(a)]
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
            stored.thread, stored.waits_for, stored.note, stored.variant) != (
        index, action.day, action.kind, due, due_date, action.thread,
        action.waits_for, action.note, action.variant)  # fmt: skip


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


def _values(
    index: int, action: Action, due: dt.datetime | None, due_date: dt.date
) -> dict[str, Any]:
    """A pending step's new values (``retry_at`` cleared: its time is the new one)."""
    return {
        "position": index, "day": action.day, "kind": action.kind, "due_at": due,
        "due_date": due_date, "thread": action.thread, "waits_for": action.waits_for,
        "note": action.note, "retry_at": None, "variant": action.variant,
    }  # fmt: skip


SHARED = 8  # people of one outcome in a batch from whom it is written set-wise


class _Writes:
    """A batch's changes, written together: an outcome many people share with
    one statement per step (``WHERE id IN …``), the rest row by row
    (executemany per kind)."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.groups: dict[tuple[int, int], _Group] = {}

    def add(
        self, row: Any, old: list[Any], outcome: _Outcome, from_version: int, zone_key: str
    ) -> None:
        found = self.groups.get((id(outcome), from_version))
        if found is None:
            found = _Group(outcome, from_version, zone_key)
            self.groups[(id(outcome), from_version)] = found
        found.members.append((row, old))

    def run(self, connection: Connection, key: str) -> None:
        rows = _RowWrites(self.now)
        for group in self.groups.values():
            if len(group.members) >= SHARED:
                self._shared(connection, key, group)
            else:
                rows.add(key, group)
        rows.run(connection)

    def _shared(self, connection: Connection, key: str, group: _Group) -> None:
        outcome, members = group.outcome, group.members

        def ids(place: int) -> list[int]:
            return [old[place].id for _, old in members]

        for place, values in outcome.updates:
            connection.execute(_BY_IDS.where(BY_THE_RULES).values(**values), {"b_ids": ids(place)})
        for place, index in outcome.positions:
            connection.execute(_BY_IDS.values(position=index), {"b_ids": ids(place)})
        for place in outcome.cancels:
            connection.execute(
                _BY_IDS.where(BY_THE_RULES).values(status=CANCELLED, closed_at=self.now),
                {"b_ids": ids(place)},
            )
        insert_rows(connection, actions, [
            _insert(row.id, index, action)
            for row, _ in members for index, action in outcome.inserts
        ])  # fmt: skip
        people = {"b_ids": [row.id for row, _ in members]}
        # The version may count in another zone: later pauses and reschedules read it.
        connection.execute(
            update(enrollments)
            .where(enrollments.c.id.in_(bindparam("b_ids", expanding=True)))
            .values(campaign_id=key, zone=group.zone_key),
            people,
        )
        said = select(
            literal(self.now, UTCDateTime), literal(key), enrollments.c.id,
            enrollments.c.person, literal("migrated"), null(),
            literal(outcome.message(group.from_version)),
        ).where(enrollments.c.id.in_(bindparam("b_ids", expanding=True)))  # fmt: skip
        connection.execute(feed.insert().from_select(_SAID, said), people)


_SAID = ["at", "campaign_id", "enrollment_id", "person", "event", "step", "message"]


@dataclass
class _Group:
    """The people of a batch who move one way (one outcome, from one version)."""

    outcome: _Outcome
    from_version: int
    zone_key: str
    members: list[tuple[Any, list[Any]]] = field(default_factory=list)


class _RowWrites:
    """The writes of outcomes few people share, row by row (executemany)."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self.updates: list[dict[str, Any]] = []
        self.positions: list[dict[str, Any]] = []
        self.cancels: list[dict[str, Any]] = []
        self.inserts: list[dict[str, Any]] = []
        self.enrollments: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def add(self, key: str, group: _Group) -> None:
        outcome = group.outcome
        message = outcome.message(group.from_version)
        for row, old in group.members:
            for place, values in outcome.updates:
                self.updates.append(
                    {"b_id": old[place].id} | {f"b_{k}": v for k, v in values.items()}
                )
            for place, index in outcome.positions:
                self.positions.append({"b_id": old[place].id, "b_position": index})
            self.cancels += [{"b_id": old[place].id} for place in outcome.cancels]
            self.inserts += [_insert(row.id, index, action) for index, action in outcome.inserts]
            self.enrollments.append({"b_id": row.id, "b_key": key, "b_zone": group.zone_key})
            self.events.append({
                "at": self.now, "campaign_id": key, "enrollment_id": row.id, "person": row.person,
                "event": "migrated", "step": None, "message": message,
            })  # fmt: skip

    def run(self, connection: Connection) -> None:
        now = self.now
        if self.updates:
            connection.execute(_UPDATE, self.updates)
        if self.positions:
            connection.execute(_POSITION, self.positions)
        if self.cancels:
            connection.execute(
                update(actions)
                .where(actions.c.id == bindparam("b_id"), BY_THE_RULES)
                .values(status=CANCELLED, closed_at=now),
                self.cancels,
            )
        insert_rows(connection, actions, self.inserts)
        if self.enrollments:
            connection.execute(_MOVE, self.enrollments)
        insert_rows(connection, feed, self.events)


def _insert(enrollment_id: int, index: int, action: Action) -> dict[str, Any]:
    is_task = action.kind != "email"
    return {
        "enrollment_id": enrollment_id, "step": action.step, "position": index,
        "day": action.day, "kind": action.kind, "is_task": is_task, "due_at": action.due,
        "due_date": action.due_date, "thread": action.thread, "waits_for": action.waits_for,
        "note": action.note, "status": OPEN if is_task else PENDING, "attempts": 0,
        "variant": action.variant,
    }  # fmt: skip


_BY_IDS = update(actions).where(actions.c.id.in_(bindparam("b_ids", expanding=True)))
# Writes that retime or cancel touch a step only while the campaign's rules
# still set its time: a person may have scheduled it since it was read.
_UPDATE = (
    update(actions)
    .where(actions.c.id == bindparam("b_id"), BY_THE_RULES)
    .values(
        position=bindparam("b_position"), day=bindparam("b_day"), kind=bindparam("b_kind"),
        due_at=bindparam("b_due_at"), due_date=bindparam("b_due_date"),
        thread=bindparam("b_thread"), waits_for=bindparam("b_waits_for"),
        note=bindparam("b_note"), retry_at=bindparam("b_retry_at"),
        variant=bindparam("b_variant"),
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
