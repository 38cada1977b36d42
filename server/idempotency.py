"""``Idempotency-Key`` on the POSTs that create something: a client that
retries (its connection dropped before it saw the answer) gets the first
answer again, and nothing is done twice.

The key is held per caller. The first request with a key claims it; a retry
while it is still at work is told so (409); a retry after it gets the stored
answer, marked ``Idempotent-Replayed: true``; the same key with another
request (method, path, query or body) is refused (422). A request that
failed does not keep its key: the retry runs again. A claim left by a
process that died is taken over after :data:`STALE`. A caller's keys are
kept a day (:data:`KEPT`), then forgotten.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from sqlalchemy import delete, select, update
from starlette.concurrency import run_in_threadpool

from cadence.runtime.schema import idempotency_keys
from cadence.runtime.store import Store, insert_if_absent
from cadence.server.problems import Problem
from cadence.service.credentials import Principal

STALE = dt.timedelta(minutes=10)
KEPT = dt.timedelta(hours=24)  # how long an answer is kept for a retry
MAX_KEY = 255


async def idempotent(
    request: Request, principal: Principal, compute: Callable[[], Awaitable[Response]]
) -> Response:
    """``compute()``'s answer, computed once per key (see the module)."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return await compute()
    if not 1 <= len(key) <= MAX_KEY or not key.isascii() or not key.isprintable():
        raise Problem(
            400,
            "bad-idempotency-key",
            f"an Idempotency-Key is 1 to {MAX_KEY} printable ASCII characters",
        )
    application = request.app.state.application
    store: Store = application.engine.store
    body = await request.body()
    fingerprint = hashlib.sha256(
        b"\n".join(
            [request.method.encode(), request.url.path.encode(), request.url.query.encode(), body]
        )
    ).hexdigest()
    stored = await run_in_threadpool(
        _claim, store, principal.key, key, fingerprint, application.clock()
    )
    if stored is not None:
        status, content = stored
        return Response(
            content, status_code=status, media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )  # fmt: skip
    try:
        response = await compute()
    except BaseException:
        await run_in_threadpool(_release, store, principal.key, key)
        raise
    await run_in_threadpool(
        _keep, store, principal.key, key, response.status_code, bytes(response.body)
    )
    return response


def _claim(
    store: Store, who: str, key: str, fingerprint: str, now: dt.datetime
) -> tuple[int, bytes] | None:
    """Claim ``key`` for a first request (``None``), or the stored answer."""
    row: dict[str, Any] = {"principal": who, "key": key, "request": fingerprint, "created_at": now}
    with store.transaction() as connection:
        connection.execute(  # the caller's keys older than a day are forgotten
            delete(idempotency_keys).where(
                idempotency_keys.c.principal == who, idempotency_keys.c.created_at < now - KEPT
            )
        )
        claim = insert_if_absent(store.dialect, idempotency_keys, row)
        # RETURNING, not rowcount: psycopg does not count what a conflict skipped.
        if connection.execute(claim.returning(idempotency_keys.c.key)).first() is not None:
            return None
        found = connection.execute(
            select(idempotency_keys).where(
                idempotency_keys.c.principal == who, idempotency_keys.c.key == key
            )
        ).one()
        if found.request != fingerprint:
            raise Problem(
                422, "idempotency-key-reused", "this Idempotency-Key was used for another request"
            )
        if found.status is not None:
            return int(found.status), bytes(found.response or b"")
        if now - found.created_at < STALE:
            raise Problem(
                409, "idempotency-key-in-use",
                "a request with this Idempotency-Key is still at work: retry later",
            )  # fmt: skip
        # Taken over only if no other retry took it over first.
        taken = connection.execute(
            update(idempotency_keys)
            .where(
                idempotency_keys.c.principal == who,
                idempotency_keys.c.key == key,
                idempotency_keys.c.created_at == found.created_at,
                idempotency_keys.c.status.is_(None),
            )
            .values(created_at=now)
            .returning(idempotency_keys.c.key)
        ).first()
        if taken is None:
            raise Problem(
                409, "idempotency-key-in-use",
                "a request with this Idempotency-Key is still at work: retry later",
            )  # fmt: skip
    return None


def _keep(store: Store, who: str, key: str, status: int, content: bytes) -> None:
    with store.transaction() as connection:
        connection.execute(
            update(idempotency_keys)
            .where(idempotency_keys.c.principal == who, idempotency_keys.c.key == key)
            .values(status=status, response=content)
        )


def _release(store: Store, who: str, key: str) -> None:
    with store.transaction() as connection:
        connection.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.principal == who, idempotency_keys.c.key == key
            )
        )
