"""The campaign calendar (docs/semantics.md §4): which days count, the date of each day
number, and local wall times turned into instants per time zone.

Everything here is per campaign (holiday sets, zone objects) or per zone and
start (day dates); nothing is per person. Holidays come from the `holidays`
package, converted once into a set of dates, never queried per row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cadence.compiler.ir import HOST_DEPENDENT_ZONES, SendWindow

UTC = dt.UTC
UTC_ZONE = ZoneInfo("UTC")  # where a person or mailbox without a usable zone lives
SATURDAY = 5


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo | None:
    """The zone named ``name``, or ``None`` when there is no such IANA zone."""
    if not name or name != name.strip() or name in HOST_DEPENDENT_ZONES:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


@dataclass
class BusinessDays:
    """Which dates count as campaign days: all of them, or business days
    (no weekends with ``skip_weekends``, no public holidays of ``country``)."""

    skip_weekends: bool = False
    country: str | None = None
    _holidays: set[dt.date] = field(default_factory=set)
    _years: set[int] = field(default_factory=set)

    def counts(self, day: dt.date) -> bool:
        if self.skip_weekends and day.weekday() >= SATURDAY:
            return False
        if self.country is not None:
            if day.year not in self._years:
                self._load(day.year)
            return day not in self._holidays
        return True

    def first_counting(self, day: dt.date) -> dt.date:
        """``day`` itself, or the next day that counts."""
        while not self.counts(day):
            day += dt.timedelta(days=1)
        return day

    def dates(self, first: dt.date, numbers: Iterable[int]) -> dict[int, dt.date]:
        """The date of each day number, day 1 being ``first`` (a counting day)."""
        wanted = sorted(set(numbers))
        found: dict[int, dt.date] = {}
        current, number = first, 1
        for target in wanted:
            if target < 1:
                continue
            while number < target:
                current += dt.timedelta(days=1)
                if self.counts(current):
                    number += 1
            found[target] = current
        return found

    def _load(self, year: int) -> None:
        import holidays  # loaded only when a campaign skips holidays: it is slow to import

        assert self.country is not None
        self._holidays.update(holidays.country_holidays(self.country, years=[year]).keys())
        self._years.add(year)


@dataclass(frozen=True)
class Instant:
    """A wall time placed in a zone: the UTC instant, the local one, and why
    it is not the wall time asked for (a daylight-saving gap)."""

    utc: dt.datetime
    local: dt.datetime
    note: str | None = None


def place(day: dt.date, wall: dt.time, where: ZoneInfo) -> Instant:
    """``wall`` on ``day`` in ``where``. A time in the spring-forward gap moves
    forward by the gap; a time that occurs twice (fall back) is the first one."""
    naive = dt.datetime.combine(day, wall)
    utc = naive.replace(tzinfo=where, fold=0).astimezone(UTC)
    local = utc.astimezone(where)
    note = None
    if local.replace(tzinfo=None) != naive:
        note = (
            f"{wall:%H:%M} does not exist on {day.isoformat()} in {where.key} "
            f"(clocks go forward): sent at {local:%H:%M}"
        )
    return Instant(utc, local, note)


@dataclass(frozen=True)
class Window:
    """A sending window (semantics §4.5): from ``opens`` up to, not at, ``closes``."""

    opens: dt.time
    closes: dt.time

    @classmethod
    def of(cls, window: SendWindow | None) -> Window | None:
        if window is None:
            return None
        return cls(_wall(window.opens), _wall(window.closes))

    def __str__(self) -> str:
        return f"{self.opens:%H:%M}-{self.closes:%H:%M}"


def _wall(text: str) -> dt.time:
    hours, _, minutes = text.partition(":")
    return dt.time(int(hours), int(minutes))


def into_window(instant: Instant, window: Window, where: ZoneInfo, days: BusinessDays) -> Instant:
    """``instant``, or where the window moves it (semantics §4.5): before the
    window opens, to its opening that day; at or after it closes, to its
    opening on the next day that counts. The note says which."""
    local = instant.local
    wall = local.time().replace(tzinfo=None)
    if window.opens <= wall < window.closes:
        return instant
    if wall < window.opens:
        day = days.first_counting(local.date())
        why = f"{wall:%H:%M} is before the sending window {window} opens"
    else:
        day = days.first_counting(local.date() + dt.timedelta(days=1))
        why = f"{wall:%H:%M} is past the sending window {window}"
    moved = place(day, window.opens, where)
    if moved.utc < instant.utc:
        # The opening happens twice that night (clocks going back) and the send
        # is in the repeated hour: the second opening, never earlier than the send.
        second = dt.datetime.combine(day, window.opens).replace(tzinfo=where, fold=1)
        utc = max(second.astimezone(UTC), instant.utc)
        moved = Instant(utc, utc.astimezone(where), moved.note)
    note = f"{why}: sent {moved.local:%a %Y-%m-%d %H:%M}"
    return Instant(moved.utc, moved.local, f"{note}; {moved.note}" if moved.note else note)
