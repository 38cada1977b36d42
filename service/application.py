"""The operations of cadence, as a program offers them to people and tools
(see the package's docstring)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel

from cadence.compiler.compile import compile_source
from cadence.compiler.ir import identity, shown_identity
from cadence.errors import CadenceError
from cadence.reporting.machine import json_rows
from cadence.runtime import suppression
from cadence.runtime.classify import Classification
from cadence.runtime.engine import (
    UNTIL_RESUMED,
    CatchUp,
    Engine,
    EnrollReport,
    FeedEntry,
    NotFound,
    SuppressReport,
)
from cadence.runtime.inbox import Inbox, InboxSettings
from cadence.runtime.mailboxes import Senders
from cadence.runtime.overview import (
    CampaignOverview,
    PersonStatus,
    campaign_overviews,
    person_status,
)
from cadence.runtime.people import Person, RowProblem
from cadence.runtime.plan_command import parse_start
from cadence.runtime.planner import parse_time
from cadence.service.once import first_use
from cadence.service.task_views import TaskView, TaskViews

__all__ = ["Application", "CampaignInvalid", "NotFound"]

Clock = Callable[[], dt.datetime]
TaskKind = Literal["email_task", "call", "inmail", "custom"]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class CampaignInvalid(CadenceError, ValueError):
    """A campaign source with errors: ``diagnostics`` lists them (as ``check``
    reports them, in JSON form)."""

    def __init__(self, message: str, diagnostics: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.diagnostics = diagnostics


class Checked(BaseModel):
    """A campaign source checked: ``ok`` when it has no errors."""

    ok: bool
    name: str | None
    diagnostics: list[dict[str, Any]]


class CampaignAdded(BaseModel):
    identity: str  # what the API and the CLI call the campaign by
    name: str
    key: str  # the version's key
    version: int
    warnings: list[dict[str, Any]]


class Enrolled(BaseModel):
    campaign: str
    key: str
    version: int
    enrolled: int
    already: int  # enrolled before with the same start (a retried enroll)
    actions: int
    caught_up: int
    problems: list[RowProblem]


class FeedItem(BaseModel):
    id: int
    at: dt.datetime
    campaign: str  # the version's key
    person: str | None
    event: str
    step: str | None
    message: str


class Reported(BaseModel):
    """What a provider's report did: events acted on, and events it had
    reported before (acted on then, not again)."""

    new: int
    read_before: int
    outcomes: list[str]


class Application:
    """cadence's operations over one engine; ``clock`` says what time it is,
    ``inbox`` how reports of bounces count (as for mail read by `inbox`),
    ``senders`` who signs a task's prefilled email (the config's mailboxes)."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock = utc_now,
        inbox: InboxSettings | None = None,
        senders: Senders | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.inbox = Inbox(engine, inbox)
        self.task_views = TaskViews(engine, senders)

    @classmethod
    def open(
        cls,
        db: str,
        clock: Clock = utc_now,
        inbox: InboxSettings | None = None,
        senders: Senders | None = None,
    ) -> Application:
        return cls(Engine.open(db, now=clock()), clock, inbox, senders)

    def close(self) -> None:
        self.engine.close()

    # ---- campaigns -------------------------------------------------------------------
    def campaigns(self) -> list[CampaignOverview]:
        return campaign_overviews(self.engine.store)

    def campaign(self, text: str) -> CampaignOverview:
        """One campaign, by its `id`, its name, or a version's key (or prefix)."""
        found = campaign_overviews(self.engine.store, self.engine.find_campaign(text))
        if not found:
            raise NotFound(f"no campaign matches {text!r}")
        return found[0]

    def check(self, source: str, name: str, templates: Mapping[str, str] | None = None) -> Checked:
        """Check a campaign's source (its template files given as text)."""
        result = compile_source(source, name, template_files=templates or {})
        return Checked(
            ok=result.ok,
            name=result.ir.name if result.ir is not None else None,
            diagnostics=json_rows(result.diagnostics),
        )

    def add_campaign(
        self, source: str, name: str, templates: Mapping[str, str] | None = None
    ) -> CampaignAdded:
        """Compile a campaign's source and keep it as a version (the same
        version again when it behaves the same); :class:`CampaignInvalid`
        when it has errors."""
        result = compile_source(source, name, template_files=templates or {})
        found = json_rows(result.diagnostics)
        if not result.ok or result.ir is None:
            errors = [d for d in found if d["severity"] == "error"]
            first = errors[0]["message"] if errors else "it does not compile"
            raise CampaignInvalid(f"the campaign has {len(errors)} error(s): {first}", found)
        ir = result.ir
        key, version = self.engine.add_campaign(ir, self.clock())
        return CampaignAdded(
            identity=shown_identity(identity(ir)),
            name=ir.name,
            key=key,
            version=version,
            warnings=found,
        )

    # ---- enrolling -------------------------------------------------------------------
    def enroll(
        self,
        campaign: str,
        people: Iterable[Person | RowProblem | Mapping[str, Any]],
        *,
        start: str,
        at: Mapping[str, str] | None = None,
        catch_up: CatchUp | None = None,
        again: bool = False,
    ) -> Enrolled:
        """Enroll ``people`` in the newest version of ``campaign`` (its id,
        name or a key); a row the campaign cannot take is in ``problems`` —
        among them people whose enrollment in it ended or finished, unless
        ``again``."""
        key = self._newest_version(campaign)
        ir = self.engine.campaign(key)
        now = self.clock()
        begins = parse_start(start, ir, now, label="start")
        overrides = {step: parse_time(str(time)) for step, time in (at or {}).items()}
        report: EnrollReport = self.engine.enroll(
            ir, people, begins, overrides, now=now, catch_up=catch_up, again=again
        )
        return Enrolled(
            campaign=shown_identity(identity(ir)), key=report.campaign_id, version=report.version,
            enrolled=report.enrolled, already=report.already, actions=report.actions,
            caught_up=report.caught_up, problems=report.problems,
        )  # fmt: skip

    def _newest_version(self, campaign: str) -> str:
        found = self.campaign(campaign)
        if not found.versions:
            raise NotFound(f"campaign {campaign!r} has no versions")
        return max(found.versions, key=lambda v: v.version).key

    # ---- people ----------------------------------------------------------------------
    def status(self, person: str) -> PersonStatus:
        found = person_status(self.engine.store, person)
        if not found.enrollments:
            raise NotFound(f"{person} was never enrolled")
        return found

    def pause(
        self, person: str, *, until: dt.date | None = None, campaign: str | None = None, reason: str
    ) -> int:
        """Hold ``person`` until ``until`` (or until resumed); how many enrollments paused."""
        return self.engine.pause(
            person,
            until or UNTIL_RESUMED,
            self.clock(),
            reason=reason,
            campaign=self._key(campaign),
        )

    def resume(self, person: str, *, campaign: str | None = None) -> int:
        return self.engine.resume(person, self.clock(), campaign=self._key(campaign))

    def remove(self, person: str, *, campaign: str | None = None) -> None:
        self.engine.remove(person, self.clock(), self._key(campaign))

    def _key(self, campaign: str | None) -> str | None:
        return self.engine.find_campaign(campaign) if campaign else None

    # ---- events ----------------------------------------------------------------------
    def reply(self, person: str, *, campaign: str | None = None) -> None:
        self.engine.reply(person, self.clock(), self._key(campaign))

    def bounce(self, person: str, *, source: str) -> int:
        return self.engine.bounce(person, self.clock(), source=source)

    def unsubscribe(self, person: str, *, source: str) -> int:
        return self.engine.unsubscribe(person, self.clock(), source=source)

    def provider_reports(
        self, provider: str, events: Iterable[tuple[str, Classification]], raw: bytes
    ) -> Reported:
        """Act on what an email provider reports (``(event id, what it
        says)``), as on bounce and complaint mail: each event once."""
        now = self.clock()
        done = [self.inbox.report(f"{provider}:{key}", found, now, raw) for key, found in events]
        fresh = [item for item in done if item.new]
        return Reported(
            new=len(fresh), read_before=len(done) - len(fresh), outcomes=[i.outcome for i in fresh]
        )

    def first_use(self, token: str) -> bool:
        """Whether ``token`` (a provider's single-use signing token) is seen
        here for the first time; it is kept a day, long past its signature's
        freshness."""
        return first_use(self.engine.store, token, self.clock())

    # ---- tasks -----------------------------------------------------------------------
    def tasks(
        self,
        *,
        person: str | None = None,
        due_before: dt.date | None = None,
        campaign: str | None = None,
        kind: TaskKind | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[TaskView]:
        """Open tasks, in the order they are due, with what acting on them needs."""
        found = self.engine.open_tasks(
            person=person, due_before=due_before, kind=kind, campaign=self._key(campaign),
            limit=limit, offset=offset,
        )  # fmt: skip
        return self.task_views.views(found)

    def task(self, task_id: int) -> TaskView:
        """An open task a person can act on now."""
        found = self.engine.open_tasks(task_id=task_id)
        if not found:
            raise NotFound(f"no open task {task_id}")
        return self.task_views.views(found)[0]

    def send_task(
        self, task_id: int, *, subject: str | None = None, body: str | None = None
    ) -> None:
        """A person sent email task ``task_id`` themselves: with their edits,
        or as prefilled (a task that cannot be sent is refused by the engine,
        which says why: closed, waiting for another, not an email)."""
        subject, body = self._edited(task_id, subject, body)
        self.engine.send_task(task_id, subject, body, self.clock())

    def schedule_task(
        self,
        task_id: int,
        *,
        subject: str | None = None,
        body: str | None = None,
        when: dt.datetime | None = None,
    ) -> dt.datetime:
        """cadence sends email task ``task_id`` for the person: now, or at
        ``when`` (without a zone: in the recipient's), with their edits or
        as prefilled. Returns when it goes (UTC)."""
        subject, body = self._edited(task_id, subject, body)
        return self.engine.schedule_task(task_id, subject, body, when, self.clock())

    def _edited(self, task_id: int, subject: str | None, body: str | None) -> tuple[str, str]:
        """The texts as edited, the prefilled ones where there is no edit."""
        if subject is None or body is None:
            found = self.engine.open_tasks(task_id=task_id)
            prefilled = self.task_views.views(found)[0] if found else None
            if prefilled is not None:
                subject = prefilled.subject if subject is None else subject
                body = prefilled.body if body is None else body
        return subject or "", body or ""

    def complete_task(self, task_id: int) -> None:
        self.engine.complete_task(task_id, self.clock())

    def skip_task(self, task_id: int) -> None:
        self.engine.skip_task(task_id, self.clock())

    # ---- the feed --------------------------------------------------------------------
    def feed(self, *, after: int = 0, limit: int = 100) -> list[FeedItem]:
        return [_feed_item(entry) for entry in self.engine.feed(after=after, limit=limit)]

    def feed_end(self) -> int:
        """The id of the newest entry of the feed (0 when it is empty)."""
        return self.engine.feed_end()

    # ---- suppression -----------------------------------------------------------------
    def suppressions(self, reason: str | None = None) -> list[suppression.Suppression]:
        return self.engine.suppressions(reason)

    def suppress(
        self, emails: Iterable[str], *, note: str | None = None, source: str
    ) -> SuppressReport:
        return self.engine.suppress(emails, "manual", self.clock(), source=source, note=note)

    def unsuppress(self, emails: Iterable[str]) -> int:
        return self.engine.unsuppress(emails)


def _feed_item(entry: FeedEntry) -> FeedItem:
    return FeedItem(
        id=entry.id, at=entry.at, campaign=entry.campaign_id, person=entry.person,
        event=entry.event, step=entry.step, message=entry.message,
    )  # fmt: skip
