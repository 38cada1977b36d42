"""A task as the command center shows it: who it is for (name, company,
phone), what to do, and for an email task the email prefilled from the
template for that person, ready to edit and send."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from cadence.compiler.ir import Campaign
from cadence.runtime.engine import Engine, Task
from cadence.runtime.mailboxes import Sender, Senders
from cadence.runtime.render import Renderer, reply_subject
from cadence.templating import RenderError

PHONE_FIELDS = ("phone", "phone_number", "mobile", "mobile_phone", "telephone")


class TaskView(BaseModel):
    id: int
    person: str
    campaign: str  # the campaign's name
    campaign_key: str  # the version's key
    step: str
    kind: str  # email_task | call | inmail | custom
    due_date: dt.date
    zone: str | None = None  # the person's: a time given for them counts in it
    variant: str | None = None  # their version of the email, in a test
    name: str | None = None
    company: str | None = None
    phone: str | None = None
    to: str | None = None  # an email task's recipient
    subject: str | None = None
    body: str | None = None
    title: str | None = None
    notes: str | None = None
    message: str | None = None
    problem: str | None = None  # why the texts could not be rendered


class TaskViews:
    """Makes task views for one engine: each campaign's templates are
    compiled once (a :class:`Renderer` per campaign version, kept), and a
    page of tasks reads its people's fields in one query."""

    def __init__(self, engine: Engine, senders: Senders | None = None) -> None:
        self.engine = engine
        self.senders = senders or Senders({})
        self._renderers: dict[tuple[str, Sender], Renderer] = {}

    def views(self, tasks: Sequence[Task]) -> list[TaskView]:
        enrollments = [task.enrollment_id for task in tasks]
        fields = self.engine.fields_of(enrollments)
        variants = self.engine.variants_of(enrollments)
        return [
            self._view(task, fields[task.enrollment_id], variants[task.enrollment_id])
            for task in tasks
        ]

    def _view(self, task: Task, fields: dict[str, Any], variants: dict[str, str]) -> TaskView:
        ir = self.engine.campaign(task.campaign_id)
        view: dict[str, Any] = {
            "id": task.id,
            "person": task.person,
            "campaign": ir.name,
            "campaign_key": task.campaign_id,
            "step": task.step,
            "kind": task.kind,
            "due_date": task.due_date,
            "zone": task.zone,
            "variant": task.variant,
            "name": _name(fields),
            "company": _first(fields, ("company",)),
            "phone": _first(fields, PHONE_FIELDS),
        }
        if task.kind == "email_task":
            view["to"] = task.person
        # Signed as the dispatcher signs the person's automatic emails.
        sender = self.senders.of(ir.name, fields, task.mailbox)
        renderer = self._renderer(task.campaign_id, ir, sender)
        try:
            view.update(renderer.texts(task.step, fields, task.variant))
            if task.kind == "email_task" and "subject" not in view:
                view["subject"] = _thread_subject(renderer, ir, task, fields, variants)
        except RenderError as error:
            view["problem"] = f"cannot render: {error}"
        return TaskView(**view)

    def _renderer(self, key: str, ir: Campaign, sender: Sender) -> Renderer:
        # A version never changes: its renderer is kept, per sender.
        if (key, sender) not in self._renderers:
            self._renderers[(key, sender)] = Renderer(ir, sender.as_fields())
        return self._renderers[(key, sender)]


def _thread_subject(
    renderer: Renderer, ir: Campaign, task: Task, fields: dict[str, Any], variants: dict[str, str]
) -> str | None:
    """A follow-up without a subject of its own: "Re: " and the subject of the
    email its thread began with (as the dispatcher sent it: the variant the
    person got of it, as stored, in a test)."""
    steps = {s.id: s for s in ir.steps}
    seen = {task.step}
    replied = steps[task.step].reply_to
    while replied is not None and replied not in seen:
        seen.add(replied)
        subject = renderer.texts(replied, fields, variants.get(replied)).get("subject")
        if subject:
            return reply_subject(subject)
        replied = steps[replied].reply_to
    return None


def _name(fields: dict[str, Any]) -> str | None:
    parts = (str(fields.get(key) or "").strip() for key in ("first_name", "last_name"))
    return " ".join(part for part in parts if part) or None


def _first(fields: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of ``keys`` the person has a value for (what a caller needs at a glance)."""
    return next((str(fields[k]).strip() for k in keys if str(fields.get(k) or "").strip()), None)
