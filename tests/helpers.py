"""Helpers shared by the tests (not fixtures: plain functions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cadence.grammar import ast

SPAN_KEYS = {"span", "number_span", "weight_span"}


def without_spans(node: ast.Node) -> Any:
    """The AST as plain data with every position removed: what formatting must keep."""
    return _strip(node.model_dump())


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in SPAN_KEYS}
    if isinstance(value, list | tuple):
        return [_strip(v) for v in value]
    return value


def check_golden(path: Path, actual: str, update: bool) -> None:
    """Compare ``actual`` with the golden file (or rewrite it with --update-goldens)."""
    if update or not path.exists():
        path.write_text(actual, encoding="utf-8")
        if not update:
            raise AssertionError(f"{path.name} did not exist; written, check it in")
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{path.name} differs; rerun with --update-goldens if intended"
