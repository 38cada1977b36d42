"""What the engine holds, read for people and tools: every campaign with its
versions and how many people are where in each (`cadence campaigns`), and
where one person is in every campaign they were in (`cadence status`).

Read-only; the models are the JSON that commands print.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel
from sqlalchemy import case, func, select

from cadence.compiler.ir import shown_identity
from cadence.runtime.engine import (
    CANCELLED,
    FAILED,
    SENT,
    UNCLOSED_TASK,
)
from cadence.runtime.lifecycle import IS_ENDED, IS_FINISHED, IS_GOING, LEFT, state_of
from cadence.runtime.schema import MOVES, actions, campaigns, enrollments, feed
from cadence.runtime.store import Store


class VersionOverview(BaseModel):
    version: int
    key: str  # the sha256 of what the version does
    name: str
    created_at: dt.datetime
    ended_at: dt.datetime | None
    active: int  # people with steps still to come
    finished: int  # people who went through every step
    ended: int  # people whose enrollment ended early: replied, bounced, removed…


class CampaignOverview(BaseModel):
    name: str  # the latest version's
    id: str  # its identity: the `id` setting, else the name
    created_at: dt.datetime
    ended_at: dt.datetime | None
    versions: list[VersionOverview]


def campaign_overviews(store: Store, identity: str | None = None) -> list[CampaignOverview]:
    """Every campaign, by name, with its versions in order (with
    ``identity``: that campaign's only, counting only its people)."""
    counting = select(
        enrollments.c.campaign_id,
        func.sum(case((IS_GOING, 1), else_=0)).label("active"),  # paused ones too
        func.sum(case((IS_FINISHED, 1), else_=0)).label("finished"),
        func.sum(case((IS_ENDED, 1), else_=0)).label("ended"),
    ).group_by(enrollments.c.campaign_id)
    if identity is not None:
        keys = select(campaigns.c.id).where(campaigns.c.identity == identity)
        counting = counting.where(enrollments.c.campaign_id.in_(keys))
    counts = counting.subquery()
    query = (
        select(
            campaigns.c.id,
            campaigns.c.name,
            campaigns.c.identity,
            campaigns.c.version,
            campaigns.c.created_at,
            campaigns.c.ended_at,
            counts.c.active,
            counts.c.finished,
            counts.c.ended,
        )
        .outerjoin(counts, counts.c.campaign_id == campaigns.c.id)
        .order_by(campaigns.c.identity, campaigns.c.version, campaigns.c.created_at)
    )
    if identity is not None:
        query = query.where(campaigns.c.identity == identity)
    grouped: dict[str, list[VersionOverview]] = {}
    with store.read() as connection:
        for row in connection.execute(query):
            grouped.setdefault(row.identity, []).append(
                VersionOverview(
                    version=row.version,
                    key=row.id,
                    name=row.name,
                    created_at=row.created_at,
                    ended_at=row.ended_at,
                    active=int(row.active or 0),
                    finished=int(row.finished or 0),
                    ended=int(row.ended or 0),
                )
            )
    overviews = [
        CampaignOverview(
            name=versions[-1].name,
            id=shown_identity(identity),
            created_at=versions[0].created_at,
            ended_at=versions[-1].ended_at,
            versions=versions,
        )
        for identity, versions in grouped.items()
    ]
    return sorted(overviews, key=lambda found: (found.name.casefold(), found.id))


class StepStatus(BaseModel):
    step: str
    kind: str  # email | email_task | call | inmail | custom
    day: int
    status: str  # pending | claimed | sent | failed | cancelled | open | completed | skipped
    due_at: dt.datetime | None  # a send's intended instant
    due_date: dt.date
    sent_at: dt.datetime | None
    closed_at: dt.datetime | None
    error: str | None
    # A step still to come behind an earlier task still open: that task (§6)
    waits_for: str | None = None
    note: str | None = None  # what the plan says of its time: a sending window's move, …
    # What last moved it while it waited: a daily cap's roll-over, a late reschedule
    moved: str | None = None


class Paused(BaseModel):
    until: dt.datetime | None  # None: until resumed
    why: str | None  # an out-of-office (from their auto-reply of …), a pause by hand, …


class EnrollmentStatus(BaseModel):
    campaign: str  # the version's name
    id: str  # the campaign's identity
    version: int
    key: str
    state: str  # active | paused | finished | ended
    reason: str | None  # why it ended, or why it is paused until when
    started_at: dt.datetime
    ended_at: dt.datetime | None
    paused_until: dt.datetime | None
    paused: Paused | None = None  # while paused: until when, and why
    at_step: str | None  # the last step done
    next: StepStatus | None  # what comes next, and when
    history: list[StepStatus]


class PersonStatus(BaseModel):
    person: str
    enrollments: list[EnrollmentStatus]


_DONE = (SENT, "completed", "skipped", FAILED, CANCELLED)


def person_status(store: Store, person: str) -> PersonStatus:
    """Every enrollment of ``person`` (any case), newest first, with each step."""
    wanted = person.strip().lower()
    people = (
        select(
            enrollments.c.id, enrollments.c.person, enrollments.c.status, enrollments.c.reason,
            enrollments.c.start_at, enrollments.c.ended_at, enrollments.c.paused_until,
            enrollments.c.paused_why, campaigns.c.name, campaigns.c.identity, campaigns.c.version,
            campaigns.c.id.label("key"),
        )
        .join(campaigns, campaigns.c.id == enrollments.c.campaign_id)
        .where(func.lower(enrollments.c.person) == wanted)
        .order_by(enrollments.c.start_at.desc(), enrollments.c.id.desc())
    )  # fmt: skip
    steps = select(
        actions.c.enrollment_id, actions.c.step, actions.c.kind, actions.c.day,
        actions.c.status, actions.c.due_at, actions.c.due_date, actions.c.sent_at,
        actions.c.closed_at, actions.c.error, actions.c.note,
    ).order_by(actions.c.enrollment_id, actions.c.position)  # fmt: skip
    moves = (
        select(feed.c.enrollment_id, feed.c.step, feed.c.message).where(MOVES).order_by(feed.c.id)
    )
    with store.read() as connection:
        rows = connection.execute(people).all()
        found: dict[int, list[StepStatus]] = {row.id: [] for row in rows}
        moved: dict[tuple[int, str], str] = {}
        if found:
            for step in connection.execute(steps.where(actions.c.enrollment_id.in_(found))):
                found[step.enrollment_id].append(
                    StepStatus.model_validate(step._asdict(), from_attributes=False)
                )
            for entry in connection.execute(moves.where(feed.c.enrollment_id.in_(found))):
                moved[(entry.enrollment_id, entry.step)] = entry.message  # the last one wins
    return PersonStatus(
        person=rows[0].person if rows else person.strip(),
        enrollments=[_enrollment(row, _waiting(row.id, found[row.id], moved)) for row in rows],
    )


def _waiting(
    enrollment: int, history: list[StepStatus], moved: dict[tuple[int, str], str]
) -> list[StepStatus]:
    """Each step still to come, with what it waits for: the first task before
    it still open (tasks and the sends after them go in order, §6), and what
    last moved its time."""
    updated = []
    task = None  # the first unclosed task so far
    for step in history:
        if step.status in LEFT:
            change: dict[str, Any] = {"waits_for": task}
            if (enrollment, step.step) in moved:
                change["moved"] = moved[(enrollment, step.step)]
            step = step.model_copy(update=change)
            if task is None and step.kind != "email" and step.status in UNCLOSED_TASK:
                task = step.step
        updated.append(step)
    return updated


def _enrollment(row: Any, history: list[StepStatus]) -> EnrollmentStatus:
    done = [step for step in history if step.status in _DONE]
    coming = next((step for step in history if step.status in LEFT), None)
    state = state_of(row.status, row.paused_until, coming is not None)
    reason = row.reason if state == "ended" else None
    paused = None
    if state == "paused":
        until = row.paused_until if row.paused_until.year < 9999 else None
        paused = Paused(until=until, why=row.paused_why)
        reason = f"paused until {until:%Y-%m-%d %H:%M}Z" if until else "paused until resumed"
        reason += f": {row.paused_why}" if row.paused_why else ""
    return EnrollmentStatus(
        campaign=row.name, id=shown_identity(row.identity), version=row.version, key=row.key,
        state=state, reason=reason, started_at=row.start_at, ended_at=row.ended_at,
        paused_until=row.paused_until, paused=paused, at_step=done[-1].step if done else None,
        next=coming if state in ("active", "paused") else None, history=history,
    )  # fmt: skip
