"""People who log in to the pages: users with argon2id-hashed passwords, and
their sessions.

A session is a random value in an ``HttpOnly`` cookie; the database keeps
only its SHA-256, with the CSRF token every form of the session carries and
when it expires. Logging out, or disabling the user, ends it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel
from sqlalchemy import delete, select, update

from cadence.runtime.schema import sessions, users
from cadence.runtime.store import Store
from cadence.service.credentials import MAX_NAME, CredentialError, Principal

SESSION_LENGTH = dt.timedelta(hours=12)
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # hashing a megabyte on every login attempt is a denial of service
_HASHER = PasswordHasher()
# Checked against when the name is unknown, so a wrong name takes as long as a
# wrong password (the response time does not tell which names exist).
_DECOY = _HASHER.hash("a password nobody has")


@dataclass(frozen=True)
class Session:
    """A logged-in person: who, the cookie's value and the forms' token."""

    principal: Principal
    cookie: str
    csrf: str
    expires_at: dt.datetime


class UserInfo(BaseModel):
    id: int
    name: str
    created_at: dt.datetime
    disabled_at: dt.datetime | None


def add_user(store: Store, name: str, password: str, now: dt.datetime) -> UserInfo:
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise CredentialError(f"a user's name is 1 to {MAX_NAME} printable characters")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise CredentialError(f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    hashed = _HASHER.hash(password)
    with store.transaction() as connection:
        if connection.execute(select(users.c.id).where(users.c.name == name)).first():
            raise CredentialError(f"a user named {name!r} exists")
        row = connection.execute(
            users.insert()
            .values(name=name, password_hash=hashed, created_at=now)
            .returning(users.c.id, users.c.name, users.c.created_at, users.c.disabled_at)
        ).one()
    return UserInfo.model_validate(row, from_attributes=True)


def list_users(store: Store) -> list[UserInfo]:
    with store.read() as connection:
        rows = connection.execute(
            select(users.c.id, users.c.name, users.c.created_at, users.c.disabled_at).order_by(
                users.c.id
            )
        ).all()
    return [UserInfo.model_validate(row, from_attributes=True) for row in rows]


def disable_user(store: Store, name: str, now: dt.datetime) -> None:
    """The user can no longer log in; their sessions end now."""
    with store.transaction() as connection:
        found = connection.execute(select(users.c.id).where(users.c.name == name)).first()
        if found is None:
            raise CredentialError(f"no user named {name!r}")
        connection.execute(update(users).where(users.c.id == found.id).values(disabled_at=now))
        connection.execute(delete(sessions).where(sessions.c.user_id == found.id))


def log_in(store: Store, name: str, password: str, now: dt.datetime) -> Session | None:
    """A new session for ``name``, or ``None`` for a wrong name or password."""
    with store.read() as connection:
        row = connection.execute(select(users).where(users.c.name == name)).first()
    if len(password) > MAX_PASSWORD:
        return None
    try:
        _HASHER.verify(row.password_hash if row is not None else _DECOY, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled_at is not None:
        return None
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    expires = now + SESSION_LENGTH
    with store.transaction() as connection:
        connection.execute(delete(sessions).where(sessions.c.expires_at < now))
        connection.execute(
            sessions.insert().values(
                digest=_digest(cookie),
                user_id=row.id,
                csrf=csrf,
                created_at=now,
                expires_at=expires,
            )
        )
    return Session(Principal("user", row.id, row.name, read_only=False), cookie, csrf, expires)


def session(store: Store, cookie: str, now: dt.datetime) -> Session | None:
    """The live session whose cookie is ``cookie``, if there is one."""
    if not cookie or len(cookie) > 200:
        return None
    with store.read() as connection:
        row = connection.execute(
            select(sessions, users.c.name, users.c.disabled_at)
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.digest == _digest(cookie))
        ).first()
    if row is None or row.expires_at <= now or row.disabled_at is not None:
        return None
    return Session(
        Principal("user", row.user_id, row.name, read_only=False), cookie, row.csrf, row.expires_at
    )


def log_out(store: Store, cookie: str) -> None:
    with store.transaction() as connection:
        connection.execute(delete(sessions).where(sessions.c.digest == _digest(cookie)))


def _digest(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()
