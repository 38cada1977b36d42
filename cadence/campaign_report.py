"""`cadence report`: a campaign in one HTML file that opens anywhere, offline
(no script, font or stylesheet from elsewhere: the charts are SVG drawn by
matplotlib and written into the page).

It shows the campaign as a timeline (days × steps: each email's send rule and
time, the tasks, follow-up threads and alignments), with people and a start
the volume of sends per day and per hour across their zones, and with a
database the funnel so far per step and variant (runtime/funnel.py).
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from cadence import __version__
from cadence.compiler.ir import Campaign, Step
from cadence.describing import zone_words
from cadence.runtime.planner import Action

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from cadence.runtime.funnel import Funnel

TEMPLATE = Path(__file__).parent / "templates" / "report.html"
_KINDS = {"email": "email", "call": "call", "inmail": "InMail", "custom": "task"}
_MARKERS = {"email": "o", "email_task": "s", "call": "^", "inmail": "D", "custom": "v"}
_COLORS = {"email": "#0b5cad", "email_task": "#7a3eb1", "call": "#116329", "inmail": "#9a6700",
           "custom": "#57606a"}  # fmt: skip


@dataclass
class Volume:
    """Sends of a plan counted by local date and by hour (UTC), and people by zone."""

    people: int = 0
    sends: int = 0
    tasks: int = 0
    by_day: Counter[dt.date] = field(default_factory=Counter)
    by_day_hour: Counter[tuple[dt.date, int]] = field(default_factory=Counter)
    zones: Counter[str] = field(default_factory=Counter)
    variants: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, actions: Iterable[Action]) -> Volume:
        person, placed = None, True
        for action in actions:
            if action.person != person:
                if not placed:
                    self.zones["— (tasks only)"] += 1
                person, placed = action.person, False
                self.people += 1
            if not placed and action.local is not None:  # a task has no time, nor zone
                self.zones[str(action.local.tzinfo)] += 1
                placed = True
            if action.variant is not None:
                self.variants[(action.step, action.variant)] += 1
            if action.due is None:
                self.tasks += 1
                continue
            self.sends += 1
            self.by_day[action.due.date()] += 1
            self.by_day_hour[(action.due.date(), action.due.hour)] += 1
        if not placed:
            self.zones["— (tasks only)"] += 1
        return self


def rule_of(step: Step) -> str:
    """An email's send rule in words, as the timeline labels it."""
    timing = step.timing
    if step.kind != "email":
        return _KINDS.get(step.kind, step.kind)
    if timing is None or timing.kind == "task":
        return "task (sent by a person)"
    if timing.kind == "waits_for_task":
        return f"with previous: after task `{timing.step}`"
    if step.send == "choose":
        return "at the start"
    if step.send == "with_previous":
        anchor = timing.via[0] if timing.via else "start"
        time = timing.time or "start's time"
        return f"with `{anchor}` ({time})"
    return f"at {timing.time}"


def render_report(
    ir: Campaign,
    *,
    volume: Volume | None = None,
    start: dt.datetime | None = None,
    results: Funnel | None = None,
    generated: dt.datetime | None = None,
) -> str:
    """The page about ``ir``: with a plan's ``volume`` (from ``start``) and
    the ``results`` so far, when given."""
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    environment.globals["percent"] = percent
    template = environment.from_string(TEMPLATE.read_text(encoding="utf-8"))
    steps = [
        {
            "step": step,
            "rule": rule_of(step),
            "kind": "email task" if step.send == "task" else _KINDS.get(step.kind, step.kind),
            "window": f"{step.window.opens}-{step.window.closes}" if step.window else None,
        }
        for step in ir.steps
    ]
    charts: dict[str, str] = {"timeline": _svg(_timeline(ir), "timeline")}
    if volume is not None and volume.sends:
        charts["days"] = _svg(_days(volume), "days")
        charts["hours"] = _svg(_hours(volume), "hours")
    if results is not None and any(r.variant for r in results.emails):
        charts["rates"] = _svg(_rates(results), "rates")
    return template.render(
        ir=ir,
        steps=steps,
        zone=zone_words(ir),
        volume=volume,
        start=start,
        results=results,
        charts=charts,
        version=__version__,
        generated=(generated or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC"),
    )


# ---- charts ---------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(figure: Figure, name: str) -> str:
    """The figure as an SVG element: text kept as text, no header, and its ids
    prefixed with ``name`` (each chart's own: one page holds them all)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "cadence"}):
        figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    # No metadata (its RDF names are web addresses; nothing is loaded from them).
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)
    text = re.sub(r'\bid="', f'id="{name}-', text)
    text = re.sub(r'(url\(#|href="#)', rf"\g<1>{name}-", text)
    return text[text.index("<svg") :]


def _timeline(ir: Campaign) -> Figure:
    steps = ir.steps
    height = 0.9 + 0.42 * len(steps)
    figure = _figure(10, height)
    axes = figure.add_subplot()
    row = {step.id: len(steps) - 1 - n for n, step in enumerate(steps)}
    for step in steps:
        kind = "email_task" if step.send == "task" else step.kind
        axes.scatter([step.day], [row[step.id]], marker=_MARKERS[kind], s=90, color=_COLORS[kind],
                     zorder=3)  # fmt: skip
        label = f"{step.id} · {rule_of(step)}"
        if step.variants:
            label += " · variants " + "/".join(v.name for v in step.variants)
        axes.annotate(label, (step.day, row[step.id]), xytext=(9, -3), textcoords="offset points",
                      fontsize=9)  # fmt: skip
    day = {step.id: step.day for step in steps}
    for edge in ir.edges:
        if edge.kind == "next":
            continue
        style = "-" if edge.kind == "reply_to" else "--"
        color = "#0b5cad" if edge.kind == "reply_to" else "#9a6700"
        axes.annotate(
            "",
            xy=(day[edge.target], row[edge.target]),
            xytext=(day[edge.source], row[edge.source]),
            arrowprops={"arrowstyle": "->", "linestyle": style, "color": color,
                        "connectionstyle": "arc3,rad=0.25"},
        )  # fmt: skip
    axes.set_yticks(range(len(steps)), [s.id for s in reversed(steps)], fontsize=9)
    days = sorted({s.day for s in steps})
    axes.set_xticks(days, [f"day {d}" for d in days], fontsize=9)
    axes.set_xlim(min(days) - 0.5, max(days) + 3.5)
    axes.set_ylim(-0.7, len(steps) - 0.3)
    axes.grid(axis="x", color="#d0d7de", linewidth=0.6)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return figure


def _days(volume: Volume) -> Figure:
    figure = _figure(10, 3)
    axes = figure.add_subplot()
    dates = sorted(volume.by_day)
    axes.bar([d.isoformat() for d in dates], [volume.by_day[d] for d in dates], color="#0b5cad")
    axes.set_ylabel("sends")
    axes.tick_params(axis="x", labelrotation=60, labelsize=8)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return figure


def _hours(volume: Volume) -> Figure:
    dates = sorted(volume.by_day)
    figure = _figure(10, 0.9 + 0.22 * len(dates))
    axes = figure.add_subplot()
    grid = [[volume.by_day_hour.get((d, h), 0) for h in range(24)] for d in dates]
    image = axes.imshow(grid, aspect="auto", cmap="Blues", interpolation="nearest")
    axes.set_xticks(range(24), [f"{h:02d}" for h in range(24)], fontsize=8)
    axes.set_yticks(range(len(dates)), [d.isoformat() for d in dates], fontsize=8)
    axes.set_xlabel("hour (UTC)")
    figure.colorbar(image, ax=axes, label="sends")
    return figure


def _rates(results: Funnel) -> Figure:
    tested = [r for r in results.emails if r.variant is not None and r.sent]
    figure = _figure(10, 0.9 + 0.35 * max(len(tested), 1))
    axes = figure.add_subplot()
    labels = [f"{r.step} · {r.variant}" for r in tested]
    rates = [100 * (r.reply_rate or 0) for r in tested]
    axes.barh(labels[::-1], rates[::-1], color="#116329")
    axes.set_xlabel("reply rate (%)")
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return figure


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"
