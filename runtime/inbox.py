"""Acting on inbound mail: each message read once, classified, matched to the
sends and people it is about, and acted on in one transaction with a record
of what was decided and why.

* a **reply** runs the campaign's `on reply` rule (matched by the Message-IDs
  it answers, else by its sender among active enrollments);
* an **automatic reply** pauses the person until the return date it states
  (or for a configured number of days), never counting as a reply;
* a **bounce**: a permanent failure suppresses the address and runs every
  campaign's `on bounce` rule; temporary ones are counted, and that many make
  a permanent one; a bounce for an address cadence never wrote to is ignored;
* an **unsubscribe** request suppresses the address and ends it everywhere;
* anything else is **ignored** — and always left where it was: cadence never
  moves, flags or deletes a message (the mailbox is the user's).

A message is read at most once per source (a Maildir name, an IMAP UID, a
file's digest) and acted on at most once per Message-ID.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.policy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from typing import Any

from sqlalchemy import Connection, bindparam, func, select
from sqlalchemy.exc import IntegrityError

from cadence.runtime import suppression
from cadence.runtime.addresses import has_control
from cadence.runtime.authresults import Verdict, verdict
from cadence.runtime.classify import Classification, classify
from cadence.runtime.engine import ACTIVE_ENROLLMENTS, Engine, feed_row
from cadence.runtime.message_ids import Reference, legacy, references
from cadence.runtime.schema import actions, enrollments, feed, inbound

MAX_MESSAGE_BYTES = 25 * 1024 * 1024  # what mail providers accept; larger is not a reply
SEEN_BATCH = 200  # messages looked up, and committed, together when reading a mailbox
# Built once: each runs for every message read.
_RECORD = inbound.insert()
_ACTED_ON = select(inbound.c.source).where(inbound.c.message_id == bindparam("b_message_id"))
_ACTED_ON_ANY = select(inbound.c.message_id, inbound.c.source).where(
    inbound.c.message_id.in_(bindparam("b_ids", expanding=True))
)
NOT_ACTED = ("ignored", "not acted on")  # how an outcome that changed nothing begins
MAX_ID = 2**31 - 1  # the largest id either database holds: a larger one names no send
MAX_NOTES = 10  # feed entries one message that was not acted on may write
MAX_RECIPIENTS = 50  # addresses one bounce report is read for (a DSN names one or a few)
UNSHOWN = "the report returns no Message-ID cadence signed for a send to it"
AWAY_AT_MOST = dt.timedelta(days=366)  # the furthest return date taken, from receipt
_FEED = feed.insert()
# The sends a message names, with whom they went to and whether that one is active.
_BY_SEND = (
    select(
        actions.c.id.label("action"),
        actions.c.message_id,
        enrollments.c.id.label("enrollment"),
        enrollments.c.campaign_id,
        enrollments.c.person,
        (enrollments.c.status == "active").label("active"),
    )
    .join(enrollments, enrollments.c.id == actions.c.enrollment_id)
    .where(actions.c.id.in_(bindparam("b_ids", expanding=True)))
)
_EVER_WRITTEN = (
    select(enrollments.c.id)
    .where(func.lower(enrollments.c.person) == bindparam("b_person"))
    .limit(1)
)
_SOFT_BOUNCES = select(func.count()).where(
    inbound.c.kind == "bounce",
    inbound.c.permanent.is_(False),
    inbound.c.person == bindparam("b_person"),
)


@dataclass(frozen=True)
class InboxSettings:
    unsubscribe_addresses: frozenset[str] = frozenset()
    away_days: int = 7  # how long an out-of-office pause lasts when no date is found
    soft_bounce_limit: int = 3  # temporary failures that make a permanent one
    # Whose Authentication-Results header counts: the receiving server's
    # authserv-id (None: the topmost header, the last server's).
    authserv_id: str | None = None


@dataclass(frozen=True)
class Processed:
    source: str
    message_id: str | None
    kind: str
    reason: str
    outcome: str
    new: bool = True  # False: read before, nothing done


@dataclass(frozen=True)
class InboundRecord:
    source: str
    message_id: str | None
    kind: str
    reason: str
    person: str | None
    campaign_id: str | None
    outcome: str
    processed_at: dt.datetime
    raw: bytes | None


class Inbox:
    def __init__(self, engine: Engine, settings: InboxSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or InboxSettings()
        # compat32: header values stay text; the modern policy parses every
        # header into objects, which costs more than all the rest of the work.
        self._parser = BytesParser(policy=email.policy.compat32)

    def process_all(
        self, messages: Iterable[tuple[str, bytes]], now: dt.datetime
    ) -> Iterator[Processed | tuple[str, Exception]]:
        """Each message of a mailbox, as :meth:`process` does, looking up
        which were read before 500 at a time. A message that cannot be
        processed comes back as ``(source, error)``; nothing of it was kept."""
        batch: list[tuple[str, bytes]] = []
        for item in messages:
            batch.append(item)
            if len(batch) >= SEEN_BATCH:
                yield from self._batch(batch, now)
                batch = []
        yield from self._batch(batch, now)

    def known(self, sources: list[str]) -> set[str]:
        """Which of ``sources`` were read before."""
        if not sources:
            return set()
        with self.engine.store.read() as connection:
            return set(
                connection.execute(
                    select(inbound.c.source).where(inbound.c.source.in_(sources))
                ).scalars()
            )

    def _batch(
        self, batch: list[tuple[str, bytes]], now: dt.datetime
    ) -> Iterator[Processed | tuple[str, Exception]]:
        """One transaction for the batch, a savepoint per message: a message
        that fails leaves nothing, and the others are committed together
        (one commit per batch, not per message)."""
        seen = self.known([source for source, _ in batch])
        fresh: dict[str, bytes] = {}
        results: list[Processed | tuple[str, Exception]] = []
        for source, raw in batch:
            if source in seen or source in fresh:  # the same message twice: read once
                results.append(Processed(source, None, "", "", "read before", new=False))
            else:
                fresh[source] = raw
        done: list[Processed | tuple[str, Exception]]
        try:  # the usual case: every message goes through, in one transaction
            with self.engine.store.transaction() as connection:
                parsed = {source: self._parse(raw) for source, raw in fresh.items()}
                ids = [i for message, _ in parsed.values() if (i := _message_id(message))]
                state = _Pass(dict(connection.execute(_ACTED_ON_ANY, {"b_ids": ids}).all()))
                done = [
                    self._process(source, raw, now, connection, state=state, parsed=parsed[source])
                    for source, raw in fresh.items()
                ]
                if state.records:
                    connection.execute(_RECORD, state.records)
        except Exception:  # one did not: again, each on its own savepoint
            done = []
            with self.engine.store.transaction() as connection:
                for source, raw in fresh.items():
                    try:
                        done.append(self._process(source, raw, now, connection))
                    except Exception as error:  # its savepoint rolled back: nothing kept
                        done.append((source, error))
        yield from results + done

    def process(self, source: str, raw: bytes, now: dt.datetime) -> Processed:
        """Read one message; act on it unless ``source`` (or its Message-ID)
        was read before."""
        if self.known([source]):
            return Processed(source, None, "", "", "read before", new=False)
        with self.engine.store.transaction() as connection:
            return self._process(source, raw, now, connection)

    def report(self, source: str, found: Classification, now: dt.datetime, raw: bytes) -> Processed:
        """Act on what another party reports (a provider's webhook: a bounce,
        a complaint, an unsubscribe), as on a message read: the same
        suppression, counting and records. ``source`` names the report (the
        provider and its event id): one already acted on is not acted on
        again (``new`` is false)."""
        if self.known([source]):
            return Processed(source, None, "", "", "read before", new=False)
        with self.engine.store.transaction() as connection:
            try:
                with connection.begin_nested():
                    outcome, person, key = self._act(connection, found, now, trusted=True)
                    acted = not outcome.startswith(NOT_ACTED)
                    record = _record(source, None, found, now, outcome=outcome, person=person,
                                     campaign=key, raw=raw if acted else None)  # fmt: skip
                    connection.execute(_RECORD, record)
            except IntegrityError:  # the same report, taken by another server at once
                return Processed(source, None, "", "", "read before", new=False)
        return Processed(source, None, found.kind, found.reason, outcome)

    def _process(
        self,
        source: str,
        raw: bytes,
        now: dt.datetime,
        connection: Connection,
        *,
        state: _Pass | None = None,
        parsed: tuple[Message | None, str | None] | None = None,
    ) -> Processed:
        """One message, on a savepoint of its own so that a failure undoes only
        it; or, as part of a batch's ``state``, undoing the whole batch (which
        is then done again message by message)."""
        message, problem = parsed or self._parse(raw)
        message_id = _message_id(message)
        if problem is not None or message is None:
            found = Classification("ignore", problem or "cannot be read")
        else:
            found = classify(
                message,
                unsubscribe_addresses=self.settings.unsubscribe_addresses,
                received=now.date(),
            )
        alone = state is None
        try:
            with connection.begin_nested() if alone else contextlib.nullcontext():
                earlier = self._acted_on(connection, message_id, state)
                if earlier is not None:
                    outcome, person, key = f"read before as {earlier}: nothing done", None, None
                else:
                    outcome, person, key = self._act(connection, found, now, state, message=message)
                acted = earlier is None and found.kind != "ignore"
                acted = acted and not outcome.startswith(NOT_ACTED)
                kept = raw if acted else None
                record = _record(source, message_id, found, now, outcome=outcome,
                                 person=person, campaign=key, raw=kept)  # fmt: skip
                if state is None:
                    connection.execute(_RECORD, record)
                else:
                    state.kept(record)
        except IntegrityError:  # another reader took this source at the same moment
            if not alone:
                raise  # the batch is undone, and done again message by message
            return Processed(source, message_id, "", "", "read before", new=False)
        return Processed(source, message_id, found.kind, found.reason, outcome)

    # ---- reading --------------------------------------------------------------------------
    def _parse(self, raw: bytes) -> tuple[Message | None, str | None]:
        if len(raw) > MAX_MESSAGE_BYTES:
            return None, f"larger than {MAX_MESSAGE_BYTES // (1024 * 1024)} MiB"
        try:
            return self._parser.parsebytes(raw), None
        except Exception as error:  # the parser is lenient; what it still refuses is not mail
            return None, f"cannot be read: {type(error).__name__}"

    def _acted_on(
        self, connection: Connection, message_id: str | None, state: _Pass | None
    ) -> str | None:
        """Where a message with this Message-ID was read before, if it was."""
        if message_id is None:
            return None
        if state is not None:
            return state.acted.get(message_id)
        return connection.execute(_ACTED_ON, {"b_message_id": message_id}).scalar()

    # ---- acting ---------------------------------------------------------------------------
    def _act(
        self,
        connection: Connection,
        found: Classification,
        now: dt.datetime,
        state: _Pass | None = None,
        *,
        trusted: bool = False,
        message: Message | None = None,
    ) -> tuple[str, str | None, str | None]:
        """What was done, the person it concerned and the campaign (when one).

        A message acts on its sender only (docs/mail.md, "Who can change a
        person's state"); a bounce on the addresses it shows it reports on.
        ``trusted``: a provider's signed report, which says itself whom it is
        about. ``message``: the message read, whose receiving server's verdict
        on the From address is asked before anything is done."""
        if found.kind == "ignore":
            return f"ignored: {found.reason}", found.sender, None
        if found.kind == "bounce":
            return self._bounce(connection, found, now, state, trusted=trusted)
        sender = found.sender
        if sender is None:
            return "ignored: no From address, or more than one", None, None
        targets, others = ([], []) if trusted else self._about(connection, found)
        if not targets and others:
            return self._refused(connection, found, others, now)
        if not targets:
            targets = self._by_sender(connection, sender)
        key = targets[0][1] if targets else None
        acts = bool(targets) or found.kind in ("unsubscribe", "complaint")
        checked = verdict(message, sender, self.settings.authserv_id) if message else None
        if acts and checked is not None and checked.forged:
            return self._forged(connection, found, targets, checked, now), sender, key
        if found.kind in ("unsubscribe", "complaint"):
            reason: suppression.Reason = (
                "unsubscribed" if found.kind == "unsubscribe" else "complained"
            )
            suppression.add(connection, [sender], reason, now, source=found.reason)
            ended = self.engine._event_for(connection, sender, now, None, reason)
            return f"{reason}: suppressed, {ended} enrollment(s) ended", sender, key
        if not targets:
            return f"ignored: {sender} is not active in any campaign", sender, None
        if found.kind == "auto_reply":
            return self._away(connection, found, targets, now)
        self.engine._event_on(connection, targets, now, "reply")
        return f"reply: `on reply` ran in {len(targets)} campaign(s)", sender, key

    def _forged(
        self,
        connection: Connection,
        found: Classification,
        targets: list[tuple[int, str, str]],
        checked: Verdict,
        now: dt.datetime,
    ) -> str:
        """Mail whose From the receiving server found forged: recorded, said in
        the feed of the person it names (a real request can then be carried
        out by hand), and nobody's state changes."""
        why = f"the receiving server's checks failed for {found.sender} ({checked.reason})"
        for enrollment, campaign, person in targets[:MAX_NOTES]:
            note = f"{found.kind.replace('_', ' ')} from {found.sender} not acted on: {why}"
            send = _Send(enrollment, campaign, person, True)
            connection.execute(_FEED, _not_acted_on(now, send, note))
        return f"not acted on: {why}: its From address may be forged"

    def _about(
        self, connection: Connection, found: Classification
    ) -> tuple[list[tuple[int, str, str]], list[_Send]]:
        """The sender's active enrollments whose emails the message answers
        (by its In-Reply-To and References), and the sends it answers that
        went to somebody else. A Message-ID cadence did not sign (or did not
        send, for one from before signing) is nobody's."""
        sender = found.sender or ""
        sends = self._sends(connection, references(" ".join(found.refers_to)))
        mine = [send for send in sends if send.to(sender)]
        others = [send for send in sends if not send.to(sender)]
        targets = {(send.enrollment, send.campaign, send.person) for send in mine if send.active}
        return sorted(targets, key=lambda target: target[1:]), others

    def _sends(self, connection: Connection, found: Iterable[Reference]) -> list[_Send]:
        """The sends that ``found`` name, each checked: a signed Message-ID
        whose token is right for the send's recipient, or an unsigned one that
        is exactly what the send was recorded with."""
        wanted: dict[int, list[Reference]] = {}
        for ref in found:
            if ref.action_id <= MAX_ID:
                wanted.setdefault(ref.action_id, []).append(ref)
        if not wanted:
            return []
        ids = self.engine.message_ids
        sends = []
        for row in connection.execute(_BY_SEND, {"b_ids": list(wanted)}):
            for ref in wanted[row.action]:
                if not row.campaign_id.startswith(ref.campaign):
                    continue
                if ids.signed_for(ref, row.person) or (legacy(ref) and row.message_id == ref.text):
                    sends.append(_Send(row.enrollment, row.campaign_id, row.person, row.active))
                    break
        return sends

    def _by_sender(self, connection: Connection, sender: str) -> list[tuple[int, str, str]]:
        rows = connection.execute(ACTIVE_ENROLLMENTS, {"b_person": sender}).all()
        return sorted({tuple(row) for row in rows}, key=lambda target: target[1:])

    def _refused(
        self, connection: Connection, found: Classification, others: list[_Send], now: dt.datetime
    ) -> tuple[str, str | None, str | None]:
        """A message answering somebody else's email: recorded, and said in
        the feed of the people it is about, and nobody's schedule changes."""
        sender = found.sender
        why = "from another address than the recipient"
        people = sorted({send.person for send in others})
        distinct = {(s.enrollment, s.campaign, s.person): s for s in others}
        for send in list(distinct.values())[:MAX_NOTES]:
            if send.active:
                note = (f"{found.kind.replace('_', ' ')} from {sender} about an email to "
                        f"{send.person} not acted on: {why}")  # fmt: skip
                connection.execute(_FEED, _not_acted_on(now, send, note))
        shown = ", ".join(people[:3]) + (f" and {len(people) - 3} more" if len(people) > 3 else "")
        return (
            f"not acted on: {why} (it answers an email to {shown}); nobody's schedule changed",
            sender,
            others[0].campaign,
        )

    def _away(
        self,
        connection: Connection,
        found: Classification,
        targets: list[tuple[int, str, str]],
        now: dt.datetime,
    ) -> tuple[str, str | None, str | None]:
        """Pause the sender until the return date: one the message names, no
        more than :data:`AWAY_AT_MOST` after cadence received it (the message's
        own Date is the sender's word), else for the configured days."""
        today = now.date()
        days = self.settings.away_days
        if found.back_on is not None and today < found.back_on <= today + AWAY_AT_MOST:
            until, why = found.back_on, "the date in the message"
        elif found.back_on is not None and found.back_on > today:
            until = today + dt.timedelta(days=days)
            why = (f"the date in the message, {found.back_on:%Y-%m-%d}, is more than a year "
                   f"after it came: {days} days")  # fmt: skip
        else:
            until = today + dt.timedelta(days=days)
            why = f"no return date found: {days} days"
        said = f"out of office, from their auto-reply of {now:%Y-%m-%d} ({why})"
        for _, key, person in targets:
            self.engine._pause(connection, person, until, now, reason=said, campaign=key)
        return (
            f"out of office: paused until {until:%Y-%m-%d} ({why}) in {len(targets)} "
            "campaign(s); not counted as a reply",
            targets[0][2],
            targets[0][1],
        )

    def _bounce(
        self,
        connection: Connection,
        found: Classification,
        now: dt.datetime,
        state: _Pass | None,
        *,
        trusted: bool = False,
    ) -> tuple[str, str | None, str | None]:
        """A bounce acts on an address it reports only when it shows it is
        about a send to that address: it returns a Message-ID cadence signed
        for it — or it is a provider's signed report (``trusted``). A
        Message-ID from before signing shows nothing: its numbers can be
        guessed, and a bounce need not come from the person."""
        done = []
        person = None
        shown = references(" ".join(found.refers_to + found.quoted))
        named = {recipient.address: recipient for recipient in found.recipients}
        for recipient in list(named.values())[:MAX_RECIPIENTS]:
            address = recipient.address
            if not self._ever_written(connection, address):
                done.append(f"{address}: cadence never wrote to it, ignored")
                continue
            if not trusted and not any(self.engine.message_ids.signed_for(ref, address)
                                       for ref in shown):  # fmt: skip
                done.append(f"{address}: {UNSHOWN}")
                continue
            person = person or address
            permanent = recipient.permanent
            if not permanent:
                count = self._soft_bounces(connection, address, state) + 1
                if count < self.settings.soft_bounce_limit:
                    done.append(f"{address}: temporary failure {count} of "
                                f"{self.settings.soft_bounce_limit}, counted")  # fmt: skip
                    continue
                done.append(f"{address}: {count} temporary failures make a permanent one")
            suppression.add(connection, [address], "bounced", now, source=found.reason)
            reached = self.engine._event_for(connection, address, now, None, "bounce")
            done.append(f"{address}: suppressed; `on bounce` ran in {reached} campaign(s)")
        if len(named) > MAX_RECIPIENTS:
            done.append(f"{len(named) - MAX_RECIPIENTS} more addresses not read")
        if person is None:
            refused = any(line.endswith(UNSHOWN) for line in done)
            said = "; ".join(done or ["no recipient named"])
            return ("not acted on: " if refused else "ignored: ") + said, None, None
        return "bounce: " + "; ".join(done), person, None

    def _ever_written(self, connection: Connection, address: str) -> bool:
        return connection.execute(_EVER_WRITTEN, {"b_person": address}).first() is not None

    def _soft_bounces(self, connection: Connection, address: str, state: _Pass | None) -> int:
        """Temporary failures of ``address`` recorded so far (this batch's too)."""
        stored = int(connection.execute(_SOFT_BOUNCES, {"b_person": address}).scalar_one())
        return stored + (state.soft.get(address, 0) if state is not None else 0)

    # ---- explaining -------------------------------------------------------------------------
    def explain(self, message_id: str) -> list[InboundRecord]:
        """Every record of the message with this Message-ID (``<…>`` optional)."""
        wanted = message_id.strip()
        if not wanted.startswith("<"):
            wanted = f"<{wanted}>"
        with self.engine.store.read() as connection:
            rows = connection.execute(
                select(inbound).where(inbound.c.message_id == wanted).order_by(inbound.c.id)
            ).all()
        return [_record_of(row) for row in rows]


@dataclass(frozen=True)
class _Send:
    """A send a message names: its enrollment, and whom it went to."""

    enrollment: int
    campaign: str
    person: str
    active: bool

    def to(self, address: str) -> bool:
        return self.person.strip().lower() == address.strip().lower()


def _not_acted_on(at: dt.datetime, send: _Send, message: str) -> dict[str, Any]:
    """The feed entry of mail about ``send``'s person that changed nothing."""
    return feed_row(at, send.campaign, send.enrollment, send.person, "mail_not_acted_on", None,
                    message)  # fmt: skip


@dataclass
class _Pass:
    """What a batch has read so far, its records written together at its end:
    the Message-IDs read before (and in it), the temporary failures it counted."""

    acted: dict[str, str]  # Message-ID -> the source it was read from
    soft: dict[str, int] = field(default_factory=dict)  # address -> this batch's soft bounces
    records: list[dict[str, Any]] = field(default_factory=list)

    def kept(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if record["message_id"] is not None:
            self.acted.setdefault(record["message_id"], record["source"])
        if record["kind"] == "bounce" and record["permanent"] is False and record["person"]:
            self.soft[record["person"]] = self.soft.get(record["person"], 0) + 1


def _record(
    source: str,
    message_id: str | None,
    found: Classification,
    now: dt.datetime,
    *,
    outcome: str,
    person: str | None,
    campaign: str | None,
    raw: bytes | None,
) -> dict[str, Any]:
    """The `inbound` row of a message read."""
    permanent = None
    if found.kind == "bounce" and found.recipients:
        # For the address acted on (soft bounces are counted by it), else any.
        permanent = any(recipient.permanent for recipient in found.recipients
                        if person is None or recipient.address == person)  # fmt: skip
    return {
        "source": source,
        "message_id": message_id,
        "kind": found.kind,
        "reason": found.reason[:1000],
        "outcome": outcome,
        "person": person,
        "campaign_id": campaign,
        "permanent": permanent,
        "raw": raw,
        "processed_at": now,
    }


def _message_id(message: Message | None) -> str | None:
    if message is None:
        return None
    try:
        value = str(message.get("message-id", "") or "").strip()
    except Exception:  # a header the parser could not make sense of
        return None
    if has_control(value):  # a NUL no database keeps: the message has no usable id
        return None
    return value[:998] or None


def _record_of(row: Any) -> InboundRecord:
    return InboundRecord(
        row.source, row.message_id, row.kind, row.reason, row.person, row.campaign_id,
        row.outcome, row.processed_at, row.raw,
    )  # fmt: skip
