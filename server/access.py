"""Who may do what: every API call carries a token (``Authorization: Bearer
cad_…``); a read-only token may read and nothing else. A call without a
valid credential is refused before it reaches the application.

A token found good is believed for :data:`BELIEVED` seconds without asking
the database again (a tool calling many times a second would otherwise make
every call a query more); so a revoked token stops working within that time.
"""

from __future__ import annotations

import time

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from cadence.server.problems import Problem
from cadence.service import Application
from cadence.service.credentials import Principal, digest, verify_token

_READS = frozenset({"GET", "HEAD", "OPTIONS"})
BELIEVED = 5.0  # seconds
_KEPT = 1000  # tokens believed at once, at most
Believed = dict[str, tuple[Principal, float]]  # each app's own: app.state.believed


async def caller(request: Request) -> Principal:
    """The principal of the request (FastAPI dependency): 401 without one."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "unauthorized", "this needs an API token: Authorization: Bearer cad_…")
    found = await _verified(request, token.strip())
    if found is None:
        raise Problem(401, "unauthorized", "the API token is unknown or revoked")
    if found.read_only and request.method not in _READS:
        raise Problem(
            403, "read-only", f"token {found.name!r} is read-only: it cannot change anything"
        )
    request.state.principal = found
    return found


async def _verified(request: Request, token: str) -> Principal | None:
    key = digest(token)
    believed: Believed = request.app.state.believed
    kept = believed.get(key)
    if kept is not None and time.monotonic() - kept[1] < BELIEVED:
        return kept[0]
    application: Application = request.app.state.application
    found = await run_in_threadpool(
        verify_token, application.engine.store, token, application.clock()
    )
    if found is not None:
        if len(believed) >= _KEPT:
            believed.clear()
        believed[key] = (found, time.monotonic())
    return found
