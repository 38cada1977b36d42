"""The dispatcher: claims due sends, renders them, delivers them, marks them.

Delivery is over SMTP (the standard library) or into an outbox folder of
`.eml` files (the embedded default). A send's Message-ID is derived from its
action id, so a send delivered again after a crash carries the same id; the
outbox is exactly-once outright (one file per action, written atomically,
never rewritten). See docs/engine.md for what is guaranteed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError

from cadence.compiler.ir import Campaign
from cadence.runtime import outgoing
from cadence.runtime.calendar import zone
from cadence.runtime.caps import DailyCap, SharedThrottle
from cadence.runtime.delivery import DeliveryError, Transport, TransportError
from cadence.runtime.engine import (
    DEFAULT_LEASE,
    Claim,
    DueSend,
    Engine,
    EngineError,
    LatePolicy,
)
from cadence.runtime.mailboxes import Mailbox, Routing, Sender, Throttle
from cadence.runtime.message_ids import MessageIds
from cadence.runtime.planner import Action
from cadence.runtime.render import Renderer
from cadence.runtime.schema import actions, enrollments
from cadence.runtime.smtp import REPLY_TIMEOUT
from cadence.runtime.unsubscribe import UnsubscribeLinks

MAX_ATTEMPTS = 8
# What one delivery may take (RFC 5321: up to 10 minutes for the reply to the
# end of the message, and a minute for the rest); leases are renewed so the
# next send always has this much left.
DELIVERY_MARGIN = dt.timedelta(seconds=REPLY_TIMEOUT + 60)
CLAIM_ATTEMPTS = 5  # a claim that cannot reach the database gives up (nothing was sent)
MAX_STORE_DELAY = 30.0  # seconds between tries of a store that is busy or away
T = TypeVar("T")
log = logging.getLogger("cadence.dispatch")


@dataclass
class DispatchReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    lost: int = 0  # taken over by another dispatcher after this one's lease ran out
    cancelled: int = 0  # the person stopped being active after the send was claimed
    # Mailboxes that could not send (a refused login): their batch was given
    # back, the others went on. Mailbox -> why.
    down: dict[str, str] = field(default_factory=dict)


def message_id(ids: MessageIds, send: DueSend, domain: str) -> str:
    """The Message-ID ``send`` goes out with, signed for its recipient; the
    same at every try."""
    return ids.make(send.campaign_id, send.action_id, send.person, domain)


def unsigned_message_id(send: DueSend, domain: str) -> str:
    """The Message-ID a cadence before signed Message-IDs gave ``send``: a
    send it delivered into the outbox before the upgrade is found by it."""
    return f"<cadence.{send.campaign_id[:12]}.{send.action_id}@{domain}>"


class Dispatcher:
    """Delivers due sends from one or more sender mailboxes: each round takes a
    batch for every mailbox that has room (its throttle, its daily cap), so a
    throttled mailbox never holds up the others."""

    def __init__(
        self,
        engine: Engine,
        transport: Transport | None = None,
        sender: Sender | None = None,
        *,
        mailboxes: Sequence[Mailbox] | None = None,
        routing: Routing | None = None,
        worker: str = "dispatcher",
        throttle: Throttle | None = None,
        batch: int = 100,
        lease: dt.timedelta = DEFAULT_LEASE,
        on_progress: Callable[[DispatchReport], None] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        unsubscribe: UnsubscribeLinks | None = None,
        daily_cap: DailyCap | None = None,
        shared_throttle: SharedThrottle | None = None,
        late: LatePolicy | None = None,
    ) -> None:
        if mailboxes is None:
            if transport is None:
                raise TypeError("a Dispatcher needs a transport or mailboxes")
            mailboxes = [
                Mailbox(
                    "default", sender or Sender(), transport, unsubscribe, daily_cap,
                    throttle, shared_throttle,
                )
            ]  # fmt: skip
        if not mailboxes:
            raise ValueError("a Dispatcher needs at least one mailbox")
        self.mailboxes = list(mailboxes)
        self._by_key = {box.key: box for box in self.mailboxes}
        self._from: dict[str, Any] = {}  # the From header of each mailbox, folded
        for box in self.mailboxes:
            address = box.sender.address  # refused here, before any claim
            self._from[box.key] = outgoing.stored("From", address)
            if box.unsubscribe is None:
                box.unsubscribe = UnsubscribeLinks(box.sender.email)
        if routing is None and len(self.mailboxes) > 1:
            raise ValueError("several mailboxes need a routing: which one sends for whom")
        self.routing = routing or Routing.only(self.mailboxes[0])
        # One mailbox sends everything; several keep each person to theirs.
        self._pinned = len(self.mailboxes) > 1
        self.engine, self.worker, self.batch = engine, worker, batch
        self.late = late  # None: whatever is due is sent, however late
        self._stop = threading.Event()
        self.lease, self.clock, self.monotonic = lease, clock, monotonic
        self.sleep = sleep
        self.on_progress = on_progress
        self._renderers: dict[tuple[str, str], Renderer] = {}

    def stop(self) -> None:
        """Finish the send under way, give the rest of the batch back, and
        return (from another thread, or a signal handler: SIGTERM)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run_once(self, now: dt.datetime | None = None) -> DispatchReport:
        """Deliver everything due; returns what happened. ``now`` fixes the
        time (tests, `--now`); without it each batch reads the clock."""
        report = DispatchReport()
        self._resolve_unconfirmed(now or self.clock())
        self._warn_stranded(now or self.clock())
        while not self.stopping:
            worked, waits = False, []
            for box in self.mailboxes:
                if box.describe() in report.down or self.stopping:
                    continue
                try:
                    outcome = self._round(box, now, report)
                except TransportError as error:
                    # Its batch was given back; the other mailboxes go on.
                    report.down[box.describe()] = str(error)
                    if len(report.down) == len(self.mailboxes):
                        raise TransportError(f"{box.describe()}: {error}") from error
                    log.error("%s: %s (its sends wait; the others go on)", box.describe(), error)
                    continue
                if outcome is True:
                    worked = True
                elif outcome is not False:
                    waits.append(outcome)
            if worked:
                continue
            if not waits:
                return report
            # Every mailbox with due sends is at its throttle: wait for the first.
            seconds, sleep = min(waits, key=lambda wait: wait[0])
            sleep(seconds)
        return report

    def _round(
        self, box: Mailbox, now: dt.datetime | None, report: DispatchReport
    ) -> bool | tuple[float, Callable[[float], None]]:
        """One batch of ``box``'s sends: ``True`` when it claimed any (or handed
        due sends to other mailboxes), ``False`` when none are due, else how
        long until its throttle lets the next one go (and what waits: the
        process's throttle keeps its own clock)."""
        current = now or self.clock()
        throttle = box.throttle
        if throttle is not None and (delay := throttle.delay()) > 0:
            return (delay, throttle.sleep) if self._any_due(current, box) else False
        budget = self._batch_size(box)
        reserved_at = None
        if box.shared_throttle is not None:
            # The window is the mailbox's, across dispatchers: reserve places
            # first, on the real clock (even under --now).
            reserved_at = self.clock()
            budget, wait = self.engine.reserve_sends(box.shared_throttle, budget, reserved_at)
            if budget == 0:
                return (wait, self.sleep) if self._any_due(current, box) else False
        claim = self._stored("claim due sends", partial(self._claim, box, current, budget))
        claimed = claim.sends
        report.failed += claim.failed
        if box.shared_throttle is not None and reserved_at is not None and len(claimed) < budget:
            self.engine.unreserve_sends(box.shared_throttle, budget - len(claimed), reserved_at)
        if not claimed:
            return claim.routed > 0 or claim.late > 0  # others may be due now
        # One read for the whole batch.
        people = self._stored("read the batch's people", partial(self._people, claimed))
        started = self.monotonic()
        held = self.lease.total_seconds()  # until the leases run out, from `started`
        ahead: _Ahead | None = None  # the next send, confirmed with the last mark
        for position, send in enumerate(claimed):
            if self.stopping:  # asked to stop: what is not under way goes back
                self._release(claimed[position:])
                break
            if box.throttle is not None:
                box.throttle.wait()
                if self.stopping:  # stopped during the wait: this one goes back too
                    self._release(claimed[position:])
                    break
            elapsed = self.monotonic() - started
            if held - elapsed < DELIVERY_MARGIN.total_seconds():
                # A long (throttled, slow) batch keeps its leases: the send
                # about to go has a whole delivery's time left, so no other
                # dispatcher takes over a send this one still holds.
                until = current + dt.timedelta(seconds=elapsed) + self.lease
                self._stored("renew leases", partial(self.engine.renew, claimed[position:], until))
                ahead = None  # confirmed before the renewal: asked again after it
                held = elapsed + self.lease.total_seconds()
            following = claimed[position + 1] if position + 1 < len(claimed) else None
            try:
                ahead = self._deliver(
                    box, send, now or self.clock(), report, people[send.enrollment_id],
                    ahead, following,
                )  # fmt: skip
            except TransportError:
                # Nothing can be delivered (a refused login, a certificate):
                # give the rest of the batch back untouched; the mailbox stops.
                self._release(claimed[position:])
                raise
        if self.on_progress is not None:
            self.on_progress(report)
        return True

    def _any_due(self, now: dt.datetime, box: Mailbox) -> bool:
        return bool(self._stored("look for due sends", partial(self.engine.due, now, 1, box.key)))

    def _release(self, sends: list[DueSend]) -> None:
        """Give sends back (the database may be away a moment: tried again)."""
        self._stored("give sends back", partial(self.engine.release, sends))

    def _claim(self, box: Mailbox, now: dt.datetime, limit: int) -> Claim:
        return self.engine.claim_for(
            box.key if self._pinned else None,
            self.routing.route,
            now,
            limit,
            worker=self.worker,
            lease=self.lease,
            cap=box.daily_cap,
            late=self.late,
        )

    def _batch_size(self, box: Mailbox) -> int:
        """No more than the throttle lets through at once, so a throttled
        mailbox waits between batches (while the others send), not within one;
        and no more than it lets through in half a lease."""
        if box.throttle is None:
            return self.batch
        throttle = box.throttle
        per_half_lease = throttle.count * (self.lease.total_seconds() / 2) / throttle.seconds
        return max(1, min(self.batch, throttle.count, int(per_half_lease)))

    def _deliver(
        self, box: Mailbox, send: DueSend, now: dt.datetime, report: DispatchReport,
        person: _Person, ahead: _Ahead | None = None, following: DueSend | None = None,
    ) -> _Ahead | None:  # fmt: skip
        """Deliver ``send`` (``ahead``: what the last mark said of it, if it
        did); returns what this one's mark says of ``following``."""
        try:
            message, note = self.compose(send, now, person)
        except Exception as error:  # a template that cannot render for this person
            self._mark_failed(send, f"cannot render: {error}", now, None, report)
            return None
        known = ahead.answer_for(send, self.monotonic()) if ahead is not None else _UNKNOWN
        if known is _UNKNOWN:
            try:
                # The person may have replied, or the campaign ended, since the claim.
                known = self._stored("check a send", lambda: self.engine.confirm(send, now))
            except EngineError:  # taken over by another dispatcher
                known = None
        if known is None:
            report.lost += 1
            return None
        if not known:
            report.cancelled += 1
            return None
        try:
            box.transport.deliver(message)
        except TransportError:
            raise
        except Exception as error:
            failure = (
                error
                if isinstance(error, DeliveryError)
                else DeliveryError(f"{type(error).__name__}: {error}", permanent=False)
            )
            if failure.permanent or send.attempts >= MAX_ATTEMPTS:
                self._mark_failed(send, str(failure), now, None, report)
            else:
                backoff = dt.timedelta(minutes=min(2 ** (send.attempts - 1), 60))
                self._mark_failed(send, str(failure), now, now + backoff, report)
            return None
        sent_id = message_id(self.engine.message_ids, send, box.sender.domain)
        try:
            # Delivered: the mark must not be lost to a busy or restarting
            # database while this process lives, or the send would go twice.
            # The next send is confirmed in the same transaction.
            answer = self._stored(
                f"record that {sent_id} was sent",
                lambda: self.engine.mark_sent(send, sent_id, now, note=note, next_send=following),
                attempts=None,
            )
        except EngineError:
            # Another dispatcher took the send over after this one's lease ran
            # out (the documented duplicate); this one goes on with the batch.
            report.lost += 1
            return None
        person.sent(send.action_id, sent_id, now)
        report.sent += 1
        if following is None:
            return None
        return _Ahead(following.action_id, answer, self.monotonic())

    def _mark_failed(
        self,
        send: DueSend,
        error: str,
        now: dt.datetime,
        retry_at: dt.datetime | None,
        report: DispatchReport,
    ) -> None:
        try:
            self._stored(
                "record a failed delivery",
                lambda: self.engine.mark_failed(send, error, now, retry_at=retry_at),
                attempts=None,
            )
        except EngineError:
            report.lost += 1
            return
        if retry_at is None:
            report.failed += 1
        else:
            report.retried += 1

    def _stored(
        self, what: str, action: Callable[[], T], *, attempts: int | None = CLAIM_ATTEMPTS
    ) -> T:
        """``action`` on the store, tried again while the database is busy or
        unreachable: ``attempts`` times, or for as long as this process lives
        (``None``). Refusals (:class:`EngineError`) are not retried."""
        delay, tried = 0.1, 0
        while True:
            try:
                return action()
            except (OperationalError, InterfaceError) as error:
                tried += 1
                if attempts is not None and tried >= attempts:
                    raise
                reason = str(getattr(error, "orig", None) or error).splitlines()[0]
                log.warning("cannot %s (%s); trying again in %.1f s", what, reason, delay)
                # Stopping ends the other waits at once; this one must still wait.
                (time.sleep if self.stopping else self.sleep)(delay)
                delay = min(delay * 2, MAX_STORE_DELAY)

    def _resolve_unconfirmed(self, now: dt.datetime) -> None:
        """Sends a stopped dispatcher may have delivered, looked up where the
        transport can tell (the outbox): sent, or cancelled."""
        boxes = [box for box in self.mailboxes if hasattr(box.transport, "delivered")]
        if not boxes:
            return
        keys = None if not self._pinned else [box.key for box in boxes]
        for send in self.engine.unconfirmed(mailboxes=keys):
            box = self._mailbox(send)
            delivered = getattr(box.transport, "delivered", None) if box else None
            if box is None or delivered is None:
                continue
            domain = box.sender.domain
            found = bool(delivered(message_id(self.engine.message_ids, send, domain))) or bool(
                delivered(unsigned_message_id(send, domain))
            )
            with contextlib.suppress(EngineError):  # settled by another dispatcher
                self.engine.resolve(send, found, now)

    def _mailbox(self, send: DueSend) -> Mailbox | None:
        """The mailbox that sends ``send``: the only one, or the one its person
        was given; ``None``: a mailbox this dispatcher does not have."""
        if not self._pinned:
            return self.mailboxes[0]
        return self._by_key.get(send.mailbox or "")

    def _warn_stranded(self, now: dt.datetime) -> None:
        """Due sends of mailboxes this dispatcher does not have (removed from
        the config, or its address changed) are said, not silently left."""
        if not self._pinned:
            return
        for mailbox, count in self.engine.stranded(now, list(self._by_key)).items():
            log.warning(
                "%d due send(s) are for mailbox %s, which is not in this config: add it "
                "back, or move its people with `cadence mailboxes move %s NEW`",
                count, mailbox, mailbox,
            )  # fmt: skip

    def compose(
        self, send: DueSend, now: dt.datetime, person: _Person | None = None
    ) -> tuple[EmailMessage, str | None]:
        """The email for ``send``: rendered for its person, threaded under the
        email it replies to when that was sent (quoting its template, §5)."""
        box = self._mailbox(send)
        if box is None:
            raise EngineError(
                f"send {send.action_id} is from mailbox {send.mailbox}, not one of these"
            )
        ir = self.engine.campaign(send.campaign_id)
        person = person or self._people([send])[send.enrollment_id]
        fields, history = person.fields, person.history(send.action_id)
        renderer = self._renderer(send.campaign_id, ir, box)
        sent = {row["step"]: row for row in history if row["status"] == "sent"}
        replied = sent.get(send.thread or "") if send.thread else None
        planned = [_as_action(send.person, row) for row in history]
        own = history[-1]
        # An email task a person had cadence send: their text, as edited
        # (threaded, and quoting the email it replies to, as any follow-up).
        typed = None
        if own["kind"] == "email_task" and own["body"] is not None:
            typed = (own["subject"], own["body"])
        if send.thread and replied is None:
            # The email it replies to was never sent: a new thread, no quote, and
            # that email's subject as it would have been (without "Re:").
            alone = [_without_thread(a) if a.step == send.step else a for a in planned]
            bare = _rendered(renderer, fields, alone, send.step, typed)
            previous = _rendered(renderer, fields, planned, send.thread)
            this = dataclasses.replace(bare, subject=bare.subject or previous.subject)
        else:
            this = _rendered(renderer, fields, planned, send.step, typed)
            own_subject = bool(typed[0]) if typed else _own_subject(ir, send.step, own["variant"])
            if replied is not None and replied["subject"] and not own_subject:
                # The thread's subject is what the person received: a task email's
                # edited subject (the quote below still comes from the template, §5).
                this = dataclasses.replace(this, subject=f"Re: {replied['subject']}")
        # Headers are stored folded (runtime/outgoing.py): the same bytes as
        # setting them, without parsing each one twice per email.
        message = EmailMessage()
        outgoing.add(message, "From", self._from[box.key])
        outgoing.add(message, "To", outgoing.recipient("To", send.person))
        outgoing.add(message, "Subject", outgoing.stored("Subject", this.subject or ""))
        outgoing.add(message, "Date", outgoing.shared("Date", format_datetime(now)))
        sent_id = message_id(self.engine.message_ids, send, box.sender.domain)
        outgoing.add(message, "Message-ID", outgoing.stored("Message-ID", sent_id))
        links = box.unsubscribe or UnsubscribeLinks(box.sender.email)
        for name, value in links.headers(send.person).items():
            outgoing.add(message, name, outgoing.shared(name, value))
        note = None
        if replied is not None and replied["message_id"]:
            for name in ("In-Reply-To", "References"):
                outgoing.add(message, name, outgoing.stored(name, replied["message_id"]))
        elif send.thread and replied is None:
            note = f"sent as a new thread: `{send.thread}` was never sent"
        outgoing.set_text(message, this.body or "")
        return message, note

    def _people(self, sends: list[DueSend]) -> dict[int, _Person]:
        """The fields, zone and steps of every enrollment in ``sends``."""
        query = (
            select(
                enrollments.c.id.label("enrollment"),
                enrollments.c.fields,
                enrollments.c.zone,
                actions.c.id.label("action"),
                actions.c.step,
                actions.c.day,
                actions.c.kind,
                actions.c.due_at,
                actions.c.due_date,
                actions.c.thread,
                actions.c.status,
                actions.c.sent_at,
                actions.c.message_id,
                actions.c.subject,
                actions.c.body,
                actions.c.variant,
            )
            .join(enrollments, enrollments.c.id == actions.c.enrollment_id)
            .where(actions.c.enrollment_id.in_({send.enrollment_id for send in sends}))
            .order_by(enrollments.c.id, actions.c.position)
        )
        people: dict[int, _Person] = {}
        with self.engine.store.read() as connection:
            for row in connection.execute(query).mappings():
                person = people.get(row["enrollment"])
                if person is None:
                    where = zone(row["zone"]) or dt.UTC
                    person = people[row["enrollment"]] = _Person(dict(row["fields"]), where)
                person.add(dict(row))
        return people

    def _renderer(self, campaign: str, ir: Campaign, box: Mailbox) -> Renderer:
        key = (campaign, box.key)  # `sender.*` in templates is the mailbox's
        if key not in self._renderers:
            self._renderers[key] = Renderer(ir, box.sender.as_fields())
        return self._renderers[key]


def _rendered(
    renderer: Renderer,
    fields: dict[str, Any],
    planned: list[Action],
    step: str,
    typed: tuple[str | None, str] | None = None,
) -> Action:
    """``step`` rendered, with the emails it replies to (for its quote): only
    the thread, so a send never fails for another step's template. ``typed``:
    its subject and body as a person wrote them."""
    by_step = {action.step: action for action in planned}
    chain = [by_step[step]]
    while chain[-1].thread and chain[-1].thread in by_step:
        chain.append(by_step[chain[-1].thread])
    rendered = renderer.render(fields, chain[::-1], typed)
    if isinstance(rendered, str):
        raise ValueError(rendered)
    return rendered[-1]


@dataclass
class _Person:
    """One enrollment's fields and steps, as a dispatcher batch reads them once."""

    fields: dict[str, Any]
    zone: Any
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, row: dict[str, Any]) -> None:
        for key in ("due_at", "sent_at"):  # quotes say when, in the person's zone
            if row[key] is not None:
                row[key] = row[key].astimezone(self.zone)
        self.rows.append({k: v for k, v in row.items() if k not in ("fields", "zone")})

    def history(self, action_id: int) -> list[dict[str, Any]]:
        """The steps up to and including ``action_id``, in campaign order."""
        end = next(i for i, row in enumerate(self.rows) if row["action"] == action_id)
        return self.rows[: end + 1]

    def sent(self, action_id: int, message_id: str, at: dt.datetime) -> None:
        """Keep the batch's view current: a later send of this person threads under it."""
        for row in self.rows:
            if row["action"] == action_id:
                row.update(status="sent", message_id=message_id, sent_at=at.astimezone(self.zone))


def _own_subject(ir: Campaign, step: str, variant: str | None = None) -> bool:
    """Whether the email sets its subject (its variant's, in a test)."""
    for s in ir.steps:
        if s.id == step:
            chosen = next((v for v in s.variants if v.name == variant), None)
            return (chosen.subject if chosen is not None else s.subject) is not None
    return False


_UNKNOWN = object()  # not confirmed yet
# How long a "may still go" from the last mark holds: a reply or an `end`
# after it is seen by the next check (a throttle's wait is longer: checked again).
FRESH_CONFIRMATION = 1.0


@dataclass(frozen=True)
class _Ahead:
    """What the mark of one send said of the next (confirmed with it)."""

    action_id: int
    answer: bool | None  # go, cancelled (done), or not known (taken over: asked again)
    at: float  # monotonic

    def answer_for(self, send: DueSend, now: float) -> bool | object:
        if send.action_id != self.action_id or self.answer is None:
            return _UNKNOWN
        if self.answer and now - self.at > FRESH_CONFIRMATION:
            return _UNKNOWN  # too old to rely on: asked again
        return self.answer  # a cancel is final: the mark's transaction made it


def _as_action(person: str, row: dict[str, Any]) -> Action:
    when = row["sent_at"] or row["due_at"]
    return Action(
        person,
        row["step"],
        row["day"],
        row["kind"],
        when,
        when,
        row["due_date"],
        row["thread"],
        None,
        None,
        variant=row["variant"],
    )


def _without_thread(action: Action) -> Action:
    return dataclasses.replace(action, thread=None)


def worker_name(name: str | None = None) -> str:
    """A dispatcher's identity in claims: the given name with host and process
    id, so two dispatchers never share one (and mark each other's sends)."""
    here = f"{socket.gethostname() or 'localhost'}:{os.getpid()}"
    return f"{name}/{here}" if name else here
