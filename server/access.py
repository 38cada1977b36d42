"""Who may do what: every API call carries a token (``Authorization: Bearer
cad_…``); a read-only token may read and nothing else. A call without a
valid credential is refused before it reaches the application."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from cadence.server.problems import Problem
from cadence.service import Application
from cadence.service.credentials import Principal, verify_token

_READS = frozenset({"GET", "HEAD", "OPTIONS"})


async def caller(request: Request) -> Principal:
    """The principal of the request (FastAPI dependency): 401 without one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "unauthorized", "this needs an API token: Authorization: Bearer cad_…")
    application: Application = request.app.state.application
    found = await run_in_threadpool(
        verify_token, application.engine.store, token.strip(), application.clock()
    )
    if found is None:
        raise Problem(401, "unauthorized", "the API token is unknown or revoked")
    if found.read_only and request.method not in _READS:
        raise Problem(
            403, "read-only", f"token {found.name!r} is read-only: it cannot change anything"
        )
    request.state.principal = found
    return found
