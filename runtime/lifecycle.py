"""A person's state in a campaign, in one place: what every command, route and
page reads, so they agree.

An enrollment is

* **active**: steps still to come, nothing holding it;
* **paused**: steps still to come, held until a date (an out-of-office, a
  pause by hand) or until resumed;
* **finished**: every step done — its row may still say ``active`` (nothing
  marks the last step's end), or ``finished`` once a new enrollment of the
  same person replaced it (``--again``);
* **ended**: ended early, with the reason (replied, bounced, unsubscribed,
  complained, removed, campaign has ended) and when.

The stored ``status`` column says whether an enrollment takes part in sends
(``active``); the state is read from it, the pause and the steps left.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, exists, func, or_, select

from cadence.runtime.schema import CLAIMED, OPEN, PENDING, UNCONFIRMED, actions, enrollments

State = Literal["active", "paused", "finished", "ended"]
ACTIVE, FINISHED, ENDED = "active", "finished", "ended"  # stored statuses
# Action statuses of a step still to come: the enrollment has not run to its end.
LEFT = (PENDING, OPEN, CLAIMED, UNCONFIRMED)

# SQL, per enrollment row: whether a step is still to come, and when its last
# step was done.
STEPS_LEFT = exists().where(actions.c.enrollment_id == enrollments.c.id, actions.c.status.in_(LEFT))
LAST_DONE = (
    select(func.max(func.coalesce(actions.c.closed_at, actions.c.sent_at)))
    .where(actions.c.enrollment_id == enrollments.c.id)
    .scalar_subquery()
)
IS_FINISHED = or_(
    enrollments.c.status == FINISHED, and_(enrollments.c.status == ACTIVE, ~STEPS_LEFT)
)
IS_GOING = and_(enrollments.c.status == ACTIVE, STEPS_LEFT)  # active or paused
IS_ENDED = enrollments.c.status == ENDED
# How an ended enrollment's reason reads in a sentence about the person.
_ENDED_BY = {
    "replied": "replied",
    "bounced": "bounced",
    "unsubscribed": "unsubscribed",
    "complained": "complained (marked an email as spam)",
    "removed": "was removed",
    "campaign has ended": "was ended with the campaign",
}


def state_of(status: str, paused_until: dt.datetime | None, steps_left: bool) -> State:
    """The state of an enrollment from its stored status, pause and steps."""
    if status == ENDED:
        return "ended"
    if status == FINISHED or not steps_left:
        return "finished"
    return "paused" if paused_until is not None else "active"


@dataclass(frozen=True)
class Past:
    """How a person's enrollment in a campaign came to an end: ended early or
    finished, and when."""

    state: State  # finished | ended
    reason: str | None  # why it ended (None: finished)
    at: dt.datetime | None

    @classmethod
    def of(cls, row: Any) -> Past:
        """From a row with ``status``, ``reason``, ``ended_at`` and ``last_done``."""
        if row.status == ENDED:
            return cls("ended", row.reason, row.ended_at)
        return cls("finished", None, row.ended_at or row.last_done)

    def sentence(self, person: str) -> str:
        """``kate@x.io replied on 2030-12-03``."""
        if self.state == "finished":
            what = "went through every step"
        else:
            what = _ENDED_BY.get(self.reason or "", f"ended ({self.reason or 'no reason'})")
        when = f" on {self.at:%Y-%m-%d}" if self.at is not None else ""
        return f"`{person}` {what}{when}"
