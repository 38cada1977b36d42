"""The campaign's steps in campaign order, and where each `send with previous` aligns.

Alignment follows docs/semantics.md §4: an email takes the time of day of the nearest
email before it; an email of the same day cannot share a time, so it takes the
time of the previous day's email instead. Everything here works on positions
in campaign order, so it is right even when two steps share a name (which the
rules report).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cadence.grammar import ast


@dataclass(frozen=True)
class StepRef:
    """A step with its place: position in campaign order and day number."""

    index: int
    day: int
    step: ast.AnyStep

    @property
    def id(self) -> str:
        return self.step.id

    @property
    def is_email(self) -> bool:
        return isinstance(self.step, ast.EmailStep)


def flatten(campaign: ast.Campaign) -> list[StepRef]:
    return [StepRef(index, day.number, step) for index, (day, step) in enumerate(campaign.steps())]


Problem = Literal["first_step", "no_email_day_one", "no_email"]


@dataclass(frozen=True)
class Alignment:
    """Where an email with `send with previous` takes its time of day from.

    ``target`` is the email it aligns with; ``previous`` the nearest email
    before it (they differ when the same-day rule redirected it); ``problem``
    says why there is no target.
    """

    target: int | None
    previous: int | None
    problem: Problem | None = None

    @property
    def redirected(self) -> bool:
        return self.target is not None and self.target != self.previous


def align(refs: list[StepRef], index: int, emails: list[StepRef] | None = None) -> Alignment:
    """The alignment of the email at ``index``; ``emails`` are the emails before
    it in campaign order (computed when not given)."""
    if index == 0:
        return Alignment(None, None, "first_step")
    if emails is None:
        emails = [ref for ref in refs[:index] if ref.is_email]
    day = refs[index].day
    previous = emails[-1].index if emails else None
    # The last email of the nearest earlier day that has one: scanning back
    # passes only the emails of the same day.
    for ref in reversed(emails):
        if ref.day < day:
            return Alignment(ref.index, previous)
    return Alignment(None, previous, "no_email_day_one" if day <= 1 else "no_email")


def send_option(step: ast.AnyStep) -> ast.SendOption | None:
    return step.send if isinstance(step, ast.EmailStep) else None


def alignments(refs: list[StepRef]) -> dict[int, Alignment]:
    """The alignment of every email whose send option is `with previous`."""
    found: dict[int, Alignment] = {}
    emails: list[StepRef] = []
    for ref in refs:
        if isinstance(send_option(ref.step), ast.SendWithPrevious):
            found[ref.index] = align(refs, ref.index, emails)
        if ref.is_email:
            emails.append(ref)
    return found
