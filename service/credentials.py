"""API tokens: who a tool is, and whether it may change anything.

A token is 32 random bytes (``cad_`` and URL-safe base64), shown once when it
is made; the database keeps only its SHA-256 (a token is as random as a key,
so a fast hash is enough: nothing to guess from it) and its first characters,
to tell tokens apart in a list. A revoked token stays listed, refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select, update

from cadence.errors import CadenceError
from cadence.runtime.schema import api_tokens
from cadence.runtime.store import Store

PREFIX = "cad_"
SHOWN = 12  # characters of a token kept to tell it apart: `cad_` and 8 more
# Writing "last used" on every request would make each read a write.
TOUCH_EVERY = dt.timedelta(minutes=1)
MAX_NAME = 100


class CredentialError(CadenceError, ValueError):
    """A token that cannot be made or found (a bad or taken name)."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: a token or a user, and whether they may change things."""

    kind: Literal["token", "user"]
    id: int
    name: str
    read_only: bool

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


class TokenInfo(BaseModel):
    id: int
    name: str
    prefix: str
    read_only: bool
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_token(
    store: Store, name: str, *, read_only: bool, now: dt.datetime
) -> tuple[str, TokenInfo]:
    """A new token named ``name`` (unique among tokens not revoked): the token
    itself, which is never shown again, and what is kept of it."""
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise CredentialError(f"a token's name is 1 to {MAX_NAME} printable characters")
    token = PREFIX + secrets.token_urlsafe(32)
    with store.transaction() as connection:
        taken = connection.execute(
            select(api_tokens.c.id).where(
                api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None)
            )
        ).first()
        if taken is not None:
            raise CredentialError(
                f"a token named {name!r} exists: revoke it first, or pick another name"
            )
        row = connection.execute(
            api_tokens.insert()
            .values(
                name=name,
                digest=digest(token),
                prefix=token[:SHOWN],
                read_only=read_only,
                created_at=now,
            )
            .returning(*api_tokens.c)
        ).one()
    return token, _info(row)


def verify_token(store: Store, token: str, now: dt.datetime) -> Principal | None:
    """Who ``token`` is, or ``None`` for a token that is unknown or revoked."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    with store.read() as connection:
        row = connection.execute(
            select(api_tokens).where(api_tokens.c.digest == digest(token))
        ).first()
    if row is None or row.revoked_at is not None:
        return None
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
        with store.transaction() as connection:
            connection.execute(
                update(api_tokens).where(api_tokens.c.id == row.id).values(last_used_at=now)
            )
    return Principal("token", row.id, row.name, row.read_only)


def list_tokens(store: Store) -> list[TokenInfo]:
    with store.read() as connection:
        rows = connection.execute(select(api_tokens).order_by(api_tokens.c.id)).all()
    return [_info(row) for row in rows]


def revoke_token(store: Store, name: str, now: dt.datetime) -> TokenInfo:
    """Revoke the token named ``name`` (or whose shown prefix it is)."""
    with store.transaction() as connection:
        row = connection.execute(
            select(api_tokens).where(
                (api_tokens.c.name == name) | (api_tokens.c.prefix == name),
                api_tokens.c.revoked_at.is_(None),
            )
        ).first()
        if row is None:
            raise CredentialError(f"no token named {name!r} (`cadence token list` shows them)")
        connection.execute(
            update(api_tokens).where(api_tokens.c.id == row.id).values(revoked_at=now)
        )
    return _info(row).model_copy(update={"revoked_at": now})


def _info(row: object) -> TokenInfo:
    return TokenInfo.model_validate(row, from_attributes=True)
