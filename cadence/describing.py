"""A step and a template name described in plain words, for the language
server's hover: what a step is, on which day, and when it goes — its time
resolved as the planner resolves it (docs/semantics.md §4) — and where a name
a template uses comes from (§8)."""

from __future__ import annotations

from cadence.compiler.ir import Campaign, Step
from cadence.templating import OBJECTS, STANDARD_FIELDS

_TASKS = {"call": "a call task", "inmail": "a LinkedIn InMail task", "custom": "a custom task"}


def zone_words(ir: Campaign) -> str:
    settings = ir.settings
    if settings.timezone_from_recipient:
        return f"the person's zone (else {settings.timezone})"
    return settings.timezone


def describe_step(ir: Campaign, step: Step) -> str:
    """Markdown: the step's kind, day and — for an email — when it is sent."""
    if step.kind != "email":
        return f"**{_TASKS.get(step.kind, step.kind)} `{step.id}`**, due on day {step.day}"
    lines = [f"**email `{step.id}`**, day {step.day}: {_when(ir, step)}"]
    if step.reply_to:
        lines.append(f"A reply in the thread of `{step.reply_to}`, quoting it.")
    if step.timing is not None and step.timing.note:
        lines.append(f"Note: {step.timing.note}.")
    if step.window is not None:
        lines.append(
            f"Only between {step.window.opens} and {step.window.closes} (its sending window): "
            "a time outside it waits for the window to open."
        )
    return "\n\n".join(lines)


def _when(ir: Campaign, step: Step) -> str:
    timing = step.timing
    zone = zone_words(ir)
    if timing is None or timing.kind == "task":
        return (
            f"an email task, prefilled from the template, that a person sends (due day {step.day})"
        )
    if timing.kind == "waits_for_task":
        return (
            f"waits for task `{timing.step}`: sent on day {step.day} at the time of day "
            "that task is sent"
        )
    anchor = timing.via[0] if timing.via else None
    if timing.kind == "start":
        if step.send == "choose":
            return "sent at the start, the moment chosen when people are enrolled"
        if anchor is None:
            return "no earlier email to align with: sent at the start (not recommended)"
        return f"day {step.day} at the time `{anchor}` is sent — the start's time of day, in {zone}"
    if anchor is None:
        return f"day {step.day} at {timing.time} {zone}"
    return f"day {step.day} at the time `{anchor}` is sent — {timing.time} {zone}"


def describe_name(ir: Campaign, name: str) -> str | None:
    """Markdown: where a name a template uses comes from; ``None`` for a
    name templates do not know."""
    if name in OBJECTS:
        listed = ", ".join(f"`{name}.{attribute}`" for attribute in OBJECTS[name])
        whose = "the mailbox that sends" if name == "sender" else "the campaign"
        return f"**`{name}`**: {whose} — {listed}"
    if name in ir.person_fields or name in ir.settings.requires:
        declared = " (declared with `requires`)" if name in ir.settings.requires else ""
        return (
            f"**`{name}`**: a field of the person, from the people file{declared}; "
            "required of every person, since the campaign uses it"
        )
    if name == "email":
        return "**`email`**: the person's address, from the people file"
    if name in STANDARD_FIELDS:
        return f"**`{name}`**: a field of the person, from the people file, when given"
    return None
