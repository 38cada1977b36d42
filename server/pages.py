"""The command center and the live feed in a browser: server-rendered pages
(Jinja2), usable without JavaScript; the feed page adds new entries by itself
through a small script served here (nothing comes from elsewhere).

People log in with a name and password (``cadence user add``); the session
is an ``HttpOnly``, ``SameSite=Lax`` cookie, and every form carries the
session's CSRF token. Every page needs a session: without one, a visit goes
to the login page.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from cadence.errors import CadenceError
from cadence.server.api import MAX_ID, TaskId, event_stream
from cadence.server.throttle import LoginThrottle
from cadence.service import Application
from cadence.service.logins import Session, log_in, log_out, session

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
COOKIE = "cadence_session"
LOGIN_COOKIE = "cadence_login"  # the login form's CSRF token, before there is a session
FLASH = "cadence_said"  # what the next page says once: "Task 5 done.", or a problem
MAX_FLASH = 1000  # characters of it (a cookie holds about 4 KB)
KIND_NAMES = {
    "email_task": "Email",
    "call": "Call",
    "inmail": "InMail",
    "custom": "Task",
    "email": "Email",
}


class LoginNeeded(Exception):
    """A page visited without a session: answered with the login page."""


class Forbidden(Exception):
    """A form without the session's CSRF token."""


def _application(request: Request) -> Application:
    found: Application = request.app.state.application
    return found


async def _viewer(request: Request) -> Session:
    application = _application(request)
    cookie = request.cookies.get(COOKIE, "")
    found = await run_in_threadpool(session, application.engine.store, cookie, application.clock())
    if found is None:
        raise LoginNeeded
    request.state.viewer = found
    return found


async def _form_sender(request: Request, csrf: Annotated[str, Form()] = "") -> Session:
    """Who sent a form (FastAPI dependency): a session, and the session's own
    CSRF token in the form, or the form is refused."""
    viewer = await _viewer(request)
    if not hmac.compare_digest(viewer.csrf.encode(), csrf.encode()):
        raise Forbidden
    return viewer


FormSender = Annotated[Session, Depends(_form_sender)]


def _page(request: Request, name: str, viewer: Session | None, **context: Any) -> HTMLResponse:
    said = _flash(request)
    context.update(
        viewer=viewer.principal if viewer else None,
        csrf=context.get("csrf") or (viewer.csrf if viewer else ""),
        kind_names=KIND_NAMES,
        notice=said.get("notice"),
        problem=context.get("problem") or said.get("problem"),
    )
    page = templates.TemplateResponse(
        request, name, context, status_code=context.pop("http_status", 200)
    )
    if FLASH in request.cookies:
        page.delete_cookie(FLASH)  # said once
    return page


def _back(request: Request, path: str, **message: str) -> RedirectResponse:
    """To ``path``, which then says ``message`` (a notice or a problem) once.
    The message rides in a cookie signed with the viewer's session secret,
    never in the address: neither a link from elsewhere nor a cookie planted
    by another site can make a page say what it likes."""
    answer = RedirectResponse(path, status_code=303)
    viewer: Session | None = getattr(request.state, "viewer", None)
    if message and viewer is not None:
        text = json.dumps({k: v[:MAX_FLASH] for k, v in message.items()})
        payload = base64.urlsafe_b64encode(text.encode()).decode()
        answer.set_cookie(
            FLASH, f"{payload}.{_signature(viewer, payload)}", max_age=60, httponly=True,
            samesite="strict", secure=_secure(request),
        )  # fmt: skip
    return answer


def _flash(request: Request) -> dict[str, str]:
    """What the page was sent here to say, if the viewer's session signed it."""
    viewer: Session | None = getattr(request.state, "viewer", None)
    payload, _, signature = request.cookies.get(FLASH, "").partition(".")
    if viewer is None or not hmac.compare_digest(
        signature.encode(), _signature(viewer, payload).encode()
    ):
        return {}
    said = json.loads(base64.urlsafe_b64decode(payload.encode()))
    return {k: v for k, v in said.items() if k in ("notice", "problem") and isinstance(v, str)}


def _signature(viewer: Session, payload: str) -> str:
    return hmac.new(viewer.csrf.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _safe_next(target: str) -> str:
    """Only a path of this site: never another host (an open redirect)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/tasks"
    return target


# ---- logging in ----------------------------------------------------------------------------
@router.get("/login")
async def login_page(request: Request, next: str = "/tasks") -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    page = _page(request, "login.html", None, csrf=token, next=_safe_next(next))
    page.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request))
    return page


@router.post("/login")
async def login(
    request: Request,
    name: Annotated[str, Form(max_length=200)],
    password: Annotated[str, Form(max_length=2000)],
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/tasks",
) -> Response:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected.encode(), csrf.encode()):
        raise Forbidden
    application = _application(request)
    throttle: LoginThrottle = request.app.state.login_throttle
    address = request.client.host if request.client else ""
    wait = throttle.attempt(address, name)  # counted as failed until it succeeds
    if wait > 0:
        minutes = max(1, round(wait / 60))
        page = _page(request, "login.html", None, csrf=csrf, next=_safe_next(next),
                     problem=f"Too many failed logins from here: try again in {minutes} "
                     f"minute{'s' if minutes > 1 else ''}.", http_status=429)  # fmt: skip
        page.headers["Retry-After"] = str(int(wait) + 1)
        return page
    found = await run_in_threadpool(
        log_in, application.engine.store, name, password, application.clock()
    )
    if found is None:
        page = _page(request, "login.html", None, csrf=csrf, next=_safe_next(next),
                     problem="That name and password do not match.", http_status=401)  # fmt: skip
        return page
    throttle.succeeded(address, name)
    answer = RedirectResponse(_safe_next(next), status_code=303)
    # Max-Age, not Expires: relative to the browser's clock, whatever the server's says.
    lasts = int((found.expires_at - application.clock()).total_seconds())
    answer.set_cookie(
        COOKIE, found.cookie, httponly=True, samesite="lax", secure=_secure(request), max_age=lasts
    )
    answer.delete_cookie(LOGIN_COOKIE)
    return answer


@router.post("/logout")
async def logout(request: Request, viewer: FormSender) -> Response:
    await run_in_threadpool(log_out, _application(request).engine.store, viewer.cookie)
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE)
    return answer


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


# ---- the command center --------------------------------------------------------------------
@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/tasks", status_code=303)


@router.get("/tasks")
async def tasks_page(
    request: Request,
    campaign: str = "",
    kind: str = "",
    due_before: Annotated[str, Query(max_length=10)] = "",
) -> HTMLResponse:
    viewer = await _viewer(request)
    before = None
    problem = None
    if due_before:
        try:
            before = dt.date.fromisoformat(due_before)
        except ValueError:
            problem = f"{due_before!r} is not a date"
    wanted_kind: Any = kind if kind in ("email_task", "call", "inmail", "custom") else None
    application = _application(request)
    try:
        found = await run_in_threadpool(
            lambda: application.tasks(
                campaign=campaign or None, kind=wanted_kind, due_before=before, limit=500
            )
        )
    except CadenceError as error:
        found, problem = [], str(error)
    campaigns = await run_in_threadpool(application.campaigns)
    kinds = [("email_task", "Email"), ("call", "Call"), ("inmail", "InMail"), ("custom", "Task")]
    chosen = {"campaign": campaign, "kind": kind, "due_before": due_before}
    return _page(request, "tasks.html", viewer, section="tasks", tasks=found, campaigns=campaigns,
                 kinds=kinds, chosen=chosen, problem=problem)  # fmt: skip


@router.get("/tasks/{task_id}")
async def task_page(request: Request, task_id: TaskId) -> Response:
    viewer = await _viewer(request)
    try:
        found = await run_in_threadpool(_application(request).task, task_id)
    except CadenceError as error:
        # Sent back here by a refused form: its reason says more than "no open task".
        return _back(request, "/tasks", problem=_flash(request).get("problem") or str(error))
    return _page(request, "task.html", viewer, section="tasks", task=found)


@router.post("/tasks/{task_id}/send")
async def send_task(
    request: Request,
    task_id: TaskId,
    viewer: FormSender,
    subject: Annotated[str, Form(max_length=2000)] = "",
    body: Annotated[str, Form(max_length=1_000_000)] = "",
    action: Annotated[str, Form(max_length=20)] = "now",
    send_at: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """The compose view's buttons: cadence sends it now, or at ``send_at``
    (the recipient's time), or the person sent it themselves (record it)."""
    # A browser sends a textarea's line ends as CRLF: the text is kept as typed.
    text = body.replace("\r\n", "\n")
    if action == "record":
        return await _act(
            request, task_id, "recorded as sent",
            lambda app: app.send_task(task_id, subject=subject, body=text),
        )  # fmt: skip
    if action not in ("now", "schedule"):
        return _back(
            request, f"/tasks/{task_id}", problem=f"{action!r} is not something a task does."
        )
    when = None
    if action == "schedule":
        try:
            when = dt.datetime.fromisoformat(send_at.strip())
        except ValueError:
            return _back(
                request, f"/tasks/{task_id}", problem="Choose a day and time to send it at."
            )
    application = _application(request)
    try:
        due = await run_in_threadpool(
            lambda: application.schedule_task(task_id, subject=subject, body=text, when=when)
        )
    except CadenceError as error:
        return _back(request, f"/tasks/{task_id}", problem=str(error))
    said = "goes now" if when is None else f"goes at {due:%Y-%m-%d %H:%M} UTC"
    return _back(request, "/tasks", notice=f"Task {task_id} {said}.")


@router.post("/tasks/{task_id}/complete")
async def complete_task(request: Request, task_id: TaskId, viewer: FormSender) -> Response:
    return await _act(request, task_id, "done", lambda app: app.complete_task(task_id))


@router.post("/tasks/{task_id}/skip")
async def skip_task(request: Request, task_id: TaskId, viewer: FormSender) -> Response:
    return await _act(request, task_id, "skipped", lambda app: app.skip_task(task_id))


async def _act(request: Request, task_id: int, done: str, work: Any) -> Response:
    application = _application(request)
    try:
        await run_in_threadpool(work, application)
    except CadenceError as error:
        return _back(request, f"/tasks/{task_id}", problem=str(error))
    return _back(request, "/tasks", notice=f"Task {task_id} {done}.")


# ---- the feed and people -------------------------------------------------------------------
@router.get("/feed")
async def feed_page(request: Request) -> HTMLResponse:
    viewer = await _viewer(request)
    application = _application(request)
    end = await run_in_threadpool(application.feed_end)
    items = await run_in_threadpool(lambda: application.feed(after=max(end - 50, 0), limit=50))
    return _page(request, "feed.html", viewer, section="feed", items=items[::-1], after=end)


@router.get("/feed/stream")
async def feed_stream(
    request: Request, after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0
) -> StreamingResponse:
    await _viewer(request)
    last = request.headers.get("last-event-id", "")
    start = int(last) if last.isascii() and last.isdigit() and int(last) <= MAX_ID else after

    return event_stream(request, start, _viewer, LoginNeeded)


@router.get("/people")
async def person_page(
    request: Request, email: Annotated[str, Query(max_length=320)] = ""
) -> Response:
    viewer = await _viewer(request)
    try:
        status = await run_in_threadpool(_application(request).status, email.strip())
    except CadenceError as error:
        return _back(request, "/tasks", problem=str(error))
    return _page(request, "person.html", viewer, status=status)


def install(app: FastAPI) -> None:
    """How the pages answer a visit without a session, or a forged form."""

    @app.exception_handler(LoginNeeded)
    async def _login(request: Request, error: LoginNeeded) -> RedirectResponse:
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            # A form sent after the session ended: back to the page it came
            # from (a form's own address takes no GET).
            wanted = (
                request.url.path.rsplit("/", 1)[0] if wanted.startswith("/tasks/") else "/tasks"
            )
        return RedirectResponse(f"/login?next={quote(wanted)}", status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, error: Forbidden) -> HTMLResponse:
        return _page(request, "problem.html", None, title="Refused",
                     detail="The form was not sent from this site's own page (its token is "
                     "missing or old). Open the page again and send it from there.",
                     http_status=403)  # fmt: skip
