"""The durable engine (docs/semantics.md §1, §4–§7): enrollments, due sends, the command
center's tasks and the live feed, kept in a database through :class:`Store`.

Every method takes the clock (``now`` / ``at``) from its caller, and runs in
one transaction: an error leaves the store as it was. Sends are claimed,
delivered by a dispatcher and marked; a claim is a lease, so a dispatcher that
dies mid-send lets another take the send over after the lease (see
docs/engine.md for exactly what is guaranteed).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError, NoResultFound
from sqlalchemy.sql import Select

from cadence.compiler.ir import Campaign, behaviour_digest, dump_ir, identity, load_ir
from cadence.errors import CadenceError
from cadence.runtime import caps, suppression
from cadence.runtime.addresses import AddressChecker, AddressError, header_problem
from cadence.runtime.calendar import (
    UTC,
    UTC_ZONE,
    BusinessDays,
    Instant,
    Window,
    into_window,
    place,
    zone,
)
from cadence.runtime.lifecycle import ACTIVE, FINISHED, LAST_DONE, STEPS_LEFT, Past
from cadence.runtime.mailboxes import NoMailbox
from cadence.runtime.message_ids import MessageIds, load_secret
from cadence.runtime.people import Person, RowProblem
from cadence.runtime.planner import Action, Planner, plan_people, zone_warnings
from cadence.runtime.schema import CANCELLED as CANCELLED
from cadence.runtime.schema import CLAIMED as CLAIMED
from cadence.runtime.schema import FAILED as FAILED
from cadence.runtime.schema import OPEN as OPEN
from cadence.runtime.schema import PENDING as PENDING
from cadence.runtime.schema import SENT as SENT
from cadence.runtime.schema import UNCONFIRMED as UNCONFIRMED
from cadence.runtime.schema import actions, campaigns, enrollments, feed
from cadence.runtime.store import Store, insert_returning_ids, insert_rows

# A task not closed yet: open, or an email task a person had cadence send
# (pending, then claimed while it is delivered). Later steps wait for it (§6).
UNCLOSED_TASK = (OPEN, PENDING, CLAIMED)
SCHEDULE_AHEAD = dt.timedelta(days=366)  # the furthest a person may schedule an email task
# Steps still to come whose time the campaign's rules set: pending sends and
# open tasks. Not an email task a person scheduled (a task, yet pending): its
# time is theirs, and a pause, a resume or a new version leaves it as it is.
BY_THE_RULES = or_(
    actions.c.status == OPEN, and_(actions.c.status == PENDING, actions.c.is_task.is_(False))
)
_LONG_AGO = dt.datetime.min.replace(tzinfo=dt.UTC)  # sorts a send without a time first
SETTLE_BATCH = 100  # expired claims a dispatcher settles per claim, at most
# Longer than one delivery may take (a server may think 10 minutes about a
# message), so a dispatcher renews its leases only now and then.
DEFAULT_LEASE = dt.timedelta(minutes=15)
ENROLL_BATCH = 1000  # people per transaction: a long enroll lets others in between
# Actions an enroll adds from which the database's statistics are taken again:
# with them, a claim walks due sends in order instead of sorting them all.
RESTATS_AFTER = 10_000
# Picks the mailbox (its key) that sends a person's emails, from their campaign's
# name and their fields; raises NoMailbox when none does.
Router = Callable[[str, Mapping[str, Any]], str]


class EngineError(CadenceError):
    """A request the engine refuses (unknown task, closed task, unknown person);
    nothing was changed."""


class NotFound(EngineError, LookupError):
    """What the request names does not exist (a task, a send, a campaign);
    nothing was changed."""


class PastStart(EngineError):
    """An enroll whose start is in the past, without a word on what to do with
    the steps already due; nothing was enrolled."""

    def __init__(self, start: dt.datetime, now: dt.datetime) -> None:
        ago = now - start
        self.start, self.ago = start, ago
        span = f"{ago.days} day(s)" if ago.days else f"{ago.seconds // 60} minute(s)"
        super().__init__(
            f"the start {start.astimezone(UTC):%Y-%m-%d %H:%M}Z is {span} in the past: "
            "say what to do with the steps already due (skip them, or send them now)"
        )


CatchUp = Literal["skip", "send"]


@dataclass(frozen=True)
class LatePolicy:
    """What becomes of a send claimed more than ``after`` past its time (the
    dispatchers were down): sent anyway, skipped, or moved to the next time
    its time of day comes on a counted day of its campaign (the default), so a
    dispatcher back after a week does not send the week at once."""

    action: Literal["send", "skip", "reschedule"] = "reschedule"
    after: dt.timedelta = dt.timedelta(hours=4)


# A pause without an end: until someone resumes the person.
UNTIL_RESUMED = dt.date(9999, 12, 30)
# A start this close before now is "now" (the time it took to type the command).
START_GRACE = dt.timedelta(minutes=10)


@dataclass
class EnrollReport:
    """What an enroll did: people enrolled (with their actions), people already
    enrolled by an earlier run with the same start (an interrupted enroll run
    again), and the rows refused."""

    campaign_id: str
    version: int = 1
    enrolled: int = 0
    actions: int = 0
    already: int = 0
    caught_up: int = 0  # steps already due at the enroll: skipped, or sent now
    problems: list[RowProblem] = field(default_factory=list)
    zone_warnings: list[str] = field(default_factory=list)  # people not in their own zone


@dataclass
class SuppressReport:
    added: int = 0
    already: int = 0
    ended: int = 0  # active enrollments it ended
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DueSend:
    """A send that is due: what a dispatcher needs to deliver it."""

    action_id: int
    enrollment_id: int
    campaign_id: str
    person: str
    step: str
    due_at: dt.datetime
    thread: str | None
    attempts: int
    mailbox: str | None = None  # the sending mailbox's key, once chosen
    worker: str = ""


@dataclass(frozen=True)
class Claim:
    """What a mailbox's claim took, and how many due sends it found to be
    other mailboxes' (their people had none yet): due there now."""

    sends: list[DueSend]
    routed: int = 0
    failed: int = 0  # sends no mailbox sends (the routing names none): failed, in the feed
    late: int = 0  # sends too late (skipped or moved): what they held back may be due now


class LostClaim(EngineError):
    """The send's lease ran out and another dispatcher took it over."""


@dataclass(frozen=True)
class Task:
    id: int
    enrollment_id: int
    campaign_id: str
    person: str
    step: str
    kind: str
    due_date: dt.date
    status: str
    zone: str | None = None  # the person's, as their enrollment counts time
    variant: str | None = None  # their version of the email, in a test
    mailbox: str | None = None  # the mailbox their emails come from, once one went


@dataclass(frozen=True)
class _Windows:
    """A campaign version's sending windows, by step, and the days it counts."""

    by_step: dict[str, Window]
    days: BusinessDays


@dataclass(frozen=True)
class FeedEntry:
    id: int
    at: dt.datetime
    campaign_id: str
    person: str | None
    event: str
    step: str | None
    message: str


def campaign_id(ir: Campaign) -> str:
    """The key of the campaign version ``ir`` is, in a database that does not
    hold it yet (one that does may know it by an older key: see ``enroll``)."""
    return behaviour_digest(ir)


class Engine:
    """The durable runtime over one database (SQLite, or PostgreSQL shared by
    many processes): enroll people in campaigns, hand due sends to
    dispatchers, keep the command center's tasks, record events (replies,
    bounces, unsubscribes, pauses) and the feed.

    Open it with :meth:`open` (``db``: a SQLite path or a ``postgresql://``
    URL; the schema is created or migrated), and :meth:`close` it when done.
    Every change is one transaction: a refusal (:class:`EngineError`) changes
    nothing. Times are passed in (``now``, ``at``), never read from a clock,
    so a caller decides what time it is.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._campaigns: dict[str, Campaign] = {}
        self._calendars: dict[str, _Windows] = {}  # per version, which never changes
        self._message_ids: MessageIds | None = None

    @property
    def message_ids(self) -> MessageIds:
        """Signs the Message-IDs of this store's sends and checks those that
        come back (its secret read once)."""
        if self._message_ids is None:
            with self.store.read() as connection:
                self._message_ids = MessageIds(load_secret(connection))
        return self._message_ids

    @classmethod
    def open(cls, db: str, *, now: dt.datetime) -> Engine:
        """The engine on ``db``, its schema brought up to date; a database
        that cannot be opened is a :class:`StoreError` (one written by a newer
        cadence, a :class:`SchemaError`)."""
        return cls(Store.open(db, now=now))

    def close(self) -> None:
        self.store.close()

    # ---- enrolling ---------------------------------------------------------------------
    def enroll(
        self,
        ir: Campaign,
        people: Iterable[Person | RowProblem | Mapping[str, Any]],
        start: dt.datetime,
        overrides: Mapping[str, dt.time | str] | None = None,
        *,
        now: dt.datetime,
        batch: int = ENROLL_BATCH,
        on_batch: Callable[[EnrollReport], None] | None = None,
        catch_up: CatchUp | None = None,
        grace: dt.timedelta = START_GRACE,
        again: bool = False,
    ) -> EnrollReport:
        """Enroll everyone the campaign can take, ``batch`` people per
        transaction: a long enroll never holds the database for long (a
        dispatcher, `feed` and `tasks` go on beside it), and one that is
        interrupted keeps what it committed. Run again, it enrolls the rest:
        people already active with the same start count as ``already``;
        active with another start, they are refused like invalid rows.

        A start more than ``grace`` before ``now`` is refused (:class:`PastStart`)
        unless ``catch_up`` says what becomes of the steps already due: ``skip``
        them (sends cancelled, tasks skipped), or ``send`` them now (in campaign
        order; their tasks stay open, overdue).

        A person whose enrollment in this campaign (any version) ended —
        replied, bounced, unsubscribed, removed — or finished is not enrolled
        again: the row is refused with what happened and when, unless
        ``again``. A suppressed address is refused, ``again`` or not."""
        planner = Planner(ir, start, overrides)
        if catch_up is None and planner.start < now - grace:
            raise PastStart(planner.start, now)
        key, version = self._store_campaign(ir, now)
        report = EnrollReport(key, version)
        chunk: list[tuple[Person, str, list[Action]]] = []
        for person, where, planned in plan_people(planner, people, report.problems.append):
            chunk.append((person, where.key, planned))
            if len(chunk) >= batch:
                self._enroll_batch(key, chunk, planner.start, now, report, catch_up, again)
                chunk.clear()
                if on_batch is not None:
                    on_batch(report)
        if chunk:
            self._enroll_batch(key, chunk, planner.start, now, report, catch_up, again)
        if report.actions:  # many small enrolls grow the tables too
            self.store.refresh_statistics(full=report.actions >= RESTATS_AFTER)
        report.zone_warnings = zone_warnings(planner.fallbacks, planner.default_zone.key)
        return report

    def add_campaign(self, ir: Campaign, now: dt.datetime) -> tuple[str, int]:
        """Keep ``ir`` as a version of its campaign without enrolling anyone:
        its key and version number (the existing version when one behaves
        the same). A campaign that has ended is refused."""
        return self._store_campaign(ir, now)

    def _store_campaign(self, ir: Campaign, now: dt.datetime) -> tuple[str, int]:
        """The version of its campaign ``ir`` is (its key and number): the one
        that behaves the same, wherever and by whichever cadence it was
        compiled, else a new version, made by whichever enroll comes first."""
        who, digest = identity(ir), behaviour_digest(ir)
        with self.store.transaction() as connection:
            lock_campaign(connection, who)
            versions = connection.execute(_VERSIONS, {"b_identity": who}).all()
            if any(row.ended_at is not None for row in versions):
                raise EngineError(f"campaign {ir.name!r} has ended; it takes no more people")
            same = [row for row in versions if row.behaviour == digest]
            if same:
                key, version = same[0].id, same[0].version
            else:
                key, version = digest, max((row.version for row in versions), default=0) + 1
                connection.execute(
                    campaigns.insert().values(
                        id=key, name=ir.name, ir=dump_ir(ir), created_at=now, identity=who,
                        version=version, behaviour=digest,
                    )
                )  # fmt: skip
        self._campaigns.setdefault(key, ir)
        return key, version

    def _enroll_batch(
        self,
        key: str,
        chunk: list[tuple[Person, str, list[Action]]],
        start: dt.datetime,
        now: dt.datetime,
        report: EnrollReport,
        catch_up: CatchUp | None = None,
        again: bool = False,
    ) -> None:
        for attempt in range(3):
            try:
                with self.store.transaction() as connection:
                    # Enrolls of other versions wait: a person is active once
                    # in a campaign, whichever version.
                    lock_campaign(connection, identity(self.campaign(key)))
                    self._check_open(connection, key)
                    wanted = self._not_yet_active(
                        connection, key, chunk, start, report, attempt, again
                    )
                    report.actions += self._insert(
                        connection, key, wanted, start, now, catch_up, report
                    )
                    report.enrolled += len(wanted)
                return
            except IntegrityError:
                # Another enroll made some of these people active meanwhile:
                # read again who is active, and enroll the others.
                continue
        raise EngineError(
            "other enrolls keep enrolling the same people at the same moment; run it again "
            f"({report.enrolled} enrolled so far)"
        )

    def _check_open(self, connection: Connection, key: str) -> None:
        # Locked (PostgreSQL) so an `end` of the campaign waits for this batch
        # and then ends it too, instead of missing it.
        found = connection.execute(self._campaign_row(key)).first()
        if found is not None and found.ended_at is not None:
            ir = self._campaigns.get(key)
            name = repr(ir.name) if ir is not None else key[:12]
            raise EngineError(f"campaign {name} has ended; it takes no more people")

    def _campaign_row(self, key: str) -> Select[Any]:
        query = select(campaigns.c.ended_at).where(campaigns.c.id == key)
        if self.store.dialect == "postgresql":
            query = query.with_for_update()
        return query

    def _not_yet_active(
        self,
        connection: Connection,
        key: str,
        chunk: list[tuple[Person, str, list[Action]]],
        start: dt.datetime,
        report: EnrollReport,
        attempt: int,
        again: bool = False,
    ) -> list[tuple[Person, str, list[Action]]]:
        """The people of ``chunk`` the campaign takes. Those active in it are
        counted (same start) or refused (another start); those whose
        enrollment in it ended or finished are refused unless ``again`` (a
        finished enrollment is then closed, so the new one is the active
        one); suppressed addresses are refused always. On a retry the counts
        of the failed attempt are not repeated."""
        emails = [person.email.lower() for person, _, _ in chunk]
        going: dict[str, Any] = {}
        past: dict[str, Any] = {}
        for row in connection.execute(_IN_VERSIONS, {"b_key": key, "b_emails": emails}):
            if row.status == ACTIVE and row.steps_left:
                going[row.person.lower()] = row
            else:  # newest first: the first one seen is the latest
                past.setdefault(row.person.lower(), row)
        suppressed = suppression.among(connection, emails)
        wanted = []
        finished = []
        for entry in chunk:
            person = entry[0]
            email = person.email.lower()
            now_in, before = going.get(email), past.get(email)
            stopped = suppressed.get(suppression.key(person.email))
            problem = None
            if stopped is not None:
                problem = f"`{person.email}` is on the suppression list ({stopped.describe()})"
            elif now_in is None and (before is None or again):
                wanted.append(entry)
                if before is not None and before.status == ACTIVE:
                    finished.append(before.id)
            elif now_in is None:
                problem = (f"{Past.of(before).sentence(person.email)}: not enrolled again; "
                           "`--again` enrolls them anew")  # fmt: skip
            elif now_in.id_key != key:
                problem = (
                    f"`{person.email}` is already active in version {now_in.version} of this "
                    "campaign (`cadence migrate` moves people to a new version)"
                )
            elif now_in.start_at == start:
                if attempt == 0:
                    report.already += 1
            else:
                problem = (f"`{person.email}` is already active in this campaign "
                           f"(started {now_in.start_at:%Y-%m-%d %H:%M}Z)")  # fmt: skip
            if problem is not None and attempt == 0:
                report.problems.append(RowProblem(person.line, problem))
        if finished:  # replaced: their finished enrollment is no longer the active one
            connection.execute(
                update(enrollments)
                .where(enrollments.c.id.in_(finished), enrollments.c.status == ACTIVE)
                .values(status=FINISHED, ended_at=LAST_DONE)
            )
        return wanted

    def _insert(
        self,
        connection: Connection,
        key: str,
        batch: Sequence[tuple[Person, str, list[Action]]],
        start: dt.datetime,
        now: dt.datetime,
        catch_up: CatchUp | None = None,
        report: EnrollReport | None = None,
    ) -> int:
        if not batch:
            return 0
        rows = [
            {
                "campaign_id": key,
                "person": person.email.strip(),
                "fields": dict(person.fields),
                "zone": where,
                "start_at": start,
                "status": "active",
                "success": False,
                "created_at": now,
            }
            for person, where, _ in batch
        ]
        ids = insert_returning_ids(connection, enrollments, rows)
        action_rows, events = [], []
        for enrollment_id, (person, where, planned) in zip(ids, batch, strict=True):
            email = person.email.strip()
            today = now.astimezone(zone(where) or UTC_ZONE).date()
            skipped: set[str] = set()  # task emails skipped by a catch-up
            tasks = [a.step for a in planned if a.kind != "email"]
            sends = len(planned) - len(tasks)
            events.append(
                feed_row(
                    now,
                    key,
                    enrollment_id,
                    email,
                    "enrolled",
                    None,
                    f"enrolled: {sends} sends queued, {len(tasks)} tasks opened",
                )
            )
            for position, action in enumerate(planned):
                is_task = action.kind != "email"
                row = {
                    "enrollment_id": enrollment_id,
                    "step": action.step,
                    "position": position,
                    "day": action.day,
                    "kind": action.kind,
                    "is_task": is_task,
                    "due_at": action.due,
                    "due_date": action.due_date,
                    "thread": action.thread,
                    "waits_for": action.waits_for,
                    "note": action.note,
                    "status": OPEN if is_task else PENDING,
                    "attempts": 0,
                    "closed_at": None,  # every row has every key: one executemany
                    "variant": action.variant,
                }
                event, message = _announcement(action)
                overdue = (
                    action.due_date < today
                    if is_task
                    else action.due is not None and action.due < now
                )
                # An email that waits for a skipped task email would wait forever.
                orphan = catch_up == "skip" and action.waits_for in skipped
                if catch_up is not None and (overdue or orphan):
                    event, message = _caught_up(row, catch_up, now)
                    if orphan:
                        message = (
                            f"`{action.step}` skipped: it waits for `{action.waits_for}`, skipped"
                        )
                    if catch_up == "skip" and is_task:
                        skipped.add(action.step)
                    if report is not None:
                        report.caught_up += 1
                action_rows.append(row)
                events.append(feed_row(now, key, enrollment_id, email, event, action.step, message))
        insert_rows(connection, actions, action_rows)
        insert_rows(connection, feed, events)
        return len(action_rows)

    # ---- due sends ------------------------------------------------------------------------
    def _due_query(
        self, now: dt.datetime, limit: int, mailbox: str | None = None, *, expired: bool = False
    ) -> Select[Any]:
        """Sends due at ``now``, in the order they go out: pending ones whose
        time has come, or (``expired``) claims whose lease ran out — two
        queries, so the first walks its index in order and stops at
        ``limit`` (one with both would sort every due send first)."""
        earlier = actions.alias("earlier")
        blocked = _earlier_open_task()  # semantics §6
        # An earlier send of the person is due (or in flight) too: campaign order
        # first. A follow-up also waits for the email it replies to (semantics §5), due or not.
        queued = exists().where(
            earlier.c.enrollment_id == actions.c.enrollment_id,
            earlier.c.position < actions.c.position,
            earlier.c.status.in_([PENDING, CLAIMED]),
            or_(earlier.c.due_at <= now, earlier.c.step == actions.c.thread),
        )
        if expired:
            # A claim whose lease ran out: its dispatcher died mid-send.
            ready = and_(
                actions.c.status == literal_column(f"'{CLAIMED}'"), actions.c.lease_until <= now
            )
        else:
            ready = and_(
                # Written out, not a parameter: the partial index holds this status only.
                actions.c.status == literal_column(f"'{PENDING}'"),
                actions.c.due_at <= now,
                or_(actions.c.retry_at.is_(None), actions.c.retry_at <= now),
            )
        return (
            _sends()
            .add_columns(actions.c.position)
            .where(
                enrollments.c.status == "active",
                enrollments.c.paused_until.is_(None),  # resumed (and moved) by the sweep
                # No task test: a task is pending only once a person had cadence send it.
                ready,
                ~blocked,
                ~queued,
            )
            .where(*_sent_by(mailbox))
            .order_by(actions.c.due_at, actions.c.enrollment_id, actions.c.position)
            .limit(limit)
        )

    def _due_rows(
        self,
        connection: Connection,
        now: dt.datetime,
        limit: int,
        mailbox: str | None = None,
        *,
        lock: bool = False,
    ) -> list[Any]:
        """The first ``limit`` due sends (pending and expired claims, merged
        in the order they go out); ``lock`` takes them (PostgreSQL: rows
        other dispatchers hold are skipped)."""
        rows: list[Any] = []
        for expired in (False, True):
            query = self._due_query(now, limit, mailbox, expired=expired)
            if lock and self.store.dialect == "postgresql":
                query = query.with_for_update(of=actions, skip_locked=True)
            rows += connection.execute(query).all()
        rows.sort(key=lambda row: (row.due_at or _LONG_AGO, row.enrollment_id, row.position))
        return rows[:limit]

    def due(self, now: dt.datetime, limit: int = 100, mailbox: str | None = None) -> list[DueSend]:
        """Sends due at ``now`` (not claimed): their time has come and no
        earlier task of their enrollment is open (semantics §6). With ``mailbox``: those
        it sends, or that no mailbox sends yet."""
        with self.store.read() as connection:
            return [DueSend(*row[:9]) for row in self._due_rows(connection, now, limit, mailbox)]

    def count_due(self, now: dt.datetime) -> int:
        """How many sends are due at ``now`` (a dispatcher's backlog)."""
        total = 0
        with self.store.read() as connection:
            for expired in (False, True):
                query = self._due_query(now, -1, expired=expired).order_by(None).limit(None)
                counted = select(func.count()).select_from(query.subquery())
                total += int(connection.execute(counted).scalar_one())
        return total

    def claim(
        self,
        now: dt.datetime,
        limit: int = 100,
        *,
        worker: str = "dispatcher",
        lease: dt.timedelta = DEFAULT_LEASE,
        cap: caps.DailyCap | None = None,
        late: LatePolicy | None = None,
    ) -> list[DueSend]:
        """Take up to ``limit`` due sends for ``worker`` until ``now + lease``.
        On PostgreSQL concurrent dispatchers skip each other's rows
        (``FOR UPDATE SKIP LOCKED``); SQLite serialises writers. With a daily
        ``cap``, what today's cap has no room for rolls to the next day; sends
        later than ``late`` allows are skipped or moved as it says."""
        return self.claim_for(
            None, None, now, limit, worker=worker, lease=lease, cap=cap, late=late
        ).sends

    def claim_for(
        self,
        mailbox: str | None,
        route: Router | None,
        now: dt.datetime,
        limit: int = 100,
        *,
        worker: str = "dispatcher",
        lease: dt.timedelta = DEFAULT_LEASE,
        cap: caps.DailyCap | None = None,
        late: LatePolicy | None = None,
    ) -> Claim:
        """:meth:`claim` of the sends ``mailbox`` (a mailbox's key) sends: a
        person without a mailbox yet is given the one ``route`` picks (kept
        for all their emails; ``None``: this one), and a send ``route`` finds
        no mailbox for fails with the reason. Without ``mailbox``: every send,
        as :meth:`claim` does, with the counts."""
        return self._claim(now, limit, worker, lease, cap, mailbox, route, late)

    def _claim(
        self,
        now: dt.datetime,
        limit: int,
        worker: str,
        lease: dt.timedelta,
        cap: caps.DailyCap | None,
        mailbox: str | None,
        route: Router | None,
        late: LatePolicy | None = None,
    ) -> Claim:
        routed = failed = too_late = 0
        with self.store.transaction() as connection:
            _settle_expired(connection, now, limit=SETTLE_BATCH)
            self._resume_due(connection, now)

            def due() -> list[DueSend]:
                rows = self._due_rows(connection, now, limit, mailbox, lock=True)
                return [_due_send(row, worker) for row in rows]

            found = due()
            found = self._drop_suppressed(connection, found, now)
            if mailbox is not None:
                found, routed, failed = self._assign(connection, found, mailbox, route, now)
            if late is not None:
                kept = self._drop_late(connection, found, now, late)
                too_late, found = len(found) - len(kept), kept
            full = False
            if cap is not None and found:
                granted = caps.reserve(connection, cap, len(found), now)
                self._roll_over(connection, found[granted:], cap, now)
                found, full = found[:granted], granted < len(found)
            if found:
                connection.execute(
                    update(actions)
                    .where(actions.c.id.in_([send.action_id for send in found]))
                    .values(
                        status=CLAIMED,
                        claimed_by=worker,
                        lease_until=now + lease,
                        attempts=actions.c.attempts + 1,
                    )
                )
            if full and cap is not None:
                # The day is full: everything due now goes to tomorrow, not
                # just this batch (else every claim today would roll a few).
                while rest := due():
                    if mailbox is not None:  # others' sends leave the query once assigned
                        rest, elsewhere, lost = self._assign(connection, rest, mailbox, route, now)
                        routed, failed = routed + elsewhere, failed + lost
                    self._roll_over(connection, rest, cap, now)
        return Claim(found, routed, failed, too_late)

    def stranded(self, now: dt.datetime, mailboxes: Sequence[str]) -> dict[str, int]:
        """Due sends of people whose mailbox is none of ``mailboxes``, by mailbox."""
        query = (
            select(enrollments.c.mailbox, func.count())
            .join(actions, actions.c.enrollment_id == enrollments.c.id)
            .where(
                enrollments.c.status == "active",
                enrollments.c.mailbox.is_not(None),
                enrollments.c.mailbox.not_in(mailboxes),
                actions.c.status == PENDING,
                actions.c.due_at <= now,
            )
            .group_by(enrollments.c.mailbox)
        )
        with self.store.read() as connection:
            return {str(mailbox): int(count) for mailbox, count in connection.execute(query)}

    def move_mailbox(self, old: str, new: str) -> int:
        """People sending from mailbox ``old`` send from ``new`` (keys, i.e.
        addresses) from now on; returns how many active people moved."""
        with self.store.transaction() as connection:
            moved = connection.execute(
                update(enrollments)
                .where(
                    enrollments.c.mailbox == old.strip().lower(),
                    enrollments.c.status == "active",
                )
                .values(mailbox=new.strip().lower())
            ).rowcount
        return int(moved)

    def _assign(
        self,
        connection: Connection,
        found: list[DueSend],
        mailbox: str,
        route: Router | None,
        at: dt.datetime,
    ) -> tuple[list[DueSend], int, int]:
        """Those of ``found`` that ``mailbox`` sends, each person's mailbox
        chosen and stored on their first claim; how many went to others, and
        how many failed for want of a mailbox."""
        loose = {send.enrollment_id for send in found if send.mailbox is None}
        if not loose:
            return found, 0, 0
        chosen: dict[int, str | NoMailbox] = dict.fromkeys(loose, mailbox)
        if route is not None:
            rows = connection.execute(
                select(enrollments.c.id, enrollments.c.fields, campaigns.c.name)
                .join(campaigns, campaigns.c.id == enrollments.c.campaign_id)
                .where(enrollments.c.id.in_(loose))
            )
            for row in rows:
                try:
                    chosen[row.id] = route(row.name, row.fields)
                except NoMailbox as error:
                    chosen[row.id] = error
        assigned = [
            {"b_id": key, "b_mailbox": value}
            for key, value in chosen.items()
            if isinstance(value, str)
        ]
        if assigned:
            connection.execute(_ASSIGN, assigned)
            # Another dispatcher (another config) may have chosen first: what
            # is stored is what holds.
            stored = connection.execute(
                select(enrollments.c.id, enrollments.c.mailbox).where(
                    enrollments.c.id.in_([row["b_id"] for row in assigned])
                )
            )
            chosen.update({key: value for key, value in stored if value is not None})
        keep, elsewhere, failed = [], 0, 0
        for send in found:
            target = send.mailbox or chosen[send.enrollment_id]
            if isinstance(target, NoMailbox):
                connection.execute(
                    update(actions)
                    .where(actions.c.id == send.action_id)
                    .values(status=FAILED, error=str(target), lease_until=None)
                )
                connection.execute(
                    _FEED_INSERT,
                    feed_row(at, send.campaign_id, send.enrollment_id, send.person, "failed",
                           send.step, f"send `{send.step}` failed: {target}"),
                )  # fmt: skip
                failed += 1
            elif target == mailbox:
                keep.append(dataclasses.replace(send, mailbox=target))
            else:
                elsewhere += 1
        return keep, elsewhere, failed

    def _drop_late(
        self, connection: Connection, found: list[DueSend], now: dt.datetime, late: LatePolicy
    ) -> list[DueSend]:
        """Sends more than ``late.after`` past their time, by ``late.action``:
        skipped; moved to the next time their time of day comes on a counted
        day (``reschedule``); or sent now (``send``). Late means the
        dispatchers were away: a send held back by a task closed just now
        (semantics §6), by an earlier send, or waiting for its own retry went
        out as soon as it could, and is not.

        When a person's send is moved or sent late, the rest of their schedule
        moves with it, keeping the counted days between steps (as a resume
        does): a person never gets in one day what the campaign spaced over
        several. Their other sends in this batch moved with it, and wait.
        Each is said in the feed; the sends that go now are returned."""
        keep = []
        # At most one send of a person is due at a time (the due query's order
        # rule), so moving a person's rest never touches another send of this batch.
        for send in found:
            behind = now - send.due_at
            if behind > late.after:
                behind = now - self._ready_since(connection, send)
            if behind <= late.after:
                keep.append(send)
                continue
            hours = f"{behind.total_seconds() / 3600:.0f} hours late"
            if late.action == "skip" and self._is_task(connection, send.action_id):
                # A person's own email is not skipped for them: it is theirs again.
                self._reopen(connection, send.action_id, send, now, f"{hours} (late = skip)")
                continue
            if late.action == "skip":
                connection.execute(
                    update(actions)
                    .where(actions.c.id == send.action_id)
                    .values(status=CANCELLED, closed_at=now, claimed_by=None, lease_until=None)
                )
                message = f"send `{send.step}` skipped: {hours} (late = skip)"
            elif late.action == "send":
                # It goes now, and is due now: a claim given back is not late again.
                shift = self._move_rest(connection, send, now, now)
                keep.append(send)
                message = f"send `{send.step}` goes now: {hours} (late = send)"
            else:
                due = self._next_time(connection, send, now)
                # Never before an earlier send of the person: campaign order holds.
                before = connection.execute(_EARLIER_DUE, {"b_id": send.action_id}).scalar()
                due = max(due, before) if before is not None else due
                shift = self._move_rest(connection, send, due, now)
                connection.execute(
                    update(actions)
                    .where(actions.c.id == send.action_id)
                    .values(status=PENDING, claimed_by=None, lease_until=None)
                )
                # Nor after one: the person's later sends of that day wait for this one.
                self._hold_later(connection, send, due)
                message = (
                    f"send `{send.step}` moved to {due:%Y-%m-%d %H:%M}Z: {hours} "
                    "(late = reschedule)"
                )
            if late.action != "skip" and shift:
                message += f"; the rest moves {shift} day(s)"
            connection.execute(
                _FEED_INSERT,
                feed_row(now, send.campaign_id, send.enrollment_id, send.person, "late",
                       send.step, message),
            )  # fmt: skip
        return keep

    def _move_rest(
        self, connection: Connection, send: DueSend, goes: dt.datetime, at: dt.datetime
    ) -> int:
        """``send`` goes at ``goes``, later than planned: it is due then (on that
        day), and the person's steps after it move by the counted days between
        the day it was due and that day, each keeping its time of day. Returns
        the counted days moved."""
        this = connection.execute(
            select(actions.c.position, actions.c.due_date, enrollments.c.zone)
            .join(enrollments, enrollments.c.id == actions.c.enrollment_id)
            .where(actions.c.id == send.action_id)
        ).one()
        where = zone(this.zone) or UTC_ZONE
        windows = self._windows(connection, send.campaign_id)
        planned = max(this.due_date, send.due_at.astimezone(where).date())
        day = goes.astimezone(where).date()
        connection.execute(
            update(actions)
            .where(actions.c.id == send.action_id)
            .values(due_at=goes, due_date=max(day, this.due_date), retry_at=at)
        )
        shift = _counted_days(windows.days, planned, day)
        if shift:
            rest = connection.execute(
                select(actions.c.id, actions.c.due_date, actions.c.due_at, actions.c.step).where(
                    actions.c.enrollment_id == send.enrollment_id,
                    actions.c.position > this.position,
                    BY_THE_RULES,
                )
            ).all()
            self._shift(connection, rest, shift, at, windows, where)
        return shift

    def _shift(
        self,
        connection: Connection,
        steps: Sequence[Any],
        shift: int,
        at: dt.datetime,
        windows: _Windows,
        where: ZoneInfo,
    ) -> None:
        """Move ``steps`` (id, due date, due instant, step) ``shift`` counted
        days, each keeping its time of day, none before ``at``, each within its
        sending window; none of them is late for it."""
        for action_id, due_date, due_at, step in steps:
            new_date = _add_counted_days(windows.days, due_date, shift)
            values: dict[str, Any] = {"due_date": new_date}
            if due_at is not None:
                wall = due_at.astimezone(where).time().replace(tzinfo=None)
                # Not before ``at`` (a step whose time has passed goes now, and is
                # not late) — in its window.
                when = place(new_date, wall, where).utc
                if when < at and (windowed := self._windowed(windows, step, at, where)) > at:
                    when = windowed  # it would go now, after its window closed
                values["due_at"] = when
                values["retry_at"] = at
            connection.execute(update(actions).where(actions.c.id == action_id).values(**values))

    def _ready_since(self, connection: Connection, send: DueSend) -> dt.datetime:
        """When ``send`` could first have gone: its time, or later when an
        earlier step of its person closed (a task done, a send sent) or its
        retry came, whichever was last."""
        retry_at, closed, sent = connection.execute(_READY, {"b_id": send.action_id}).one()
        return max(when for when in (send.due_at, retry_at, closed, sent) if when is not None)

    def _next_time(self, connection: Connection, send: DueSend, now: dt.datetime) -> dt.datetime:
        """When ``send``'s time of day next comes, on or after ``now``, on a day
        its campaign counts, in its person's zone."""
        where = (
            zone(connection.execute(_ZONE_OF, {"b_id": send.enrollment_id}).scalar()) or UTC_ZONE
        )
        days = self._windows(connection, send.campaign_id).days
        wall = send.due_at.astimezone(where).time().replace(tzinfo=None)
        day = now.astimezone(where).date()
        while True:
            day = days.first_counting(day)
            due = place(day, wall, where).utc
            if due >= now:
                return due
            day += dt.timedelta(days=1)

    def _drop_suppressed(
        self, connection: Connection, found: list[DueSend], at: dt.datetime
    ) -> list[DueSend]:
        """Sends to suppressed addresses are cancelled here, the last check
        before delivery, with the reason in the feed."""
        stopped = suppression.among(connection, {send.person for send in found})
        if not stopped:
            return found
        keep = []
        for send in found:
            entry = stopped.get(suppression.key(send.person))
            if entry is None:
                keep.append(send)
                continue
            connection.execute(
                update(actions)
                .where(actions.c.id == send.action_id)
                .values(status=CANCELLED, closed_at=at, lease_until=None)
            )
            connection.execute(
                _FEED_INSERT,
                feed_row(at, send.campaign_id, send.enrollment_id, send.person, "cancelled",
                       send.step, f"send `{send.step}` cancelled: the address is on the "
                       f"suppression list ({entry.describe()})"),
            )  # fmt: skip
        return keep

    def reserve_sends(
        self, throttle: caps.SharedThrottle, wanted: int, now: dt.datetime
    ) -> tuple[int, float]:
        """Places for up to ``wanted`` sends in ``throttle``'s window (all
        dispatchers together); none: the seconds until one frees up."""
        with self.store.transaction() as connection:
            return caps.reserve_window(connection, throttle, wanted, now)

    def unreserve_sends(self, throttle: caps.SharedThrottle, count: int, at: dt.datetime) -> None:
        with self.store.transaction() as connection:
            caps.give_back(connection, throttle, count, at)

    def _roll_over(
        self, connection: Connection, sends: list[DueSend], cap: caps.DailyCap, now: dt.datetime
    ) -> None:
        """Sends today's cap has no room for: to the mailbox's next day, each
        keeping its time of day, with a feed entry."""
        next_day = cap.next_day(now)
        zones = dict(
            connection.execute(
                select(enrollments.c.id, enrollments.c.zone).where(
                    enrollments.c.id.in_({send.enrollment_id for send in sends})
                )
            ).all()
        )
        windows: dict[str, _Windows] = {}
        for send in sends:
            # The person's time of day, across a change of clocks too, in its window.
            where = zone(zones.get(send.enrollment_id, "")) or UTC_ZONE
            if send.campaign_id not in windows:
                windows[send.campaign_id] = self._windows(connection, send.campaign_id)
            due = caps.rolled(send.due_at, next_day, where)
            due = self._windowed(windows[send.campaign_id], send.step, due, where)
            # The person's later steps move with it: the day's cap does not put
            # two of their emails on one day.
            shift = self._move_rest(connection, send, due, now)
            connection.execute(  # a dead dispatcher's claim among them is pending again
                update(actions)
                .where(actions.c.id == send.action_id)
                .values(status=PENDING, claimed_by=None, lease_until=None)
            )
            rest = f"; the rest moves {shift} day(s)" if shift else ""
            connection.execute(
                _FEED_INSERT,
                feed_row(now, send.campaign_id, send.enrollment_id, send.person, "rolled",
                       send.step, f"daily cap of {cap.limit} for {cap.mailbox} reached: "
                       f"`{send.step}` moved to {due:%Y-%m-%d %H:%M}Z{rest}"),
            )  # fmt: skip

    def renew(self, sends: list[DueSend], until: dt.datetime) -> int:
        """Extend this dispatcher's leases on ``sends`` (a long, throttled batch
        keeps them); returns how many it still held."""
        if not sends:
            return 0
        with self.store.transaction() as connection:
            return int(
                connection.execute(
                    update(actions).where(*_held_by(sends)).values(lease_until=until)
                ).rowcount
            )

    def release(self, sends: Sequence[DueSend]) -> int:
        """Give back claims this dispatcher will not deliver (its transport
        cannot work): pending again at once, the attempt not counted."""
        if not sends:
            return 0
        with self.store.transaction() as connection:
            return int(
                connection.execute(
                    update(actions)
                    .where(*_held_by(sends))
                    .values(
                        status=PENDING,
                        claimed_by=None,
                        lease_until=None,
                        attempts=actions.c.attempts - 1,
                    )
                ).rowcount
            )

    def confirm(self, send: DueSend, at: dt.datetime) -> bool:
        """Just before delivering: may ``send`` still go out? False when its
        person is no longer active (the send is then cancelled, with the reason
        in the feed), so an `end` stops a batch already claimed. Raises
        :class:`LostClaim` when another dispatcher took the send over."""
        with self.store.read() as connection:
            row = _claim_state(connection, send)
        if row.enrollment_status == "active":
            return True
        with self.store.transaction() as connection:
            _cancel_claimed(connection, send, row, at)
        return False

    def _confirm(self, connection: Connection, send: DueSend, at: dt.datetime) -> bool | None:
        """:meth:`confirm` inside ``connection``'s transaction; ``None`` when
        the send was taken over."""
        try:
            row = _claim_state(connection, send)
        except (LostClaim, NoResultFound):  # taken over, or gone
            return None
        if row.enrollment_status == "active":
            return True
        _cancel_claimed(connection, send, row, at)
        return False

    def unconfirmed(
        self, limit: int = 100, *, mailboxes: Sequence[str] | None = None
    ) -> list[DueSend]:
        """Sends that may have been delivered by a dispatcher that stopped
        (see :data:`UNCONFIRMED`), for a dispatcher that can look them up:
        of ``mailboxes`` (their keys) only, when given."""
        query = _sends().where(actions.c.status == UNCONFIRMED)
        if mailboxes is not None:
            query = query.where(enrollments.c.mailbox.in_(mailboxes))
        query = query.order_by(actions.c.id).limit(limit)
        with self.store.read() as connection:
            return [DueSend(*row) for row in connection.execute(query)]

    def resolve(self, send: DueSend | int, delivered: bool, at: dt.datetime) -> None:
        """Settle an unconfirmed send: it was delivered after all, or it was not."""
        action_id = send if isinstance(send, int) else send.action_id
        with self.store.transaction() as connection:
            row = self._action(connection, action_id, lock=True)
            if row.status != UNCONFIRMED:
                raise EngineError(f"send {action_id} is {row.status}, not unconfirmed")
            status, event, message = (
                (SENT, "sent", f"sent `{row.step}`: found delivered after its dispatcher stopped")
                if delivered
                else (CANCELLED, "cancelled", f"send `{row.step}` cancelled: {row.reason}")
            )
            connection.execute(
                update(actions)
                .where(actions.c.id == action_id)
                .values(status=status, closed_at=at, sent_at=at if delivered else None)
            )
            _announce(connection, row, at, event, message)

    def retry_failed(
        self,
        at: dt.datetime,
        *,
        by: str,
        campaign: str | None = None,
        person: str | None = None,
        since: dt.datetime | None = None,
    ) -> int:
        """Queue failed sends again (of people still active), at once and with
        their attempts counted afresh; the feed says who did it. Returns how many."""
        query = (
            select(
                actions.c.id,
                actions.c.enrollment_id,
                actions.c.step,
                actions.c.error,
                enrollments.c.campaign_id,
                enrollments.c.person,
            )
            .join(enrollments, enrollments.c.id == actions.c.enrollment_id)
            .where(actions.c.status == FAILED, enrollments.c.status == "active")
            .order_by(actions.c.id)
        )
        if campaign is not None:
            query = query.where(in_campaign(campaign))
        if person is not None:
            query = query.where(func.lower(enrollments.c.person) == person.lower())
        if since is not None:
            query = query.where(actions.c.due_at >= since)
        with self.store.transaction() as connection:
            rows = connection.execute(query).all()
            if not rows:
                return 0
            connection.execute(
                update(actions)
                .where(actions.c.id.in_([row.id for row in rows]))
                # retry_at: queued again now, so the late policy counts from now
                .values(status=PENDING, attempts=0, retry_at=at, error=None, lease_until=None)
            )
            connection.execute(
                feed.insert(),
                [
                    feed_row(
                        at,
                        row.campaign_id,
                        row.enrollment_id,
                        row.person,
                        "requeued",
                        row.step,
                        f"send `{row.step}` queued again by {by} (it had failed: {row.error})",
                    )
                    for row in rows
                ],
            )
            return len(rows)

    def mark_sent(
        self,
        send: DueSend | int,
        message_id: str,
        at: dt.datetime,
        *,
        note: str | None = None,
        next_send: DueSend | None = None,
    ) -> bool | None:
        """Record a delivery. Given the claimed :class:`DueSend` (as a
        dispatcher has it) this is one update and one feed row. With
        ``next_send`` (the dispatcher's next), that one is confirmed in the
        same transaction (see :meth:`confirm`: one transaction a send instead
        of two): its answer is returned; ``None``: not known (it was taken
        over: :meth:`confirm` says so)."""
        action_id = send if isinstance(send, int) else send.action_id
        worker = None if isinstance(send, int) else send.worker
        with self.store.transaction() as connection:
            statement = _MARK_SENT if worker is None else _MARK_SENT_BY
            marked = connection.execute(
                statement,
                {"b_id": action_id, "b_at": at, "b_message_id": message_id, "b_worker": worker},
            ).rowcount
            row: Any = send
            if not marked or isinstance(send, int):
                row = self._action(connection, action_id)
                if not marked and row.status == CLAIMED:
                    raise LostClaim(f"send {action_id} was taken over by {row.claimed_by}")
                if not marked and row.status != SENT:
                    raise EngineError(f"send {action_id} is {row.status}, not claimed")
            if marked:  # marked already (a retried mark): nothing to announce again
                late = " (late)" if row.due_at and at - row.due_at > LATE else ""
                _announce(
                    connection,
                    row,
                    at,
                    "sent",
                    f"sent `{row.step}`{late}" + (f": {note}" if note else ""),
                )
            return None if next_send is None else self._confirm(connection, next_send, at)

    def mark_failed(
        self,
        send: DueSend | int,
        error: str,
        at: dt.datetime,
        *,
        retry_at: dt.datetime | None = None,
    ) -> None:
        """A delivery failed: retried at ``retry_at``, or failed for good. A send
        of an enrollment that ended meanwhile is cancelled instead."""
        action_id = send if isinstance(send, int) else send.action_id
        with self.store.transaction() as connection:
            row = self._action(connection, action_id, lock=True)
            if row.status != CLAIMED:
                raise EngineError(f"send {action_id} is {row.status}, not claimed")
            if not isinstance(send, int) and row.claimed_by != send.worker:
                raise LostClaim(f"send {action_id} was taken over by {row.claimed_by}")
            if row.enrollment_status != "active":
                connection.execute(
                    update(actions)
                    .where(actions.c.id == action_id)
                    .values(status=CANCELLED, closed_at=at, error=error, lease_until=None)
                )
                _announce(
                    connection, row, at, "cancelled", f"send `{row.step}` cancelled: {row.reason}"
                )
                return
            if row.is_task and retry_at is None:
                # A person's email task cadence could not send: theirs again (it
                # still holds what follows, §6), with the reason.
                self._reopen(
                    connection, action_id, row, at, f"delivery failed: {error}", error=error
                )
                return
            status, event = (PENDING, "retry") if retry_at else (FAILED, "failed")
            connection.execute(
                update(actions)
                .where(actions.c.id == action_id)
                .values(status=status, retry_at=retry_at, error=error, lease_until=None)
            )
            when = (
                f", retrying at {retry_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z" if retry_at else ""
            )
            _announce(
                connection,
                row,
                at,
                event,
                f"delivery of `{row.step}` failed: {error}{when}",
            )

    # ---- tasks ------------------------------------------------------------------------------
    def open_tasks(
        self,
        *,
        person: str | None = None,
        due_before: dt.date | None = None,
        task_id: int | None = None,
        kind: str | None = None,
        campaign: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Task]:
        """Open tasks a person can act on now (not paused, not waiting for an
        earlier task), in the order they are due; ``campaign`` is an identity
        (every version), ``limit`` and ``offset`` page."""
        query = _OPEN_TASKS
        if person is not None:
            query = query.where(func.lower(enrollments.c.person) == person.lower())
        if due_before is not None:
            query = query.where(actions.c.due_date < due_before)
        if task_id is not None:
            query = query.where(actions.c.id == task_id)
        if kind is not None:
            query = query.where(actions.c.kind == kind)
        if campaign is not None:
            versions = select(campaigns.c.id).where(campaigns.c.identity == campaign)
            query = query.where(enrollments.c.campaign_id.in_(versions))
        if limit is not None or offset:
            query = query.limit(limit).offset(offset)
        with self.store.read() as connection:
            return [Task(**row) for row in connection.execute(query).mappings()]

    def send_task(self, task_id: int, subject: str, body: str, at: dt.datetime) -> None:
        """A person sent an email task (with their edits): it closes, and emails
        that take its time of day get their time (semantics §4, §7). Follow-ups reuse the
        subject, so one that could not be a header is refused."""
        problem = header_problem(subject)
        if problem is not None:
            raise EngineError(f"the subject holds {problem}; nothing was changed")
        self._close_task(task_id, SENT, at, subject=subject, body=body)

    def complete_task(self, task_id: int, at: dt.datetime) -> None:
        self._close_task(task_id, "completed", at)

    def skip_task(self, task_id: int, at: dt.datetime) -> None:
        self._close_task(task_id, "skipped", at)

    def schedule_task(
        self, task_id: int, subject: str, body: str, when: dt.datetime | None, at: dt.datetime
    ) -> dt.datetime:
        """A person had cadence send email task ``task_id`` (with their edits):
        at ``when`` (without a zone: in the person's), or at once when that is
        none or not later than ``at`` (now). The
        task becomes a send the dispatcher delivers, its text as edited; the
        steps after it wait until it is sent (semantics §6), and emails that
        take its time of day get ``when``'s (§4.4). Returns when it goes."""
        problem = header_problem(subject)
        if problem is not None:
            raise EngineError(f"the subject holds {problem}; nothing was changed")
        with self.store.transaction() as connection:
            row = self._email_task(connection, task_id)
            where = zone(row.zone) or UTC_ZONE
            try:
                due = at if when is None else max(_instant_of(when, where), at)
            except (OverflowError, ValueError):  # beyond what a datetime holds in UTC
                early = when is not None and when.year == dt.MINYEAR
                due = at if early else dt.datetime.max.replace(tzinfo=UTC)
            if due - at > SCHEDULE_AHEAD:
                raise EngineError(
                    f"task {task_id}: a send is scheduled at most {SCHEDULE_AHEAD.days} days ahead"
                )
            connection.execute(
                update(actions)
                .where(actions.c.id == task_id)
                .values(
                    status=PENDING,
                    due_at=due,
                    due_date=due.astimezone(where).date(),
                    subject=subject,
                    body=body,
                )
            )
            said = "now" if due == at else f"at {due.astimezone(where):%Y-%m-%d %H:%M %Z}"
            _announce(connection, row, at, "task_scheduled", f"email task `{row.step}` goes {said}")
            self._time_waiting_sends(connection, row, due)
            self._hold_in_windows(connection, row, due)  # what it holds goes after it
        return due

    def _reopen(
        self,
        connection: Connection,
        action_id: int,
        row: Any,
        at: dt.datetime,
        why: str,
        *,
        error: str | None = None,
    ) -> None:
        """A scheduled email task cadence did not send: open again for a person
        (``row``: its campaign, enrollment, person and step)."""
        connection.execute(
            update(actions)
            .where(actions.c.id == action_id)
            .values(
                status=OPEN, due_at=None, retry_at=None, claimed_by=None, lease_until=None,
                error=error,
            )
        )  # fmt: skip
        _announce(
            connection, row, at, "task_reopened", f"email task `{row.step}` is open again: {why}"
        )

    def _is_task(self, connection: Connection, action_id: int) -> bool:
        found = connection.execute(select(actions.c.is_task).where(actions.c.id == action_id))
        return bool(found.scalar_one())

    def _email_task(self, connection: Connection, task_id: int) -> Any:
        """Email task ``task_id``, locked, if its email may go to its person now
        (not while they are paused: they are away)."""
        row = self._open_task(connection, task_id)
        if row.kind != "email_task":
            raise EngineError(f"task {task_id} is a {row.kind} task: only email tasks are sent")
        if row.paused_until is not None:
            raise EngineError(
                f"{row.person} is paused until {row.paused_until:%Y-%m-%d}: "
                "resume them first (`cadence resume`)"
            )
        return row

    def _open_task(self, connection: Connection, task_id: int) -> Any:
        """Task ``task_id``, locked, if a person may act on it now."""
        row = self._action(connection, task_id, missing=f"no task {task_id}", lock=True)
        if not row.is_task:
            raise EngineError(f"{task_id} is a send, not a task")
        if row.status in (PENDING, CLAIMED):
            raise EngineError(f"task {task_id} is scheduled already: cadence sends it")
        if row.status != OPEN:
            raise EngineError(f"task {task_id} is already {row.status}")
        waiting = connection.execute(
            select(actions.c.id, actions.c.step)
            .where(
                actions.c.enrollment_id == row.enrollment_id,
                actions.c.position < row.position,
                actions.c.is_task.is_(True),
                actions.c.status.in_(UNCLOSED_TASK),
            )
            .order_by(actions.c.position)
        ).first()
        if waiting is not None:
            raise EngineError(
                f"task {task_id} waits for task {waiting.id} (`{waiting.step}`): "
                "close that one first (tasks are done in order: docs/semantics.md §6)"
            )
        return row

    def _close_task(
        self,
        task_id: int,
        status: str,
        at: dt.datetime,
        *,
        subject: str | None = None,
        body: str | None = None,
    ) -> None:
        with self.store.transaction() as connection:
            if status == SENT:
                row = self._email_task(connection, task_id)
            else:
                row = self._open_task(connection, task_id)
            values: dict[str, Any] = {"status": status, "closed_at": at}
            if status == SENT:
                values.update(sent_at=at, subject=subject, body=body)
            connection.execute(update(actions).where(actions.c.id == task_id).values(**values))
            _announce(
                connection,
                row,
                at,
                "task_closed",
                f"task `{row.step}` {status}",
            )
            if row.kind == "email_task":
                self._time_waiting_sends(connection, row, at)
            self._hold_in_windows(connection, row, at)

    def _time_waiting_sends(self, connection: Connection, task: Any, at: dt.datetime) -> None:
        """Emails aligned with this task email take the time of day it closed
        (or will be sent at), then their sending window's say (§4.5). In a
        chain (one aligned with another aligned with the task), each takes its
        anchor's time after the anchor's move, as the planner does."""
        where = zone(task.zone) or UTC_ZONE
        waiting = connection.execute(
            select(actions.c.id, actions.c.step, actions.c.due_date)
            .where(
                actions.c.enrollment_id == task.enrollment_id,
                actions.c.waits_for == task.step,
                actions.c.status == PENDING,
                actions.c.due_at.is_(None),
            )
            .order_by(actions.c.position)
        ).all()
        if not waiting:
            return
        windows = self._windows(connection, task.campaign_id)
        anchors = {
            s.id: s.timing.via[0]
            for s in self._ir(connection, task.campaign_id).steps
            if s.timing is not None and s.timing.via
        }
        walls = {task.step: at.astimezone(where).time().replace(tzinfo=None)}
        for action_id, step, due_date in waiting:
            wall = walls.get(anchors.get(step, task.step), walls[task.step])
            due = max(place(due_date, wall, where).utc, at)
            due = self._windowed(windows, step, due, where)
            walls[step] = due.astimezone(where).time().replace(tzinfo=None)
            connection.execute(update(actions).where(actions.c.id == action_id).values(due_at=due))

    def _hold_in_windows(self, connection: Connection, task: Any, at: dt.datetime) -> None:
        """Sends held back by this task go when it closes (§6) — within their
        sending windows (§4.5): one released after its window closed waits for
        the window to open again."""
        windows = self._windows(connection, task.campaign_id)
        if not windows.by_step:
            return
        where = zone(task.zone) or UTC_ZONE
        held = connection.execute(
            select(actions.c.id, actions.c.step).where(
                actions.c.enrollment_id == task.enrollment_id,
                actions.c.position > task.position,
                actions.c.status == PENDING,
                actions.c.is_task.is_(False),
                actions.c.due_at < at,
            )
        ).all()
        for action_id, step in held:
            due = self._windowed(windows, step, at, where)
            if due != at:
                connection.execute(
                    update(actions).where(actions.c.id == action_id).values(due_at=due)
                )

    def _hold_later(self, connection: Connection, send: DueSend, due: dt.datetime) -> None:
        """The person's later sends not before ``due`` — each within its window."""
        windows = self._windows(connection, send.campaign_id)
        if not windows.by_step:
            connection.execute(_HOLD_LATER, {"b_id": send.action_id, "b_due": due})
            return
        where = (
            zone(connection.execute(_ZONE_OF, {"b_id": send.enrollment_id}).scalar()) or UTC_ZONE
        )
        later = connection.execute(
            select(actions.c.id, actions.c.step).where(
                actions.c.enrollment_id == send.enrollment_id,
                # Its position read from an alias: one table, two roles.
                actions.c.position
                > select(_THIS.c.position).where(_THIS.c.id == send.action_id).scalar_subquery(),
                actions.c.status == PENDING,
                actions.c.due_at < due,
            )
        ).all()
        for action_id, step in later:
            held = self._windowed(windows, step, due, where)
            connection.execute(update(actions).where(actions.c.id == action_id).values(due_at=held))

    def _windows(self, connection: Connection, key: str) -> _Windows:
        """The sending windows and counted days of version ``key`` (made once)."""
        found = self._calendars.get(key)
        if found is None:
            ir = self._ir(connection, key)
            days = BusinessDays(ir.settings.skip_weekends, ir.settings.holidays)
            by_step = {s.id: w for s in ir.steps if (w := Window.of(s.window)) is not None}
            found = self._calendars[key] = _Windows(by_step, days)
        return found

    def _windowed(
        self, windows: _Windows, step: str, due: dt.datetime, where: ZoneInfo
    ) -> dt.datetime:
        window = windows.by_step.get(step)
        if window is None:
            return due
        return into_window(Instant(due, due.astimezone(where)), window, where, windows.days).utc

    # ---- events -----------------------------------------------------------------------------
    def reply(self, person: str, at: dt.datetime, campaign: str | None = None) -> None:
        """A reply from ``person``: the campaign's `on reply` decides (semantics §7)."""
        with self.store.transaction() as connection:
            if not self._event_for(connection, person, at, campaign, "reply"):
                raise EngineError(f"{person} is not active in any campaign")

    def bounce(self, person: str, at: dt.datetime, *, source: str = "bounce") -> int:
        """A hard bounce: the address goes on the suppression list, and the
        `on bounce` rule of every campaign the person is in applies (the
        address is dead for all of them). Returns the enrollments it reached.
        A ``person`` that is not an address is refused, nothing suppressed."""
        try:
            address = AddressChecker().normalise(person.strip())
        except AddressError as error:
            raise EngineError(f"{person!r} is not an email address: {error}") from None
        with self.store.transaction() as connection:
            suppression.add(connection, [address], "bounced", at, source=source)
            return self._event_for(connection, address, at, None, "bounce")

    def remove(self, person: str, at: dt.datetime, campaign: str | None = None) -> None:
        with self.store.transaction() as connection:
            if not self._event_for(connection, person, at, campaign, "remove"):
                raise EngineError(f"{person} is not active in any campaign")

    def _event_for(
        self,
        connection: Connection,
        person: str,
        at: dt.datetime,
        campaign: str | None,
        event: str,
    ) -> int:
        found = connection.execute(
            ACTIVE_ENROLLMENTS if campaign is None else _ACTIVE_IN,
            {"b_person": person.lower(), "b_campaign": campaign},
        ).all()
        return self._event_on(connection, [tuple(row) for row in found], at, event)

    def _event_on(
        self,
        connection: Connection,
        found: Sequence[tuple[int, str, str]],
        at: dt.datetime,
        event: str,
    ) -> int:
        """``event`` for the active enrollments ``found`` (id, campaign, person)."""
        for enrollment_id, key, email in found:
            settings = self._ir(connection, key).settings
            whose = (key, email)
            if event in ("reply", "bounce"):
                verb = "replied" if event == "reply" else "bounced"
                entry = feed_row(at, key, enrollment_id, email, event, None, f"{email} {verb}")
                if event == "reply":
                    ends, success = (
                        settings.on_reply != "continue",
                        settings.on_reply == "end_success",
                    )
                else:
                    ends, success = settings.on_bounce == "remove", False
                if not ends:
                    connection.execute(_FEED_INSERT, entry)
                    continue
                self._end(connection, enrollment_id, at, verb, success=success, whose=whose,
                          first=entry)  # fmt: skip
            else:  # a removal, or a suppression: the event is the reason
                reason = "removed" if event == "remove" else event
                self._end(connection, enrollment_id, at, reason, whose=whose)
        return len(found)

    # ---- pauses -------------------------------------------------------------------------------
    def pause(
        self,
        person: str,
        until: dt.date,
        at: dt.datetime,
        *,
        reason: str,
        campaign: str | None = None,
    ) -> int:
        """Hold everything for ``person`` (in ``campaign``, or every campaign)
        until the start of ``until`` in their zone; then the rest of their
        schedule moves so the next step falls on that day. Returns how many
        enrollments it paused."""
        with self.store.transaction() as connection:
            found = self._pause(connection, person, until, at, reason=reason, campaign=campaign)
        if not found:
            raise EngineError(f"{person} is not active in any campaign")
        return found

    def _pause(
        self,
        connection: Connection,
        person: str,
        until: dt.date,
        at: dt.datetime,
        *,
        reason: str,
        campaign: str | None = None,
    ) -> int:
        found = connection.execute(
            _ZONES_OF if campaign is None else _ZONES_IN,
            {"b_person": person.lower(), "b_campaign": campaign},
        ).all()
        for enrollment_id, key, zone_name in found:
            back = place(until, dt.time(0, 0), zone(zone_name) or UTC_ZONE).utc
            connection.execute(_PAUSE, {"b_id": enrollment_id, "b_until": back, "b_why": reason})
            when = "until resumed" if until >= UNTIL_RESUMED else f"until {until:%Y-%m-%d}"
            connection.execute(
                _FEED_INSERT,
                feed_row(
                    at, key, enrollment_id, person, "paused", None, f"paused {when}: {reason}"
                ),
            )
        return len(found)

    def resume(self, person: str, at: dt.datetime, *, campaign: str | None = None) -> int:
        """Resume ``person`` now (in ``campaign``, or every campaign): the rest of
        the schedule moves so the next step falls today (or the next day the
        campaign counts). Returns how many enrollments resumed."""
        query = select(enrollments.c.id).where(
            func.lower(enrollments.c.person) == person.lower(),
            enrollments.c.status == "active",
            enrollments.c.paused_until.is_not(None),
        )
        if campaign is not None:
            query = query.where(in_campaign(campaign))
        with self.store.transaction() as connection:
            found = connection.execute(query).scalars().all()
            for enrollment_id in found:
                self._resume(connection, enrollment_id, at)
        if not found:
            raise EngineError(f"{person} is not paused in any campaign")
        return len(found)

    def resume_due(self, now: dt.datetime) -> int:
        """Resume everyone whose pause has ended (dispatchers do this as they claim)."""
        with self.store.transaction() as connection:
            return self._resume_due(connection, now)

    def _resume_due(self, connection: Connection, now: dt.datetime) -> int:
        ended = connection.execute(
            select(enrollments.c.id, enrollments.c.paused_until).where(
                enrollments.c.paused_until.is_not(None), enrollments.c.paused_until <= now
            )
        ).all()
        for enrollment_id, until in ended:
            self._resume(connection, enrollment_id, until)
        return len(ended)

    def _resume(self, connection: Connection, enrollment_id: int, at: dt.datetime) -> None:
        """Clear the pause; move what is left so its first step falls on the
        resume day (each step keeps its time of day and its distance in the
        campaign's counted days)."""
        row = connection.execute(
            select(enrollments.c.campaign_id, enrollments.c.person, enrollments.c.zone).where(
                enrollments.c.id == enrollment_id
            )
        ).one()
        windows = self._windows(connection, row.campaign_id)
        days = windows.days
        where = zone(row.zone) or UTC_ZONE
        left = connection.execute(
            select(actions.c.id, actions.c.due_date, actions.c.due_at, actions.c.step)
            .where(actions.c.enrollment_id == enrollment_id, BY_THE_RULES)
            .order_by(actions.c.position)
        ).all()
        connection.execute(
            update(enrollments)
            .where(enrollments.c.id == enrollment_id)
            .values(paused_until=None, paused_why=None)
        )
        resume_day = days.first_counting(at.astimezone(where).date())
        first = min((due_date for _, due_date, _, _ in left), default=None)
        moved = f"; the rest moves {_counted_days(days, first, resume_day)} day(s)"
        if first is None or first >= resume_day:
            moved = ""
        else:
            self._shift(
                connection, left, _counted_days(days, first, resume_day), at, windows, where
            )
        connection.execute(
            _FEED_INSERT,
            feed_row(at, row.campaign_id, enrollment_id, row.person, "resumed", None,
                   f"resumed{moved}"),
        )  # fmt: skip

    # ---- the suppression list ---------------------------------------------------------------
    def suppress(
        self,
        emails: Iterable[str],
        reason: suppression.Reason,
        at: dt.datetime,
        *,
        source: str | None = None,
        note: str | None = None,
    ) -> SuppressReport:
        """Never email these addresses again: each is checked and normalised
        (bad ones are reported, not added), and its active enrollments end in
        every campaign, with the reason in the feed."""
        report = SuppressReport()
        checker = AddressChecker()
        valid = []
        for email in emails:
            try:
                valid.append(checker.normalise(email.strip()))
            except AddressError as error:
                report.problems.append(f"`{email}` is not an email address: {error}")
        why = "unsubscribed" if reason == "unsubscribed" else f"suppressed ({reason})"
        with self.store.transaction() as connection:
            added = suppression.add(connection, valid, reason, at, source=source, note=note)
            report.added += len(added)
            report.already += len(set(map(suppression.key, valid))) - len(added)
            for email in valid:
                report.ended += self._event_for(connection, email, at, None, why)
        return report

    def unsubscribe(self, person: str, at: dt.datetime, *, source: str | None = None) -> int:
        """``person`` asked to be removed: suppressed, and ended in every
        campaign. Returns how many enrollments ended."""
        report = self.suppress([person], "unsubscribed", at, source=source)
        if report.problems:
            raise EngineError(report.problems[0])
        return report.ended

    def unsuppress(self, emails: Iterable[str]) -> int:
        """Take addresses off the suppression list (enrollments that ended stay ended)."""
        with self.store.transaction() as connection:
            return suppression.remove(connection, emails)

    def suppressions(self, reason: str | None = None) -> list[suppression.Suppression]:
        with self.store.read() as connection:
            return suppression.listing(connection, reason)

    def end(self, campaign: str, at: dt.datetime) -> int:
        """End a campaign (its identity, or any version's key), every version,
        for everyone in it; returns how many enrollments ended."""
        with self.store.transaction() as connection:
            versions = connection.execute(
                select(campaigns.c.id, campaigns.c.identity).where(
                    or_(campaigns.c.id == campaign, campaigns.c.identity == campaign)
                )
            ).all()
            if not versions:
                raise NotFound(f"no campaign {campaign}")
            who = versions[0].identity
            lock_campaign(connection, who)
            connection.execute(
                update(campaigns)
                .where(campaigns.c.identity == who, campaigns.c.ended_at.is_(None))
                .values(ended_at=at)
            )
            # Those who went through every step stay finished: it is not ended early.
            connection.execute(
                update(enrollments)
                .where(in_campaign(who), enrollments.c.status == ACTIVE, ~STEPS_LEFT)
                .values(status=FINISHED, ended_at=LAST_DONE)
            )
            active = (
                connection.execute(
                    select(enrollments.c.id).where(in_campaign(who), enrollments.c.status == ACTIVE)
                )
                .scalars()
                .all()
            )
            for enrollment_id in active:
                self._end(connection, enrollment_id, at, "campaign has ended")
            return len(active)

    def _end(
        self,
        connection: Connection,
        enrollment_id: int,
        at: dt.datetime,
        reason: str,
        *,
        success: bool = False,
        whose: tuple[str, str] | None = None,
        first: dict[str, Any] | None = None,
    ) -> None:
        """Cancel what is pending, close what is open, end the enrollment.
        ``whose``: its campaign and person, when the caller has them; ``first``:
        the feed entry of what ended it, written with the others."""
        campaign_id, person = (
            whose or connection.execute(_ENROLLMENT, {"b_id": enrollment_id}).one()
        )
        # A claimed send is in flight: it is marked sent, or cancelled if it fails.
        left = connection.execute(_LEFT, {"b_id": enrollment_id}).all()
        cancelled = [(step, is_task) for step, is_task, status, _ in left if status != CLAIMED]
        if cancelled:
            connection.execute(_CANCEL_LEFT, {"b_id": enrollment_id, "b_at": at})
        connection.execute(
            _END_ENROLLMENT,
            {"b_id": enrollment_id, "b_reason": reason, "b_success": success, "b_at": at},
        )
        # A claim whose lease ran out has no dispatcher any more: settle it now.
        # A live claim is settled by its dispatcher (sent, or cancelled when it
        # checks the enrollment before delivering), or after its lease by
        # the next claim's sweep.
        if any(status == CLAIMED and lease <= at for _, _, status, lease in left):
            _settle_expired(connection, at, actions.c.enrollment_id == enrollment_id)
        events = [first] if first is not None else []
        events += [
            feed_row(
                at,
                campaign_id,
                enrollment_id,
                person,
                "cancelled",
                step,
                f"{'task' if is_task else 'send'} `{step}` cancelled: {reason}",
            )
            for step, is_task in cancelled
        ]
        events.append(
            feed_row(
                at,
                campaign_id,
                enrollment_id,
                person,
                "ended",
                None,
                f"enrollment ended: {reason}" + (" (success)" if success else ""),
            )
        )
        connection.execute(_FEED_INSERT, events)

    # ---- reading -------------------------------------------------------------------------------
    def feed_end(self) -> int:
        """The newest entry's id (0 for an empty feed): where "from now on" begins."""
        with self.store.read() as connection:
            return int(connection.execute(select(func.max(feed.c.id))).scalar() or 0)

    def feed(self, *, after: int = 0, limit: int = 1000) -> list[FeedEntry]:
        query = (
            select(
                feed.c.id,
                feed.c.at,
                feed.c.campaign_id,
                feed.c.person,
                feed.c.event,
                feed.c.step,
                feed.c.message,
            )
            .where(feed.c.id > after)
            .order_by(feed.c.id)
            .limit(limit)
        )
        with self.store.read() as connection:
            return [FeedEntry(*row) for row in connection.execute(query)]

    def enrollment_fields(self, enrollment_id: int) -> dict[str, Any]:
        return self.fields_of([enrollment_id])[enrollment_id]

    def variants_of(self, enrollment_ids: Sequence[int]) -> dict[int, dict[str, str]]:
        """The variant each enrollment got of each tested email, by step."""
        found: dict[int, dict[str, str]] = {number: {} for number in enrollment_ids}
        if not found:
            return found
        with self.store.read() as connection:
            for enrollment_id, step, variant in connection.execute(
                select(actions.c.enrollment_id, actions.c.step, actions.c.variant).where(
                    actions.c.enrollment_id.in_(found), actions.c.variant.is_not(None)
                )
            ):
                found[enrollment_id][step] = variant
        return found

    def fields_of(self, enrollment_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The fields each enrollment was made with, in one query."""
        with self.store.read() as connection:
            rows = connection.execute(
                select(enrollments.c.id, enrollments.c.fields).where(
                    enrollments.c.id.in_(set(enrollment_ids))
                )
            ).all()
        return {row.id: dict(row.fields) for row in rows}

    def find_campaign(self, text: str) -> str:
        """A campaign's identity from its `id`, its name (any version's), a
        version's key, or a unique prefix of 4+ characters of a key; an
        ambiguous one lists the campaigns it could be."""
        with self.store.read() as connection:
            rows = connection.execute(
                select(
                    campaigns.c.id, campaigns.c.name, campaigns.c.identity, campaigns.c.version
                ).order_by(campaigns.c.identity, campaigns.c.version)
            ).all()
        named = {text, f"id:{text}", f"name:{text}"}
        exact = {row.identity for row in rows if row.id == text or row.name == text
                 or row.identity in named}  # fmt: skip
        prefixed = {row.identity for row in rows if len(text) >= 4 and row.id.startswith(text)}
        found = exact or prefixed
        if not found:
            raise NotFound(f"no campaign matches {text!r} (`cadence campaigns` lists them)")
        if len(found) > 1:
            candidates = [
                f"{row.name!r} ({_shown(row.identity)}, version {row.version}, key {row.id[:12]})"
                for row in rows
                if row.identity in found
            ]
            raise EngineError(f"more than one campaign matches {text!r}: {'; '.join(candidates)}")
        return str(found.pop())

    def campaign(self, key: str) -> Campaign:
        if key in self._campaigns:  # campaigns never change once stored
            return self._campaigns[key]
        with self.store.read() as connection:
            return self._ir(connection, key)

    def _ir(self, connection: Connection, key: str) -> Campaign:
        if key not in self._campaigns:
            text = connection.execute(
                select(campaigns.c.ir).where(campaigns.c.id == key)
            ).scalar_one()
            self._campaigns[key] = load_ir(text)
        return self._campaigns[key]

    def _action(
        self,
        connection: Connection,
        action_id: int,
        *,
        missing: str | None = None,
        lock: bool = False,
    ) -> Any:
        """An action with its enrollment; ``lock`` holds the row (PostgreSQL) so
        two requests cannot both act on it."""
        query = (
            select(
                actions,
                enrollments.c.campaign_id,
                enrollments.c.person,
                enrollments.c.zone,
                enrollments.c.status.label("enrollment_status"),
                enrollments.c.reason,
                enrollments.c.paused_until,
            )
            .join(enrollments, enrollments.c.id == actions.c.enrollment_id)
            .where(actions.c.id == action_id)
        )
        if lock and self.store.dialect == "postgresql":
            query = query.with_for_update(of=actions)
        row = connection.execute(query).first()
        if row is None:
            raise NotFound(missing or f"no send {action_id}")
        return row


LATE = dt.timedelta(minutes=15)
_FEED_INSERT = feed.insert()
# Built once: a dispatcher marks every send, and building the statement cost
# more than running it.
_MARK_SENT_BY = (
    update(actions)
    .where(
        actions.c.id == bindparam("b_id"),
        actions.c.status == CLAIMED,
        actions.c.claimed_by == bindparam("b_worker"),
    )
    .values(
        status=SENT,
        sent_at=bindparam("b_at"),
        message_id=bindparam("b_message_id"),
        lease_until=None,
        error=None,
    )
)
_MARK_SENT = (
    update(actions)
    .where(actions.c.id == bindparam("b_id"), actions.c.status == CLAIMED)
    .values(
        status=SENT,
        sent_at=bindparam("b_at"),
        message_id=bindparam("b_message_id"),
        lease_until=None,
        error=None,
    )
)


# Built once: a dispatcher asks this before every delivery.
_CLAIM_STATE = (
    select(
        actions.c.status,
        actions.c.claimed_by,
        actions.c.step,
        actions.c.enrollment_id,
        enrollments.c.campaign_id,
        enrollments.c.person,
        enrollments.c.status.label("enrollment_status"),
        enrollments.c.reason,
    )
    .join(enrollments, enrollments.c.id == actions.c.enrollment_id)
    .where(actions.c.id == bindparam("b_id"))
)


# Built once: ending enrollments (replies, unsubscribes, bounces) is a hot path
# when a mailbox is read.
_ENROLLMENT = select(enrollments.c.campaign_id, enrollments.c.person).where(
    enrollments.c.id == bindparam("b_id")
)
_LEFT = (
    select(actions.c.step, actions.c.is_task, actions.c.status, actions.c.lease_until)
    .where(
        actions.c.enrollment_id == bindparam("b_id"),
        actions.c.status.in_([PENDING, OPEN, CLAIMED]),
    )
    .order_by(actions.c.position)
)
_CANCEL_LEFT = (
    update(actions)
    .where(
        actions.c.enrollment_id == bindparam("b_id"),
        actions.c.status.in_([PENDING, OPEN]),
    )
    .values(status=CANCELLED, closed_at=bindparam("b_at"))
)
_END_ENROLLMENT = (
    update(enrollments)
    .where(enrollments.c.id == bindparam("b_id"))
    .values(
        status="ended",
        reason=bindparam("b_reason"),
        success=bindparam("b_success"),
        ended_at=bindparam("b_at"),
    )
)


# A person's active enrollments (id, campaign, person); built once, as events
# and inbound mail look them up per message.
ACTIVE_ENROLLMENTS = select(
    enrollments.c.id, enrollments.c.campaign_id, enrollments.c.person
).where(
    func.lower(enrollments.c.person) == bindparam("b_person"),
    enrollments.c.status == "active",
)


def in_campaign(named: Any) -> Any:
    """Enrollments of a campaign, every version of it: ``named`` (a value or a
    bind parameter) is the campaign's identity or one of its versions' keys."""
    other = campaigns.alias("named")
    who = select(other.c.identity).where(or_(other.c.id == named, other.c.identity == named))
    return enrollments.c.campaign_id.in_(
        select(campaigns.c.id).where(campaigns.c.identity.in_(who))
    )


_ACTIVE_IN = ACTIVE_ENROLLMENTS.where(in_campaign(bindparam("b_campaign")))
_VERSIONS = (
    select(campaigns.c.id, campaigns.c.version, campaigns.c.behaviour, campaigns.c.ended_at)
    .where(campaigns.c.identity == bindparam("b_identity"))
    .order_by(campaigns.c.version, campaigns.c.created_at)
)
# Every enrollment of a batch's people in any version of the campaign of
# version `b_key`, newest first, with what the enroll must know of each.
_IN_VERSIONS = (
    select(
        enrollments.c.id,
        enrollments.c.person,
        enrollments.c.status,
        enrollments.c.reason,
        enrollments.c.start_at,
        enrollments.c.ended_at,
        STEPS_LEFT.label("steps_left"),
        LAST_DONE.label("last_done"),
        campaigns.c.id.label("id_key"),
        campaigns.c.version,
    )
    .join(campaigns, campaigns.c.id == enrollments.c.campaign_id)
    .where(
        in_campaign(bindparam("b_key")),
        func.lower(enrollments.c.person).in_(bindparam("b_emails", expanding=True)),
    )
    .order_by(enrollments.c.created_at.desc(), enrollments.c.id.desc())
)


def _shown(stored: str) -> str:
    kind, _, value = stored.partition(":")
    return f"id {value}" if kind == "id" else f"name {value!r}"


def lock_campaign(connection: Connection, who: str) -> None:
    """One writer at a time per campaign on PostgreSQL (a transaction lock on
    its identity): enrolls of two versions never both take the same person,
    and two first enrolls of a new version never both number it. SQLite's
    writer lock already does this."""
    if connection.dialect.name == "postgresql":
        number = int.from_bytes(hashlib.sha256(who.encode()).digest()[:8], "big", signed=True)
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": number})


def _due_send(row: Any, worker: str) -> DueSend:
    """A row of the due query, as the claim of ``worker`` (this attempt counts)."""
    return DueSend(
        row.id, row.enrollment_id, row.campaign_id, row.person, row.step, row.due_at,
        row.thread, row.attempts + 1, row.mailbox, worker,
    )  # fmt: skip


def _sent_by(mailbox: str | None) -> tuple[Any, ...]:
    """Sends of ``mailbox``, or not yet of any (all sends, without one)."""
    if mailbox is None:
        return ()
    return (or_(enrollments.c.mailbox == mailbox, enrollments.c.mailbox.is_(None)),)


def _held_by(sends: Sequence[DueSend]) -> tuple[Any, ...]:
    """Those of ``sends`` still claimed by the dispatcher that claimed them."""
    return (
        actions.c.id.in_([send.action_id for send in sends]),
        actions.c.status == CLAIMED,
        actions.c.claimed_by == sends[0].worker,
    )


# A person's enrollments a pause holds: active, with steps still to come (a
# finished one has nothing to hold).
_ZONES_OF = select(enrollments.c.id, enrollments.c.campaign_id, enrollments.c.zone).where(
    func.lower(enrollments.c.person) == bindparam("b_person"),
    enrollments.c.status == "active",
    STEPS_LEFT,
)
_ZONES_IN = _ZONES_OF.where(in_campaign(bindparam("b_campaign")))
_ZONE_OF = select(enrollments.c.zone).where(enrollments.c.id == bindparam("b_id"))
_THIS, _EARLIER = actions.alias("this_send"), actions.alias("earlier_send")
# What held a send back: its retry, and the last earlier step of its person to close.
# When a send could first go: its retry, the last earlier task closed (§6) and
# the last earlier send sent. An earlier send cancelled (a late skip) holds
# nothing back: it does not make the sends after it ready anew.
_READY = (
    select(
        _THIS.c.retry_at,
        func.max(case((_EARLIER.c.is_task, _EARLIER.c.closed_at))),
        func.max(_EARLIER.c.sent_at),
    )
    .select_from(_THIS)
    .outerjoin(
        _EARLIER,
        and_(
            _EARLIER.c.enrollment_id == _THIS.c.enrollment_id,
            _EARLIER.c.position < _THIS.c.position,
        ),
    )
    .where(_THIS.c.id == bindparam("b_id"))
    .group_by(_THIS.c.id, _THIS.c.retry_at)
)
_HOLD_LATER = (
    update(actions)
    .where(
        actions.c.enrollment_id == select(_THIS.c.enrollment_id).where(
            _THIS.c.id == bindparam("b_id")).scalar_subquery(),
        actions.c.position > select(_THIS.c.position).where(
            _THIS.c.id == bindparam("b_id")).scalar_subquery(),
        actions.c.status == PENDING,
        actions.c.due_at < bindparam("b_due"),
    )
    .values(due_at=bindparam("b_due"))
)  # fmt: skip
_EARLIER_DUE = select(func.max(_EARLIER.c.due_at)).where(
    _THIS.c.id == bindparam("b_id"),
    _EARLIER.c.enrollment_id == _THIS.c.enrollment_id,
    _EARLIER.c.position < _THIS.c.position,
    _EARLIER.c.status == PENDING,
)
_ASSIGN = (
    update(enrollments)
    .where(enrollments.c.id == bindparam("b_id"), enrollments.c.mailbox.is_(None))
    .values(mailbox=bindparam("b_mailbox"))
)
_PAUSE = (
    update(enrollments)
    .where(enrollments.c.id == bindparam("b_id"))
    .values(paused_until=bindparam("b_until"), paused_why=bindparam("b_why"))
)


def _sends() -> Select[Any]:
    """Sends with what a dispatcher needs (the columns of :class:`DueSend`)."""
    return select(
        actions.c.id,
        actions.c.enrollment_id,
        enrollments.c.campaign_id,
        enrollments.c.person,
        actions.c.step,
        actions.c.due_at,
        actions.c.thread,
        actions.c.attempts,
        enrollments.c.mailbox,
    ).join(enrollments, enrollments.c.id == actions.c.enrollment_id)


def _earlier_open_task() -> Any:
    """An earlier task of the same enrollment is still open (semantics §6: it blocks)."""
    earlier = actions.alias("earlier_task")
    return exists().where(
        earlier.c.enrollment_id == actions.c.enrollment_id,
        earlier.c.position < actions.c.position,
        earlier.c.is_task.is_(True),
        earlier.c.status.in_(UNCLOSED_TASK),
    )


# Built once: the command center asks for a page of tasks on every visit.
_OPEN_TASKS = (
    select(
        actions.c.id,
        actions.c.enrollment_id,
        enrollments.c.campaign_id,
        enrollments.c.person,
        actions.c.step,
        actions.c.kind,
        actions.c.due_date,
        actions.c.status,
        enrollments.c.zone,
        actions.c.variant,
        enrollments.c.mailbox,
    )
    .join(enrollments, enrollments.c.id == actions.c.enrollment_id)
    .where(
        actions.c.is_task.is_(True),
        actions.c.status == OPEN,
        enrollments.c.paused_until.is_(None),  # nobody calls a person who is away
        ~_earlier_open_task(),
    )
    # Enrollment, not person: the order of the partial index, so a page of
    # tasks reads that many rows instead of sorting every open task.
    .order_by(actions.c.due_date, actions.c.enrollment_id, actions.c.position)
)


def _settle_expired(
    connection: Connection, at: dt.datetime, *where: Any, limit: int | None = None
) -> None:
    """Settle claims whose lease ran out on sends of people no longer active
    (their dispatcher stopped, and nobody will take the sends over). A
    dispatcher delivers its batch in claim order and marks each send before
    the next, so of a stopped dispatcher's batch only the first send still
    claimed may have been handed to the mail server: it becomes
    :data:`UNCONFIRMED`; the others were never attempted and are cancelled."""
    claims = connection.execute(
        select(
            actions.c.id,
            actions.c.enrollment_id,
            actions.c.step,
            actions.c.claimed_by,
            actions.c.lease_until,
            actions.c.due_at,
            actions.c.position,
            enrollments.c.campaign_id,
            enrollments.c.person,
            enrollments.c.reason,
        )
        .join(enrollments, enrollments.c.id == actions.c.enrollment_id)
        .where(
            actions.c.status == literal_column(f"'{CLAIMED}'"),  # the partial index
            actions.c.lease_until <= at,
            enrollments.c.status != "active",
            *where,
        )
        .order_by(actions.c.id)
        .limit(limit)
    ).all()
    for claim in claims:
        earlier = actions.alias("earlier_claim")
        # Settled claims keep their lease_until, so they still count as the
        # batch's; sends the dispatcher marked have none.
        first = not connection.execute(
            select(
                exists().where(
                    earlier.c.status.in_([CLAIMED, UNCONFIRMED, CANCELLED]),
                    earlier.c.claimed_by == claim.claimed_by,
                    earlier.c.lease_until == claim.lease_until,
                    tuple_(earlier.c.due_at, earlier.c.enrollment_id, earlier.c.position)
                    < tuple_(claim.due_at, claim.enrollment_id, claim.position),
                )
            )
        ).scalar()
        status = UNCONFIRMED if first else CANCELLED
        connection.execute(
            update(actions).where(actions.c.id == claim.id).values(status=status, closed_at=at)
        )
        message = (
            f"send `{claim.step}`: its dispatcher stopped while delivering it, so it may have "
            f"been delivered; not sent again: {claim.reason}"
            if first
            else f"send `{claim.step}` cancelled: {claim.reason} (its dispatcher had stopped "
            "before sending it)"
        )
        _announce(connection, claim, at, "unconfirmed" if first else "cancelled", message)


def _counted_days(days: BusinessDays, first: dt.date | None, last: dt.date) -> int:
    """How many counted days lie after ``first`` up to ``last``."""
    count, current = 0, first
    while current is not None and current < last:
        current += dt.timedelta(days=1)
        if days.counts(current):
            count += 1
    return count


def _add_counted_days(days: BusinessDays, start: dt.date, count: int) -> dt.date:
    current = start
    while count > 0:
        current += dt.timedelta(days=1)
        if days.counts(current):
            count -= 1
    return current


def _claim_state(connection: Connection, send: DueSend) -> Any:
    """The send's claim and its person's state; raises :class:`LostClaim`
    when another dispatcher holds the send now."""
    row = connection.execute(_CLAIM_STATE, {"b_id": send.action_id}).one()
    if row.status != CLAIMED or row.claimed_by != send.worker:
        raise LostClaim(f"send {send.action_id} was taken over by {row.claimed_by}")
    return row


def _cancel_claimed(connection: Connection, send: DueSend, row: Any, at: dt.datetime) -> None:
    """Cancel a claimed send whose person is no longer active, with the reason."""
    cancelled = connection.execute(
        update(actions)
        .where(
            actions.c.id == send.action_id,
            actions.c.status == CLAIMED,
            actions.c.claimed_by == send.worker,
        )
        .values(status=CANCELLED, closed_at=at, lease_until=None)
    ).rowcount
    if cancelled:
        _announce(connection, row, at, "cancelled", f"send `{row.step}` cancelled: {row.reason}")


def _instant_of(when: dt.datetime, where: Any) -> dt.datetime:
    """``when`` in UTC; without a zone, as a wall clock time in ``where``."""
    if when.tzinfo is None:
        return place(when.date(), when.time(), where).utc
    return when.astimezone(UTC)


def _announce(connection: Connection, row: Any, at: dt.datetime, event: str, message: str) -> None:
    """A feed entry about the action ``row`` (as :meth:`Engine._action` reads it)."""
    connection.execute(
        _FEED_INSERT,
        feed_row(at, row.campaign_id, row.enrollment_id, row.person, event, row.step, message),
    )


def _caught_up(row: dict[str, Any], catch_up: CatchUp, now: dt.datetime) -> tuple[str, str]:
    """A step already due when its person was enrolled: skipped, or due now
    (a task stays open: it is overdue, and shown so)."""
    step = row["step"]
    if catch_up == "skip":
        row.update(status="skipped" if row["is_task"] else CANCELLED, closed_at=now)
        return "skipped", f"`{step}` skipped: it was due before the enrollment (catch-up skip)"
    if row["is_task"]:
        return "task_opened", f"task opened: `{step}` was due {row['due_date']} (overdue)"
    due = row["due_at"]
    row["due_at"] = now
    row["note"] = "; ".join(
        filter(None, [row["note"], f"caught up: was due {due:%Y-%m-%d %H:%M}Z"])
    )
    return "queued", f"queued `{step}` now: it was due {due:%Y-%m-%d %H:%M}Z (catch-up send)"


def _announcement(action: Action) -> tuple[str, str]:
    """How the feed announces a new action: a task opened, or a send queued."""
    local = action.local
    # The wall time and the zone's abbreviation, not the instant: instants in
    # two zones compare equal, their announcements do not.
    wall = (local.replace(tzinfo=None), local.tzname()) if local is not None else None
    return _announcement_of(action.kind, action.step, wall, action.due_date, action.waits_for)


@functools.lru_cache(maxsize=4096)  # an enroll announces the same steps for many people
def _announcement_of(
    kind: str,
    step: str,
    wall: tuple[dt.datetime, str | None] | None,
    due_date: dt.date,
    waits_for: str | None,
) -> tuple[str, str]:
    if kind != "email":
        return "task_opened", f"task opened: {kind.replace('_', ' ')} `{step}` due {due_date}"
    if wall is not None:
        return "queued", f"queued `{step}` for {wall[0]:%Y-%m-%d %H:%M} {wall[1] or ''}"
    return "queued", f"queued `{step}` on {due_date}, after `{waits_for}`"


def feed_row(
    at: dt.datetime,
    campaign: str,
    enrollment: int | None,
    person: str | None,
    event: str,
    step: str | None,
    message: str,
) -> dict[str, Any]:
    """A row of the live feed (the engine's and the inbox's entries alike)."""
    return {
        "at": at,
        "campaign_id": campaign,
        "enrollment_id": enrollment,
        "person": person,
        "event": event,
        "step": step,
        "message": message,
    }
