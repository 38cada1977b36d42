"""The IANA time zones cadence knows, and the one a near miss was meant to
be: what the compiler suggests for a campaign's zone and the planner for a
person's."""

from __future__ import annotations

import difflib
import zoneinfo
from functools import cache

from cadence.compiler.ir import HOST_DEPENDENT_ZONES


@cache
def known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - HOST_DEPENDENT_ZONES


@cache
def zone_names() -> frozenset[str]:
    """Zones to suggest: named for a place. The old fixed-offset and
    abbreviation zones ("EST", "EST5EDT", "Etc/GMT+5") are valid, but a
    near miss is almost never meant as one of them."""
    return frozenset(
        name for name in known_zones() if "/" in name and not name.startswith(("Etc/", "SystemV/"))
    )


def closest(value: str, names: frozenset[str]) -> str | None:
    """The name of ``names`` that ``value`` was most likely meant to be:
    the same but for letter case, else a close spelling."""
    by_folded = {name.casefold(): name for name in names}
    if value.casefold() in by_folded:
        return by_folded[value.casefold()]
    close = difflib.get_close_matches(value.casefold(), list(by_folded), n=1, cutoff=0.7)
    return by_folded[close[0]] if close else None


def suggest_zone(value: str) -> str | None:
    """The zone ``value`` (not a zone) was most likely meant to be."""
    return closest(value.strip()[:100], zone_names())
