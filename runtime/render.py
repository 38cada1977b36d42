"""Rendering subjects and bodies for one person (SPEC.md §5, §8).

Templates are compiled once per campaign in Jinja's sandbox with strict
undefined names. A follow-up gets `Re: <previous subject>` unless it sets its
own, and quotes the previous email as its template renders for that person
(never a person's edits of a task email).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from jinja2 import Template, TemplateError

from cadence.compiler.ir import Campaign
from cadence.runtime.planner import Action
from cadence.templating import environment

SENDER_FIELDS = ("name", "email", "signature")
# What a task shows in the subject and body columns.
_SUBJECT = {"email": "subject", "custom": "title"}
_BODY = {"email": "body", "call": "notes", "inmail": "message", "custom": "notes"}


class Renderer:
    def __init__(self, ir: Campaign, sender: Mapping[str, str]) -> None:
        env = environment()
        self.sender = {name: str(sender.get(name, "")) for name in SENDER_FIELDS}
        self.campaign = {"name": ir.name}
        self.templates: dict[tuple[str, str], Template] = {}
        self.kinds = {step.id: step.kind for step in ir.steps}
        for step in ir.steps:
            for name in ("subject", "body", "notes", "message", "title"):
                text = getattr(step, name)
                if text is not None:
                    self.templates[(step.id, name)] = env.from_string(text.source)

    def render(self, fields: Mapping[str, Any], actions: list[Action]) -> list[Action] | str:
        """The actions with subject and body, or what went wrong."""
        context = {**fields, "sender": self.sender, "campaign": self.campaign}
        done: dict[str, Action] = {}
        out = []
        try:
            for action in actions:
                subject, body = self._texts(action, context, done)
                rendered = dataclasses.replace(action, subject=subject, body=body)
                done[action.step] = rendered
                out.append(rendered)
        except (
            TemplateError,
            ArithmeticError,
            RecursionError,
            TypeError,
            ValueError,
            MemoryError,
        ) as error:
            return f"cannot render step `{action.step}`: {error}"
        return out

    def _texts(
        self, action: Action, context: dict[str, Any], done: dict[str, Action]
    ) -> tuple[str | None, str | None]:
        kind = self.kinds[action.step]
        subject = self._render(action.step, _SUBJECT.get(kind), context)
        body = self._render(action.step, _BODY.get(kind), context)
        previous = done.get(action.thread) if action.thread else None
        if previous is not None:
            if subject is None and previous.subject is not None:
                subject = _reply_subject(previous.subject)
            body = _with_quote(body or "", previous, self.sender)
        return subject, body

    def _render(self, step: str, name: str | None, context: dict[str, Any]) -> str | None:
        template = self.templates.get((step, name)) if name else None
        return template.render(context) if template is not None else None


def _reply_subject(subject: str) -> str:
    return subject if subject.lower().startswith("re:") else f"Re: {subject}"


def _with_quote(body: str, previous: Action, sender: Mapping[str, str]) -> str:
    """``body``, then the previous email quoted below its "wrote:" line."""
    when = (
        f"{previous.local:%a, %d %b %Y at %H:%M}"
        if previous.local is not None
        else f"{previous.due_date:%a, %d %b %Y}"
    )
    who = sender.get("name") or sender.get("email") or "I"
    if sender.get("name") and sender.get("email"):
        who = f"{sender['name']} <{sender['email']}>"
    quoted = "\n".join(f"> {line}" if line else ">" for line in (previous.body or "").split("\n"))
    return f"{body.rstrip()}\n\nOn {when}, {who} wrote:\n{quoted}\n"
