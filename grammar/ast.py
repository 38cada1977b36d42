"""The typed AST of a ``.campaign`` file (docs/language.md; what it means:
docs/semantics.md §1–§3).

Nodes are frozen pydantic models; every node carries the :class:`Span` it was
read from. The AST is faithful to the source: a step that sets ``subject``
twice keeps both, in order, so the compiler (not the parser) can say so.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from cadence.span import Span


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    span: Span


class Name(Node):
    """An identifier: a step name or a person field."""

    value: str


class Text(Node):
    """A template text: an inline ``"..."`` string, a ``\"\"\"`` block, or a template file.

    ``value`` is the decoded text (escapes applied, blocks dedented); for
    ``form == "template"`` it is the file path, relative to the campaign file.
    """

    form: Literal["inline", "block", "template"]
    value: str


class TimeOfDay(Node):
    """``HH:MM`` as written; range checks belong to the compiler."""

    hour: int
    minute: int

    def __str__(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d}"


# ---- settings -------------------------------------------------------------------


class CampaignKey(Node):
    """``id "q1-outbound"``: who the campaign is, whatever its name says."""

    kind: Literal["id"] = "id"
    value: Text


class Timezone(Node):
    """``timezone "Z"`` or, with ``recipient``, ``timezone recipient else "Z"``."""

    kind: Literal["timezone"] = "timezone"
    zone: Text
    recipient: bool = False


class SkipWeekends(Node):
    kind: Literal["skip_weekends"] = "skip_weekends"


class SkipHolidays(Node):
    kind: Literal["skip_holidays"] = "skip_holidays"
    country: Text


ReplyAction = Literal["end", "end_success", "continue"]
BounceAction = Literal["remove", "continue"]


class OnReply(Node):
    kind: Literal["on_reply"] = "on_reply"
    action: ReplyAction


class OnBounce(Node):
    kind: Literal["on_bounce"] = "on_bounce"
    action: BounceAction


class Requires(Node):
    kind: Literal["requires"] = "requires"
    fields: tuple[Name, ...]


class SendWindow(Node):
    """``send window 08:00-17:30``: when automatic emails may go, in the
    person's zone (a setting, or an email's own)."""

    kind: Literal["send_window"] = "send_window"
    opens: TimeOfDay
    closes: TimeOfDay


Setting = Annotated[
    CampaignKey
    | Timezone
    | SkipWeekends
    | SkipHolidays
    | OnReply
    | OnBounce
    | Requires
    | SendWindow,
    Field(discriminator="kind"),
]

# ---- step properties ------------------------------------------------------------


class SendChoose(Node):
    kind: Literal["send_choose"] = "send_choose"


class SendAt(Node):
    kind: Literal["send_at"] = "send_at"
    time: TimeOfDay


class SendTask(Node):
    kind: Literal["send_task"] = "send_task"


class SendWithPrevious(Node):
    kind: Literal["send_with_previous"] = "send_with_previous"


SendOption = SendChoose | SendAt | SendTask | SendWithPrevious
SEND_OPTIONS = (SendChoose, SendAt, SendTask, SendWithPrevious)


class FollowUp(Node):
    kind: Literal["follow_up"] = "follow_up"


class Subject(Node):
    kind: Literal["subject"] = "subject"
    text: Text


class Body(Node):
    kind: Literal["body"] = "body"
    text: Text


class Notes(Node):
    kind: Literal["notes"] = "notes"
    text: Text


class Message(Node):
    kind: Literal["message"] = "message"
    text: Text


class Title(Node):
    kind: Literal["title"] = "title"
    text: Text


VariantItem = Annotated[Subject | Body, Field(discriminator="kind")]


class Variant(Node):
    """``variant short weight 50 { subject "..." body "..." }``: one version of
    an email in a test; the email's own subject and body fill in what it leaves out."""

    kind: Literal["variant"] = "variant"
    name: Name
    weight: int
    weight_span: Span
    items: tuple[VariantItem, ...] = ()

    @property
    def subject(self) -> Subject | None:
        return next((i for i in self.items if isinstance(i, Subject)), None)

    @property
    def body(self) -> Body | None:
        return next((i for i in self.items if isinstance(i, Body)), None)


EmailItem = Annotated[
    SendChoose
    | SendAt
    | SendTask
    | SendWithPrevious
    | FollowUp
    | Subject
    | Body
    | SendWindow
    | Variant,
    Field(discriminator="kind"),
]
CustomItem = Annotated[Title | Notes, Field(discriminator="kind")]
Property = EmailItem | Notes | Message | Title | VariantItem

# ---- steps and days ---------------------------------------------------------------


class StepBase(Node):
    name: Name

    @property
    def id(self) -> str:
        """The author-given name: the step's stable id in every output."""
        return self.name.value


class EmailStep(StepBase):
    kind: Literal["email"] = "email"
    items: tuple[EmailItem, ...] = ()

    @property
    def send(self) -> SendOption | None:
        return next((i for i in self.items if isinstance(i, SEND_OPTIONS)), None)

    @property
    def follow_up(self) -> bool:
        return any(isinstance(i, FollowUp) for i in self.items)

    @property
    def subject(self) -> Subject | None:
        return next((i for i in self.items if isinstance(i, Subject)), None)

    @property
    def body(self) -> Body | None:
        return next((i for i in self.items if isinstance(i, Body)), None)

    @property
    def window(self) -> SendWindow | None:
        return next((i for i in self.items if isinstance(i, SendWindow)), None)

    @property
    def variants(self) -> tuple[Variant, ...]:
        return tuple(i for i in self.items if isinstance(i, Variant))


class CallStep(StepBase):
    kind: Literal["call"] = "call"
    items: tuple[Notes, ...] = ()


class InmailStep(StepBase):
    kind: Literal["inmail"] = "inmail"
    items: tuple[Message, ...] = ()


class CustomStep(StepBase):
    kind: Literal["custom"] = "custom"
    items: tuple[CustomItem, ...] = ()


Step = Annotated[EmailStep | CallStep | InmailStep | CustomStep, Field(discriminator="kind")]
AnyStep = EmailStep | CallStep | InmailStep | CustomStep


class Day(Node):
    """``day N { ... }``: N is an absolute position in the campaign, not a delay."""

    number: int
    number_span: Span
    steps: tuple[Step, ...] = ()


class Campaign(Node):
    name: Text
    settings: tuple[Setting, ...] = ()
    days: tuple[Day, ...] = ()

    def steps(self) -> Iterator[tuple[Day, AnyStep]]:
        """Every step with its day, in campaign order."""
        for day in self.days:
            for step in day.steps:
                yield day, step


class Comment(Node):
    """A ``#`` comment; kept beside the AST for the formatter."""

    text: str
