"""Diagnostics for machines: JSON for scripts, GitHub workflow commands, SARIF 2.1.0."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from cadence import __version__
from cadence.codes import REGISTRY
from cadence.diagnostics import Diagnostic, Severity
from cadence.span import Span

JSON_VERSION = 1


def render_json(diagnostics: Sequence[Diagnostic]) -> str:
    """``{"version": 1, "diagnostics": [...]}``, positions 1-based; each
    diagnostic with its ``related`` places and its ``fixes`` (edits that
    replace a span's text; ``safe``: what ``check --fix`` applies)."""
    rows = json_rows(diagnostics)
    return json.dumps({"version": JSON_VERSION, "diagnostics": rows}, indent=2) + "\n"


def json_rows(diagnostics: Sequence[Diagnostic]) -> list[dict[str, Any]]:
    """The diagnostics as the JSON format lists them (for an answer that
    carries them inside its own JSON)."""
    return [
        {
            "severity": d.severity.value,
            "code": d.code,
            "message": d.message,
            "file": d.span.file,
            "line": d.span.line,
            "column": d.span.column,
            "end_line": d.span.end_line,
            "end_column": d.span.end_column,
            "help": d.help,
            "related": [{"message": r.message, **_where(r.span)} for r in d.related],
            "fixes": [
                {
                    "message": fix.message,
                    "safe": fix.safe,
                    "edits": [{**_where(edit.span), "text": edit.text} for edit in fix.edits],
                }
                for fix in d.fixes
            ],
        }
        for d in diagnostics
    ]


def _where(span: Span) -> dict[str, Any]:
    return {
        "file": span.file,
        "line": span.line,
        "column": span.column,
        "end_line": span.end_line,
        "end_column": span.end_column,
    }


_GITHUB_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def render_github(diagnostics: Sequence[Diagnostic]) -> str:
    """One workflow command per diagnostic: GitHub shows it on the line in the diff."""
    lines = []
    for d in diagnostics:
        span = d.span
        properties = {
            "file": span.file,
            "line": span.line,
            "col": span.column,
            "endLine": span.end_line,
            "endColumn": span.end_column,
            "title": f"{d.code} {REGISTRY[d.code].name}" if d.code in REGISTRY else d.code,
        }
        listed = ",".join(
            f"{key}={_escape_property(str(value))}" for key, value in properties.items()
        )
        message = d.message if not d.help else f"{d.message}\nhelp: {d.help}"
        lines.append(f"::{_GITHUB_LEVEL[d.severity]} {listed}::{_escape_data(message)}")
    return "".join(line + "\n" for line in lines)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def render_sarif(diagnostics: Sequence[Diagnostic]) -> str:
    """A SARIF 2.1.0 log with one run; every registered code is a rule."""
    rule_ids = sorted(REGISTRY)
    rules = [
        {
            "id": code.id,
            "name": code.name,
            "shortDescription": {"text": code.summary},
            "defaultConfiguration": {"level": _SARIF_LEVEL[code.severity]},
        }
        for code in (REGISTRY[id] for id in rule_ids)
    ]
    results = [_sarif_result(d, rule_ids) for d in diagnostics]
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "cadence",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": rules,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"


def _sarif_result(diagnostic: Diagnostic, rule_ids: list[str]) -> dict[str, Any]:
    text = (
        diagnostic.message
        if not diagnostic.help
        else f"{diagnostic.message} (help: {diagnostic.help})"
    )
    result: dict[str, Any] = {
        "ruleId": diagnostic.code,
        "level": _SARIF_LEVEL[diagnostic.severity],
        "message": {"text": text},
        "locations": [_sarif_location(diagnostic.span)],
    }
    if diagnostic.code in rule_ids:
        result["ruleIndex"] = rule_ids.index(diagnostic.code)
    if diagnostic.related:
        result["relatedLocations"] = [
            {**_sarif_location(related.span), "id": n, "message": {"text": related.message}}
            for n, related in enumerate(diagnostic.related)
        ]
    return result


def _sarif_location(span: Span) -> dict[str, Any]:
    return {
        "physicalLocation": {
            "artifactLocation": {"uri": PurePath(span.file).as_posix()},
            "region": {
                "startLine": span.line,
                "startColumn": span.column,
                "endLine": span.end_line,
                "endColumn": span.end_column,
            },
        }
    }
