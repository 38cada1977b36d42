"""Single-use tokens: a value that may be presented once (a provider's
signing token); a second time it is a replay. Kept a day, in the table of
idempotency keys under the principal ``once``."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete

from cadence.runtime.schema import idempotency_keys
from cadence.runtime.store import Store, insert_if_absent

KEPT = dt.timedelta(days=1)
PRINCIPAL = "once"


def first_use(store: Store, token: str, now: dt.datetime) -> bool:
    row = {
        "principal": PRINCIPAL,
        "key": token[:255],
        "request": "-",
        "status": 0,
        "created_at": now,
    }
    with store.transaction() as connection:
        connection.execute(
            delete(idempotency_keys).where(
                idempotency_keys.c.principal == PRINCIPAL,
                idempotency_keys.c.created_at < now - KEPT,
            )
        )
        claim = insert_if_absent(store.dialect, idempotency_keys, row)
        return connection.execute(claim.returning(idempotency_keys.c.key)).first() is not None
