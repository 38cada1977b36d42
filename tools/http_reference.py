"""Writes the routes section of docs/serve.md from the HTTP API's OpenAPI
document (the one ``cadence serve`` serves at /api/v1/openapi.json).

Run: ``python tools/http_reference.py`` (rewrites the section in place);
tests/test_server.py keeps the file equal to what this writes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cadence.server.app import openapi_document

DOC = Path(__file__).resolve().parent.parent / "docs" / "serve.md"
START, END = "<!-- routes: start -->", "<!-- routes: end -->"


def routes_section() -> str:
    document = openapi_document()
    lines = [START, ""]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            lines.extend(_route(method.upper(), path, operation, document))
    lines.append(END)
    return "\n".join(lines)


def _route(
    method: str, path: str, operation: dict[str, Any], document: dict[str, Any]
) -> Iterator[str]:
    yield f"### `{method} {path}`"
    yield ""
    description = (operation.get("description") or operation.get("summary") or "").strip()
    if description:
        yield " ".join(description.split())
        yield ""
    parameters = [p for p in operation.get("parameters", []) if p["in"] == "query"]
    if parameters:
        shown = ", ".join(f"`{p['name']}`" + ("" if p.get("required") else "?") for p in parameters)
        yield f"Query: {shown}."
        yield ""
    body = operation.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        yield f"Body ({media}): {_shape(content.get('schema', {}), document)}."
        yield ""
    answers = [
        f"{status} {_answer(response, document)}"
        for status, response in operation.get("responses", {}).items()
        if status != "422"
    ]
    yield "Answers: " + "; ".join(answers) + ". Errors: problem+json."
    yield ""


def _answer(response: dict[str, Any], document: dict[str, Any]) -> str:
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    return _shape(schema, document) if schema else "(no body)"


def _shape(schema: dict[str, Any], document: dict[str, Any]) -> str:
    """A schema in a few words: a model's name and fields, a list of one."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        model = document["components"]["schemas"][name]
        fields = ", ".join(
            f"`{field}`" + ("" if field in model.get("required", []) else "?")
            for field in model.get("properties", {})
        )
        return f"`{name}` {{{fields}}}" if fields else f"`{name}`"
    if schema.get("type") == "array":
        return f"a list of {_shape(schema.get('items', {}), document)}"
    if "properties" in schema:
        fields = ", ".join(f"`{field}`" for field in schema["properties"])
        return f"{{{fields}}}"
    return f"`{schema.get('type', 'any')}`"


def written(text: str) -> str:
    """``text`` (docs/serve.md) with its routes section as the API has it now."""
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    return before + routes_section() + after


if __name__ == "__main__":
    DOC.write_text(written(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    sys.exit(0)
