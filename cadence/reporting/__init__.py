"""Diagnostics rendered for people (text) and machines (json, github, sarif).

One diagnostic model, one renderer per format; each has its own snapshot test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from cadence.diagnostics import Diagnostic
from cadence.reporting.machine import render_github, render_json, render_sarif
from cadence.reporting.text import SourceLookup, render_text, summary

Format = Literal["text", "json", "github", "sarif"]
FORMATS: tuple[Format, ...] = ("text", "json", "github", "sarif")

__all__ = ["FORMATS", "Format", "render", "render_text", "summary"]


def render(
    format: Format,
    diagnostics: Sequence[Diagnostic],
    sources: SourceLookup,
    *,
    color: bool = False,
    limit: int | None = None,
) -> str:
    """``diagnostics`` in ``format``; ``limit`` caps the text format only
    (machines get every diagnostic)."""
    if format == "text":
        return render_text(diagnostics, sources, color=color, limit=limit)
    if format == "json":
        return render_json(diagnostics)
    if format == "github":
        return render_github(diagnostics)
    return render_sarif(diagnostics)
