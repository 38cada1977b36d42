"""The engine's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

Instants are stored in UTC: :class:`UTCDateTime` gives back aware datetimes on
both databases (SQLite keeps no zone, so it is added on the way out).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.types import TypeDecorator

UTC = dt.UTC


class UTCDateTime(TypeDecorator[dt.datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("instants must carry a time zone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

# An action's statuses (the `status` column of `actions`), named once for the
# engine and for what reads a person's state.
OPEN, PENDING, CLAIMED, SENT, FAILED, CANCELLED = (
    "open",
    "pending",
    "claimed",
    "sent",
    "failed",
    "cancelled",
)
# A send whose dispatcher stopped while delivering it, for a person no longer
# active: it may have been delivered. A dispatcher whose transport can tell
# (the outbox) settles it as sent or cancelled.
UNCONFIRMED = "unconfirmed"

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", UTCDateTime, nullable=False),
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("id", String(64), primary_key=True, comment="the version's key: its behaviour digest"),
    Column("name", Text, nullable=False),
    Column("ir", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("identity", Text, comment="the campaign this is a version of: its id, else its name"),
    Column("version", Integer, comment="1, 2, ...: the campaign's behaviours, in order"),
    Column("behaviour", String(64), comment="sha256 of what it does (not path or compiler)"),
)
Index("campaign_versions", campaigns.c.identity, campaigns.c.behaviour)

enrollments = Table(
    "enrollments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", String(64), ForeignKey("campaigns.id"), nullable=False),
    Column("person", Text, nullable=False),
    Column("fields", JSON, nullable=False),
    Column("zone", Text, nullable=False),
    Column("start_at", UTCDateTime, nullable=False),
    Column(
        "status",
        String(16),
        nullable=False,
        comment="active | finished (replaced by a new enrollment) | ended",
    ),
    Column("reason", Text, comment="why it ended: replied, bounced, removed, campaign ended"),
    Column("success", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("paused_until", UTCDateTime, comment="out of office or paused: nothing until then"),
    Column("paused_why", Text, comment="why it is paused: an out-of-office, by hand, ..."),
    Column(
        "mailbox",
        Text,
        comment="the sender address its emails come from (lower case), fixed at its first claim",
    ),
)
# One active enrollment per person and campaign (docs/semantics.md §7); emails compare
# case-insensitively, as the people checker does.
Index(
    "one_active_enrollment",
    enrollments.c.campaign_id,
    func.lower(enrollments.c.person),
    unique=True,
    sqlite_where=text("status = 'active'"),
    postgresql_where=text("status = 'active'"),
)
# A person's enrollments in every campaign (replies, bounces, suppression and
# pauses look people up by address, not by campaign).
enrollments_by_person = Index("enrollments_by_person", func.lower(enrollments.c.person))
# The few people paused: each claim resumes those whose pause has ended.
PAUSED = text("paused_until IS NOT NULL")
Index(
    "enrollments_paused", enrollments.c.paused_until,
    sqlite_where=PAUSED, postgresql_where=PAUSED,
)  # fmt: skip

actions = Table(
    "actions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("enrollment_id", Integer, ForeignKey("enrollments.id"), nullable=False),
    Column("step", Text, nullable=False),
    Column("position", Integer, nullable=False, comment="campaign order"),
    Column("day", Integer, nullable=False),
    Column(
        "kind", String(16), nullable=False, comment="email | email_task | call | inmail | custom"
    ),
    Column("is_task", Boolean, nullable=False),
    Column("due_at", UTCDateTime, comment="intended send instant; null for tasks and waits"),
    Column("due_date", Date, nullable=False),
    Column("thread", Text),
    Column("waits_for", Text),
    Column("note", Text),
    Column(
        "status",
        String(16),
        nullable=False,
        comment="sends: pending | claimed | sent | failed | cancelled; "
        "tasks: open | completed | skipped | sent | cancelled",
    ),
    Column("claimed_by", Text),
    Column("lease_until", UTCDateTime),
    Column("attempts", Integer, nullable=False, default=0),
    Column("retry_at", UTCDateTime),
    Column("sent_at", UTCDateTime),
    Column("message_id", Text),
    Column("subject", Text, comment="a person's edited subject of a sent email task"),
    Column("body", Text, comment="a person's edited body of a sent email task"),
    Column("closed_at", UTCDateTime),
    Column("error", Text),
    Column("variant", Text, comment="the version of an email this person gets, in a test"),
)
Index("actions_by_enrollment", actions.c.enrollment_id, actions.c.position)
Index("actions_due", actions.c.status, actions.c.due_at)
# Pending sends in the order they go out: a claim walks it and stops when its
# batch is full, instead of sorting every due send (hundreds of thousands after
# a big launch). Partial, so no other query mistakes it for a way to find a
# person's steps (that is `actions_by_enrollment`).
PENDING_ONLY = text("status = 'pending'")
Index(
    "actions_pending_in_order",
    actions.c.due_at, actions.c.enrollment_id, actions.c.position,
    sqlite_where=PENDING_ONLY, postgresql_where=PENDING_ONLY,
)  # fmt: skip
# Open tasks in the order the command center lists them: a page of them walks
# it and stops when the page is full, instead of sorting every open task.
OPEN_ONLY = text("status = 'open'")
Index(
    "actions_open_in_order",
    actions.c.due_date, actions.c.enrollment_id, actions.c.position,
    sqlite_where=OPEN_ONLY, postgresql_where=OPEN_ONLY,
)  # fmt: skip
# Claims by when their lease runs out: each claim looks for those that did.
CLAIMED_ONLY = text("status = 'claimed'")
Index(
    "actions_claimed_by_lease", actions.c.lease_until,
    sqlite_where=CLAIMED_ONLY, postgresql_where=CLAIMED_ONLY,
)  # fmt: skip

suppressions = Table(
    "suppressions",
    metadata,
    Column("email", Text, primary_key=True, comment="the address in normal form, lower case"),
    Column(
        "reason",
        String(16),
        nullable=False,
        comment="unsubscribed | bounced | complained | manual | imported",
    ),
    Column("note", Text),
    Column("source", Text, comment="who or what added it: a name, a message, a file"),
    Column("created_at", UTCDateTime, nullable=False),
)

mailbox_usage = Table(
    "mailbox_usage",
    metadata,
    Column("mailbox", Text, primary_key=True, comment="the sender address, lower case"),
    Column("day", Date, primary_key=True, comment="in the cap's time zone"),
    Column("sent", Integer, nullable=False, comment="sends claimed that day, all dispatchers"),
)

mailbox_sends = Table(
    "mailbox_sends",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mailbox", Text, nullable=False, comment="the sender address, lower case"),
    Column("at", UTCDateTime, nullable=False, comment="when a dispatcher took the place"),
)
Index("mailbox_sends_window", mailbox_sends.c.mailbox, mailbox_sends.c.at)

inbound = Table(
    "inbound",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False, unique=True, comment="where it was read: never twice"),
    Column("message_id", Text, comment="its Message-ID header"),
    Column("kind", String(16), nullable=False, comment="reply | auto_reply | bounce | ..."),
    Column("reason", Text, nullable=False, comment="which header or phrase decided"),
    Column("person", Text, comment="the address it concerns"),
    Column("campaign_id", String(64)),
    Column("outcome", Text, nullable=False, comment="what cadence did about it"),
    Column("permanent", Boolean, comment="bounces: for good (5.x.x) or not"),
    Column("raw", LargeBinary, comment="the message as read, when cadence acted on it"),
    Column("processed_at", UTCDateTime, nullable=False),
)
Index("inbound_by_message_id", inbound.c.message_id)
Index("inbound_by_person", inbound.c.person, inbound.c.kind)

feed = Table(
    "feed",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("campaign_id", String(64), nullable=False),
    Column("enrollment_id", Integer),
    Column("person", Text),
    Column("event", String(24), nullable=False),
    Column("step", Text),
    Column("message", Text, nullable=False),
)
Index("feed_by_time", feed.c.at)
# Entries of a step moved while it waited (a daily cap's roll-over, a late
# reschedule): a person's status says the last one. Few, so a small index; the
# condition is literal text, as a query must spell it for SQLite to use it.
MOVES = text("event IN ('rolled', 'late')")
Index(
    "feed_moves", feed.c.enrollment_id, sqlite_where=MOVES, postgresql_where=MOVES
)  # fmt: skip

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, comment="what the token is for: a tool, a person"),
    Column(
        "digest",
        String(64),
        nullable=False,
        unique=True,
        comment="sha256 of the token: the token itself is never stored",
    ),
    Column("prefix", String(16), nullable=False, comment="its first characters, to tell it apart"),
    Column("read_only", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("principal", Text, primary_key=True, comment="who sent it: token:ID or user:ID"),
    Column("key", String(255), primary_key=True, comment="the Idempotency-Key header"),
    Column(
        "request",
        String(64),
        nullable=False,
        comment="sha256 of method, path and body: the key reused for another request is refused",
    ),
    Column("status", Integer, comment="the answer's status; none while the first is at work"),
    Column("response", LargeBinary, comment="the answer's body, given again to a retry"),
    Column("created_at", UTCDateTime, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False, unique=True, comment="what they log in with"),
    Column("password_hash", Text, nullable=False, comment="argon2id: never the password"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime, comment="set: they can no longer log in"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("digest", String(64), primary_key=True, comment="sha256 of the cookie's value"),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("csrf", String(64), nullable=False, comment="the token its forms carry"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

store_secrets = Table(
    "store_secrets",
    metadata,
    Column("name", String(64), primary_key=True, comment="what it signs: message-ids"),
    Column("value", LargeBinary, nullable=False, comment="random bytes, made once per store"),
    Column("created_at", UTCDateTime, nullable=False),
)
