"""Settings: checked (each once, zones and holiday countries that exist) and
resolved into the IR's :class:`Settings` with the defaults of docs/semantics.md §4, §7."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache

from cadence import codes
from cadence.compiler.ir import SendWindow, Settings
from cadence.compiler.rules import repeats, usable_window
from cadence.compiler.zones import closest, known_zones, zone_names
from cadence.diagnostics import Diagnostic, Related, replacement
from cadence.grammar import ast

# An id outlives renames and shows in commands and URLs: plain characters only.
CAMPAIGN_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_NAMES = {
    "id": "id",
    "timezone": "timezone",
    "skip_weekends": "skip weekends",
    "skip_holidays": "skip holidays",
    "on_reply": "on reply",
    "on_bounce": "on bounce",
    "requires": "requires",
    "send_window": "send window",
}


def resolve_settings(campaign: ast.Campaign) -> Settings:
    """The settings as the runtime reads them (the first of a repeated one wins)."""
    values: dict[str, object] = {}
    for setting in reversed(campaign.settings):
        match setting:
            case ast.CampaignKey(value=value):
                values["id"] = value.value
            case ast.Timezone(zone=zone, recipient=recipient):
                values["timezone"] = zone.value
                values["timezone_from_recipient"] = recipient
            case ast.SkipWeekends():
                values["skip_weekends"] = True
            case ast.SkipHolidays(country=country):
                values["holidays"] = country.value.upper()
            case ast.OnReply(action=action):
                values["on_reply"] = action
            case ast.OnBounce(action=action):
                values["on_bounce"] = action
            case ast.Requires(fields=fields):
                values["requires"] = list(dict.fromkeys(f.value for f in fields))
            case ast.SendWindow():
                values["send_window"] = ir_window(setting)
    return Settings.model_validate(values)


def ir_window(window: ast.SendWindow) -> SendWindow | None:
    """The window as the IR holds it; ``None`` for one the rules refuse (C019,
    C033, C034: no IR is made then, but the settings are read before that)."""
    if not usable_window(window):
        return None
    return SendWindow(opens=str(window.opens), closes=str(window.closes))


def check_settings(campaign: ast.Campaign) -> Iterator[Diagnostic]:
    for setting, first in repeats(campaign.settings, lambda setting: setting.kind):
        yield codes.C016.at(
            setting.span,
            f"`{_NAMES[setting.kind]}` is set twice",
            help="keep one",
            related=(Related(message="first set here", span=first.span),),
        )
    for setting in campaign.settings:
        if isinstance(setting, ast.Timezone):
            yield from _check_zone(setting.zone)
        elif isinstance(setting, ast.SkipHolidays):
            yield from _check_country(setting.country)
        elif isinstance(setting, ast.CampaignKey) and not CAMPAIGN_KEY.fullmatch(
            setting.value.value
        ):
            yield codes.C027.at(
                setting.value.span,
                f"campaign id {setting.value.value!r} is not a usable id",
                help='use up to 100 letters, digits, "-", "_" or ".", like "q1-outbound"',
            )


def _check_zone(zone: ast.Text) -> Iterator[Diagnostic]:
    if zone.value in known_zones():
        return
    region = _ABBREVIATIONS.get(re.sub(r"[\d:+-]", "", zone.value).upper())
    if region is not None:
        place, guess = region
        help = f'for {place} time, with its daylight saving, use "{guess}"'
    else:
        found = closest(zone.value, zone_names())
        guess = found or ""
        help = f'did you mean "{found}"?' if found else 'zones are named like "Europe/Stockholm"'
    yield codes.C017.at(
        zone.span,
        f'"{zone.value}" is not an IANA time zone',
        help=help,
        fixes=(replacement(zone.span, f'"{guess}"', safe=False),) if guess else (),
    )


def _check_country(country: ast.Text) -> Iterator[Diagnostic]:
    known = holiday_countries()
    if country.value.upper() in known:
        return
    guess = closest(country.value.upper(), known)
    yield codes.C018.at(
        country.span,
        f'no public holidays are known for "{country.value}"',
        help=f'did you mean "{guess}"?'
        if guess
        else 'use an ISO 3166 country code, like "US", "GB" or "SE"',
        fixes=(replacement(country.span, f'"{guess}"', safe=False),) if guess else (),
    )


# Abbreviations people write for a zone (with or without an offset: "EST5",
# "CET-1"), and the place whose zone they mean.
_ABBREVIATIONS = {
    "EST": ("US Eastern", "America/New_York"),
    "EDT": ("US Eastern", "America/New_York"),
    "ESTEDT": ("US Eastern", "America/New_York"),
    "CST": ("US Central", "America/Chicago"),
    "CDT": ("US Central", "America/Chicago"),
    "CSTCDT": ("US Central", "America/Chicago"),
    "MST": ("US Mountain", "America/Denver"),
    "MDT": ("US Mountain", "America/Denver"),
    "MSTMDT": ("US Mountain", "America/Denver"),
    "PST": ("US Pacific", "America/Los_Angeles"),
    "PDT": ("US Pacific", "America/Los_Angeles"),
    "PSTPDT": ("US Pacific", "America/Los_Angeles"),
    "BST": ("UK", "Europe/London"),
    "CET": ("Central European", "Europe/Berlin"),
    "CEST": ("Central European", "Europe/Berlin"),
    "EET": ("Eastern European", "Europe/Helsinki"),
    "EEST": ("Eastern European", "Europe/Helsinki"),
    "IST": ("India", "Asia/Kolkata"),
    "JST": ("Japan", "Asia/Tokyo"),
    "AEST": ("Australian Eastern", "Australia/Sydney"),
    "AEDT": ("Australian Eastern", "Australia/Sydney"),
}


@cache
def holiday_countries() -> frozenset[str]:
    import holidays  # imported only for campaigns that skip holidays: it is slow to load

    return frozenset(holidays.list_supported_countries())
