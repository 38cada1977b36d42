"""The IR: a compiled campaign as versioned JSON, the contract with the runtime.

``cadence compile`` writes it, ``cadence schema`` prints its JSON Schema and
the runtime loads it with :func:`load_ir` without importing lark. A change that
breaks readers of version N is version N+1, with upgrade code for N here.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from cadence.errors import CadenceError
from cadence.span import Span

SCHEMA_VERSION: Literal[1] = 1

StepKind = Literal["email", "call", "inmail", "custom"]
SendKind = Literal["choose", "at", "task", "with_previous"]


_TIME_OF_DAY = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class _Model(BaseModel):
    # defer_build: a model's validators are built when it is first used, not
    # when this module is imported — `cadence check` never builds an IR.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class _Grown(_Model):
    """A model that gained optional fields after version 1 was published:
    left out when unused, so a campaign that does not use them is written as
    before and every reader of version 1 reads it."""

    _LATER: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _without_unused(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in self._LATER:
            if name in data and data[name] in (None, []):
                del data[name]
        return data


class SourceFile(_Model):
    path: str
    sha256: str


class SendWindow(_Model):
    """When automatic emails may go, in the person's zone: from ``opens`` up to
    (not at) ``closes`` (docs/semantics.md §4.5)."""

    opens: str = Field(description="HH:MM", pattern=_TIME_OF_DAY)
    closes: str = Field(description="HH:MM, after `opens`", pattern=_TIME_OF_DAY)

    @model_validator(mode="after")
    def _opens_before_it_closes(self) -> SendWindow:
        if self.closes <= self.opens:  # HH:MM text sorts as the times do
            raise ValueError(f"the window {self.opens}-{self.closes} closes before it opens")
        return self


class Settings(_Grown):
    _LATER = ("send_window",)

    id: str | None = Field(
        None, description="the campaign's identity across renames (else its name)"
    )
    timezone: str = "UTC"
    timezone_from_recipient: bool = Field(
        False, description="use the person's `timezone` field when valid, else `timezone`"
    )
    skip_weekends: bool = False
    holidays: str | None = Field(default=None, description="country code of the holidays skipped")
    on_reply: Literal["end", "end_success", "continue"] = "end"
    on_bounce: Literal["remove", "continue"] = "remove"
    requires: list[str] = []
    send_window: SendWindow | None = Field(
        None, description="when automatic emails may go (an email's own window overrides it)"
    )


class Template(_Model):
    """A template text: its Jinja source, and where it came from."""

    source: str
    origin: Literal["inline", "block", "file"]
    path: str | None = Field(
        default=None, description="for origin `file`: relative to the campaign"
    )
    span: Span


class Timing(_Model):
    """When an email is sent (docs/semantics.md §4), resolved at compile time.

    * ``start``: at the time of day of the enrollment's start instant (on day 1
      that is the start instant itself);
    * ``at``: at ``time`` on the step's day, the time set by step ``step``
      (a launch override of ``step`` applies);
    * ``task``: no automatic send: the email is a task;
    * ``waits_for_task``: at the time of day at which the task email ``step``
      is sent by a person; unknown until then.
    """

    kind: Literal["start", "at", "task", "waits_for_task"]
    time: str | None = Field(default=None, description="HH:MM, for kind `at`")
    step: str | None = Field(default=None, description="the step whose send option fixes the time")
    via: list[str] = Field(default=[], description="the `send with previous` chain, nearest first")
    note: str | None = None


class Variant(_Model):
    """One version of an email in a test (docs/semantics.md §4.6): each person
    gets one, chosen by weight; texts it leaves out are the email's own."""

    name: str
    weight: int = Field(ge=1, description="its share: weight / the sum of the email's weights")
    subject: Template | None = None
    body: Template | None = None


class Step(_Grown):
    _LATER = ("window", "variants")

    id: str
    kind: StepKind
    day: int
    index: int = Field(description="position in campaign order, from 0")
    send: SendKind | None = None
    timing: Timing | None = None
    reply_to: str | None = Field(default=None, description="for `follow up`: the step replied to")
    variants: list[Variant] = Field(
        default=[], description="an email's versions in a test, with their texts (none: no test)"
    )
    window: SendWindow | None = Field(
        default=None,
        description="an automatic email's sending window: its own `send window`, else the "
        "campaign's",
    )
    subject: Template | None = None
    body: Template | None = None
    notes: Template | None = None
    message: Template | None = None
    title: Template | None = None
    span: Span


class Edge(_Model):
    source: str
    target: str
    kind: Literal["next", "same_time", "reply_to"]


class Campaign(_Model):
    schema_version: Literal[1] = SCHEMA_VERSION
    compiler: str
    source: SourceFile
    name: str
    settings: Settings
    person_fields: list[str] = Field(
        description="fields every enrolled person must have: `requires` and those templates use"
    )
    steps: list[Step]
    edges: list[Edge]


class IRError(CadenceError, ValueError):
    """An IR file that cannot be used: not JSON, an unknown version, or invalid."""


def dump_ir(campaign: Campaign) -> str:
    """The IR as JSON text, byte for byte the same for the same campaign."""
    return campaign.model_dump_json(indent=2) + "\n"


def identity(campaign: Campaign) -> str:
    """Who the campaign is: ``id:`` its `id` setting, else ``name:`` its name
    (two namespaces: a campaign named like another's id is another
    campaign). Versions of one campaign share it."""
    if campaign.settings.id:
        return f"id:{campaign.settings.id}"
    return f"name:{campaign.name}"


def shown_identity(stored: str) -> str:
    """An identity as people write it: the id, or the name."""
    return stored.partition(":")[2] or stored


def behaviour_digest(campaign: Campaign) -> str:
    """sha256 of what the campaign *does*: its settings, steps, times and
    texts. Not where it was compiled from, by which cadence, where its text
    sits in the file or whether a text was inline or in a template file: the
    same campaign compiled from another path, after a comment was added, or
    by a newer cadence is the same version."""
    steps = []
    for step in campaign.steps:
        data = step.model_dump(mode="json", exclude={"span"}, exclude_defaults=True)
        for text in ("subject", "body", "notes", "message", "title"):
            template = getattr(step, text)
            data[text] = None if template is None else template.source
        if step.variants:  # their texts as sources too: where they sit is no behaviour
            data["variants"] = [
                {"name": v.name, "weight": v.weight,
                 "subject": v.subject.source if v.subject else None,
                 "body": v.body.source if v.body else None}
                for v in step.variants
            ]  # fmt: skip
        if step.timing is not None:
            data["timing"] = step.timing.model_dump(
                mode="json", exclude={"note"}, exclude_defaults=True
            )
        steps.append(data)
    # Defaults left out: a field a later cadence adds (with a default) is not
    # a change of behaviour, and must not make every campaign a new version.
    settings = campaign.settings.model_dump(mode="json", exclude_defaults=True)
    settings["requires"] = sorted(
        settings.get("requires", [])
    )  # the order they are listed in does nothing
    behaviour = {
        "identity": identity(campaign),
        "name": campaign.name,
        "settings": settings,
        "person_fields": sorted(campaign.person_fields),
        "steps": steps,
        "edges": [edge.model_dump(mode="json", exclude_defaults=True) for edge in campaign.edges],
    }
    text = json.dumps(behaviour, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def load_ir(text: str | bytes) -> Campaign:
    """A campaign from its IR JSON (as ``cadence compile`` writes it), checked
    as the compiler would: an :class:`IRError` says what is wrong."""
    try:
        data: Any = json.loads(text)
    except ValueError as error:
        raise IRError(f"not JSON: {error}") from None
    except RecursionError:
        raise IRError("not JSON a campaign could be: nested too deeply") from None
    if not isinstance(data, dict):
        raise IRError("not a compiled campaign: the JSON is not an object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise IRError(
            f"IR schema_version {version!r} is not supported; "
            f"this cadence reads version {SCHEMA_VERSION}: compile the campaign again"
        )
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise IRError(f"invalid IR at {where}: {first['msg']}") from None
    check_ir(campaign)
    return campaign


MAX_DAY = 3650  # a campaign spans ten years at most
# Names that mean "whatever this machine is set to": never a campaign's or person's zone.
HOST_DEPENDENT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


def check_ir(campaign: Campaign) -> None:
    """The rules the compiler guarantees, checked again on an IR read from a
    file (it may have been edited by hand): the runtime relies on them."""
    import zoneinfo

    seen: dict[str, Step] = {}
    for index, step in enumerate(campaign.steps):
        where = f"step `{step.id}`"
        if step.id in seen:
            raise IRError(f"invalid IR: two steps are named `{step.id}`")
        if not 1 <= step.day <= MAX_DAY:
            raise IRError(f"invalid IR: {where} is on day {step.day} (days run 1 to {MAX_DAY})")
        if step.index != index:
            raise IRError(f"invalid IR: {where} has index {step.index}, not {index}")
        if step.kind == "email" and step.timing is None:
            raise IRError(f"invalid IR: email {where} has no timing")
        referenced = [step.reply_to] if step.reply_to else []
        if step.timing is not None:
            referenced += [name for name in (step.timing.step, *step.timing.via) if name]
        for name in referenced:
            if name not in seen and name != step.id:
                raise IRError(f"invalid IR: {where} refers to `{name}`, no step before it")
        if step.reply_to and (step.reply_to == step.id or seen[step.reply_to].kind != "email"):
            raise IRError(
                f"invalid IR: {where} replies to `{step.reply_to}`, not an email before it"
            )
        seen[step.id] = step
    _check_templates(campaign)
    settings = campaign.settings
    try:
        if settings.timezone in HOST_DEPENDENT_ZONES:
            raise ValueError(settings.timezone)
        zoneinfo.ZoneInfo(settings.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise IRError(f"invalid IR: {settings.timezone!r} is not a time zone") from None
    if settings.holidays is not None:
        import holidays

        if settings.holidays not in holidays.list_supported_countries():
            raise IRError(f"invalid IR: no holidays are known for {settings.holidays!r}")


TEXTS = ("subject", "body", "notes", "message", "title")


def _check_templates(campaign: Campaign) -> None:
    """Templates as the compiler checks them: they parse, stay within the
    sandbox's limits, load nothing, and read only names a person provides."""
    from jinja2 import TemplateSyntaxError

    from cadence import templating

    env = templating.environment()
    allowed = {*campaign.person_fields, *templating.STANDARD_FIELDS, *templating.OBJECTS}
    analysed: dict[str, templating.Analysis | TemplateSyntaxError] = {}
    for step in campaign.steps:
        for name in TEXTS:
            template = getattr(step, name)
            if template is None:
                continue
            where = f"invalid IR: the {name} of step `{step.id}`"
            if template.source not in analysed:
                analysed[template.source] = templating.analyse(env, template.source)
            analysis = analysed[template.source]
            if isinstance(analysis, TemplateSyntaxError):
                raise IRError(f"{where}: line {analysis.lineno}: {analysis.message}")
            unknown = sorted(set(analysis.names) - allowed)
            if unknown:
                raise IRError(f"{where} uses `{unknown[0]}`, which is not in person_fields")
            for owner, attribute, _line in analysis.attributes:
                if attribute not in templating.OBJECTS[owner]:
                    raise IRError(f"{where} uses `{owner}.{attribute}`, which does not exist")


def json_schema() -> dict[str, Any]:
    schema = Campaign.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"cadence compiled campaign, schema version {SCHEMA_VERSION}"
    return schema
