"""A task as the command center shows it: who it is for (name, company,
phone), what to do, and for an email task the email prefilled from the
template for that person, ready to edit and send."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel

from cadence.runtime.engine import Engine, Task
from cadence.runtime.render import Renderer
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


def task_view(engine: Engine, task: Task) -> TaskView:
    """``task`` with what a person needs to act on it, rendered for its person."""
    ir = engine.campaign(task.campaign_id)
    fields = engine.enrollment_fields(task.enrollment_id)
    view: dict[str, Any] = {
        "id": task.id,
        "person": task.person,
        "campaign": ir.name,
        "campaign_key": task.campaign_id,
        "step": task.step,
        "kind": task.kind,
        "due_date": task.due_date,
        "name": _name(fields),
        "company": _first(fields, ("company",)),
        "phone": _first(fields, PHONE_FIELDS),
    }
    if task.kind == "email_task":
        view["to"] = task.person
    try:
        view.update(Renderer(ir, {}).texts(task.step, fields))
    except RenderError as error:
        view["problem"] = f"cannot render: {error}"
    return TaskView(**view)


def _name(fields: dict[str, Any]) -> str | None:
    parts = (str(fields.get(key) or "").strip() for key in ("first_name", "last_name"))
    return " ".join(part for part in parts if part) or None


def _first(fields: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of ``keys`` the person has a value for (what a caller needs at a glance)."""
    return next((str(fields[k]).strip() for k in keys if str(fields.get(k) or "").strip()), None)
