"""The runtime config file (TOML) that `cadence run` reads: a pydantic model,
so a wrong key or type is one line naming the key, never a traceback.

```toml
db = "cadence.db"            # or a postgresql:// URL
outbox = "outbox"            # or an [smtp] table (or smtp = "127.0.0.1:25")
throttle = "30 per 60"
worker = "dispatcher-1"
late = "reschedule"          # a send more than late_after behind (dispatchers were
late_after = "4h"            # down): reschedule (its time of day, next) | skip | send

[smtp]
host = "smtp.gmail.com"
port = 587
security = "starttls"        # starttls | tls (implicit, port 465) | none
username = "sam@example.com"
password_env = "CADENCE_SMTP_PASSWORD"   # the password is never in the file
verify = true                # check the server's certificate

[sender]
name = "Sam Seller"
email = "sam@example.com"
signature = "-- Sam"
daily_cap = 400              # sends a day from this mailbox, across all dispatchers
cap_timezone = "America/New_York"   # where its day begins (UTC by default)

# Several sender mailboxes instead of [sender] (smtp/outbox/throttle above
# are then what a mailbox without its own uses):
[mailboxes.sam]
email = "sam@example.com"
name = "Sam Seller"
signature = "-- Sam"
smtp = { host = "smtp.gmail.com", username = "sam@example.com", password_env = "SAM_PASSWORD" }
daily_cap = 400
throttle = "30 per 60"
imap = "imaps://sam%40example.com@imap.gmail.com/INBOX"   # read by `cadence inbox`
imap_password_env = "SAM_IMAP_PASSWORD"

[mailboxes.kim]
email = "kim@example.com"
name = "Kim Closer"

[routing]
person_field = "owner"       # a person's `owner` names their mailbox (name or address)
default = "sam"              # everyone else
[routing.campaigns]          # or by campaign name
"Q1 outbound" = "kim"

[unsubscribe]
mailto = "unsubscribe@example.com"          # default: the sender's address
url = "https://example.com/unsubscribe"     # adds one-click (RFC 8058)
secret_env = "CADENCE_UNSUBSCRIBE_SECRET"   # signs the links' tokens

[inbox]
away_days = 7                # an out-of-office without a date pauses this long
soft_bounce_limit = 3        # temporary failures that make a permanent bounce
imap = "imaps://sam%40example.com@imap.gmail.com/INBOX"   # what `cadence inbox` reads
password_env = "CADENCE_IMAP_PASSWORD"
authserv_id = "mx.example.com"   # whose Authentication-Results count (default: the topmost)

[webhooks]                   # what `cadence serve` takes from providers
sendgrid_key_env = "CADENCE_SENDGRID_KEY"     # Event Webhook verification key
mailgun_key_env = "CADENCE_MAILGUN_KEY"       # HTTP webhook signing key
postmark_username = "postmark"                # Basic credentials in the webhook URL
postmark_password_env = "CADENCE_POSTMARK_PASSWORD"
ses_topics = ["arn:aws:sns:us-east-1:123456789012:ses-feedback"]
```
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cadence.errors import CadenceError
from cadence.runtime.smtp import DEFAULT_PORTS, SmtpAccount


class ConfigError(CadenceError, ValueError):
    """A config file that cannot be used; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SenderConfig(_Section):
    name: str = ""
    email: str = "cadence@localhost"
    signature: str = ""
    daily_cap: int | None = Field(default=None, ge=1, le=10_000_000)
    cap_timezone: str = "UTC"  # where the mailbox's day begins


class SmtpConfig(_Section):
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    verify: bool = True
    ca_file: str | None = None

    def account(self) -> SmtpAccount:
        return SmtpAccount(
            self.host,
            self.port or DEFAULT_PORTS[self.security],
            self.security,
            self.username,
            self.password_env,
            self.verify,
            self.ca_file,
        )


class MailboxConfig(_Section):
    email: str
    name: str = ""
    signature: str = ""
    smtp: str | SmtpConfig | None = None  # default: the top-level smtp (or outbox)
    outbox: str | None = None
    daily_cap: int | None = Field(default=None, ge=1, le=10_000_000)
    cap_timezone: str = "UTC"
    throttle: str | None = None
    imap: str | None = None  # where its replies arrive, for `cadence inbox`
    imap_password_env: str | None = None


class RoutingConfig(_Section):
    default: str | None = None  # a mailbox's name
    person_field: str | None = Field(default=None, min_length=1)
    campaigns: dict[str, str] = {}  # campaign name -> mailbox name


class UnsubscribeConfig(_Section):
    mailto: str | None = None
    url: str | None = None
    secret_env: str | None = None


class InboxConfig(_Section):
    away_days: int = Field(default=7, ge=1, le=366)
    soft_bounce_limit: int = Field(default=3, ge=1, le=100)
    imap: str | None = None  # imaps://USER@HOST/MAILBOX
    password_env: str | None = None
    verify: bool = True
    ca_file: str | None = None
    # The receiving server's name in its Authentication-Results headers: only
    # its verdict on a sender counts (unset: the topmost header's).
    authserv_id: str | None = Field(default=None, min_length=1, max_length=255)


class WebhooksConfig(_Section):
    """What `cadence serve` needs to believe a provider's webhook calls; a
    provider left out has no webhook (its route answers 404)."""

    sendgrid_key_env: str | None = None  # the Event Webhook's verification key (base64)
    mailgun_key_env: str | None = None  # the HTTP webhook signing key
    postmark_username: str | None = None  # HTTP Basic credentials in the webhook's URL
    postmark_password_env: str | None = None
    ses_topics: list[str] = []  # the SNS topic ARNs whose notifications are taken


class RuntimeConfig(_Section):
    db: str | None = None
    smtp: str | SmtpConfig | None = None
    outbox: str | None = None
    throttle: str | None = None
    worker: str | None = None
    late: Literal["reschedule", "skip", "send"] = "reschedule"
    late_after: str = "4h"
    sender: SenderConfig = SenderConfig()
    mailboxes: dict[str, MailboxConfig] = {}
    routing: RoutingConfig | None = None
    unsubscribe: UnsubscribeConfig = UnsubscribeConfig()
    inbox: InboxConfig = InboxConfig()
    webhooks: WebhooksConfig = WebhooksConfig()

    @model_validator(mode="after")
    def _one_way_to_send(self) -> RuntimeConfig:
        if self.mailboxes and "sender" in self.model_fields_set:
            raise ValueError("declare [sender] or [mailboxes.NAME] tables, not both")
        if self.routing is not None and not self.mailboxes:
            raise ValueError("[routing] chooses among [mailboxes.NAME] tables; there are none")
        seen: dict[str, str] = {}
        for name, box in self.mailboxes.items():
            if not _NAME.fullmatch(name):
                raise ValueError(f"mailbox name {name!r}: use letters, digits, '-', '_' and '.'")
            # A person's owner names a mailbox in any case: names must differ in more.
            for key, what in ((box.email.lower(), "address"), (name.lower(), "name")):
                other = seen.setdefault(f"{what}:{key}", name)
                if other != name:
                    raise ValueError(f"mailboxes {other} and {name} have the same {what}")
        if self.mailboxes and self.smtp is not None and self.outbox is not None:
            raise ValueError("the config has both smtp and outbox; choose one")
        try:
            parse_duration(self.late_after)
        except ValueError as error:
            raise ValueError(f"`late_after`: {error}") from None
        if self.routing is not None and not (
            self.routing.default or self.routing.person_field or self.routing.campaigns
        ):
            raise ValueError("[routing] says nothing: give it person_field, campaigns or a default")
        if len(self.mailboxes) > 1 and self.routing is None:
            raise ValueError(
                "several mailboxes: say which sends for whom in [routing] "
                "(person_field, campaigns, default)"
            )
        if self.routing is not None:
            named = [("routing.default", self.routing.default)] + [
                (f"routing.campaigns.{campaign!r}", box)
                for campaign, box in self.routing.campaigns.items()
            ]
            for where, chosen in named:
                if chosen is not None and chosen not in self.mailboxes:
                    known = ", ".join(sorted(self.mailboxes))
                    raise ValueError(f"`{where}`: no mailbox named {chosen!r} (known: {known})")
        return self


def parse_duration(text: str) -> dt.timedelta:
    """``90m``, ``4h``, ``2d``: a span of minutes, hours or days."""
    units = {"m": "minutes", "h": "hours", "d": "days"}
    number, unit = text.strip()[:-1], text.strip()[-1:].lower()
    if unit not in units or not number.isdigit() or not 0 < int(number) <= 100_000:
        raise ValueError(f"{text!r} is not a duration: write minutes, hours or days, like 4h")
    return dt.timedelta(**{units[unit]: int(number)})


MAX_CONFIG_BYTES = 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


CONFIG_NAME = "cadence.toml"


def find_config(explicit: str | Path | None = None) -> Path | None:
    """The config to use: ``explicit``, else ``./cadence.toml``, else
    ``cadence.toml`` in the user's config folder (``~/.config/cadence`` on
    Linux); ``None`` when there is none."""
    if explicit is not None:
        return Path(explicit)
    import platformdirs

    for candidate in (Path(CONFIG_NAME), platformdirs.user_config_path("cadence") / CONFIG_NAME):
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | Path) -> RuntimeConfig:
    """Read and check the config at ``path``; raises :class:`ConfigError`."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror or error}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a config")
    try:
        found = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not TOML: {error}") from None
    try:
        return RuntimeConfig.model_validate(found)
    except ValidationError as error:
        raise ConfigError(f"{path}: {_first_problem(error)}") from None


# Names pydantic puts in an error's location for the branches of `smtp`'s union.
_BRANCHES = frozenset({"str", "SmtpConfig"})


def _first_problem(error: ValidationError) -> str:
    problems = error.errors()
    problem = max(problems, key=lambda found: len(found["loc"]))  # the deepest says most
    where = tuple(part for part in problem["loc"] if part not in _BRANCHES)
    key = ".".join(str(part) for part in where)
    if problem["type"] == "value_error" and not where:
        return str(problem["ctx"]["error"])
    if key.endswith("smtp") and problem["type"] in ("string_type", "model_type"):
        return f'`{key}` must be "HOST:PORT" or an [smtp] table with host, port, security…'
    if problem["type"] == "extra_forbidden":
        known = _known(problem["loc"][:-1])
        return f"unknown setting {key!r} (known: {', '.join(known)})"
    if problem["type"] in ("model_type", "model_attributes_type"):
        return f"`{key}` must be a table, like [{key}]"
    return f"`{key}`: {problem['msg'].lower()}"


def _known(section: tuple[int | str, ...]) -> list[str]:
    sections: dict[tuple[int | str, ...], type[BaseModel]] = {
        ("sender",): SenderConfig,
        ("smtp", "SmtpConfig"): SmtpConfig,
        ("unsubscribe",): UnsubscribeConfig,
        ("inbox",): InboxConfig,
        ("routing",): RoutingConfig,
        ("webhooks",): WebhooksConfig,
    }
    if len(section) >= 2 and section[0] == "mailboxes":
        inner = tuple(part for part in section[2:] if part not in _BRANCHES)
        return sorted((SmtpConfig if inner == ("smtp",) else MailboxConfig).model_fields)
    return sorted(sections.get(section, RuntimeConfig).model_fields)
