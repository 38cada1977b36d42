"""The ASGI application of ``cadence serve`` (FastAPI, served by uvicorn)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from cadence import __version__
from cadence.server import api, pages, problems
from cadence.server.limits import DEFAULT_MAX_BODY, RequestLimits
from cadence.server.throttle import LoginThrottle
from cadence.server.webhooks import WebhookSecrets
from cadence.server.webhooks import router as webhooks_router
from cadence.service import Application


def create_app(
    application: Application,
    *,
    max_body: int = DEFAULT_MAX_BODY,
    feed_poll: float = 1.0,
    stream_recheck: float = 5.0,
    webhooks: WebhookSecrets | None = None,
) -> FastAPI:
    """The web app over ``application`` (which the caller opens and closes).
    The OpenAPI document is at ``/api/v1/openapi.json``; no page loads
    anything from elsewhere (no hosted API explorer). An event stream looks
    for new feed entries every ``feed_poll`` seconds, and checks every
    ``stream_recheck`` seconds that its credential still holds; ``webhooks`` holds the
    providers' secrets (none: no provider's webhook is taken)."""
    app = _routes()
    app.state.application = application
    app.state.feed_poll = feed_poll
    app.state.stream_recheck = stream_recheck
    app.state.webhooks = webhooks or WebhookSecrets()
    app.state.login_throttle = LoginThrottle()
    app.state.believed = {}  # API tokens found good lately (cadence.server.access)
    problems.install(app)
    pages.install(app)
    app.add_middleware(RequestLimits, max_body=max_body)
    return app


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document, without a database (for the docs)."""
    return _routes().openapi()


def _routes() -> FastAPI:
    app = FastAPI(
        title="cadence",
        version=__version__,
        summary="Sales campaigns as code: campaigns, enrollments, tasks, events and the feed",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(api.router)
    app.include_router(webhooks_router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.HERE / "static"), name="static")
    return app
