"""The routes of ``/api/v1``. Each parses its request, calls the
application layer (in a worker thread: it talks to the database), and
answers with the application's models as JSON."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from cadence.runtime.overview import CampaignOverview, PersonStatus
from cadence.runtime.people import Utf8Lines, read_people
from cadence.runtime.suppression import Suppression
from cadence.server.access import caller
from cadence.server.idempotency import idempotent
from cadence.server.problems import Problem
from cadence.service import Application
from cadence.service.application import CampaignAdded, Checked, Enrolled, FeedItem
from cadence.service.credentials import Principal
from cadence.service.task_views import TaskView

router = APIRouter(prefix="/api/v1", dependencies=[Depends(caller)])
Caller = Annotated[Principal, Depends(caller)]
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
MAX_PAGE = 500
# Ids and positions the databases can hold: PostgreSQL's `integer` ids (feed
# entries too), 64-bit offsets. A larger number names nothing, and is refused
# before any query.
MAX_ID = 2**31 - 1
MAX_OFFSET = 2**62
TaskId = Annotated[int, Path(ge=1, le=MAX_ID)]
HEARTBEAT = 15.0  # seconds of quiet before a comment keeps an event stream open


async def _call(request: Request, work: Callable[[Application], T]) -> T:
    application: Application = request.app.state.application
    return await run_in_threadpool(work, application)


def _json(value: Any, status: int = 200) -> JSONResponse:
    content = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return JSONResponse(content, status_code=status)


# ---- campaigns ---------------------------------------------------------------------------
class CampaignSource(BaseModel):
    source: str = Field(description="the .campaign file's text", max_length=1_000_000)
    name: str = Field("campaign.campaign", description="its file name, for diagnostics")
    templates: dict[str, str] = Field(
        default_factory=dict, description="its template files: path as the campaign names it → text"
    )


@router.get("/campaigns", response_model=list[CampaignOverview])
async def list_campaigns(request: Request) -> list[CampaignOverview]:
    """Every campaign, with its versions and how many people are where."""
    return await _call(request, lambda app: app.campaigns())


@router.get("/campaigns/{campaign}", response_model=CampaignOverview)
async def get_campaign(request: Request, campaign: str) -> CampaignOverview:
    """One campaign, by its `id`, its name, or a version's key."""
    return await _call(request, lambda app: app.campaign(campaign))


@router.post("/campaigns/check", response_model=Checked)
async def check_campaign(request: Request, source: CampaignSource) -> Checked:
    """Check a campaign's source (nothing is kept): its diagnostics, as
    `cadence check --format json` gives them."""
    return await _call(request, lambda app: app.check(source.source, source.name, source.templates))


@router.post("/campaigns", response_model=CampaignAdded, status_code=201)
async def add_campaign(request: Request, who: Caller, source: CampaignSource) -> Response:
    """Compile a campaign and keep it as a version (the same version when it behaves the same)."""

    async def compute() -> Response:
        added = await _call(
            request, lambda app: app.add_campaign(source.source, source.name, source.templates)
        )
        return _json(added, 201)

    return await idempotent(request, who, compute)


# ---- enrolling ---------------------------------------------------------------------------
class EnrollRequest(BaseModel):
    people: list[dict[str, Any]] = Field(description="each person's fields; `email` required")
    start: str = Field(description="ISO 8601 (no offset: the campaign's zone), or `now`")
    at: dict[str, str] = Field(
        default_factory=dict, description="new times of `send at` steps: step → HH:MM"
    )
    catch_up: Literal["skip", "send"] | None = Field(None, description="for a start in the past")
    again: bool = Field(
        False,
        description="enroll anew people whose enrollment in this campaign ended or finished "
        "(suppressed addresses stay refused)",
    )


@router.post(
    "/campaigns/{campaign}/enrollments",
    response_model=Enrolled,
    status_code=201,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": EnrollRequest.model_json_schema()},
                "text/csv": {"schema": {"type": "string"}},
            }
        }
    },
)
async def enroll(
    request: Request,
    who: Caller,
    campaign: str,
    start: Annotated[str | None, Query(description="with a CSV body")] = None,
    at: Annotated[list[str], Query(description="with a CSV body: STEP=HH:MM")] = [],  # noqa: B006
    catch_up: Annotated[Literal["skip", "send"] | None, Query()] = None,
    again: Annotated[bool, Query(description="with a CSV body: as `again` in JSON")] = False,
) -> Response:
    """Enroll people in the newest version of a campaign: a JSON body, or CSV
    (a header row with `email`) with `start` in the query. Rows the campaign
    cannot take are listed in `problems`; the others are enrolled."""
    body = await request.body()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "text/csv":
        if start is None:
            raise Problem(422, "invalid-input", "a CSV enroll needs `start` in the query")
        # As `cadence enroll` reads a file: a line that is not UTF-8 is a row problem.
        people: Any = read_people(Utf8Lines(io.BytesIO(body)), "csv")
        times = dict(_step_time(item) for item in at)
        wanted = EnrollRequest(people=[], start=start, at=times, catch_up=catch_up, again=again)
    elif media in ("application/json", ""):
        wanted = _parsed(EnrollRequest, body)
        people = wanted.people
    else:
        raise Problem(415, "unsupported-media-type", "send application/json or text/csv")

    async def compute() -> Response:
        done = await _call(
            request,
            lambda app: app.enroll(
                campaign,
                people,
                start=wanted.start,
                at=wanted.at,
                catch_up=wanted.catch_up,
                again=wanted.again,
            ),
        )
        return _json(done, 201)

    return await idempotent(request, who, compute)


def _parsed(model: type[M], body: bytes) -> M:
    """A body read here (not by FastAPI): its problems as the API's others."""
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from None


def _step_time(item: str) -> tuple[str, str]:
    step, sep, time = item.partition("=")
    if not sep or not step.strip():
        raise Problem(422, "invalid-input", f"at {item!r}: write STEP=HH:MM, like breakup=10:15")
    return step.strip(), time.strip()


# ---- people ------------------------------------------------------------------------------
class PauseRequest(BaseModel):
    until: dt.date | None = Field(None, description="the day they come back; none: until resumed")
    campaign: str | None = Field(None, description="only in this campaign")
    reason: str = Field("paused over the API", max_length=500)


class CampaignChoice(BaseModel):
    campaign: str | None = Field(None, description="only in this campaign")


class Count(BaseModel):
    count: int


@router.get("/people/{person}", response_model=PersonStatus)
async def person_status(request: Request, person: str) -> PersonStatus:
    """Where a person is in every campaign they were enrolled in."""
    return await _call(request, lambda app: app.status(person))


@router.post("/people/{person}/pause", response_model=Count)
async def pause(request: Request, person: str, wanted: PauseRequest) -> Count:
    """Hold everything for a person until a day, or until resumed."""
    paused = await _call(
        request,
        lambda app: app.pause(
            person, until=wanted.until, campaign=wanted.campaign, reason=wanted.reason
        ),
    )
    return Count(count=paused)


@router.post("/people/{person}/resume", response_model=Count)
async def resume(request: Request, person: str, wanted: CampaignChoice) -> Count:
    """Resume a person now: the rest of their schedule moves up."""
    return Count(
        count=await _call(request, lambda app: app.resume(person, campaign=wanted.campaign))
    )


@router.post("/people/{person}/remove", status_code=204)
async def remove(request: Request, person: str, wanted: CampaignChoice) -> Response:
    """Remove a person: pending sends cancelled, open tasks closed."""
    await _call(request, lambda app: app.remove(person, campaign=wanted.campaign))
    return Response(status_code=204)


# ---- events ------------------------------------------------------------------------------
class EventRequest(BaseModel):
    type: Literal["reply", "bounce", "unsubscribe"]
    person: str = Field(max_length=320)
    campaign: str | None = Field(None, description="a reply: only in this campaign")


@router.post("/events", response_model=Count)
async def event(request: Request, who: Caller, wanted: EventRequest) -> Response:
    """Report what happened: a reply (the campaign's `on reply` decides), a
    hard bounce or an unsubscribe (the address is suppressed everywhere)."""
    source = f"api:{who.name}"

    def record(app: Application) -> int:
        if wanted.type == "reply":
            app.reply(wanted.person, campaign=wanted.campaign)
            return 1
        if wanted.type == "bounce":
            return app.bounce(wanted.person, source=source)
        return app.unsubscribe(wanted.person, source=source)

    async def compute() -> Response:
        return _json(Count(count=await _call(request, record)))

    return await idempotent(request, who, compute)


# ---- tasks -------------------------------------------------------------------------------
class TaskEdits(BaseModel):
    subject: str | None = Field(
        None, description="as sent; none: the prefilled one", max_length=2000
    )
    body: str | None = Field(
        None, description="as sent; none: the prefilled one", max_length=1_000_000
    )


@router.get("/tasks", response_model=list[TaskView])
async def list_tasks(
    request: Request,
    person: str | None = None,
    campaign: str | None = None,
    kind: Literal["email_task", "call", "inmail", "custom"] | None = None,
    due_before: dt.date | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[TaskView]:
    """Open tasks a person can act on now, in the order they are due."""
    return await _call(
        request,
        lambda app: app.tasks(
            person=person,
            campaign=campaign,
            kind=kind,
            due_before=due_before,
            limit=limit,
            offset=offset,
        ),
    )


@router.get("/tasks/{task_id}", response_model=TaskView)
async def get_task(request: Request, task_id: TaskId) -> TaskView:
    """One open task, with its email prefilled for its person."""
    return await _call(request, lambda app: app.task(task_id))


class Scheduling(TaskEdits):
    at: dt.datetime | None = Field(
        None,
        description="when cadence sends it (ISO 8601; without an offset: the recipient's time); "
        "none or past: now",
    )


class Scheduled(BaseModel):
    id: int
    at: dt.datetime = Field(description="when it goes (UTC)")


@router.post("/tasks/{task_id}/schedule", response_model=Scheduled)
async def schedule_task(
    request: Request, task_id: TaskId, wanted: Scheduling | None = None
) -> Scheduled:
    """cadence sends an email task for the person: now, or at `at`, with their
    edits or as prefilled. The steps after it wait until it is sent."""
    wanted = wanted or Scheduling()
    at = await _call(
        request,
        lambda app: app.schedule_task(
            task_id, subject=wanted.subject, body=wanted.body, when=wanted.at
        ),
    )
    return Scheduled(id=task_id, at=at)


@router.post("/tasks/{task_id}/send", status_code=204)
async def send_task(request: Request, task_id: TaskId, edits: TaskEdits | None = None) -> Response:
    """A person sent an email task themselves (from their own mail program):
    record it, with their edits or as prefilled. For cadence to send it, see
    `schedule`."""
    edits = edits or TaskEdits()
    await _call(request, lambda app: app.send_task(task_id, subject=edits.subject, body=edits.body))
    return Response(status_code=204)


@router.post("/tasks/{task_id}/complete", status_code=204)
async def complete_task(request: Request, task_id: TaskId) -> Response:
    """Mark a task done."""
    await _call(request, lambda app: app.complete_task(task_id))
    return Response(status_code=204)


@router.post("/tasks/{task_id}/skip", status_code=204)
async def skip_task(request: Request, task_id: TaskId) -> Response:
    """Skip a task (the steps after it go ahead)."""
    await _call(request, lambda app: app.skip_task(task_id))
    return Response(status_code=204)


# ---- the feed ----------------------------------------------------------------------------
class FeedPage(BaseModel):
    items: list[FeedItem]
    next_after: int = Field(description="pass as `after` for the entries that follow")


@router.get("/feed", response_model=FeedPage)
async def feed(
    request: Request,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> FeedPage:
    """What happened, oldest first, after entry `after`."""
    items = await _call(request, lambda app: app.feed(after=after, limit=limit))
    return FeedPage(items=items, next_after=items[-1].id if items else after)


@router.get(
    "/feed/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def feed_stream(
    request: Request,
    after: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    last_event_id: Annotated[int | None, Header(ge=0, le=MAX_ID)] = None,
) -> StreamingResponse:
    """The feed as Server-Sent Events, as it happens: each entry an event
    `feed` whose id is the entry's (a client that reconnects with
    `Last-Event-ID` misses nothing); a comment every 15 s keeps the line open."""
    start = last_event_id if last_event_id is not None else after
    if start is None:  # from now on: the entries to come, not the history
        newest = await _call(request, lambda app: app.feed_end())
        start = newest

    return event_stream(request, start, caller, Problem)


def event_stream(
    request: Request,
    start: int,
    check: Callable[[Request], Awaitable[object]],
    refusal: type[Exception],
) -> StreamingResponse:
    """The feed after ``start`` as an event stream, for as long as ``check``
    (the credential's own check, which raises ``refusal``) still passes."""

    async def allowed() -> bool:
        try:
            await check(request)
        except refusal:
            return False
        return True

    return StreamingResponse(
        feed_events(request, start, allowed),
        media_type="text/event-stream",
        # No caching, and no buffering by a proxy in front (nginx): events as they come.
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _feed_after(after: int, app: Application) -> list[FeedItem]:
    return app.feed(after=after, limit=MAX_PAGE)


Allowed = Callable[[], Awaitable[bool]]


async def feed_events(request: Request, after: int, allowed: Allowed) -> AsyncIterator[str]:
    """Feed entries after ``after`` as events, while the client listens and
    ``allowed()`` (asked every few seconds: the app's ``stream_recheck``) says
    it still may: a revoked token or an ended session ends its open streams
    too."""
    poll: float = request.app.state.feed_poll
    quiet = 0.0
    recheck: float = request.app.state.stream_recheck
    checked = time.monotonic()
    while not await request.is_disconnected():
        if time.monotonic() - checked >= recheck:
            if not await allowed():
                return
            checked = time.monotonic()
        items = await _call(request, functools.partial(_feed_after, after))
        for item in items:
            yield f"id: {item.id}\nevent: feed\ndata: {item.model_dump_json()}\n\n"
            after = item.id
        if items:
            quiet = 0.0
            continue
        quiet += poll
        if quiet >= HEARTBEAT:
            quiet = 0.0
            yield ": still here\n\n"
        await asyncio.sleep(poll)


# ---- suppression -------------------------------------------------------------------------
class SuppressRequest(BaseModel):
    emails: list[str] = Field(min_length=1, max_length=10_000)
    note: str | None = Field(None, max_length=500)


class Suppressed(BaseModel):
    added: int
    already: int
    ended: int
    problems: list[str]


@router.get("/suppressions", response_model=list[Suppression])
async def list_suppressions(
    request: Request,
    reason: Literal["unsubscribed", "bounced", "complained", "manual", "imported"] | None = None,
) -> list[Suppression]:
    """Addresses never emailed again, with why and since when."""
    return await _call(request, lambda app: app.suppressions(reason))


@router.post("/suppressions", response_model=Suppressed)
async def suppress(request: Request, who: Caller, wanted: SuppressRequest) -> Response:
    """Suppress addresses: their active enrollments end in every campaign."""
    source = f"api:{who.name}"

    async def compute() -> Response:
        report = await _call(
            request, lambda app: app.suppress(wanted.emails, note=wanted.note, source=source)
        )
        return _json(Suppressed(added=report.added, already=report.already, ended=report.ended,
                                problems=report.problems))  # fmt: skip

    return await idempotent(request, who, compute)


@router.delete("/suppressions/{email}", response_model=Count)
async def unsuppress(request: Request, email: str) -> Count:
    """Take an address off the suppression list (ended enrollments stay ended)."""
    return Count(count=await _call(request, lambda app: app.unsuppress([email])))
