"""Sender mailboxes, and which one sends whose email.

A mailbox is an address with its display name, signature, the transport that
delivers for it, and its limits (a daily cap and a throttle, both held across
every dispatcher by :mod:`cadence.runtime.caps`). A person's emails all come
from one mailbox: it is chosen at their first claim (by a person field such
as ``owner``, else by the campaign's name, else the default) and kept, so a
thread never changes sender halfway.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address
from typing import Any

from cadence.errors import CadenceError
from cadence.runtime.addresses import sender_address
from cadence.runtime.calendar import zone
from cadence.runtime.caps import DailyCap, SharedThrottle
from cadence.runtime.config import MailboxConfig, RuntimeConfig
from cadence.runtime.delivery import OutboxTransport, Transport
from cadence.runtime.smtp import SmtpTransport, parse_smtp
from cadence.runtime.unsubscribe import UnsubscribeLinks


@dataclass(frozen=True)
class Sender:
    name: str = ""
    email: str = "cadence@localhost"
    signature: str = ""

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2] or "localhost"

    @property
    def address(self) -> Address:
        """The From header's address; :class:`AddressError` for one that a
        header cannot hold (a line break in the name, a bad address)."""
        return sender_address(self.name, self.email)

    def as_fields(self) -> dict[str, str]:
        return {"name": self.name, "email": self.email, "signature": self.signature}


@dataclass
class Throttle:
    """At most ``count`` sends per ``seconds`` (email connection throttling):
    a sliding window over the injected clock; ``sleep`` waits for room."""

    count: int
    seconds: float
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    _sent: list[float] = field(default_factory=list)

    def delay(self) -> float:
        """Seconds until a send may go (0: now)."""
        now = self.clock()
        self._sent = [t for t in self._sent if now - t < self.seconds]
        if len(self._sent) < self.count:
            return 0.0
        return max(0.0, self.seconds - (now - self._sent[0]))

    def ready(self) -> None:
        """Wait until a send may go, without taking its place (before a claim:
        a dispatcher never holds sends while it waits)."""
        delay = self.delay()
        if delay > 0:
            self.sleep(delay)

    def wait(self) -> None:
        """Wait for room, and take it."""
        self.ready()
        self._sent.append(self.clock())


MAX_THROTTLE_COUNT = 1_000_000
MAX_THROTTLE_SECONDS = 366 * 24 * 3600.0


def parse_throttle(text: str) -> tuple[int, float]:
    """``30 per 60`` or ``30/60``: at most 30 sends in any 60 seconds."""
    count, _, seconds = text.replace(" per ", "/").replace(" ", "").partition("/")
    try:
        parsed = int(count), float(seconds)
    except ValueError:
        raise ValueError(f"throttle {text!r}: write N per SECONDS, like `30 per 60`") from None
    if not 1 <= parsed[0] <= MAX_THROTTLE_COUNT:
        raise ValueError(f"throttle {text!r}: N must be from 1 to {MAX_THROTTLE_COUNT:,}")
    # Not `> 0`: NaN passes that, and 1e-320 divides into infinity.
    if not 0.001 <= parsed[1] <= MAX_THROTTLE_SECONDS:
        raise ValueError(f"throttle {text!r}: SECONDS must be from 0.001 to a year")
    return parsed


@dataclass
class Mailbox:
    """One sender mailbox as a dispatcher uses it."""

    name: str
    sender: Sender
    transport: Transport
    unsubscribe: UnsubscribeLinks | None = None  # default: a mailto to the sender
    daily_cap: DailyCap | None = None
    throttle: Throttle | None = None  # this process's pacing
    shared_throttle: SharedThrottle | None = None  # the window, across dispatchers

    @property
    def key(self) -> str:
        """How the database names the mailbox: its address, lower case."""
        return self.sender.email.lower()

    def describe(self) -> str:
        return f"mailbox {self.name} ({self.sender.email})"


class NoMailbox(CadenceError, LookupError):
    """No mailbox sends for this person; the message says why."""


@dataclass(frozen=True)
class Routing:
    """Which mailbox (by key) sends for a person: the mailbox their
    ``person_field`` names (by name or address), else the one of their
    campaign, else ``default``. A person field naming no mailbox is an
    error, never a quiet fallback: another seller's mailbox must not write
    to someone's lead."""

    keys: Mapping[str, str]  # mailbox name (lower case) -> key
    default: str | None = None
    person_field: str | None = None
    campaigns: Mapping[str, str] = field(default_factory=dict)  # campaign name -> key

    @classmethod
    def only(cls, mailbox: Mailbox) -> Routing:
        return cls({mailbox.name.lower(): mailbox.key}, default=mailbox.key)

    def route(self, campaign: str, fields: Mapping[str, Any]) -> str:
        if self.person_field is not None:
            value = fields.get(self.person_field)
            if value not in (None, ""):
                return self._named(str(value), f"`{self.person_field}` {value!r}")
        if campaign in self.campaigns:
            return self.campaigns[campaign]
        if self.default is not None:
            return self.default
        field = f" and no `{self.person_field}`" if self.person_field else ""
        raise NoMailbox(
            f"no mailbox sends for campaign {campaign!r}{field}: name one in the config's "
            "[routing] (campaigns, or a default)"
        )

    def _named(self, value: str, what: str) -> str:
        wanted = value.strip().lower()
        if wanted in self.keys:
            return self.keys[wanted]
        if wanted in self.keys.values():
            return wanted
        raise NoMailbox(f"{what} is not a mailbox in the config")


def mailbox_settings(config: RuntimeConfig) -> dict[str, MailboxConfig]:
    """The config's mailboxes by name: its [mailboxes.NAME] tables, or the
    one its [sender] describes (named ``default``)."""
    if config.mailboxes:
        return dict(config.mailboxes)
    sender = config.sender
    return {
        "default": MailboxConfig(
            email=sender.email,
            name=sender.name,
            signature=sender.signature,
            daily_cap=sender.daily_cap,
            cap_timezone=sender.cap_timezone,
        )
    }


@dataclass
class OpenMailboxes:
    """The mailboxes a config declares, ready to send, with their routing;
    ``transports`` are the distinct ones (mailboxes may share one)."""

    mailboxes: list[Mailbox]
    routing: Routing
    transports: list[tuple[str, Transport]]  # (who uses it, for messages; the transport)

    def close(self) -> None:
        for _, transport in self.transports:
            transport.close()


def open_mailboxes(
    config: RuntimeConfig,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> OpenMailboxes:
    """Build the config's mailboxes; :class:`ValueError` names the mailbox and
    the setting that is wrong. Nothing connects yet (see ``transports``)."""
    transports: dict[tuple[str, str], tuple[str, Transport]] = {}
    boxes: list[Mailbox] = []
    settings = mailbox_settings(config)
    try:
        for name, box in settings.items():
            label = f"mailbox {name}" if config.mailboxes else "[sender]"
            boxes.append(_mailbox(config, name, label, box, transports, clock, sleep))
    except BaseException:
        for _, transport in transports.values():
            transport.close()
        raise
    routing = _routing(config, {name: box.key for name, box in zip(settings, boxes, strict=True)})
    return OpenMailboxes(boxes, routing, list(transports.values()))


def _routing(config: RuntimeConfig, by_name: Mapping[str, str]) -> Routing:
    """The config's [routing] over its mailboxes (name -> key, in order)."""
    keys = {name.lower(): key for name, key in by_name.items()}
    route = config.routing
    if route is None:  # one mailbox: it sends everything
        return Routing(keys, default=next(iter(by_name.values())))
    return Routing(
        keys,
        default=by_name[route.default] if route.default else None,
        person_field=route.person_field,
        campaigns={campaign: by_name[box] for campaign, box in route.campaigns.items()},
    )


@dataclass(frozen=True)
class Senders:
    """Who sends for a person — the mailbox the dispatcher would use — without
    opening any mailbox: what a task's prefilled email is signed with."""

    by_key: Mapping[str, Sender]
    routing: Routing | None = None

    @classmethod
    def from_config(cls, config: RuntimeConfig) -> Senders:
        settings = mailbox_settings(config)
        senders = {box.email.lower(): Sender(box.name, box.email, box.signature)
                   for box in settings.values()}  # fmt: skip
        by_name = {name: box.email.lower() for name, box in settings.items()}
        return cls(senders, _routing(config, by_name))

    def of(self, campaign: str, fields: Mapping[str, Any], mailbox: str | None) -> Sender:
        """The sender of a person: the mailbox their emails come from (fixed at
        their first send), else the one routing gives them; no sender (empty
        fields) where the config names none for them."""
        key = mailbox
        if key is None and self.routing is not None:
            try:
                key = self.routing.route(campaign, fields)
            except NoMailbox:
                key = None
        return self.by_key.get(key or "", Sender("", "", ""))


def _mailbox(
    config: RuntimeConfig,
    name: str,
    label: str,  # not the address: it may be what is wrong
    box: MailboxConfig,
    transports: dict[tuple[str, str], tuple[str, Transport]],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Mailbox:
    try:
        sender = Sender(box.name, box.email, box.signature)
        sender.address  # noqa: B018 - a bad address or name is refused now
        links = UnsubscribeLinks.from_config(
            config.unsubscribe.mailto,
            config.unsubscribe.url,
            box.email,
            config.unsubscribe.secret_env,
        )
        transport = _transport(box, config, label, transports)
        cap = None
        if box.daily_cap is not None:
            where = zone(box.cap_timezone)
            if where is None:
                raise ValueError(f"cap_timezone {box.cap_timezone!r} is not a time zone")
            cap = DailyCap(box.email, box.daily_cap, where)
        throttle = shared = None
        if text := box.throttle or config.throttle:
            count, seconds = parse_throttle(text)
            throttle = Throttle(count, seconds, clock=clock, sleep=sleep)
            shared = SharedThrottle(box.email, count, seconds)
    except ValueError as error:
        raise ValueError(f"{label}: {error}") from None
    return Mailbox(name, sender, transport, links, cap, throttle, shared)


def _transport(
    box: MailboxConfig,
    config: RuntimeConfig,
    label: str,
    transports: dict[tuple[str, str], tuple[str, Transport]],
) -> Transport:
    """The mailbox's own SMTP account or outbox, else the config's; one
    transport per distinct account or folder."""
    if box.smtp is not None and box.outbox is not None:
        raise ValueError("give it an smtp account or an outbox, not both")
    smtp = box.smtp if box.smtp is not None or box.outbox is not None else config.smtp
    if smtp is not None:
        account = parse_smtp(smtp) if isinstance(smtp, str) else smtp.account()
        key = ("smtp", repr(account))
        if key not in transports:
            transports[key] = (label, SmtpTransport(account))
        return transports[key][1]
    folder = box.outbox or config.outbox or "outbox"
    key = ("outbox", os.path.abspath(folder))
    if key not in transports:
        try:
            transports[key] = (label, OutboxTransport(folder))
        except OSError as error:
            raise ValueError(f"outbox {folder}: {error.strerror or error}") from None
    return transports[key][1]
