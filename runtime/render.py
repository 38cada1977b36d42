"""Rendering subjects and bodies for one person (docs/semantics.md §5, §8).

Templates are compiled once per campaign in Jinja's sandbox with strict
undefined names. A follow-up gets `Re: <previous subject>` unless it sets its
own, and quotes the previous email as its template renders for that person
(never a person's edits of a task email).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from jinja2 import Template

from cadence.compiler.ir import Campaign
from cadence.runtime.addresses import header_problem
from cadence.runtime.planner import Action
from cadence.templating import RenderError, environment, render

SENDER_FIELDS = ("name", "email", "signature")
TEXTS = ("subject", "body", "notes", "message", "title")
# What a task shows in the subject and body columns.
_SUBJECT = {"email": "subject", "custom": "title"}
_BODY = {"email": "body", "call": "notes", "inmail": "message", "custom": "notes"}


class Renderer:
    """Renders one campaign's texts. Each template is compiled on first use,
    once; one that cannot be compiled fails only the steps that use it."""

    def __init__(self, ir: Campaign, sender: Mapping[str, str]) -> None:
        self.env = environment()
        self.sender = {name: str(sender.get(name, "")) for name in SENDER_FIELDS}
        self.campaign = {"name": ir.name}
        self.sources: dict[tuple[str, str], str] = {}
        self.templates: dict[tuple[str, str], Template | RenderError] = {}
        self.kinds = {step.id: step.kind for step in ir.steps}
        self.first_variant: dict[str, str] = {}
        self.variants: set[str] = set()  # the keys of this version's variants
        for step in ir.steps:
            for name in TEXTS:
                text = getattr(step, name)
                if text is not None:
                    self.sources[(step.id, name)] = text.source
            if step.variants:
                self.first_variant[step.id] = _versioned(step.id, step.variants[0].name)
            for variant in step.variants:  # its texts under `step<US>variant`
                self.variants.add(_versioned(step.id, variant.name))
                for name in ("subject", "body"):
                    text = getattr(variant, name)
                    if text is not None:
                        self.sources[(_versioned(step.id, variant.name), name)] = text.source

    def context(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        return {**fields, "sender": self.sender, "campaign": self.campaign}

    def render(
        self,
        fields: Mapping[str, Any],
        actions: list[Action],
        typed: tuple[str | None, str] | None = None,
    ) -> list[Action] | str:
        """The actions with subject and body, or what went wrong. ``typed``:
        the last action's subject and body as a person wrote them (an email
        task): used instead of its templates, still threaded and quoted."""
        context = self.context(fields)
        done: dict[str, Action] = {}
        out = []
        for number, action in enumerate(actions, start=1):
            own = typed if number == len(actions) else None
            try:
                subject, body = self._texts(action, context, done, own)
            except RenderError as error:
                return f"cannot render step `{action.step}`: {error}"
            rendered = dataclasses.replace(action, subject=subject, body=body)
            done[action.step] = rendered
            out.append(rendered)
        return out

    def texts(
        self, step: str, fields: Mapping[str, Any], variant: str | None = None
    ) -> dict[str, str]:
        """Every text of ``step`` (subject, body, notes, message, title) for a
        person — of their ``variant`` of it, in a test — as the command center
        shows a task; raises :class:`RenderError`."""
        context = self.context(fields)
        found = {}
        keys = self._keys(step, variant)
        for name in TEXTS:
            text = self._render(keys, name, context)
            if text is not None:
                found[name] = text
        return found

    def _texts(
        self,
        action: Action,
        context: dict[str, Any],
        done: dict[str, Action],
        typed: tuple[str | None, str] | None = None,
    ) -> tuple[str | None, str | None]:
        subject: str | None
        body: str | None
        if typed is not None:  # (its step may be gone from a later version)
            subject, body = typed[0] or None, typed[1]
        else:
            kind = self.kinds[action.step]
            keys = self._keys(action.step, action.variant)
            subject = self._render(keys, _SUBJECT.get(kind), context)
            body = self._render(keys, _BODY.get(kind), context)
        previous = done.get(action.thread) if action.thread else None
        if previous is not None:
            if subject is None and previous.subject is not None:
                subject = reply_subject(previous.subject)
            body = _with_quote(body or "", previous, self.sender)
        problem = header_problem(subject) if subject is not None else None
        if problem is not None:
            raise RenderError(f"the subject would hold {problem}")
        return subject, body

    def _keys(self, step: str, variant: str | None) -> tuple[str, ...]:
        """Where the texts of ``step`` as ``variant`` of it are found, in order:
        a variant of this version has its own (filled in from the email's); one
        this version does not have (the person got it under an earlier one) has
        the email's own texts, else its first variant's."""
        if variant is None:
            return (step,)
        key = _versioned(step, variant)
        if key in self.variants:
            return (key,)
        return (step, self.first_variant.get(step, step))

    def _render(
        self, keys: tuple[str, ...], name: str | None, context: dict[str, Any]
    ) -> str | None:
        if name is None:
            return None
        found = next(((key, name) for key in keys if (key, name) in self.sources), None)
        return None if found is None else render(self._template(found), context)

    def _template(self, key: tuple[str, str]) -> Template:
        found = self.templates.get(key)
        if found is None:
            try:
                found = self.env.from_string(self.sources[key])
            except Exception as error:  # an IR edited by hand past load_ir's checks
                found = RenderError(f"its {key[1]} template cannot be compiled: {error}")
            self.templates[key] = found
        if isinstance(found, RenderError):
            raise found
        return found


def _versioned(step: str, variant: str | None) -> str:
    """The key of a step's texts: its name, or with its variant's, in a test."""
    return step if variant is None else f"{step}\x1f{variant}"


def reply_subject(subject: str) -> str:
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
