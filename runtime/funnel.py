"""A campaign's results so far, from the database: per email (and per variant
of one in a test) how many were sent and how many of those people replied,
bounced or unsubscribed after it; per task how many were done or skipped;
and for each test whether its variants' reply rates differ (runtime/significance.py).

An outcome counts for the last email the person was sent before it (the one
they answered, bounced on or left after), in campaign order of versions alike.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import select

from cadence.runtime.engine import Engine
from cadence.runtime.schema import actions, campaigns, enrollments, feed
from cadence.runtime.significance import TEST_NAME, reply_test

# Why an enrollment ended when the person left: they unsubscribed, or complained.
_LEFT = frozenset({"unsubscribed", "suppressed (complained)"})


@dataclass
class EmailResult:
    step: str
    variant: str | None
    sent: int = 0
    replied: int = 0
    bounced: int = 0
    unsubscribed: int = 0

    @property
    def reply_rate(self) -> float | None:
        return self.replied / self.sent if self.sent else None


@dataclass
class TaskResult:
    step: str
    kind: str
    done: int = 0
    skipped: int = 0
    open: int = 0


@dataclass
class TestSummary:
    step: str
    test: str
    statistic: float
    df: int
    p_value: float
    significant: bool
    note: str | None


@dataclass
class Funnel:
    people: int
    emails: list[EmailResult] = field(default_factory=list)
    tasks: list[TaskResult] = field(default_factory=list)
    tests: list[TestSummary] = field(default_factory=list)


def funnel(engine: Engine, campaign: str, steps: list[str]) -> Funnel:
    """The results of ``campaign`` (its `id`, name or a version's key; every
    version), its emails and tasks listed in the order of ``steps`` (the
    newest version's; steps only older versions had come after)."""
    identity = engine.find_campaign(campaign)
    versions = select(campaigns.c.id).where(campaigns.c.identity == identity)
    order = {step: n for n, step in enumerate(steps)}
    with engine.store.read() as connection:
        people = connection.execute(
            select(enrollments.c.id, enrollments.c.reason, enrollments.c.ended_at).where(
                enrollments.c.campaign_id.in_(versions)
            )
        ).all()
        rows = connection.execute(
            select(
                actions.c.enrollment_id, actions.c.step, actions.c.kind, actions.c.status,
                actions.c.variant, actions.c.sent_at,
            )
            .join(enrollments, enrollments.c.id == actions.c.enrollment_id)
            .where(enrollments.c.campaign_id.in_(versions))
        ).all()  # fmt: skip
        events = connection.execute(
            select(feed.c.enrollment_id, feed.c.event, feed.c.at)
            .join(enrollments, enrollments.c.id == feed.c.enrollment_id)
            .where(enrollments.c.campaign_id.in_(versions), feed.c.event.in_(["reply", "bounce"]))
            .order_by(feed.c.at)
        ).all()
    emails: dict[tuple[str, str | None], EmailResult] = {}
    tasks: dict[str, TaskResult] = {}
    sent: dict[int, list[tuple[dt.datetime, tuple[str, str | None]]]] = defaultdict(list)
    for enrollment_id, step, kind, status, variant, sent_at in rows:
        if kind in ("email", "email_task"):
            key = (step, variant)
            if status == "sent" and sent_at is not None:
                emails.setdefault(key, EmailResult(step, variant)).sent += 1
                sent[enrollment_id].append((sent_at, key))
            elif kind == "email" or status == "open":
                emails.setdefault(key, EmailResult(step, variant))
        if kind != "email":
            task = tasks.setdefault(step, TaskResult(step, kind))
            if status in ("completed", "sent"):
                task.done += 1
            elif status == "skipped":
                task.skipped += 1
            elif status == "open":
                task.open += 1
    for history in sent.values():
        history.sort()
    counted: set[tuple[int, str]] = set()
    for enrollment_id, event, at in events:
        if (enrollment_id, event) in counted:
            continue  # a person's first reply (or bounce) after an email counts
        before = _last_before(sent.get(enrollment_id, []), at)
        if before is None:
            continue  # before any email: not an answer to one
        counted.add((enrollment_id, event))
        result = emails[before]
        if event == "reply":
            result.replied += 1
        else:
            result.bounced += 1
    for enrollment_id, reason, ended_at in people:
        if reason in _LEFT and ended_at is not None:
            before = _last_before(sent.get(enrollment_id, []), ended_at)
            if before is not None:
                emails[before].unsubscribed += 1
    found = Funnel(people=len(people))
    place = len(order)
    found.emails = sorted(
        emails.values(), key=lambda r: (order.get(r.step, place), r.step, r.variant or "")
    )
    found.tasks = sorted(tasks.values(), key=lambda r: (order.get(r.step, place), r.step))
    found.tests = _tests(found.emails)
    return found


def _last_before(
    history: list[tuple[dt.datetime, tuple[str, str | None]]], at: dt.datetime
) -> tuple[str, str | None] | None:
    """The email a person was last sent at or before ``at``."""
    index = bisect.bisect_right(history, at, key=lambda item: item[0])
    return history[index - 1][1] if index else None


def _tests(emails: list[EmailResult]) -> list[TestSummary]:
    by_step: dict[str, list[EmailResult]] = defaultdict(list)
    for email in emails:
        if email.variant is not None:
            by_step[email.step].append(email)
    found = []
    for step, variants in by_step.items():
        outcome = reply_test([(v.sent, v.replied) for v in variants])
        if outcome is None:
            continue
        found.append(
            TestSummary(
                step=step,
                test=TEST_NAME,
                statistic=outcome.statistic,
                df=outcome.df,
                p_value=outcome.p_value,
                significant=outcome.significant,
                note=outcome.note,
            )
        )
    return found
