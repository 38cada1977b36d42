"""The placement and structure rules (docs/semantics.md §2, §4, §5): each a small function
that looks at the campaign and yields diagnostics with a code from
:mod:`cadence.codes`. :data:`RULES` lists them all, in the order they run.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from cadence import codes
from cadence.compiler.graph import StepGraph, same_time_cycle
from cadence.compiler.ir import MAX_DAY, Timing
from cadence.compiler.steps import Alignment, StepRef, send_option
from cadence.diagnostics import Diagnostic, Related, replacement
from cadence.grammar import ast
from cadence.span import Span


@dataclass(frozen=True)
class Context:
    campaign: ast.Campaign
    refs: list[StepRef]
    aligned: dict[int, Alignment]
    timings: dict[int, Timing]
    graph: StepGraph


Rule = Callable[[Context], Iterator[Diagnostic]]
T = TypeVar("T")
RULES: list[Rule] = []


def rule(function: Rule) -> Rule:
    RULES.append(function)
    return function


def check_rules(context: Context) -> list[Diagnostic]:
    return [diagnostic for check in RULES for diagnostic in check(context)]


def repeats(items: Iterable[T], key: Callable[[T], Hashable]) -> Iterator[tuple[T, T]]:
    """Each item whose key an earlier item had, with that first item."""
    first: dict[Hashable, T] = {}
    for item in items:
        seen = first.setdefault(key(item), item)
        if seen is not item:
            yield item, seen


# ---- days ----------------------------------------------------------------------


@rule
def days_in_order(context: Context) -> Iterator[Diagnostic]:
    days = context.campaign.days
    if not any(day.steps for day in days):
        yield codes.C025.at(
            context.campaign.name.span,
            "the campaign has no steps",
            help="add a day with a step: `day 1 { email intro { ... } }`",
        )
    if days and days[0].number > 1:
        yield codes.C012.at(
            days[0].number_span,
            f"the campaign starts on day {days[0].number}, not day 1",
            help="day numbers are positions in the campaign: the first day is `day 1`",
        )
    for day, first in repeats(days, lambda day: day.number):
        yield codes.C010.at(
            day.number_span,
            f"day {day.number} is given twice",
            help="put the steps of one day in one block",
            related=(Related(message=f"day {day.number} first here", span=first.span),),
        )
    for before, day in itertools.pairwise(days):
        if day.number < before.number:
            yield codes.C009.at(
                day.number_span,
                f"day {day.number} comes after day {before.number}",
                help="write the days in increasing order",
            )
    for day in days:
        if day.number < 1:
            yield codes.C024.at(day.number_span, f"day {day.number}: days count from 1")
        if day.number > MAX_DAY:
            yield codes.C026.at(
                day.number_span,
                f"day {day.number} is more than {MAX_DAY} days into the campaign",
                help="a campaign spans ten years at most",
            )
        if not day.steps:
            yield codes.C011.at(
                day.span, f"day {day.number} has no steps", help="add a step or remove the day"
            )


# ---- steps ---------------------------------------------------------------------


@rule
def unique_step_names(context: Context) -> Iterator[Diagnostic]:
    for ref, first in repeats(context.refs, lambda ref: ref.id):
        yield codes.C008.at(
            ref.step.name.span,
            f"a step named `{ref.id}` already exists",
            help="step names are ids in every output: give each step its own",
            related=(Related(message=f"`{ref.id}` first here", span=first.step.name.span),),
        )


_FAMILY = {
    "send_choose": "send",
    "send_at": "send",
    "send_task": "send",
    "send_with_previous": "send",
}


@rule
def properties_once(context: Context) -> Iterator[Diagnostic]:
    for ref in context.refs:
        items: Iterable[ast.Property] = [i for i in ref.step.items if i.kind != "variant"]
        yield from _once(items, f"{ref.step.kind} `{ref.id}`")
        if isinstance(ref.step, ast.EmailStep):
            for variant in ref.step.variants:
                owner = f"variant `{variant.name.value}` of `{ref.id}`"
                yield from _once(variant.items, owner)


def _once(items: Iterable[ast.Property], owner: str) -> Iterator[Diagnostic]:
    for item, first in repeats(items, lambda item: _FAMILY.get(item.kind, item.kind)):
        family = _FAMILY.get(item.kind, item.kind)
        name = "a send option" if family == "send" else f"`{family.replace('_', ' ')}`"
        yield codes.C021.at(
            item.span,
            f"{owner} has {name} twice",
            help="keep one",
            related=(Related(message="first here", span=first.span),),
        )


@rule
def email_has_what_it_needs(context: Context) -> Iterator[Diagnostic]:
    for ref in context.refs:
        step = ref.step
        if not isinstance(step, ast.EmailStep):
            continue
        if step.send is None:
            yield codes.C013.at(
                step.name.span,
                f"email `{ref.id}` has no send option",
                help="add one of `send choose`, `send at HH:MM`, `send task`, `send with previous`",
            )
        # With variants, each must have what an email needs: its own texts, or the email's.
        for owner, name, has_subject, has_body in _versions(step, ref.id):
            if not has_subject and not step.follow_up:
                yield codes.C014.at(
                    name.span,
                    f"{owner} has no subject",
                    help='add `subject "..."` (only a `follow up` may leave it out)',
                )
            if not has_body:
                yield codes.C015.at(
                    name.span,
                    f"{owner} has no body",
                    help='add `body "..."` or `body template "file"`',
                )


def _versions(step: ast.EmailStep, id: str) -> Iterator[tuple[str, ast.Name, bool, bool]]:
    """The email as sent: itself, or each of its variants (with what each has)."""
    subject, body = step.subject is not None, step.body is not None
    if not step.variants:
        yield f"email `{id}`", step.name, subject, body
    for variant in step.variants:
        yield (
            f"variant `{variant.name.value}` of `{id}`",
            variant.name,
            subject or variant.subject is not None,
            body or variant.body is not None,
        )


@rule
def variants_can_be_told_apart(context: Context) -> Iterator[Diagnostic]:
    for ref in context.refs:
        step = ref.step
        if not isinstance(step, ast.EmailStep) or not step.variants:
            continue
        for variant in step.variants:
            if variant.weight == 0:
                yield codes.C037.at(
                    variant.weight_span,
                    f"variant `{variant.name.value}` of `{ref.id}` has weight 0: nobody gets it",
                    help="give it a share (`weight 50`), or remove it",
                )
        for variant, first in repeats(step.variants, lambda v: v.name.value):
            yield codes.C038.at(
                variant.name.span,
                f"`{ref.id}` has two variants named `{variant.name.value}`",
                help="name each variant of an email once: results are counted by name",
                related=(Related(message="first here", span=first.name.span),),
            )
        if len(step.variants) == 1:
            yield codes.C039.at(
                step.variants[0].name.span,
                f"`{ref.id}` has one variant: everyone gets it, so nothing is compared",
                help="add another variant to test against, or write its texts on the email",
            )


@rule
def tasks_have_text(context: Context) -> Iterator[Diagnostic]:
    for ref in context.refs:
        step = ref.step
        if isinstance(step, ast.InmailStep) and not step.items:
            yield codes.C022.at(
                step.name.span, f"inmail `{ref.id}` has no message", help='add `message "..."`'
            )
        if isinstance(step, ast.CustomStep) and not any(
            isinstance(item, ast.Title) for item in step.items
        ):
            yield codes.C022.at(
                step.name.span,
                f"custom task `{ref.id}` has no title",
                help='add `title "..."`: it is what the command center shows',
            )


# ---- send options ----------------------------------------------------------------


@rule
def choose_only_first(context: Context) -> Iterator[Diagnostic]:
    for ref in context.refs:
        option = send_option(ref.step)
        # A first step on a day below 1 is reported as that day (C024), not here.
        if isinstance(option, ast.SendChoose) and (ref.index != 0 or ref.day > 1):
            yield codes.C001.at(
                option.span,
                "`send choose` is only offered on the first step of day 1",
                help="use `send at HH:MM`, `send with previous` or `send task` here",
            )


@rule
def times_in_range(context: Context) -> Iterator[Diagnostic]:
    for ref in context.refs:
        option = send_option(ref.step)
        if isinstance(option, ast.SendAt):
            time = option.time
            if not _in_range(time):
                yield codes.C019.at(
                    time.span,
                    f"`{time.hour:02d}:{time.minute:02d}` is not a time of day",
                    help="times run from 00:00 to 23:59",
                )


# ---- sending windows ---------------------------------------------------------------


def _windows(context: Context) -> Iterator[ast.SendWindow]:
    for setting in context.campaign.settings:
        if isinstance(setting, ast.SendWindow):
            yield setting
    for ref in context.refs:
        if isinstance(ref.step, ast.EmailStep) and ref.step.window is not None:
            yield ref.step.window


def _in_range(time: ast.TimeOfDay) -> bool:
    return time.hour <= 23 and time.minute <= 59


def _minutes(time: ast.TimeOfDay) -> int:
    return time.hour * 60 + time.minute


@rule
def windows_are_windows(context: Context) -> Iterator[Diagnostic]:
    for window in _windows(context):
        times = (window.opens, window.closes)
        for time in times:
            if not _in_range(time):
                yield codes.C019.at(
                    time.span,
                    f"`{time}` is not a time of day",
                    help="times run from 00:00 to 23:59",
                )
        if not all(_in_range(time) for time in times):
            continue
        if _minutes(window.closes) < _minutes(window.opens):
            yield codes.C033.at(
                window.span,
                f"the sending window closes at {window.closes}, before it opens at {window.opens}",
                help="a window lies within one day: write it from the earlier time to the later, "
                "like `send window 08:00-17:30`",
                fixes=(
                    replacement(
                        window.span,
                        f"send window {window.closes}-{window.opens}",
                        "swap the times",
                        safe=False,
                    ),
                ),
            )
        elif _minutes(window.closes) == _minutes(window.opens):
            yield codes.C034.at(
                window.span,
                f"the sending window opens and closes at {window.opens}: it leaves no time to "
                "send anything",
                help="give it room, like `send window 08:00-17:30`",
            )


def _window_of(context: Context, step: ast.EmailStep) -> ast.SendWindow | None:
    if step.window is not None:
        return step.window
    return next((s for s in context.campaign.settings if isinstance(s, ast.SendWindow)), None)


def usable_window(window: ast.SendWindow) -> bool:
    """A window the rules take: times of day, opening before it closes."""
    times = (window.opens, window.closes)
    return all(_in_range(t) for t in times) and _minutes(window.opens) < _minutes(window.closes)


@rule
def send_at_inside_window(context: Context) -> Iterator[Diagnostic]:
    for ref in context.refs:
        step = ref.step
        if not isinstance(step, ast.EmailStep) or not isinstance(step.send, ast.SendAt):
            continue
        window = _window_of(context, step)
        time = step.send.time
        if window is None or not usable_window(window) or not _in_range(time):
            continue
        if _minutes(time) < _minutes(window.opens):
            moved = f"it goes at {window.opens}, when the window opens"
        elif _minutes(time) >= _minutes(window.closes):
            moved = f"it goes at {window.opens} on the next day that counts"
        else:
            continue
        yield codes.C035.at(
            time.span,
            f"`send at {time}` is outside the sending window {window.opens}-{window.closes}: "
            + moved,
            help="move the time into the window, or give this email its own `send window`",
            related=(Related(message="the window", span=window.span),),
        )


@rule
def window_on_a_task_email(context: Context) -> Iterator[Diagnostic]:
    for ref in context.refs:
        step = ref.step
        if isinstance(step, ast.EmailStep) and isinstance(step.send, ast.SendTask) and step.window:
            yield codes.C036.at(
                step.window.span,
                f"`send window` on `{ref.id}` does nothing: a person sends a task email, "
                "when they choose",
                help="remove it",
                fixes=(replacement(step.window.span, "", "remove `send window`", safe=True),),
            )


@rule
def with_previous_has_an_email(context: Context) -> Iterator[Diagnostic]:
    for index, alignment in context.aligned.items():
        ref = context.refs[index]
        span = _send_span(ref)
        if alignment.problem == "first_step":
            yield codes.C003.at(
                span,
                "`send with previous` on the first step of the campaign: there is no "
                "previous email",
                help="use `send choose`, `send at HH:MM` or `send task`",
            )
        elif alignment.problem == "no_email":
            yield codes.C004.at(
                span,
                f"`send with previous` on day {ref.day}: no email on an earlier day to "
                "take the time from",
                help="use `send at HH:MM`, or put an email on an earlier day",
            )
        elif alignment.problem == "no_email_day_one":
            yield codes.C005.at(
                span,
                "`send with previous` on day 1 with no earlier day: sent immediately at "
                "campaign start (not recommended)",
                help="use `send choose` on the first step or `send at HH:MM`",
            )


@rule
def timing_notes(context: Context) -> Iterator[Diagnostic]:
    for index, alignment in context.aligned.items():
        ref = context.refs[index]
        timing = context.timings.get(index)
        if timing is None:
            continue
        if timing.kind == "waits_for_task":
            yield codes.C007.at(
                _send_span(ref),
                f"`{ref.id}` waits for task email `{timing.step}`: it is sent at the time of "
                "day that task is sent",
            )
        elif alignment.redirected and timing.note and _previous_same_day(context, ref, alignment):
            yield codes.C006.at(_send_span(ref), timing.note)


@rule
def follow_up_after_email(context: Context) -> Iterator[Diagnostic]:
    for ref in context.refs:
        step = ref.step
        if not isinstance(step, ast.EmailStep):
            continue
        flag = next((item for item in step.items if isinstance(item, ast.FollowUp)), None)
        if flag is None:
            continue
        remove = (replacement(flag.span, "", "remove `follow up`", safe=False),)
        if ref.index == 0:
            yield codes.C002.at(
                flag.span,
                "`follow up` on the first step: there is no previous email to reply to",
                help="remove `follow up`",
                fixes=remove,
            )
            continue
        before = context.refs[ref.index - 1]
        if not before.is_email:
            yield codes.C002.at(
                flag.span,
                f"`follow up` replies to the previous step, but `{before.id}` is "
                f"{_a(before.step.kind)} {before.step.kind} step, not an email",
                help="move this email right after an email step, or remove `follow up`",
                related=(Related(message=f"`{before.id}` is here", span=before.step.name.span),),
                fixes=remove,
            )


@rule
def no_alignment_cycle(context: Context) -> Iterator[Diagnostic]:
    cycle = same_time_cycle(context.graph)
    if cycle:
        first = next(ref for ref in context.refs if ref.id == cycle[0])
        names = " → ".join(f"`{name}`" for name in [*cycle, cycle[0]])
        yield codes.C023.at(
            first.step.name.span,
            f"these steps take their send time from each other in a cycle: {names}",
            help="give each step its own name, so each aligns with the email before it",
        )


def _previous_same_day(context: Context, ref: StepRef, alignment: Alignment) -> bool:
    """Whether the email before ``ref`` is on its own day (with days out of
    order it may be on a later one: C009 says so, and no C006)."""
    return alignment.previous is not None and context.refs[alignment.previous].day == ref.day


def _send_span(ref: StepRef) -> Span:
    option = send_option(ref.step)
    return option.span if option is not None else ref.step.name.span


def _a(kind: str) -> str:
    return "an" if kind[0] in "aeiou" else "a"
