"""When each email is sent, resolved once per campaign (docs/semantics.md §4).

Every `send with previous` chain is followed to its root here: a `send at`
time, the start instant (`send choose`, or day 1 with nothing to align with)
or a task email. The planner only reads the result.
"""

from __future__ import annotations

from cadence.compiler.ir import Timing
from cadence.compiler.steps import Alignment, StepRef, send_option
from cadence.grammar import ast


def resolve_timings(refs: list[StepRef], aligned: dict[int, Alignment]) -> dict[int, Timing]:
    """The timing of every email that has one (errors leave a step out)."""
    resolved: dict[int, Timing | None] = {}
    for ref in refs:
        if ref.is_email:
            _resolve(refs, aligned, ref.index, resolved)
    return {index: timing for index, timing in resolved.items() if timing is not None}


def _resolve(
    refs: list[StepRef],
    aligned: dict[int, Alignment],
    index: int,
    resolved: dict[int, Timing | None],
) -> Timing | None:
    if index in resolved:
        return resolved[index]
    ref = refs[index]
    option = send_option(ref.step)
    timing: Timing | None
    match option:
        case ast.SendChoose():
            timing = Timing(kind="start")
        case ast.SendAt(time=time):
            timing = Timing(kind="at", time=str(time), step=ref.id)
        case ast.SendTask():
            timing = Timing(kind="task", step=ref.id)
        case ast.SendWithPrevious():
            timing = _follow(refs, aligned, index, resolved)
        case _:
            timing = None
    resolved[index] = timing
    return timing


def _follow(
    refs: list[StepRef],
    aligned: dict[int, Alignment],
    index: int,
    resolved: dict[int, Timing | None],
) -> Timing | None:
    alignment = aligned[index]
    if alignment.problem == "no_email_day_one":
        return Timing(kind="start", note="no earlier email to align with: sent at the start")
    if alignment.target is None:
        return None
    target = refs[alignment.target]
    root = _resolve(refs, aligned, alignment.target, resolved)
    if root is None:
        return None
    via = [target.id, *root.via]
    if root.kind in ("task", "waits_for_task"):
        task = root.step or target.id
        return Timing(
            kind="waits_for_task",
            step=task,
            via=via,
            note=f"waits for task email `{task}`: sent at the time of day it is sent",
        )
    note = None
    if alignment.redirected and alignment.previous is not None:
        previous = refs[alignment.previous]
        note = (
            f"same day as `{previous.id}`: sent at the time of day-{target.day} email `{target.id}`"
        )
    return Timing(kind=root.kind, time=root.time, step=root.step, via=via, note=note)
